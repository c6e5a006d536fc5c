"""The contract every backend fulfils, modelled on Parsl's executor.

One abstract base, one module per backend, used as a context manager::

    with LocalBackend(config, campaign_dir) as backend:
        job_id = backend.submit(task, attempt=1)
        for event in backend.wait(timeout=1.0):
            ...

The campaign loop is single-threaded and drives the backend: it submits, then
calls :meth:`Backend.wait` to receive :class:`BackendEvent` objects. A backend
never touches the store; the loop records what the backend reports, so that every
backend gets persistence, retries and resume for free.
"""

from __future__ import annotations

import abc
import signal
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Literal

from pydantic import BaseModel, Field

from mummi_like.tasks import Resources, StrictModel, TaskResult, TaskSpec


def describe_signal(signum: int) -> str:
    """``SIGSEGV (Segmentation fault)``: the name to search for and what it means, since few people know that
    SIGXFSZ is a file-size limit (a full quota) or SIGBUS a truncated memory-mapped file."""
    try:
        name = signal.Signals(signum).name
    except ValueError:  # a real-time signal without a name of its own
        name = f"signal {signum}"
    meaning = signal.strsignal(signum)
    return f"{name} ({meaning})" if meaning else name


class BackendUnavailable(RuntimeError):
    """A backend cannot start here (missing software, no resource manager to talk to); the message says what to do."""


class UnsatisfiableRequest(ValueError):
    """A task asks for more than the backend can ever give it; raised at submit, not at run time."""


class BackendConfig(StrictModel):
    """Settings shared by every backend; each backend extends it with its own fields."""


class Capacity(BaseModel):
    """What a backend can run at once."""

    nodes: int = Field(ge=1)
    cores_per_node: int = Field(ge=1)
    gpus_per_node: int = Field(0, ge=0)

    def refusal(self, resources: Resources) -> str | None:
        """Why ``resources`` can never fit, or ``None`` when they can."""
        problems = []
        if resources.nodes > self.nodes:
            problems.append(f"{resources.nodes} nodes (there are {self.nodes})")
        cores_per_node = -(-resources.cores // resources.nodes)
        gpus_per_node = -(-resources.gpus // resources.nodes)
        if cores_per_node > self.cores_per_node:
            problems.append(f"{resources.cores} cores (at most {self.cores_per_node * resources.nodes} "
                            f"on {resources.nodes} node(s))")
        if gpus_per_node > self.gpus_per_node:
            problems.append(f"{resources.gpus} GPUs (at most {self.gpus_per_node * resources.nodes} "
                            f"on {resources.nodes} node(s))")
        return "; ".join(problems) or None

    def __str__(self) -> str:
        nodes = f"{self.nodes} node{'s' if self.nodes != 1 else ''}"
        gpus = f"{self.gpus_per_node} GPU{'s' if self.gpus_per_node != 1 else ''}"
        return f"{nodes} of {self.cores_per_node} cores and {gpus}{' each' if self.nodes != 1 else ''}"


class BackendEvent(BaseModel):
    """Something that happened to a job: it started running, or it ended."""

    job_id: str
    kind: Literal["started", "finished"]
    time: float
    result: TaskResult | None = Field(None, description="Set when kind is 'finished'.")


class Backend(abc.ABC):
    """Runs tasks on some resources and reports what happened to them."""

    name: ClassVar[str]
    config_model: ClassVar[type[BackendConfig]] = BackendConfig

    def __init__(self, config: BackendConfig, campaign_dir: Path, python_path: Sequence[Path] = ()) -> None:
        self.config = config
        self.campaign_dir = Path(campaign_dir)
        self.python_path = [Path(p) for p in python_path]

    @abc.abstractmethod
    def start(self) -> None:
        """Acquire what the backend needs (worker processes, a broker connection)."""

    @abc.abstractmethod
    def capacity(self) -> Capacity:
        """The resources tasks share."""

    @classmethod
    def declared_capacity(cls, config: BackendConfig) -> Capacity | None:
        """What a backend with ``config`` will have, known without starting it; ``None`` when only a started one knows.

        ``mummi-like validate`` checks every resource request of the spec's
        scales and selectors against it (:meth:`Capacity.refusal`, as
        :meth:`check` does at submit), so a task that could never start is
        refused at its YAML path before anything runs. ``None`` (the default)
        skips that check: a Flux backend learns its resources from the instance
        it runs in, which validation may not be inside.
        """
        return None

    def check(self, task: TaskSpec) -> None:
        """Raise :class:`UnsatisfiableRequest` when ``task`` can never run here."""
        refusal = self.capacity().refusal(task.resources)
        if refusal:
            raise UnsatisfiableRequest(
                f"task {task.id!r} asks for {refusal}; the {self.name} backend can never run it. "
                f"Lower the task's resources or give the backend more in the spec."
            )

    @abc.abstractmethod
    def submit(self, task: TaskSpec, attempt: int) -> str:
        """Hand ``task`` over and return its job id; it starts when resources allow.

        Raises :class:`UnsatisfiableRequest` for a request that never fits.
        """

    def submit_many(self, tasks: Sequence[tuple[TaskSpec, int]]) -> list[str | UnsatisfiableRequest]:
        """Submit several ``(task, attempt)`` pairs; return, in order, each job id or the refusal.

        The loop hands over each tick's chunk through this method, so a backend
        whose submission is a round trip (Flux) overrides it to overlap them.
        """
        outcomes: list[str | UnsatisfiableRequest] = []
        for task, attempt in tasks:
            try:
                outcomes.append(self.submit(task, attempt))
            except UnsatisfiableRequest as refusal:
                outcomes.append(refusal)
        return outcomes

    @abc.abstractmethod
    def cancel(self, job_id: str) -> None:
        """Stop a job; its end is reported by :meth:`wait` with a 'canceled' failure."""

    @abc.abstractmethod
    def wait(self, timeout: float) -> list[BackendEvent]:
        """Return the events that happened, blocking at most ``timeout`` seconds for the first."""

    @abc.abstractmethod
    def reattach(self, jobs: dict[str, TaskSpec]) -> set[str]:
        """After a coordinator restart, take back the jobs a previous coordinator submitted.

        Returns the ids still held by the backend: their events arrive through
        :meth:`wait` as usual. The rest are lost and the campaign requeues them.
        """

    @abc.abstractmethod
    def shutdown(self, cancel_running: bool = True) -> None:
        """Release everything; with ``cancel_running`` stop the jobs still running."""

    def stop_reason(self) -> str | None:
        """Why the campaign must stop now (its allocation is about to end), or ``None``.

        The loop asks every control interval and then stops cleanly, recording
        its in-flight tasks as waiting, so that the next allocation resumes them.
        """
        return None

    @abc.abstractmethod
    def active_jobs(self) -> int:
        """How many submitted jobs have not yet been reported finished."""

    def __enter__(self) -> Backend:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.shutdown(cancel_running=True)
