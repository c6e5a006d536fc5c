"""A spec's text to a :class:`ResolvedCampaign`: parsed, expanded, validated, plugins loaded, paths absolute.

:func:`load_spec` and :func:`load_spec_text` run the steps of the package in
order and collect every problem of every step, so a long spec is fixed in one
pass: :mod:`~mummi_like.spec.parsing` (YAML, hostile input),
:mod:`~mummi_like.spec.expansion` (``${env:...}``),
:mod:`~mummi_like.spec.models` (the structure),
:mod:`~mummi_like.spec.references` (names and cycles), then each plugin's own
``config_model`` and the paths (:mod:`~mummi_like.spec.paths`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from mummi_like import plugins
from mummi_like.backends.base import Backend, BackendConfig
from mummi_like.scale import Scale, ScaleContext
from mummi_like.selection import Selector
from mummi_like.spec.expansion import expand
from mummi_like.spec.models import BackendSpec, CampaignSpec, CouplingSpec, PolicySpec, ScaleSpec
from mummi_like.spec.parsing import located_issues, parse
from mummi_like.spec.paths import resolved
from mummi_like.spec.problems import Loc, Problem, SpecError, SpecIssue, kind_of
from mummi_like.spec.pydantic_errors import has_entry, validation_problems
from mummi_like.spec.references import DEFER_REFERENCES, reference_problems

Model = TypeVar("Model", bound=BaseModel)


@dataclass(frozen=True)
class ResolvedScale:
    """A scale with its plugin class and its validated config."""

    spec: ScaleSpec
    plugin: type[Scale]
    config: BaseModel


@dataclass(frozen=True)
class ResolvedCoupling:
    """A coupling with its selector class and the selector's validated config."""

    spec: CouplingSpec
    selector: type[Selector]
    config: BaseModel


@dataclass(frozen=True)
class ResolvedCampaign:
    """A spec ready to run: plugins loaded, configs validated, paths absolute.

    ``spec.directory`` and ``spec.python_path`` hold the resolved absolute paths
    (``directory`` being the same as :attr:`directory`).
    """

    spec: CampaignSpec
    source: Path
    spec_dir: Path
    directory: Path
    backend: type[Backend]
    backend_config: BackendConfig
    scales: list[ResolvedScale]
    policy: type
    policy_config: BaseModel | None
    """The policy's validated config; ``None`` for a policy class without a ``config_model``."""
    couplings: list[ResolvedCoupling] = field(default_factory=list)
    """The couplings with their selectors, in spec order."""


def load_spec(path: Path, directory: Path | None = None) -> ResolvedCampaign:
    """Read, validate and resolve the campaign spec at ``path``.

    Parameters
    ----------
    path:
        The YAML file.
    directory:
        Overrides the spec's ``directory`` (the CLI's ``--dir``); relative to the
        current directory.

    Raises
    ------
    SpecError
        With every problem found, the file being unreadable included.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        hint = "check the path" if isinstance(error, OSError) else "save the spec as UTF-8 text"
        raise SpecError(path, [SpecIssue("<root>", None, f"cannot read the spec: {error}", hint, path)]) from error
    return load_spec_text(text, path, directory)


def load_spec_text(text: str, source: Path, directory: Path | None = None) -> ResolvedCampaign:
    """Validate and resolve spec ``text`` as if it were read from ``source``.

    ``source`` need not exist: it names the spec in messages, and its folder is
    what relative paths resolve against. See :func:`load_spec`.
    """
    source = Path(source)
    spec_dir = source.absolute().parent.resolve()
    problems: list[Problem] = []

    root, data = parse(text, problems)
    if root is None or not isinstance(data, dict):
        if root is not None:
            problems.append(
                Problem(
                    (),
                    f"the top level must be a mapping of keys (name:, scales:, ...), not {kind_of(data)}",
                    "write `name: ...` and `scales:` at the start of their lines, with no leading `- `",
                )
            )
        raise SpecError(source, located_issues(problems, root, source))

    data, unexpanded = expand(data, (), problems)
    campaign = _Resolver(data, source.absolute(), spec_dir, problems, unexpanded).resolve(directory)
    if problems or campaign is None:
        raise SpecError(source, located_issues(problems, root, source))
    return campaign


def _valid(annotation: Any, value: Any) -> Any:
    """``value`` validated as ``annotation``, or ``None``; its errors are reported by the whole-spec validation."""
    try:
        return TypeAdapter(annotation).validate_python(value)
    except ValidationError:
        return None


class _Resolver:
    """Validates one expanded spec, collecting problems, and resolves what is valid.

    Each part (backend, every scale, every coupling, policy, paths) is checked on
    its own, so one mistake does not hide the others.
    """

    def __init__(
        self, data: dict[Any, Any], source: Path, spec_dir: Path, problems: list[Problem], unexpanded: set[Loc]
    ) -> None:
        self.data = data
        self.source = source
        self.spec_dir = spec_dir
        self.problems = problems
        self.unexpanded = unexpanded

    def resolve(self, directory: Path | None) -> ResolvedCampaign | None:
        """The campaign, or ``None`` when problems were recorded."""
        spec = self._validate(CampaignSpec, self.data, (), context={DEFER_REFERENCES: True})
        raw_scales = self.data.get("scales")
        raw_scales = raw_scales if isinstance(raw_scales, list) else []
        raw_couplings = self.data.get("couplings")
        raw_couplings = raw_couplings if isinstance(raw_couplings, list) else []

        names = {i: item["name"] for i, item in enumerate(raw_scales) if isinstance(item, dict) and "name" in item}
        names = {i: name for i, name in names.items() if isinstance(name, str)}
        valid_scales = {i: s for i, item in enumerate(raw_scales) if (s := _valid(ScaleSpec, item)) is not None}
        valid_couplings = {
            i: c for i, item in enumerate(raw_couplings) if (c := _valid(CouplingSpec, item)) is not None
        }
        self.problems.extend(reference_problems(names, valid_scales, valid_couplings))
        selectors = {
            index: self._part(item, "selector", Selector, ("couplings", index), plugin_key="selector")
            for index, item in enumerate(raw_couplings)
        }

        backend_class, backend_config = self._part(self.data.get("backend", {}), "backend", Backend, ("backend",))
        resolved_scales = {
            index: self._part(item, "scale", Scale, ("scales", index)) for index, item in enumerate(raw_scales)
        }
        policy_class, policy_config = self._part(self.data.get("policy", {}), "pipeline", None, ("policy",))
        if backend_class is not None and backend_config is not None:
            parts: dict[Loc, tuple[Any, Any]] = {("scales", index): part for index, part in resolved_scales.items()}
            parts.update({("couplings", index): part for index, part in selectors.items()})
            self._check_requests(backend_class, backend_config, parts)

        python_path = self._python_path(
            _valid(list[Path], self.data.get("python_path", [])) or [],
            _valid(bool, self.data.get("allow_outside_paths", False)) is True,
        )
        campaign_dir = self._directory(spec, directory) if spec is not None else None
        if campaign_dir is not None:
            self._check_inputs(resolved_scales, names, campaign_dir)
        if spec is None or campaign_dir is None or self.problems:
            return None
        return ResolvedCampaign(
            spec=spec.model_copy(update={"directory": campaign_dir, "python_path": python_path}),
            source=self.source,
            spec_dir=self.spec_dir,
            directory=campaign_dir,
            backend=backend_class,
            backend_config=backend_config,
            scales=[ResolvedScale(scale, *resolved_scales[index]) for index, scale in enumerate(spec.scales)],
            couplings=[ResolvedCoupling(coupling, *selectors[index]) for index, coupling in enumerate(spec.couplings)],
            policy=policy_class,
            policy_config=policy_config,
        )

    def _part(
        self, item: Any, kind: str, base: type | None, loc: Loc, plugin_key: str = "plugin"
    ) -> tuple[Any, Any]:
        """Plugin class and validated config of the block at ``loc``, or ``None`` for each.

        Looks only at the plugin's name (key ``plugin_key``: ``plugin``, or a
        coupling's ``selector``) and ``config``, so that a plugin's config is
        checked even when another key of its block (a scale's ``name``, a
        coupling's ``max_in_flight``) is wrong: one run reports both.
        """
        if not isinstance(item, dict):
            return None, None
        default = {"backend": BackendSpec, "pipeline": PolicySpec}.get(kind)
        plugin = item.get(plugin_key, default.model_fields["plugin"].default if default else None)
        if not isinstance(plugin, str):
            return None, None
        cls = self._plugin(kind, plugin, base, (*loc, plugin_key))
        config = item.get("config", {})
        if cls is None or not isinstance(config, dict):
            return cls, None
        return cls, self._config(cls, config, (*loc, "config"), required=kind != "pipeline", plugin_key=plugin_key)

    def _check_requests(
        self, backend: type[Backend], config: BackendConfig, parts: dict[Loc, tuple[Any, Any]]
    ) -> None:
        """Refuse, at its YAML path, each resource request of a scale or selector (its plugin's
        ``resource_requests``) that the backend can never satisfy, as the backend would refuse the task at run time.

        ``parts`` maps the location of each ``scales`` or ``couplings`` entry to
        its plugin class and validated config (``None`` where invalid, already
        reported). Nothing is checked against a backend that knows its capacity
        only once started (``declared_capacity`` is ``None``).
        """
        capacity = backend.declared_capacity(config)
        if capacity is None:
            return
        for loc, (plugin, plugin_config) in parts.items():
            if plugin is None or plugin_config is None:
                continue
            for key, resources in plugin.resource_requests(plugin_config).items():
                refusal = capacity.refusal(resources)
                if refusal is not None:
                    self.problems.append(
                        Problem(
                            (*loc, "config", *key),
                            f"asks for {refusal}, more than the backend has ({capacity}): these tasks could never "
                            "start",
                            "lower the request, or, if the campaign runs where there is more, give the backend more "
                            "in `backend: {config: ...}` (the local backend: cores, gpus; unset, they are what the "
                            "machine reading this spec has)",
                        )
                    )

    def _check_inputs(
        self, parts: dict[int, tuple[Any, Any]], names: dict[int, str], campaign_dir: Path
    ) -> None:
        """Each scale's own look at the inputs its config names (``Scale.check_inputs``), a refusal located at its
        ``config``; scales whose plugin or config is invalid (already reported) are skipped."""
        for index, (plugin, config) in parts.items():
            if plugin is None or config is None or index not in names:
                continue
            context = ScaleContext(name=names[index], campaign_dir=campaign_dir, spec_dir=self.spec_dir)
            try:
                plugin(config, context).check_inputs()
            except ValueError as error:
                self.problems.append(Problem(("scales", index, "config"), str(error), None))

    def _validate(
        self, model: type[Model], value: Any, loc: Loc, context: dict[str, Any] | None = None
    ) -> Model | None:
        """``value`` validated as ``model``, or ``None`` after recording its problems at ``loc``."""
        try:
            return model.model_validate(value, context=context)
        except ValidationError as error:
            data = self._at(loc)
            self.problems.extend(validation_problems(error, model, data, loc, self.unexpanded))
            return None

    def _at(self, loc: Loc) -> Any:
        """The data at ``loc``, or ``None`` where a key is absent (a default applies)."""
        node: Any = self.data
        for part in loc:
            if not has_entry(node, part):
                return None
            node = node[part]
        return node

    def _plugin(self, kind: str, name: str, base: type | None, loc: Loc) -> type | None:
        try:
            return plugins.load(kind, name, base)
        except plugins.UnknownPlugin as error:
            self.problems.append(
                Problem(
                    loc,
                    f"unknown {kind} plugin {error.name!r}",
                    f"{error.hint} A plugin is a package registering an entry point in group {plugins.GROUPS[kind]!r}",
                )
            )
        except plugins.PluginLoadError as error:
            self.problems.append(
                Problem(
                    loc,
                    str(error),
                    "fix or reinstall the package that provides it (or correct its entry point), or use another plugin",
                )
            )
        return None

    def _config(
        self, cls: type, config: dict[str, Any], loc: Loc, required: bool, plugin_key: str
    ) -> BaseModel | None:
        """``config`` validated with ``cls.config_model``; problems at ``loc`` when invalid.

        Scales, selectors and backends must declare a ``config_model`` (a
        missing one is reported at the block's ``plugin_key``); a policy may
        have none, and then takes no config.
        """
        model = getattr(cls, "config_model", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            if required:
                self.problems.append(
                    Problem(
                        (*loc[:-1], plugin_key),
                        f"plugin class {cls.__module__}.{cls.__qualname__} has no `config_model`",
                        "its author must set `config_model` to a pydantic model of its config",
                    )
                )
            elif config:
                self.problems.append(Problem(loc, f"{cls.__qualname__} takes no config", "remove this block"))
            return None
        return self._validate(model, config, loc)

    def _python_path(self, entries: list[Path], allow_outside: bool) -> list[Path]:
        folders = []
        for index, entry in enumerate(entries):
            loc: Loc = ("python_path", index)
            path = self._usable(entry, loc, self.spec_dir)
            if path is None:
                continue
            if not allow_outside and not path.is_relative_to(self.spec_dir):
                self.problems.append(
                    Problem(
                        loc,
                        f"python_path entry {str(entry)!r} resolves to {path}, outside the spec's folder "
                        f"{self.spec_dir}",
                        "keep the code next to the spec, or set `allow_outside_paths: true` if it must come "
                        "from elsewhere",
                    )
                )
                continue
            if not path.is_dir():
                message = f"python_path entry {str(entry)!r} is not a folder ({path})"
                self.problems.append(Problem(loc, message, "create it or fix the path"))
                continue
            folders.append(path)
        return folders

    def _directory(self, spec: CampaignSpec, override: Path | None) -> Path | None:
        """The campaign directory: the CLI's override (relative to the current directory), the spec's
        ``directory`` (relative to the spec's folder; anywhere the user wants it), or ``runs/<name>``.

        Refused when it cannot be created because a part of it is a file.
        """
        loc: Loc = ("directory",)
        if override is not None:
            path = self._usable(Path(override), loc, Path.cwd())
        else:
            path = self._usable(spec.directory or Path("runs") / spec.name, loc, self.spec_dir)
        if path is None:
            return None
        existing = next(folder for folder in (path, *path.parents) if folder.exists())
        if not existing.is_dir():
            self.problems.append(
                Problem(loc, f"the campaign directory {path} cannot be created: {existing} is a file",
                         "choose a directory that no file is in the way of")
            )
            return None
        return path

    def _usable(self, path: Path, loc: Loc, base: Path) -> Path | None:
        """``path`` resolved against ``base``, or ``None`` after reporting why it cannot be used.

        A path whose text was reported already (an unset variable, a NUL
        character) is skipped; one starting with ``~`` is refused, since ``~`` is
        never expanded; one that cannot be resolved (a symlink loop, a name too
        long) is reported with the reason.
        """
        if loc in self.unexpanded:
            return None
        if str(path).startswith("~"):
            self.problems.append(
                Problem(loc, f"path {str(path)!r} starts with '~', which is not expanded",
                         "write ${env:HOME}/... instead")
            )
            return None
        try:
            return resolved(base / path)
        except ValueError as error:
            self.problems.append(Problem(loc, str(error), None))
            return None
