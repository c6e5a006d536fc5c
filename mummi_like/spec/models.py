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

:func:`~mummi_like.spec.resolve.load_spec` parses it (YAML ``safe_load`` semantics: plain data, no
``!!python`` tags), validates the outer structure with :class:`CampaignSpec`,
then loads each named plugin and validates its ``config:`` block with the
plugin's own ``config_model``. It reports *every* problem it can find in one
:class:`~mummi_like.spec.problems.SpecError`, each with the YAML path and line of the bad node and, where
one helps, a hint (the key you probably meant, the type that was expected), so
that a long spec is fixed in one pass instead of one error per run.

Only ``${env:NAME}`` and ``${env:NAME:-default}`` are expanded, in string
values (:mod:`mummi_like.spec.expansion`).

Paths
-----
- ``directory`` (the campaign directory, the root of everything the campaign
  writes) may be anywhere the user says: relative paths resolve against the spec
  file's folder; without it the campaign writes to ``<spec folder>/runs/<name>``.
  The CLI's ``--dir`` overrides it (relative to the current directory). Task
  working directories must stay inside it (:func:`~mummi_like.spec.paths.inside`).
- ``python_path`` entries are prepended to ``sys.path`` of Python-callable
  workers, so whatever they hold runs inside every such task. They resolve
  against the spec folder and must stay inside it (symlinks resolved), which
  keeps a spec and the code it runs together, and stops a shared spec from
  quietly importing code from elsewhere on the machine. ``allow_outside_paths:
  true`` lifts that rule for a spec that really needs an installed-elsewhere tree.
- Paths starting with ``~`` are rejected, since ``~`` is not expanded; write
  ``${env:HOME}/...`` instead. A path that cannot be resolved (a symlink
  loop, a name too long for the file system) is reported with the reason.
- Plugins keep their inputs with the spec the same way: active docking's
  ``library_file`` must resolve inside the spec's folder to a readable file
  (checked at validation by the scale's ``check_inputs``, so ``validate``
  refuses it as ``run`` does, before any campaign directory exists), and a
  coupling's ``stream`` is a glob below the source scale's task folders (no
  ``..``, no absolute path). A command's ``argv`` names whatever program the
  spec declares, which is its purpose; no shell ever parses it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, Field, ValidationInfo, field_validator, model_validator

from mummi_like.spec.problems import clip, yaml_path
from mummi_like.spec.references import DEFER_REFERENCES, reference_problems
from mummi_like.store import SYNCHRONOUS, Synchronous
from mummi_like.tasks import StrictModel

_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")
MAX_NAME_LENGTH = 100
"""Most characters in a campaign, scale or coupling name: it names folders, whose names a file system limits to 255
bytes, and task ids built from it."""


def _identifier(value: str) -> str:
    if not _NAME_RE.fullmatch(value):  # fullmatch: `$` alone would let a trailing newline through
        raise ValueError(
            f"{clip(repr(value))} is not a valid name: use letters, digits, '_' and '-', starting with a letter or '_'"
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

    plugin: str = Field(default="local", description="Entry-point name in group 'mummi_like.backends'.")
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
        default=None, ge=1, description="Most tasks of this scale queued or running at once; none for no limit."
    )


class CouplingSpec(StrictModel):
    """A learned promotion from one scale to another (frames of `source` seed tasks of `target`)."""

    name: Name | None = Field(default=None, description="Name of the coupling; default `<source>-to-<target>`.")
    source: str = Field(description="Name of the scale whose tasks stream H5MD frames to the selector.")
    target: str = Field(description="Name of the scale that continues the promoted frames (its plugin's `promote`).")
    selector: str = Field(description="Entry-point name in group 'mummi_like.selectors'.")
    config: dict[str, Any] = Field(default_factory=dict, description="The selector's settings.")
    feature: str = Field(description="The per-frame observable of the streams that the selector scores.")
    stream: str = Field(
        default="**/*.h5md", description="Glob of the stream files below the source scale's task folders."
    )
    max_in_flight: int = Field(default=1, ge=1, description="Most promoted target tasks waiting or running at once.")
    max_total: int | None = Field(
        default=None, ge=0, description="Most frames promoted over the campaign; none: no limit."
    )
    interval: float = Field(default=1.0, gt=0, description="Seconds between rounds of tailing, scoring and promoting.")
    max_frames_per_round: int = Field(
        default=10_000, ge=1, description="Most frames read in one round, so a backlog cannot stall the loop."
    )
    seed: int = Field(default=0, description="Seed of the selector's random choices.")

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

    plugin: str = Field(default="dag", description="Entry-point name in group 'mummi_like.pipelines'.")
    config: dict[str, Any] = Field(
        default_factory=dict, description="The policy's settings, validated with its `config_model` if it has one."
    )


class Budgets(StrictModel):
    """Limits after which the campaign stops creating work; unset means unlimited."""

    max_tasks: int | None = Field(default=None, ge=1, description="Total tasks the campaign may create.")
    max_failures: int | None = Field(default=None, ge=0, description="Stop the campaign after this many failed tasks.")
    max_hours: float | None = Field(
        default=None, gt=0, description="Stop starting tasks after this many hours of wall time."
    )


class StoreSpec(StrictModel):
    """How the campaign store writes to disk."""

    synchronous: Synchronous = Field(
        default=SYNCHRONOUS,
        description="SQLite's synchronous setting. `full`: every commit is on disk before the loop goes "
        "on, so not even a power loss or an OS crash loses a committed result. `normal`: commits survive a crash of "
        "the coordinator, but a power loss may roll back the last ones (never corrupt the store); for file systems "
        "where a sync is slow.",
    )


class CampaignSpec(StrictModel):
    """The whole campaign file.

    Validating it directly checks structure and cross references (unique scale
    names, known ``depends_on`` and coupling scales, no dependency cycles) but not
    plugins or paths; :func:`~mummi_like.spec.resolve.load_spec` does all of it and reports each problem at
    its own YAML path.
    """

    name: Name = Field(description="Campaign name; also the default campaign folder name.")
    directory: Path | None = Field(
        default=None,
        description="Campaign directory; relative to the spec's folder; default `<spec folder>/runs/<name>`.",
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
        default=False, description="Let `python_path` entries point outside the spec's folder."
    )

    @model_validator(mode="after")
    def _references(self, info: ValidationInfo) -> CampaignSpec:
        if (info.context or {}).get(DEFER_REFERENCES):
            return self
        problems = reference_problems(
            {i: scale.name for i, scale in enumerate(self.scales)},
            dict(enumerate(self.scales)),
            dict(enumerate(self.couplings)),
        )
        if problems:
            raise ValueError("; ".join(f"{yaml_path(p.loc)}: {p.message}" for p in problems))
        return self
