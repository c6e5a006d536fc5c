"""The campaign spec: a YAML file validated into typed models, with every error at once.

A campaign is one YAML document::

    name: screen
    backend: {plugin: local, config: {cores: 8}}
    scales:
      - name: dock
        plugin: command
        config: {argv: [vina, --config, dock.conf]}
      - name: md
        plugin: function
        depends_on: [dock]
        config: {function: "my_md:run"}
    budgets: {max_failures: 10}

:func:`load_spec` parses it (YAML ``safe_load`` semantics: plain data, no
``!!python`` tags), validates the outer structure with :class:`CampaignSpec`,
then loads each named plugin and validates its ``config:`` block with the
plugin's own ``config_model``. It reports *every* problem it can find in one
:class:`SpecError`, each with the YAML path and line of the bad node and, where
one helps, a hint (the key you probably meant, the type that was expected), so
that a long spec is fixed in one pass instead of one error per run.

Expansion
---------
Only environment variables are expanded, only inside string *values* (not keys),
and only with this explicit syntax:

- ``${env:NAME}``: the value of ``NAME``; an unset variable is an error that
  names it.
- ``${env:NAME:-default}``: ``default`` when ``NAME`` is unset or empty (as in a
  POSIX shell); the default is literal text and cannot contain ``}``.
- ``$${``: a literal ``${``.

Any other ``${...}`` is an error rather than silently left alone, and nothing
else is expanded: ``$HOME`` and ``~`` stay literal. Expanded text is not scanned
again and is never evaluated, so a variable cannot inject further expansions.

Paths
-----
- ``directory`` (the campaign directory, the root of everything the campaign
  writes) may be anywhere the user says: relative paths resolve against the spec
  file's folder; without it the campaign writes to ``<spec folder>/runs/<name>``.
  The CLI's ``--dir`` overrides it (relative to the current directory). Task
  working directories must stay inside it (:func:`inside`).
- ``python_path`` entries are prepended to ``sys.path`` of Python-callable
  workers, so whatever they hold runs inside every such task. They resolve
  against the spec folder and must stay inside it (symlinks resolved), which
  keeps a spec and the code it runs together, and stops a shared spec from
  quietly importing code from elsewhere on the machine. ``allow_outside_paths:
  true`` lifts that rule for a spec that really needs an installed-elsewhere tree.
- Paths starting with ``~`` are rejected, since ``~`` is not expanded; write
  ``${env:HOME}/...`` instead. A path that cannot be resolved (a symlink
  loop, a name too long for the file system) is reported with the reason.
- Plugins keep their inputs with the spec the same way: the docking scales'
  ``library_file`` must resolve inside the spec's folder (checked when the
  scale makes its tasks, before any campaign directory exists), and a
  coupling's ``stream`` is a glob below the source scale's task folders (no
  ``..``, no absolute path). A command's ``argv`` names whatever program the
  spec declares, which is its purpose; no shell ever parses it.

Hostile input
-------------
Whatever the text, :func:`load_spec` returns a campaign or raises a
:class:`SpecError`: lists and mappings nested more than :data:`MAX_DEPTH` deep
(even through aliases), more than :data:`MAX_VALUES` values once aliases are
expanded (the "billion laughs"), characters YAML does not allow, NUL
characters in any value or key (no argument, path or environment variable can
hold one) and names longer than :data:`MAX_NAME_LENGTH` are each one located
issue. ``tests/test_spec_fuzz.py`` checks this with generated input.
"""

from __future__ import annotations

import difflib
import os
import re
import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, NamedTuple, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    Field,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from mummi_like import plugins
from mummi_like.backends.base import Backend, BackendConfig
from mummi_like.scale import Scale
from mummi_like.selection import Selector
from mummi_like.store import SYNCHRONOUS, Synchronous
from mummi_like.tasks import StrictModel

Loc = tuple[str | int, ...]
"""A location in the YAML data: mapping keys and list indices from the top."""

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
_DEFER_REFERENCES = "defer_references"
"""Validation-context key with which :func:`load_spec` checks references itself, to report each at its own path."""
MAX_NAME_LENGTH = 100
"""Most characters in a campaign, scale or coupling name: it names folders, whose names a file system limits to 255
bytes, and task ids built from it."""
MAX_TEXT = 1000
"""Most characters of a problem's message or hint shown; longer ones (echoing a huge value) are cut in the middle."""
MAX_DEPTH = 50
"""Most levels of lists and mappings a spec may nest. Real specs use fewer than ten; the limit keeps every walk
over the data (which recurses) far from Python's recursion limit, whatever the input."""
MAX_VALUES = 1_000_000
"""Most values (scalars, lists and mappings) a spec may hold once its aliases are expanded. A few aliases that
each repeat the previous one stand for billions of values (the "billion laughs"), which would take hours to walk."""


def _identifier(value: str) -> str:
    if not _NAME_RE.fullmatch(value):  # fullmatch: `$` alone would let a trailing newline through
        raise ValueError(
            f"{_clip(repr(value))} is not a valid name: use letters, digits, '_' and '-', starting with a letter or '_'"
        )
    if len(value) > MAX_NAME_LENGTH:
        raise ValueError(
            f"a name of {len(value)} characters is too long: names become folder names and task ids, so they have "
            f"at most {MAX_NAME_LENGTH}"
        )
    return value


Name = Annotated[str, AfterValidator(_identifier)]
"""A name used in task ids and directory names, hence restricted to a safe alphabet."""


class BackendSpec(StrictModel):
    """Which backend runs the tasks, and its settings."""

    plugin: str = Field("local", description="Entry-point name in group 'mummi_like.backends'.")
    config: dict[str, Any] = Field(
        default_factory=dict, description="The backend's settings, validated with the backend's `config_model`."
    )


class ScaleSpec(StrictModel):
    """One scale of the campaign: a plugin that produces tasks."""

    name: Name = Field(description="Unique name; the `scale` label of its tasks and the folder of their workdirs.")
    plugin: str = Field(description="Entry-point name in group 'mummi_like.scales'.")
    config: dict[str, Any] = Field(
        default_factory=dict, description="The plugin's settings, validated with the plugin's `config_model`."
    )
    depends_on: list[str] = Field(
        default_factory=list,
        description="Names of scales this one builds on. The scale plugin sees their tasks and says which of them "
        "each of its tasks waits for (the generic scales match shared parameters, Maestro-style).",
    )
    max_in_flight: int | None = Field(
        None, ge=1, description="Most tasks of this scale queued or running at once; none for no limit."
    )


class CouplingSpec(StrictModel):
    """A learned promotion from one scale to another (frames of `source` seed tasks of `target`)."""

    name: Name | None = Field(None, description="Name of the coupling; default `<source>-to-<target>`.")
    source: str = Field(description="Name of the scale whose tasks stream H5MD frames to the selector.")
    target: str = Field(description="Name of the scale that continues the promoted frames (its plugin's `promote`).")
    selector: str = Field(description="Entry-point name in group 'mummi_like.selectors'.")
    config: dict[str, Any] = Field(default_factory=dict, description="The selector's settings.")
    feature: str = Field(description="The per-frame observable of the streams that the selector scores.")
    stream: str = Field("**/*.h5md", description="Glob of the stream files below the source scale's task folders.")
    max_in_flight: int = Field(1, ge=1, description="Most promoted target tasks waiting or running at once.")
    max_total: int | None = Field(None, ge=0, description="Most frames promoted over the campaign; none: no limit.")
    interval: float = Field(1.0, gt=0, description="Seconds between rounds of tailing, scoring and promoting.")
    max_frames_per_round: int = Field(
        10_000, ge=1, description="Most frames read in one round, so a backlog cannot stall the loop."
    )
    seed: int = Field(0, description="Seed of the selector's random choices.")

    @property
    def label(self) -> str:
        """The coupling's name: its `name`, or `<source>-to-<target>`."""
        return self.name or f"{self.source}-to-{self.target}"

    @field_validator("stream")
    @classmethod
    def _stream_inside(cls, value: str) -> str:
        if value.startswith(("/", "~")) or ".." in value.split("/"):
            raise ValueError(f"stream {value!r} must be a relative glob below the source's task folders (no '..')")
        return value


class PolicySpec(StrictModel):
    """What decides which tasks to start next."""

    plugin: str = Field("dag", description="Entry-point name in group 'mummi_like.pipelines'.")
    config: dict[str, Any] = Field(
        default_factory=dict, description="The policy's settings, validated with its `config_model` if it has one."
    )


class Budgets(StrictModel):
    """Limits after which the campaign stops creating work; unset means unlimited."""

    max_tasks: int | None = Field(None, ge=1, description="Total tasks the campaign may create.")
    max_failures: int | None = Field(None, ge=0, description="Stop the campaign after this many failed tasks.")
    max_hours: float | None = Field(None, gt=0, description="Stop starting tasks after this many hours of wall time.")


class StoreSpec(StrictModel):
    """How the campaign store writes to disk."""

    synchronous: Synchronous = Field(
        SYNCHRONOUS, description="SQLite's synchronous setting. `full`: every commit is on disk before the loop goes "
        "on, so not even a power loss or an OS crash loses a committed result. `normal`: commits survive a crash of "
        "the coordinator, but a power loss may roll back the last ones (never corrupt the store); for file systems "
        "where a sync is slow.",
    )


class CampaignSpec(StrictModel):
    """The whole campaign file.

    Validating it directly checks structure and cross references (unique scale
    names, known ``depends_on`` and coupling scales, no dependency cycles) but not
    plugins or paths; :func:`load_spec` does all of it and reports each problem at
    its own YAML path.
    """

    name: Name = Field(description="Campaign name; also the default campaign folder name.")
    directory: Path | None = Field(
        None, description="Campaign directory; relative to the spec's folder; default `<spec folder>/runs/<name>`."
    )
    backend: BackendSpec = Field(default_factory=BackendSpec, description="Where tasks run.")
    scales: list[ScaleSpec] = Field(min_length=1, description="The scales, each a plugin producing tasks.")
    couplings: list[CouplingSpec] = Field(default_factory=list, description="Learned promotions between scales.")
    policy: PolicySpec = Field(default_factory=PolicySpec, description="What decides which tasks start next.")
    budgets: Budgets = Field(default_factory=Budgets, description="Limits on tasks, failures and time.")
    store: StoreSpec = Field(default_factory=StoreSpec, description="How the campaign store writes to disk.")
    python_path: list[Path] = Field(
        default_factory=list,
        description="Folders added to sys.path of Python-callable workers; relative to the spec's folder, and "
        "inside it unless `allow_outside_paths`.",
    )
    allow_outside_paths: bool = Field(
        False, description="Let `python_path` entries point outside the spec's folder."
    )

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> CampaignSpec:
        if (info.context or {}).get(_DEFER_REFERENCES):
            return self
        problems = _reference_problems(
            {i: scale.name for i, scale in enumerate(self.scales)},
            dict(enumerate(self.scales)),
            dict(enumerate(self.couplings)),
        )
        if problems:
            raise ValueError("; ".join(f"{yaml_path(p.loc)}: {p.message}" for p in problems))
        return self


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec file, located for a human to fix.

    Attributes
    ----------
    path:
        YAML path of the bad node, like ``scales[1].config.argv``; ``<root>`` for
        the document itself.
    line:
        1-based line where that node starts; for a missing key, the line of the
        nearest enclosing node that exists. ``None`` when the file could not be read.
    message:
        What is wrong.
    hint:
        How to fix it, when there is something better to say than the message.
    source:
        The spec file, as the user named it.
    """

    path: str
    line: int | None
    message: str
    hint: str | None
    source: Path

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else f"{self.source}"
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}: {self.path}: {self.message}{hint}"


class SpecError(ValueError):
    """A spec that cannot be run, with every problem found in it."""

    def __init__(self, source: Path, issues: list[SpecIssue]) -> None:
        self.source = source
        self.issues = issues
        count = f"{len(issues)} problem{'s' if len(issues) != 1 else ''}"
        super().__init__("\n".join([f"invalid campaign spec {source} ({count}):", *(f"  {i}" for i in issues)]))


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
    problems: list[_Problem] = []

    root, data = _parse(text, problems)
    if root is None or not isinstance(data, dict):
        if root is not None:
            problems.append(
                _Problem(
                    (),
                    f"the top level must be a mapping of keys (name:, scales:, ...), not {_kind(data)}",
                    "write `name: ...` and `scales:` at the start of their lines, with no leading `- `",
                )
            )
        raise SpecError(source, _issues(problems, root, source))

    data, unexpanded = _expand(data, (), problems)
    campaign = _Resolver(data, source.absolute(), spec_dir, problems, unexpanded).resolve(directory)
    if problems or campaign is None:
        raise SpecError(source, _issues(problems, root, source))
    return campaign


def inside(root: Path, relative: str | Path) -> Path:
    """``relative`` resolved against ``root``, refusing anything that ends up outside ``root``.

    Symlinks are resolved on both sides, so a link inside ``root`` that points
    elsewhere is refused too. An absolute ``relative`` is accepted only when it
    lies inside ``root``.

    Raises
    ------
    ValueError
        The resolved path escapes ``root`` (through ``..``, an absolute path or a
        symlink), or cannot be resolved (:func:`resolved`).
    """
    base = resolved(Path(root))
    target = resolved(base / relative)
    if not target.is_relative_to(base):
        raise ValueError(f"path {str(relative)!r} resolves to {target}, which is outside {base}")
    return target


def resolved(path: Path) -> Path:
    """``path`` made absolute with every symlink resolved, or a ValueError that says why it cannot be.

    ``Path.resolve`` raises ``RuntimeError`` for a symlink loop and
    ``ValueError`` for a NUL character, and a name the file system refuses (too
    long) raises ``OSError`` at the first look-up: a path taken from a spec or a
    plugin's config must turn each into a message about that path, not a
    traceback. Once resolved here, looking the path up (``exists``, ``is_dir``)
    no longer raises.

    Raises
    ------
    ValueError
        Naming the path and the reason.
    """
    try:
        path = path.resolve()
        path.exists()  # raises for a name the file system refuses, which resolve() lets through
        return path
    except RuntimeError:  # what pathlib raises for a symlink loop
        raise ValueError(f"path {str(path)!r} leads into a loop of symlinks; fix or remove the link") from None
    except OSError as error:
        raise ValueError(f"path {str(path)!r} cannot be resolved: {error.strerror}") from None
    except ValueError:
        raise ValueError(f"path {str(path)!r} holds a NUL character (\\0), which no path can hold") from None


# --- problems and where they are -------------------------------------------------------------------------------


class _Problem(NamedTuple):
    loc: Loc
    message: str
    hint: str | None
    line: int | None = None
    """Set when the problem is about YAML text rather than a data node (syntax errors, duplicate keys)."""


def yaml_path(loc: Loc) -> str:
    """``loc`` written as :attr:`SpecIssue.path` writes it: ``scales[1].config.argv``, ``<root>`` for the document.

    A key that would not read as one part of such a path (a space, a dot, a
    bracket, a line break, nothing at all, a key YAML read as a number) is
    quoted in brackets, ``env['A B']``, ``config[1.5]``, so that a path always
    fits on its line and names one node.
    """
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not isinstance(part, str) or not part or not part.isprintable() or any(
            separator in part for separator in " .[]'\""
        ):
            text += f"[{_clip(repr(part))}]"
        else:
            text += f".{_clip(part)}" if text else _clip(part)
    return text or "<root>"


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text``, cut in the middle to at most about ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}...({len(text) - 2 * keep} characters left out)...{text[-keep:]}"


def _line(root: yaml.Node | None, loc: Loc) -> int | None:
    """Line of the node at ``loc``, or of its nearest existing ancestor; a mapping entry counts from its key."""
    if root is None:
        return None
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            entries = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)]
            if not entries:
                break
            key, node = entries[-1]  # YAML keeps the last of duplicate keys, and so does the data
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _issues(problems: list[_Problem], root: yaml.Node | None, source: Path) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    for problem in problems:
        line = problem.line if problem.line is not None else _line(root, problem.loc)
        hint = None if problem.hint is None else _clip(problem.hint)
        issue = SpecIssue(yaml_path(problem.loc), line, _clip(problem.message), hint, source)
        if issue not in issues:
            issues.append(issue)
    return sorted(issues, key=lambda issue: issue.line if issue.line is not None else 0)


def _kind(value: Any) -> str:
    if value is None:
        return "an empty value"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def _did_you_mean(word: str, choices: Sequence[str], noun: str) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    listing = f"{noun}: {', '.join(choices)}" if choices else f"there are no {noun}"
    return f"did you mean {close[0]!r}? {listing}" if close else listing


# --- YAML -----------------------------------------------------------------------------------------------------


def _parse(text: str, problems: list[_Problem]) -> tuple[yaml.Node | None, Any]:
    """Compose and construct one YAML document, keeping the nodes for line numbers."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as error:  # the reader checks every character of a text at once, here
        problems.append(_unprintable_problem(error, text))
        return None, None
    try:
        root = loader.get_single_node()
        if root is None:
            problems.append(_Problem((), "the spec is empty", "start with `name: my-campaign` and a `scales:` list", 1))
            return None, None
        oversized = _extent_problem(root)
        if oversized is not None:
            problems.append(oversized)
            return None, None  # nothing below may walk it
        structural = _node_problems(root, (), frozenset())
        recursive = [p for p in structural if p.line is None]
        problems.extend(p._replace(line=_line(root, p.loc)) if p.line is None else p for p in structural)
        if recursive:
            return None, None  # nothing below (expansion, validation) can walk a structure that contains itself
        return root, loader.construct_document(root)  # merges `<<:` keys into the nodes too
    except yaml.YAMLError as error:
        problems.append(_yaml_problem(error))
        return None, None
    except RecursionError:  # PyYAML composes nested nodes recursively: a few hundred levels exhaust the stack
        mark = loader.get_mark()
        problems.append(
            _Problem((), f"lists and mappings nested more than {MAX_DEPTH} levels deep, at column {mark.column + 1}",
                     _TOO_DEEP_HINT, mark.line + 1)
        )
        return None, None
    finally:
        loader.dispose()


_TOO_DEEP_HINT = "a spec needs a few levels; look for brackets or braces that are opened and never closed"


class _Oversized(Exception):
    """Raised inside :func:`_extent_problem` with the problem to report."""

    def __init__(self, problem: _Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _extent_problem(root: yaml.Node) -> _Problem | None:
    """The problem with a document nested deeper than :data:`MAX_DEPTH` or holding more than :data:`MAX_VALUES`
    values once its aliases are expanded; ``None`` when it has neither.

    Each node is measured once (an alias is the same node object as its anchor)
    and the descent stops at the limit, so this takes time linear in the text
    and a bounded stack, however the aliases multiply.
    """
    extents: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) of the node with its aliases expanded

    def extent(node: yaml.Node, loc: Loc) -> tuple[int, int]:
        known = extents.get(id(node))
        if known is None:
            extents[id(node)] = (1, 1)  # a node that contains itself counts once here; _node_problems reports it
            if len(loc) > MAX_DEPTH:
                raise _Oversized(_Problem(loc[:1], f"lists and mappings nested more than {MAX_DEPTH} levels deep",
                                          _TOO_DEEP_HINT, node.start_mark.line + 1))
            children: list[tuple[str | int, yaml.Node]] = []
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    part = key.value if isinstance(key, yaml.ScalarNode) else "?"
                    children += [(part, key), (part, value)]
            elif isinstance(node, yaml.SequenceNode):
                children = list(enumerate(node.value))
            values, levels = 1, 0
            for part, child in children:
                child_values, child_levels = extent(child, (*loc, part))
                values, levels = values + child_values, max(levels, child_levels)
            known = extents[id(node)] = (values, levels + 1)
        if len(loc) + known[1] - 1 > MAX_DEPTH:
            raise _Oversized(_Problem(loc[:1], f"lists and mappings nested more than {MAX_DEPTH} levels deep "
                                      "(through aliases)", _TOO_DEEP_HINT, node.start_mark.line + 1))
        if known[0] > MAX_VALUES:
            raise _Oversized(_Problem(loc, f"holds more than {MAX_VALUES:,} values, each alias (*name) counted as "
                                      "the values it repeats", "give long inputs as a file (a library file) or as a "
                                      "product of parameters; aliases that repeat other aliases multiply",
                                      node.start_mark.line + 1))
        return known

    try:
        extent(root, ())
    except _Oversized as oversized:
        return oversized.problem
    return None


def _unprintable_problem(error: yaml.reader.ReaderError, text: str) -> _Problem:
    """A character YAML does not allow in a document (a control character, say), located in ``text``."""
    before = text[: error.position]
    line, column = before.count("\n") + 1, error.position - (before.rfind("\n") + 1) + 1
    character = error.character if isinstance(error.character, int) else ord(error.character)
    return _Problem(
        (),
        f"invalid YAML: the character U+{character:04X} is not allowed in a YAML file, at column {column}",
        f"remove it, or write it as an escape in a double-quoted string (\"\\u{character:04x}\")",
        line,
    )


def _yaml_problem(error: yaml.YAMLError) -> _Problem:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    if mark is not None:
        message += f" at column {mark.column + 1}"
    if "unhashable key" in problem:
        hint = "a key must be plain text; a list or a mapping can be a value, not a key"
    elif "for merging" in problem:
        hint = "`<<:` merges mappings into this one: give it an alias of a mapping (`<<: *defaults`) or a list of them"
    elif isinstance(error, yaml.constructor.ConstructorError):
        hint = "only plain YAML is allowed; remove the `!tag` (there are no !!python tags)"
    elif "'\\t'" in problem:  # PyYAML quotes the tab it found as '\t'
        hint = "YAML indents with spaces only; replace the tab with spaces"
    elif "single document" in (context or ""):
        hint = "a spec is one YAML document; remove the extra `---`"
    else:
        hint = (
            "check the indentation of this line and the lines above it, and quote values that contain ': ' or ' #' "
            "or start with one of { [ * & ! % @ `"
        )
    return _Problem((), message, hint, mark.line + 1 if mark is not None else None)


def _node_problems(node: yaml.Node, loc: Loc, ancestors: frozenset[int]) -> list[_Problem]:
    """Repeated keys, which YAML loaders silently resolve by keeping the last one, and recursive aliases.

    A recursive alias is returned without a line (its node has none of its own);
    every other problem has one.
    """
    if id(node) in ancestors:
        return [
            _Problem(
                loc,
                "this alias refers to a node that contains it",
                "an anchor cannot be used inside itself; write the values out instead",
            )
        ]
    ancestors |= {id(node)}
    found: list[_Problem] = []
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and name != "<<":
                line = key.start_mark.line + 1
                if name in first_line:
                    found.append(
                        _Problem(
                            (*loc, name),
                            f"duplicate key {name!r} (first at line {first_line[name]})",
                            "YAML keeps only the last one; remove or merge the other",
                            line,
                        )
                    )
                first_line.setdefault(name, line)
            found.extend(_node_problems(value, (*loc, name if name is not None else "?"), ancestors))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found.extend(_node_problems(item, (*loc, index), ancestors))
    return found


# --- expansion ------------------------------------------------------------------------------------------------

_EXPANSION = re.compile(
    r"\$\$\{"
    r"|\$\{env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|\$\{(?P<other>[^}]*)\}?"
)


def _expand(value: Any, loc: Loc, problems: list[_Problem]) -> tuple[Any, set[Loc]]:
    """``value`` with ``${env:...}`` expanded in every string, and the locations that could not be expanded.

    A NUL character is refused in every string and key: no program argument,
    path or environment variable can carry one, so it could only fail later, in
    a task, with a confusing message (or in the coordinator, with a traceback).
    """
    if isinstance(value, str) and "\x00" in value:
        problems.append(_Problem(loc, "holds a NUL character (\\0)", _NUL_HINT))
        return value, {loc}
    if isinstance(value, str):
        found: list[_Problem] = []
        expanded = _EXPANSION.sub(lambda match: _substitute(match, loc, found), value)
        problems.extend(found)
        return (value, {loc}) if found else (expanded, set())
    failed: set[Loc] = set()
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                problems.append(_Problem((*loc, key), "this key holds a NUL character (\\0)", _NUL_HINT))
                failed.add((*loc, key))  # what validation says of the key was said here
            result[key], bad = _expand(item, (*loc, key), problems)
            failed |= bad
        return result, failed
    if isinstance(value, list):
        items = []
        for index, item in enumerate(value):
            expanded_item, bad = _expand(item, (*loc, index), problems)
            items.append(expanded_item)
            failed |= bad
        return items, failed
    return value, failed


_NUL_HINT = "no program argument, path or environment variable can hold one; remove the \\0 escape"


def _substitute(match: re.Match[str], loc: Loc, found: list[_Problem]) -> str:
    if match.group(0) == "$${":
        return "${"
    name = match.group("name")
    if name is not None:
        default = match.group("default")
        value = os.environ.get(name)
        if default is not None and not value:
            return default
        if value is None:
            found.append(
                _Problem(
                    loc,
                    f"environment variable {name!r} is not set",
                    f"set it or write ${{env:{name}:-default}}",
                )
            )
            return match.group(0)
        return value
    other = match.group("other")
    suggestion = f"did you mean ${{env:{other}}}? " if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", other) else ""
    found.append(
        _Problem(
            loc,
            f"unsupported expansion {match.group(0)!r}",
            f"{suggestion}write ${{env:NAME}} or ${{env:NAME:-default}} for an environment variable, "
            "or $${ for a literal ${",
        )
    )
    return match.group(0)


# --- pydantic errors ------------------------------------------------------------------------------------------

_EXPECTED = {
    "int_type": "an integer, e.g. 4",
    "int_parsing": "an integer, e.g. 4",
    "int_from_float": "a whole number, e.g. 4",
    "float_type": "a number, e.g. 2.5",
    "float_parsing": "a number, e.g. 2.5",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text; put it in quotes if YAML reads it as a number, a boolean or a list",
    "list_type": "a list: `[a, b]`, or one `- item` per line",
    "tuple_type": "a list: `[a, b]`, or one `- item` per line",
    "set_type": "a list: `[a, b]`, or one `- item` per line",
    "dict_type": "a mapping: `key: value` lines indented under this key, or `{key: value}`",
    "model_type": "a mapping: `key: value` lines indented under this key, or `{key: value}`",
    "model_attributes_type": "a mapping: `key: value` lines indented under this key, or `{key: value}`",
    "path_type": "a path, written as text",
}


def _validation_problems(
    error: ValidationError, model: type[BaseModel], data: Any, prefix: Loc, unexpanded: set[Loc]
) -> list[_Problem]:
    """Pydantic's errors as problems at YAML locations, with hints."""
    problems = []
    for detail in error.errors(include_url=False):
        raw: Loc = tuple(detail["loc"])
        loc = (*prefix, *_data_loc(data, raw, keep_last=detail["type"] == "missing"))
        if loc in unexpanded:
            continue  # already reported: the environment variable that should have filled it is missing
        message = detail["msg"].removeprefix("Value error, ")
        problems.append(_Problem(loc, message, _hint(detail, model, raw)))
    return problems


def _data_loc(data: Any, raw: Loc, keep_last: bool) -> Loc:
    """``raw`` without the parts pydantic adds that are not in the YAML (union branch labels, ``[key]``)."""
    kept: list[str | int] = []
    node = data
    for index, part in enumerate(raw):
        if isinstance(node, dict) and part not in node:  # pydantic writes a key YAML read as a number as text
            part = next((key for key in node if not isinstance(key, str) and str(key) == part), part)
        if _has(node, part):
            node = node[part]
            kept.append(part)
        elif keep_last and index == len(raw) - 1:
            kept.append(part)
    return tuple(kept)


def _has(node: Any, part: str | int) -> bool:
    """Whether ``node[part]`` is an entry of the YAML data (a key of a mapping or an index of a list)."""
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _hint(detail: Mapping[str, Any], model: type[BaseModel], raw: Loc) -> str | None:
    kind = detail["type"]
    if kind == "extra_forbidden":
        key = str(raw[-1])
        fields = _fields_at(model, raw[:-1])
        if fields is None:
            return f"unknown key {key!r}; remove it"
        if not fields:
            return f"unknown key {key!r}; this block takes no keys"
        close = difflib.get_close_matches(key, fields, n=1)
        if close:
            return f"unknown key {key!r}; did you mean {close[0]!r}?"
        return f"unknown key {key!r}; valid keys: {', '.join(fields)}"
    if kind == "missing":
        return f"required key; add `{raw[-1]}: ...`"
    if kind in ("literal_error", "enum"):
        return f"expected one of {detail.get('ctx', {}).get('expected', '')}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}"
    return None


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str] | None:
    """Keys accepted at ``loc`` of ``model``, or ``None`` when no model is found there."""
    candidates: list[Any] = [model]
    for part in loc:
        children = [child for candidate in candidates for child in _children(candidate, part)]
        if children:
            candidates = children
        # otherwise ``part`` is a label pydantic adds for a union branch: the location stays where it is
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    if not models:
        return None
    return sorted({field.alias or name for m in models for name, field in m.model_fields.items()})


def _children(annotation: Any, part: str | int) -> list[Any]:
    """The types found one step below ``annotation`` at key or index ``part``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                return _members(field.annotation)
        return []
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (list, tuple, set, frozenset, Sequence) and isinstance(part, int) and args:
        return _members(args[0])
    if origin in (dict, Mapping) and isinstance(part, str) and len(args) == 2:
        return _members(args[1])
    return []


def _members(annotation: Any) -> list[Any]:
    """The types an annotation allows, unions and ``Annotated`` unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [annotation]


# --- cross references and plugins -----------------------------------------------------------------------------


def _reference_problems(
    names: Mapping[int, str], scales: Mapping[int, ScaleSpec], couplings: Mapping[int, CouplingSpec]
) -> list[_Problem]:
    """Duplicate scale names, references to unknown scales, and dependency cycles.

    ``names`` holds every scale name that can be read (even of scales that are
    otherwise invalid), so that one bad scale does not make every reference to
    it an error too; ``scales`` and ``couplings`` hold the valid entries by index.
    """
    problems = []
    first: dict[str, int] = {}
    for index, name in names.items():
        if name in first:
            problems.append(
                _Problem(
                    ("scales", index, "name"),
                    f"duplicate scale name {name!r} (also scales[{first[name]}].name)",
                    "scale names must be unique; rename one",
                )
            )
        first.setdefault(name, index)
    known = list(first)

    def unknown(loc: Loc, name: str) -> _Problem:
        return _Problem(loc, f"unknown scale {name!r}", _did_you_mean(name, known, "scales in this spec"))

    for index, scale in scales.items():
        for position, dependency in enumerate(scale.depends_on):
            if dependency not in first:
                problems.append(unknown(("scales", index, "depends_on", position), dependency))
    for index, coupling in couplings.items():
        for key in ("source", "target"):
            if getattr(coupling, key) not in first:
                problems.append(unknown(("couplings", index, key), getattr(coupling, key)))

    index_of: dict[str, int] = {}
    for index, scale in scales.items():
        index_of.setdefault(scale.name, index)
    graph = {name: [d for d in scales[index].depends_on if d in index_of] for name, index in index_of.items()}
    for cycle in _cycles(graph):
        problems.append(
            _Problem(
                ("scales", index_of[cycle[0]], "depends_on"),
                f"dependency cycle: {' -> '.join(cycle)}",
                "a scale cannot depend, directly or through others, on itself; remove one of these depends_on entries",
            )
        )
    return problems


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle per back edge of a depth-first search, each written from its first node back to it."""
    done: set[str] = set()
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        stack.append(node)
        for successor in graph[node]:
            if successor in stack:
                cycles.append([*stack[stack.index(successor) :], successor])
            elif successor not in done:
                visit(successor)
        stack.pop()
        done.add(node)

    for node in graph:
        if node not in done:
            visit(node)
    return cycles


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
        self, data: dict[Any, Any], source: Path, spec_dir: Path, problems: list[_Problem], unexpanded: set[Loc]
    ) -> None:
        self.data = data
        self.source = source
        self.spec_dir = spec_dir
        self.problems = problems
        self.unexpanded = unexpanded

    def resolve(self, directory: Path | None) -> ResolvedCampaign | None:
        """The campaign, or ``None`` when problems were recorded."""
        spec = self._validate(CampaignSpec, self.data, (), context={_DEFER_REFERENCES: True})
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
        self.problems.extend(_reference_problems(names, valid_scales, valid_couplings))
        resolved_couplings = {}
        for index, coupling in valid_couplings.items():
            selector = self._plugin("selector", coupling.selector, Selector, ("couplings", index, "selector"))
            if selector is not None:
                config = self._config(selector, coupling.config, ("couplings", index, "config"), required=True)
                resolved_couplings[index] = ResolvedCoupling(coupling, selector, config)

        backend_class, backend_config = self._part(self.data.get("backend", {}), "backend", Backend, ("backend",))
        resolved_scales = {
            index: self._part(item, "scale", Scale, ("scales", index)) for index, item in enumerate(raw_scales)
        }
        policy_class, policy_config = self._part(self.data.get("policy", {}), "pipeline", None, ("policy",))

        python_path = self._python_path(
            _valid(list[Path], self.data.get("python_path", [])) or [],
            _valid(bool, self.data.get("allow_outside_paths", False)) is True,
        )
        campaign_dir = self._directory(spec, directory) if spec is not None else None
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
            couplings=[resolved_couplings[index] for index in range(len(spec.couplings))],
            policy=policy_class,
            policy_config=policy_config,
        )

    def _part(self, item: Any, kind: str, base: type | None, loc: Loc) -> tuple[Any, Any]:
        """Plugin class and validated config of the ``plugin:``/``config:`` block at ``loc``, or ``None`` for each.

        Looks only at those two keys, so that a plugin's config is checked even
        when another key of its block (say a scale's ``name``) is wrong.
        """
        if not isinstance(item, dict):
            return None, None
        default = {"backend": BackendSpec, "pipeline": PolicySpec}.get(kind)
        plugin = item.get("plugin", default.model_fields["plugin"].default if default else None)
        if not isinstance(plugin, str):
            return None, None
        cls = self._plugin(kind, plugin, base, (*loc, "plugin"))
        config = item.get("config", {})
        if cls is None or not isinstance(config, dict):
            return cls, None
        return cls, self._config(cls, config, (*loc, "config"), required=kind != "pipeline")

    def _validate(self, model: type[BaseModel], value: Any, loc: Loc, context: dict[str, Any] | None = None) -> Any:
        try:
            return model.model_validate(value, context=context)
        except ValidationError as error:
            data = self._at(loc)
            self.problems.extend(_validation_problems(error, model, data, loc, self.unexpanded))
            return None

    def _at(self, loc: Loc) -> Any:
        """The data at ``loc``, or ``None`` where a key is absent (a default applies)."""
        node: Any = self.data
        for part in loc:
            if not _has(node, part):
                return None
            node = node[part]
        return node

    def _plugin(self, kind: str, name: str, base: type | None, loc: Loc) -> type | None:
        try:
            return plugins.load(kind, name, base)
        except plugins.UnknownPlugin as error:
            self._unknown_plugin(error, loc)
        except plugins.PluginLoadError as error:
            self.problems.append(
                _Problem(
                    loc,
                    str(error),
                    "fix or reinstall the package that provides it (or correct its entry point), or use another plugin",
                )
            )
        return None

    def _unknown_plugin(self, error: plugins.UnknownPlugin, loc: Loc) -> None:
        self.problems.append(
            _Problem(
                loc,
                f"unknown {error.kind} plugin {error.name!r}",
                f"{error.hint} A plugin is a package registering an entry point in group "
                f"{plugins.GROUPS[error.kind]!r}",
            )
        )

    def _config(self, cls: type, config: dict[str, Any], loc: Loc, required: bool) -> BaseModel | None:
        """``config`` validated with ``cls.config_model``; problems at ``loc`` when invalid.

        Scales and backends must declare a ``config_model``; a policy may have
        none, and then takes no config.
        """
        model = getattr(cls, "config_model", None)
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            if required:
                self.problems.append(
                    _Problem(
                        (*loc[:-1], "plugin"),
                        f"plugin class {cls.__module__}.{cls.__qualname__} has no `config_model`",
                        "its author must set `config_model` to a pydantic model of its config",
                    )
                )
            elif config:
                self.problems.append(_Problem(loc, f"{cls.__qualname__} takes no config", "remove this block"))
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
                    _Problem(
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
                self.problems.append(_Problem(loc, message, "create it or fix the path"))
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
                _Problem(loc, f"the campaign directory {path} cannot be created: {existing} is a file",
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
                _Problem(loc, f"path {str(path)!r} starts with '~', which is not expanded",
                         "write ${env:HOME}/... instead")
            )
            return None
        try:
            return resolved(base / path)
        except ValueError as error:
            self.problems.append(_Problem(loc, str(error), None))
            return None
