"""Tasks, their resource requests, retry rules and states.

A task is the unit the coordinator persists and a backend runs. It is either an
argv executable (optionally launched under MPI by the backend's launcher, never
by a launcher written into the command) or a Python callable named
``module:function`` with JSON-able arguments. Everything here is a pydantic model
so that a task round-trips through the store as JSON and is validated once, at
creation, instead of failing deep inside a backend.
"""

from __future__ import annotations

import enum
import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

_CALLABLE_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$")
_TASK_ID_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


class StrictModel(BaseModel):
    """Base for every model a user writes: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


class TaskState(str, enum.Enum):
    """Life cycle of a task, as recorded in the store's state history.

    ``created -> queued -> running -> done | failed | canceled``; a failed attempt
    that the retry policy accepts goes ``failed-attempt -> retrying -> queued``.
    """

    CREATED = "created"
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"
    RETRYING = "retrying"

    @property
    def is_final(self) -> bool:
        """Whether the task will never run again."""
        return self in FINAL_STATES

    @property
    def is_active(self) -> bool:
        """Whether a backend holds (or held, before a crash) this task."""
        return self in (TaskState.QUEUED, TaskState.RUNNING)


FINAL_STATES = frozenset({TaskState.DONE, TaskState.FAILED, TaskState.CANCELED})


MAX_COUNT = 2**31 - 1
"""Most nodes, ranks, cores or GPUs one task may ask for: far more than any machine has, and what every scheduler
and the store's integer columns hold (a larger number would stop the coordinator when it records the task)."""


class Resources(StrictModel):
    """What one task needs while it runs.

    ``cores`` and ``gpus`` are totals over all ranks of the task; an MPI task with
    ``ranks: 4, cores: 8`` gets two cores per rank. ``walltime`` is in seconds and
    is enforced by the backend (terminate, then kill).
    """

    nodes: int = Field(1, ge=1, le=MAX_COUNT, description="Nodes the task spans.")
    ranks: int = Field(1, ge=1, le=MAX_COUNT, description="Processes launched (MPI ranks); 1 for a serial task.")
    cores: int = Field(1, ge=1, le=MAX_COUNT, description="CPU cores reserved in total, over all ranks.")
    gpus: int = Field(0, ge=0, le=MAX_COUNT, description="GPUs reserved in total, over all ranks.")
    walltime: float | None = Field(
        None, gt=0, description="Seconds after which the backend terminates the task; none for no limit."
    )

    @model_validator(mode="after")
    def _ranks_divide_resources(self) -> Resources:
        if self.cores % self.ranks:
            raise ValueError(f"cores ({self.cores}) must be a multiple of ranks ({self.ranks})")
        if self.gpus % self.ranks:
            raise ValueError(f"gpus ({self.gpus}) must be a multiple of ranks ({self.ranks})")
        return self


ConfigKey = tuple[str | int, ...]
"""Where a value sits in a plugin's config: keys and list indices from the top of its ``config:`` block."""


def declared_resources(config: BaseModel) -> dict[ConfigKey, Resources]:
    """Every :class:`Resources` inside ``config``, by where it sits: ``{("resources",): ...}``, say.

    What a plugin's tasks will reserve, read from its validated config without
    making a task (which may write files or read a whole library), so that
    ``mummi-like validate`` can refuse a request no backend of the spec could
    ever satisfy instead of the campaign failing the task at run time. Keys are
    the YAML keys (field aliases where a model declares them).
    """
    found: dict[ConfigKey, Resources] = {}

    def visit(value: Any, key: ConfigKey) -> None:
        if isinstance(value, Resources):
            found[key] = value
        elif isinstance(value, BaseModel):
            for name, info in type(value).model_fields.items():
                visit(getattr(value, name), (*key, info.alias or name))
        elif isinstance(value, list | tuple):
            for index, item in enumerate(value):
                visit(item, (*key, index))
        elif isinstance(value, dict):
            for part, item in value.items():
                visit(item, (*key, part if isinstance(part, str | int) else str(part)))

    visit(config, ())
    return found


class RetryPolicy(StrictModel):
    """Which failures are worth another attempt, and how many attempts to spend."""

    max_retries: int = Field(0, ge=0, description="Extra attempts after the first failure.")
    exit_codes: list[int] = Field(
        default_factory=list, description="Exit codes of an executable that are retried; empty: any non-zero code."
    )
    exceptions: list[str] = Field(
        default_factory=list,
        description="Exception class names (e.g. 'OSError' or 'requests.ConnectionError') of a callable that are "
        "retried, subclasses included; empty: any exception.",
    )
    on_walltime: bool = Field(False, description="Whether a task killed at its walltime is retried.")

    def accepts(self, failure: Failure, failures_so_far: int) -> bool:
        """Whether a task that has failed ``failures_so_far`` times (this one included) runs again."""
        if failures_so_far > self.max_retries:
            return False
        if failure.kind == "walltime":
            return self.on_walltime
        if failure.kind == "exit":
            return not self.exit_codes or failure.exit_code in self.exit_codes
        if failure.kind == "exception":
            return not self.exceptions or any(
                name in failure.exception_types or name in {t.rsplit(".", 1)[-1] for t in failure.exception_types}
                for name in self.exceptions
            )
        return failure.kind == "signal" and not self.exit_codes


_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _env_name(name: str) -> str:
    if not _ENV_NAME_RE.fullmatch(name):
        raise ValueError(
            f"{name!r} is not an environment variable name: use letters, digits and '_', not starting with a digit"
        )
    return name


EnvName = Annotated[str, AfterValidator(_env_name)]
"""An environment variable name (POSIX's portable set): a process cannot be given a name with '=' or a NUL, or an
empty one, and finding out only when the task starts would stop the coordinator."""


class ExecutablePayload(StrictModel):
    """An argv executable. The argv is never passed through a shell."""

    kind: Literal["executable"] = "executable"
    argv: list[str] = Field(min_length=1, description="Program and arguments, one list item per argument.")
    mpi: bool = Field(False, description="Launch under the backend's MPI launcher with `ranks` processes.")
    env: dict[EnvName, str] = Field(default_factory=dict, description="Extra environment variables.")


JsonValue = Any


class CallablePayload(StrictModel):
    """A Python function, named ``module:function``, called with JSON-able arguments."""

    kind: Literal["callable"] = "callable"
    function: str = Field(description="Import path as `package.module:function`.")
    args: list[JsonValue] = Field(default_factory=list, description="Positional arguments (JSON-able).")
    kwargs: dict[str, JsonValue] = Field(default_factory=dict, description="Keyword arguments (JSON-able).")
    env: dict[EnvName, str] = Field(default_factory=dict, description="Environment variables set during the call.")

    @field_validator("function")
    @classmethod
    def _module_colon_function(cls, value: str) -> str:
        if not _CALLABLE_RE.match(value):
            raise ValueError(f"{value!r} is not of the form 'package.module:function'")
        return value


Payload = Annotated[ExecutablePayload | CallablePayload, Field(discriminator="kind")]


class TaskSpec(StrictModel):
    """Everything needed to run one task, persisted verbatim in the store."""

    id: str = Field(description="Unique within the campaign; letters, digits, '_', '.', '-'.")
    payload: Payload
    resources: Resources = Field(default_factory=Resources)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form labels; 'scale' and 'stage' are used.")
    workdir: str = Field(description="Working directory, relative to the campaign directory.")
    depends_on: list[str] = Field(
        default_factory=list,
        description="Ids of tasks that must be done first; if one fails or is canceled, this task fails too.",
    )
    after: list[str] = Field(
        default_factory=list,
        description="Ids of tasks that must have ended first, however they ended (Slurm's afterany): for a task that "
        "uses whatever its inputs produced and copes with the ones that failed, such as a surrogate round training "
        "on the dockings that succeeded.",
    )
    priority: int = Field(0, description="Higher starts first among tasks that fit.")

    @field_validator("id")
    @classmethod
    def _safe_id(cls, value: str) -> str:
        if not _TASK_ID_RE.match(value):
            raise ValueError(f"task id {value!r} may hold only letters, digits, '_', '.', '-'")
        return value

    @field_validator("workdir")
    @classmethod
    def _inside_campaign(cls, value: str) -> str:
        # String tests rather than PurePosixPath: this runs for every task the store loads.
        if value.startswith("/") or ".." in value.split("/"):
            raise ValueError(f"workdir {value!r} must be a relative path inside the campaign directory")
        return value

    @model_validator(mode="after")
    def _one_kind_of_dependency(self) -> TaskSpec:
        both = sorted(set(self.depends_on) & set(self.after))
        if both:
            raise ValueError(
                f"task {self.id!r} lists {', '.join(both)} in both depends_on and after; keep each in one: "
                "depends_on when this task needs it done, after when it only needs it ended"
            )
        return self

    @property
    def scale(self) -> str:
        """The scale that produced this task (label ``scale``), or ``''``."""
        return self.labels.get("scale", "")

    @property
    def prerequisites(self) -> list[str]:
        """Every task that must end before this one starts: ``depends_on``, then ``after``."""
        return [*self.depends_on, *self.after]


class Failure(BaseModel):
    """Why an attempt did not succeed, in a form retry rules can match.

    ``lost`` is the backend losing a job through no fault of the task (its
    allocation ended before the task's own walltime): the task runs again and
    the attempt does not count against its retries.
    """

    kind: Literal["exit", "signal", "exception", "walltime", "canceled", "lost", "submit"]
    exit_code: int | None = None
    signal: int | None = None
    exception_types: list[str] = Field(default_factory=list)
    message: str = ""


class TaskResult(BaseModel):
    """What a backend reports when an attempt ends."""

    job_id: str
    ok: bool
    exit_code: int | None = None
    signal: int | None = None
    failure: Failure | None = None
    value: JsonValue = None
    started: float | None = None
    ended: float | None = None
    stdout: str | None = None
    stderr: str | None = None
