"""The ``flux`` backend: every task is a job of a Flux instance, driven through flux-python.

Flux does the scheduling, the binding and the launching (MPI ranks included); this
backend translates tasks into jobspecs, follows the jobs' events, and turns them
into :class:`~mummi_like.backends.base.BackendEvent` objects for the campaign loop.
Run the coordinator inside the instance it should use (``flux batch``,
``flux alloc``, ``flux start``): its ``FLUX_URI`` is found in the environment,
and the coordinator's user owns that instance, which the job-manager journal
requires (see *Events* below).

Jobspec
-------
* Resources: an MPI executable (``payload.mpi``) becomes ``ranks`` Flux tasks of
  ``cores // ranks`` cores and ``gpus // ranks`` GPUs each, launched by Flux
  itself (never under ``mpirun``); anything else is one task holding all the
  cores and GPUs, as on the ``local`` backend. ``nodes > 1`` spreads the ranks
  over that many nodes, so it needs an MPI task with at least as many ranks.
* ``duration`` is the walltime, capped at what is left of the instance (Flux
  refuses a job that would outlive it; a job stopped by the instance's end is
  reported *lost*, and the loop runs it again without counting a failure),
  ``cwd`` the task's folder (made before submit);
  stdout and stderr go to ``stdout.txt`` and ``stderr.txt`` there.
* Environment: the coordinator's, plus ``MUMMI_LIKE_CAMPAIGN`` (the campaign
  folder), the thread caps of :data:`~mummi_like.backends.environment.THREAD_VARIABLES`
  set to the cores per rank, ``MUMMI_LIKE_TASK=<task id>#<attempt>``, then the
  payload's own ``env``. Flux assigns the job id only at submit, so
  ``MUMMI_LIKE_JOB_ID`` is filled in by the job shell (``{{id.f58plain}}``).
* Name ``<scale>.<task id>#<attempt>`` (see :func:`name_stem`), so that
  ``flux jobs`` shows what runs, and ``attributes.user.mummi_like.campaign`` = the
  campaign folder, which tells a restarted coordinator which jobs are its own.
* Urgency: Flux's 0..31 (16 by default; 0 holds a job, 31 runs it as soon as
  possible) is ``clamp(16 + TaskSpec.priority, 0, 31)``: priority 0 is Flux's
  default, positive priorities go ahead, -16 or lower holds the task until it is
  canceled or its urgency raised with ``flux job urgency``.
* Job ids are F58 strings with an ASCII ``f`` prefix (``JobID.f58plain``): the
  ``ƒ`` prefix of ``JobID.f58`` depends on the locale, and an id must read the
  same in the store, in a task's environment and after a resume from another shell.

Python callables run as ``<python> -m mummi_like.backends.flux_runner request.json``
(:mod:`.flux_runner`), which writes ``result.json`` into the task's folder; a new
interpreter per task, since a Flux job is a process.

Events
------
One job-manager journal (:class:`flux.job.JournalConsumer`) streams the events
of every job of the instance through the handle's reactor;
:meth:`FluxBackend.wait` runs the reactor at most ``timeout`` seconds and drains
whatever is queued, so no job is ever polled. ``start`` reports a job started;
``finish`` (its wait status) or, for a job that never ran, ``clean`` reports it
finished. A fatal ``exception`` decides the failure kind: ``cancel`` ->
canceled, ``timeout`` -> walltime, any exception before the job started (an
allocation Flux cannot make) -> ``submit``. The backend cancels with the note
:data:`CANCEL_NOTE`, so a cancel without it is an operator's ``flux cancel``:
the task ends canceled (not failed, not retried: canceling it was the point),
with a reason that says it was canceled from outside the campaign. Stopping a job (cancel, walltime)
is Flux's: SIGTERM, then SIGKILL after the instance's kill timeout. The job
shell reports a task killed by signal N as exit code 128 + N, as Flux's own
tools read it, so such a code is a ``signal`` failure. The journal is served to
the instance owner only, hence the ownership check in :meth:`FluxBackend.start`.

Restart
-------
Jobs live in Flux, not in the coordinator, so a new coordinator takes them back:
:meth:`FluxBackend.reattach` looks up each recorded id (``job-list``), and
follows each job Flux knows under its task's name through the job's own
eventlog from its beginning (one eventlog watch per re-attached job). The
journal of the new coordinator would not do: it replays only the jobs active
when it opened, so a job that ended just before could be missed; the eventlog
replays a job that ended while no coordinator ran just as well, so the loop
gets its real result and never reruns it. A job already running is reported
started again, with its original start time. An id Flux does not know, or
knows for another job (another instance), is reported lost and requeued. A job
of this campaign that the dead coordinator submitted but had not yet recorded is
found by its campaign attribute when the journal replays the active jobs, and
canceled: its task was requeued, and must not run twice.

Instance lost
-------------
An instance that shuts down (``flux shutdown``, its batch job ending early)
cancels its jobs; one whose brokers are killed leaves the connection broken.
The backend tells both from an operator's cancel by asking the broker its
state (``cleanup`` and later: going down; no answer: gone), and then reports
nothing more of the jobs the instance took down: :meth:`FluxBackend.stop_reason`
says the instance is gone, the loop stops (exit 3) and records them waiting, and
``mummi-like resume`` in a new instance runs them again without counting a
failure. A Flux instance cannot be reconnected to once gone, so the backend
does not try: a new instance is a new backend.

Submission
----------
The loop hands each tick's chunk to :meth:`FluxBackend.submit_many`, which sends
every job to Flux's ingest before awaiting the first answer (as ``flux submit
--cc`` does), then records the ids; the loop gets them at once. MuMMI submitted
in hand-coded chunks of 500 jobs with sleeps in between, to spare the
scheduler; here that is ``submit_chunk`` and ``submit_rate``: a burst of up to
``submit_chunk`` jobs goes at full speed, and beyond it submission sleeps just
enough to hold the average at ``submit_rate`` jobs per second (a token bucket).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

from pydantic import Field

from mummi_like.backends.base import (
    Backend,
    BackendConfig,
    BackendEvent,
    BackendUnavailable,
    Capacity,
    UnsatisfiableRequest,
    describe_signal,
)
from mummi_like.backends.environment import JOB_VARIABLE, TASK_VARIABLE, inherited_environment, task_environment
from mummi_like.backends.flux_runner import RESULT_FILE
from mummi_like.tasks import CallablePayload, ExecutablePayload, Failure, TaskResult, TaskSpec

#: What a Python-callable task's folder holds for :mod:`.flux_runner`: what to call.
REQUEST_FILE = "request.json"
DEFAULT_URGENCY = 16
MAX_URGENCY = 31
#: How much of a runner's stderr a failure message quotes.
STDERR_TAIL = 2000
#: The reason this backend gives Flux when it cancels a job, which tells its cancels from an operator's `flux cancel`.
CANCEL_NOTE = "canceled by its mummi-like coordinator"
#: Broker states (``flux uptime``) of an instance on its way down: it cancels its jobs and stops answering.
GOING_DOWN = frozenset({"cleanup", "shutdown", "finalize", "goodbye", "exit"})
MISSING_BINDINGS = (
    "the flux backend needs flux-core's Python bindings (`import flux` failed: {error}); run the campaign inside "
    "a Flux instance (`flux start`, `flux batch`, `flux alloc`) with flux's python on PYTHONPATH"
)


class FluxUnavailable(BackendUnavailable):
    """The backend cannot use Flux: no bindings, no instance, or an instance it may not drive."""


class FluxConfig(BackendConfig):
    """Settings of the ``flux`` backend."""

    uri: str | None = Field(
        None, description="URI of the Flux instance; default: FLUX_URI of the environment (the instance the "
        "coordinator runs in), else the system instance."
    )
    python: str = Field(
        default_factory=lambda: sys.executable,
        description="Interpreter that runs Python-callable tasks; it must import mummi_like and the tasks' modules. "
        "Default: the coordinator's.",
    )
    submit_rate: float | None = Field(
        None, gt=0, description="Jobs submitted per second on average, beyond a burst of submit_chunk; none: no limit."
    )
    submit_chunk: int = Field(
        500, ge=1, description="Jobs submitted back to back at full speed before submit_rate holds the pace."
    )
    stop_before: float = Field(
        10.0, ge=0,
        description="Seconds before the instance ends (a batch allocation's time limit) at which the "
        "coordinator stops cleanly, so that the next allocation resumes what was running.",
    )


@dataclass(eq=False)
class _Job:
    """A job followed until it is reported finished: what the loop calls it, and what Flux said of it so far."""

    job_id: str  # as the campaign loop knows it
    flux_id: int
    task: TaskSpec
    workdir: Path
    watched: bool = False  # followed through its own eventlog (re-attached), not the journal
    started: float | None = None
    fatal: tuple[str, str] | None = None  # type and note of the first fatal exception
    status: int | None = None  # wait status of the `finish` event
    done: bool = False


def urgency(priority: int) -> int:
    """Flux urgency of a task of ``priority``: Flux's default 16 shifted by the priority, within 0..31."""
    return min(MAX_URGENCY, max(0, DEFAULT_URGENCY + priority))


def name_stem(task: TaskSpec) -> str:
    """``<scale>.<task id>``, a job's name without its attempt, which :meth:`FluxBackend.reattach` checks.

    The task id alone when it already starts with its scale, as the ids the
    generic scales make do (``sim.03``): ``sim.sim.03`` would say nothing more.
    """
    if not task.scale or task.id.startswith(f"{task.scale}."):
        return task.id
    return f"{task.scale}.{task.id}"


def _processes(task: TaskSpec) -> int:
    """Flux tasks a job starts: one per rank for an MPI executable, else one."""
    payload = task.payload
    return task.resources.ranks if isinstance(payload, ExecutablePayload) and payload.mpi else 1


def decode_status(status: int) -> tuple[int | None, int | None]:
    """``(exit code, signal)`` of a job's wait status; the shell's 128 + N means signal N."""
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return None, -code
    if code > 128 and code - 128 in signal.valid_signals():
        return None, code - 128
    return code, None


class FluxBackend(Backend):
    """Runs tasks as jobs of a Flux instance and follows them through its job-manager journal."""

    name: ClassVar[str] = "flux"
    config_model: ClassVar[type[BackendConfig]] = FluxConfig
    config: FluxConfig

    def __init__(self, config: BackendConfig, campaign_dir: Path, python_path: Sequence[Path] = ()) -> None:
        super().__init__(config, campaign_dir, python_path)
        self.campaign_dir = self.campaign_dir.resolve()
        self._flux: ModuleType | None = None
        self._handle: Any = None
        self._capacity: Capacity | None = None
        self._expiration = 0.0
        self._journal: Any = None
        self._timer: Any = None
        self._jobs: dict[int, _Job] = {}
        self._by_id: dict[str, int] = {}
        self._watches: set[Any] = set()
        self._events: list[BackendEvent] = []
        self._orphans: list[int] = []
        self._base_env: dict[str, str] = {}
        self._tokens = float(self.config.submit_chunk)
        self._refilled = time.monotonic()
        self._where = ""
        self._gone: str | None = None  # why the instance can no longer be used, once it is known

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the instance, read its resources, and open the journal.

        Raises
        ------
        FluxUnavailable
            Without flux-python, without an instance to reach, or on an instance
            owned by another user (whose journal this user may not read).
        """
        if self._handle is not None:
            return
        try:
            flux = importlib.import_module("flux")
            for module in ("flux.job", "flux.resource.list", "flux.idset", "flux.constants"):
                importlib.import_module(module)
        except ImportError as error:
            raise FluxUnavailable(MISSING_BINDINGS.format(error=error)) from error
        where = self.config.uri or os.environ.get("FLUX_URI") or "the system instance"
        try:
            handle = flux.Flux(self.config.uri) if self.config.uri else flux.Flux()
        except OSError as error:
            raise FluxUnavailable(
                f"cannot connect to Flux at {where}: {error.strerror}; run the campaign inside a Flux instance "
                "(`flux batch`, `flux alloc`, `flux start`) or set the backend's `uri`"
            ) from error
        owner = int(handle.attr_get("security.owner"))
        if owner != os.getuid():
            raise FluxUnavailable(
                f"the Flux instance at {where} belongs to user {owner}, not to this user ({os.getuid()}); the flux "
                "backend follows jobs through the job-manager journal, which only the owner may read. Run the "
                "campaign in an instance of your own: `flux batch` or `flux alloc`"
            )
        self._flux, self._handle, self._where, self._gone = flux, handle, where, None
        self._capacity = self._read_capacity(where)
        # When the instance itself ends (a batch allocation's time limit), 0 when it does not.
        self._expiration = float(handle.rpc("resource.status").get()["R"]["execution"].get("expiration", 0.0))
        self._journal = flux.job.JournalConsumer(handle, full=False).start()
        self._journal.set_callback(self._on_journal)
        self._timer = handle.timer_watcher_create(0.0, lambda *_: None)
        self._base_env = inherited_environment(self.campaign_dir)

    def _read_capacity(self, where: str) -> Capacity:
        """Nodes up, and the most cores and GPUs one of them has: what a single job could ever get."""
        assert self._flux is not None
        up = self._flux.resource.list.resource_list(self._handle).get().up
        if up.nnodes == 0:
            raise FluxUnavailable(f"the Flux instance at {where} has no resources up (see `flux resource list`)")
        counts = [
            (self._flux.idset.IDset(entry["children"].get("core", "")).count(),
             self._flux.idset.IDset(entry["children"].get("gpu", "")).count())
            for entry in up.to_dict()["execution"]["R_lite"]
        ]
        return Capacity(nodes=up.nnodes, cores_per_node=max(cores for cores, _ in counts),
                        gpus_per_node=max(gpus for _, gpus in counts))

    def capacity(self) -> Capacity:
        if self._capacity is None:
            raise RuntimeError("the flux backend reads the instance's resources in start(); call it first")
        return self._capacity

    def active_jobs(self) -> int:
        return len(self._jobs)

    def shutdown(self, cancel_running: bool = True) -> None:
        """Stop following jobs and disconnect; with ``cancel_running`` Flux also stops the jobs not reported finished.

        Flux ends canceled jobs on its own (SIGTERM, then SIGKILL after its kill
        timeout), so there is nothing to wait for here.
        """
        if self._handle is None:
            return
        if self._gone is None:  # an instance that went away took its jobs and its journal with it
            if cancel_running:
                for job in list(self._jobs.values()):
                    self.cancel(job.job_id)
            self._journal.stop()
            for future in self._watches:
                future.cancel()
        self._watches.clear()
        self._timer.stop()
        # flux-python closes a handle when the last reference goes; closing it by hand would free it twice.
        self._journal = self._timer = self._handle = None

    # -- submission ---------------------------------------------------------------------------

    def check(self, task: TaskSpec) -> None:
        """Refuse what the instance can never run, and a multi-node task Flux could not lay out."""
        super().check(task)
        need = task.resources
        if need.nodes > 1 and _processes(task) < need.nodes:
            raise UnsatisfiableRequest(
                f"task {task.id!r} spans {need.nodes} nodes but starts {_processes(task)} process(es); on the flux "
                "backend a task spanning nodes must be an MPI executable (mpi: true) with at least one rank per node. "
                "Set ranks >= nodes, or nodes: 1"
            )

    def submit(self, task: TaskSpec, attempt: int) -> str:
        """Submit ``task`` as a Flux job and return its id (F58).

        Raises
        ------
        UnsatisfiableRequest
            For a request the instance can never satisfy, or a job Flux refuses
            at submit (for example a walltime over a policy limit of the instance).
        """
        (outcome,) = self.submit_many([(task, attempt)])
        if isinstance(outcome, UnsatisfiableRequest):
            raise outcome
        return outcome

    def submit_many(self, tasks: Sequence[tuple[TaskSpec, int]]) -> list[str | UnsatisfiableRequest]:
        """Submit all of ``tasks`` with overlapping round trips to Flux's job ingest, then collect the ids.

        One ``submit_async`` per job is sent before the first answer is awaited,
        which is how Flux's own ``flux submit --cc`` reaches its rate; the
        ``submit_rate`` throttle still applies job by job.

        Raises
        ------
        FluxUnavailable
            When the instance is gone (see :meth:`stop_reason`): nothing was
            recorded of these jobs, so a resume submits them again.
        """
        assert self._flux is not None
        if self._gone is not None and tasks:
            raise FluxUnavailable(f"{self._gone}; resume the campaign in a running Flux instance")
        pending: list[tuple[TaskSpec, Path, Any] | UnsatisfiableRequest] = []
        for task, attempt in tasks:
            try:
                self.check(task)
            except UnsatisfiableRequest as refusal:
                pending.append(refusal)
                continue
            self._throttle()
            workdir = self.campaign_dir / task.workdir
            workdir.mkdir(parents=True, exist_ok=True)
            jobspec = self._jobspec(task, attempt, workdir)
            future = self._flux.job.submit_async(self._handle, jobspec, urgency=urgency(task.priority))
            pending.append((task, workdir, future))
        outcomes: list[str | UnsatisfiableRequest] = []
        for item in pending:
            if isinstance(item, UnsatisfiableRequest):
                outcomes.append(item)
                continue
            task, workdir, future = item
            try:
                flux_id = int(future.get_id())
            except OSError as error:
                if error.errno not in (errno.EINVAL, errno.EPERM):
                    if (gone := self._check_instance()) is not None:
                        raise FluxUnavailable(f"{gone}; resume the campaign in a running Flux instance") from error
                    raise
                outcomes.append(UnsatisfiableRequest(f"Flux refused task {task.id!r}: {error.strerror or error}"))
                continue
            job_id = self._flux.job.JobID(flux_id).f58plain
            self._track(_Job(job_id, flux_id, task, workdir))
            outcomes.append(job_id)
        return outcomes

    def _throttle(self) -> None:
        """Sleep when a submit now would exceed ``submit_rate`` beyond the burst of ``submit_chunk``."""
        rate = self.config.submit_rate
        if rate is None:
            return
        now = time.monotonic()
        self._tokens = min(float(self.config.submit_chunk), self._tokens + (now - self._refilled) * rate)
        self._refilled = now
        if self._tokens < 1.0:
            time.sleep((1.0 - self._tokens) / rate)
            self._tokens, self._refilled = 1.0, time.monotonic()
        self._tokens -= 1.0

    def _jobspec(self, task: TaskSpec, attempt: int, workdir: Path) -> Any:
        """The job that runs ``task``: its resources, environment, files, name and campaign tag."""
        assert self._flux is not None
        need, payload = task.resources, task.payload
        ranks = _processes(task)
        if isinstance(payload, CallablePayload):
            argv = [self.config.python, "-m", "mummi_like.backends.flux_runner", str(workdir / REQUEST_FILE)]
            (workdir / RESULT_FILE).unlink(missing_ok=True)  # left by an earlier attempt
            (workdir / REQUEST_FILE).write_text(json.dumps({
                "task": f"{task.id}#{attempt}", "function": payload.function, "args": payload.args,
                "kwargs": payload.kwargs, "python_path": [str(path.resolve()) for path in self.python_path],
            }))
        else:
            argv = list(payload.argv)
        # No GPU binding here: Flux's job shell sets CUDA_VISIBLE_DEVICES to the GPUs it allocated.
        env = {**self._base_env, **task_environment(task, {TASK_VARIABLE: f"{task.id}#{attempt}"})}
        jobspec = self._flux.job.JobspecV1.from_command(
            argv, num_tasks=ranks, cores_per_task=need.cores // ranks, gpus_per_task=need.gpus // ranks,
            num_nodes=need.nodes if need.nodes > 1 else None, duration=self._duration(need.walltime), environment=env,
            env_expand={JOB_VARIABLE: "{{id.f58plain}}"}, cwd=str(workdir), name=f"{name_stem(task)}#{attempt}",
            output=str(workdir / "stdout.txt"), error=str(workdir / "stderr.txt"),
        )
        jobspec.setattr("user.mummi_like.campaign", str(self.campaign_dir))
        return jobspec

    def _track(self, job: _Job) -> None:
        self._jobs[job.flux_id] = job
        self._by_id[job.job_id] = job.flux_id

    def cancel(self, job_id: str) -> None:
        flux_id = self._by_id.get(job_id)
        if flux_id is not None and self._gone is None:
            self._cancel(flux_id)

    def _cancel(self, flux_id: int) -> None:
        assert self._flux is not None
        # "job is inactive": it ended meanwhile, and its end is on its way to wait()
        with contextlib.suppress(FileNotFoundError):
            self._flux.job.cancel(self._handle, flux_id, CANCEL_NOTE)

    # -- restart ------------------------------------------------------------------------------

    def reattach(self, jobs: dict[str, TaskSpec]) -> set[str]:
        """Follow again the jobs Flux still knows under the recorded ids; report the others lost.

        Each job held is followed through its own eventlog from the beginning, so
        a job that ended while no coordinator ran is reported finished with its
        real result by the next :meth:`wait`, and one still pending or running
        reports its events as they come.
        """
        assert self._flux is not None
        held: set[str] = set()
        for job_id, task in jobs.items():
            try:
                flux_id = int(self._flux.job.JobID(job_id))
                name = self._flux.job.job_list_id(self._handle, flux_id, attrs=["name"]).get_job().get("name", "")
            except (ValueError, FileNotFoundError):
                continue
            if name.rpartition("#")[0] != name_stem(task):
                continue  # another instance's job with the same id
            job = _Job(job_id, flux_id, task, self.campaign_dir / task.workdir, watched=True)
            self._track(job)
            watch = self._flux.job.event_watch_async(self._handle, flux_id)
            watch.then(self._on_watch, job)
            self._watches.add(watch)
            held.add(job_id)
        return held

    # -- events -------------------------------------------------------------------------------

    def wait(self, timeout: float) -> list[BackendEvent]:
        """Run the reactor until an event is ready or ``timeout`` passes, then drain what is queued.

        Once the instance is gone there is nothing to wait for: it sleeps out
        ``timeout`` (the loop stops at its next :meth:`stop_reason`).
        """
        assert self._flux is not None
        reactor = self._handle.get_reactor()
        deadline = time.monotonic() + timeout
        self._drain(reactor)
        while not self._events and self._gone is None and (remaining := deadline - time.monotonic()) > 0:
            self._timer.reset(after=remaining)
            self._handle.flux_reactor_run(reactor, self._flux.constants.FLUX_REACTOR_ONCE)
            self._timer.stop()
            self._handle.raise_if_exception()
            self._drain(reactor)
        if self._gone is None:
            for flux_id in self._orphans:
                self._cancel(flux_id)
        elif not self._events:
            time.sleep(max(0.0, deadline - time.monotonic()))
        self._orphans.clear()
        events, self._events = self._events, []
        return events

    def _drain(self, reactor: Any) -> None:
        """Handle every message already received, without blocking; notice a broken connection (the broker died).

        A dead broker leaves the connection readable and in error for good, so
        without the error check this would spin forever.
        """
        assert self._flux is not None
        constants = self._flux.constants
        while self._gone is None and (ready := self._handle.pollevents()) & constants.FLUX_POLLIN:
            if ready & constants.FLUX_POLLERR:
                self._gone = f"lost the connection to the Flux instance at {self._where} (its broker stopped)"
                return
            self._handle.flux_reactor_run(reactor, constants.FLUX_REACTOR_NOWAIT)
            self._handle.raise_if_exception()

    def _check_instance(self) -> str | None:
        """Why the instance can no longer run this campaign's jobs (it is gone, or shutting down), else ``None``.

        Asks the broker for its state (as ``flux uptime`` does); once the
        instance is found going away, that is remembered: it never comes back
        under the same handle, and a new one is reached by resuming.
        """
        if self._gone is None:
            try:
                state = self._handle.rpc("state-machine.get").get()["state"]
            except OSError as error:
                self._gone = f"lost the connection to the Flux instance at {self._where}: {error.strerror or error}"
            else:
                if state in GOING_DOWN:
                    self._gone = f"the Flux instance at {self._where} is shutting down (broker state {state!r})"
        return self._gone

    def _on_journal(self, event: Any) -> None:
        """One journal event: update a job of this session, or spot an orphan of a dead coordinator."""
        if event is None:  # the journal ends only when the instance does
            self._gone = self._gone or f"the job-manager journal of the Flux instance at {self._where} ended"
            return
        job = self._jobs.get(int(event.jobid))
        if job is None:
            if event.name == "submit" and self._is_ours(event.jobspec):
                self._orphans.append(int(event.jobid))
            return
        if not job.watched:
            self._apply(job, event.name, event.timestamp, event.context)

    def _is_ours(self, jobspec: dict[str, Any] | None) -> bool:
        tag = (jobspec or {}).get("attributes", {}).get("user", {}).get("mummi_like", {})
        return isinstance(tag, dict) and tag.get("campaign") == str(self.campaign_dir)

    def _on_watch(self, future: Any, job: _Job) -> None:
        """One event from the eventlog of a re-attached job (``None`` once the eventlog is complete)."""
        event = future.get_event()
        if event is None:
            self._watches.discard(future)
            return
        self._apply(job, event.name, event.timestamp, event.context)

    def _apply(self, job: _Job, name: str, timestamp: float, context: dict[str, Any]) -> None:
        if job.done:
            return
        if name == "start" and job.started is None:
            job.started = timestamp
            self._events.append(BackendEvent(job_id=job.job_id, kind="started", time=timestamp))
        elif name == "exception" and context.get("severity") == 0 and job.fatal is None:
            job.fatal = (context.get("type", ""), context.get("note", ""))
        elif name == "finish":
            job.status = context["status"]
            self._finish(job, timestamp)
        elif name == "clean":
            self._finish(job, timestamp)

    def stop_reason(self) -> str | None:
        """Stop when the instance (a batch allocation) ends within ``stop_before`` seconds, or is gone.

        An instance that went away (shut down, its broker killed) took its jobs
        with it: the loop stops, recording them as waiting, and a resume in a
        new instance runs them again. Flux has no way to hand them over.
        """
        if self._expiration and self._expiration - time.time() < self.config.stop_before:
            return f"the Flux instance ends in less than {self.config.stop_before:g} s"
        if self._handle is not None and (gone := self._check_instance()) is not None:
            return f"{gone}; the tasks it ran were lost and run again at resume"
        return None

    def _duration(self, walltime: float | None) -> float | None:
        """The job's duration: the task's walltime, capped at what is left of the instance.

        Flux refuses a job that would outlive its instance; capped, the job runs
        until the allocation ends, is reported lost (not failed) and runs again
        after ``mummi-like submit --resume``.
        """
        if not self._expiration or walltime is None:
            return walltime  # an unlimited job ends with the instance anyway
        return min(walltime, max(1.0, self._expiration - time.time() - 1.0))

    def _stopped_by_allocation(self, job: _Job, ended: float) -> bool:
        """Whether a job's timeout came from its instance ending rather than from its own walltime."""
        walltime = job.task.resources.walltime
        ran = ended - (job.started or ended)
        return bool(self._expiration) and (walltime is None or ran < walltime - 1.0)

    def _finish(self, job: _Job, ended: float) -> None:
        job.done = True
        del self._jobs[job.flux_id]
        del self._by_id[job.job_id]
        if job.fatal is not None and job.fatal[1] != CANCEL_NOTE and self._check_instance() is not None:
            # Stopped by its instance going away, not by its own doing: left unreported, the task stays in flight
            # until the loop stops (stop_reason) and records it waiting, so the next instance runs it uncounted.
            return
        self._events.append(BackendEvent(job_id=job.job_id, kind="finished", time=ended,
                                         result=self._result(job, ended)))

    # -- results ------------------------------------------------------------------------------

    def _result(self, job: _Job, ended: float) -> TaskResult:
        """What came of a job, from its fatal exception, its wait status and, for a callable, its result file."""
        kind, note = job.fatal or ("", "")
        result = TaskResult(job_id=job.job_id, ok=False, started=job.started, ended=ended)
        if job.status is None:  # it never ran
            result.failure = (
                Failure(kind="canceled", message=_canceled(note, "before it started")) if kind == "cancel"
                else Failure(kind="submit", message=f"Flux could not run the job ({kind} exception): {note}"))
            return result
        result.exit_code, result.signal = decode_status(job.status)
        payload = job.task.payload
        outputs = job.workdir / "stdout.txt", job.workdir / "stderr.txt"
        # As on the local backend, a callable's output files are reported only when it wrote to them.
        result.stdout, result.stderr = (
            (_if_written(outputs[0]), _if_written(outputs[1])) if isinstance(payload, CallablePayload)
            else (str(outputs[0]), str(outputs[1]))
        )
        detail = f": {note}" if note else ""
        if kind == "cancel":
            result.failure = Failure(kind="canceled", exit_code=result.exit_code, signal=result.signal,
                                     message=_canceled(note, "while running"))
        elif kind == "timeout" and self._stopped_by_allocation(job, ended):
            result.failure = Failure(kind="lost", exit_code=result.exit_code, signal=result.signal,
                                     message="stopped at the end of the Flux allocation, before its own walltime")
        elif kind == "timeout":
            result.failure = Failure(kind="walltime", exit_code=result.exit_code, signal=result.signal,
                                     message=f"killed at its walltime of {job.task.resources.walltime:g} s")
        elif isinstance(payload, CallablePayload):
            self._read_call(job.workdir, payload, result, detail)
        elif result.signal is not None:
            killed = f"{payload.argv[0]} was killed by {describe_signal(result.signal)}"
            result.failure = Failure(kind="signal", signal=result.signal, message=killed + detail)
        elif result.exit_code:
            result.failure = Failure(kind="exit", exit_code=result.exit_code,
                                     message=f"{payload.argv[0]} exited with code {result.exit_code}{detail}")
        else:
            result.ok = True
        return result

    @staticmethod
    def _read_call(workdir: Path, payload: CallablePayload, result: TaskResult, detail: str) -> None:
        """Complete a callable's ``result`` from ``result.json``, or from the runner's end and stderr without one.

        As on the ``local`` backend, the exit status of the process that ran the
        call is reported only when the call did not return.
        """
        try:
            outcome = json.loads((workdir / RESULT_FILE).read_text())
        except (FileNotFoundError, ValueError):
            how = (f"was killed by {describe_signal(result.signal)}" if result.signal is not None
                   else f"exited with code {result.exit_code}")
            tail = _tail(workdir / "stderr.txt")
            result.failure = Failure(
                kind="signal" if result.signal is not None else "exit", exit_code=result.exit_code,
                signal=result.signal, message=f"the Python runner of {payload.function} {how} without a result{detail}"
                + (f"; its stderr ends with:\n{tail}" if tail else ""),
            )
            return
        result.exit_code = result.signal = None
        if outcome["ok"]:
            result.ok, result.value = True, outcome["value"]
        else:
            result.failure = Failure(kind="exception", exception_types=outcome["exception_types"],
                                     message=outcome["message"])


def _canceled(note: str, when: str) -> str:
    """Why a job was canceled ``when``: by its coordinator (``note`` is :data:`CANCEL_NOTE`), or from outside.

    An operator's ``flux cancel`` ends the task as canceled, not failed, and
    it is not retried: canceling it was the point. The message says who did it,
    so that ``status`` does not leave the user wondering.
    """
    if note == CANCEL_NOTE:
        return f"canceled {when}"
    return f"canceled {when} from outside the campaign (`flux cancel`{f': {note}' if note else ''})"


def _if_written(path: Path) -> str | None:
    """``path`` as a string when the file holds something, else ``None``."""
    try:
        return str(path) if path.stat().st_size else None
    except OSError:
        return None


def _tail(path: Path) -> str:
    """The last :data:`STDERR_TAIL` characters of a file, or ``''`` when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, handle.seek(0, os.SEEK_END) - STDERR_TAIL))
            return handle.read().decode(errors="replace").strip()
    except OSError:
        return ""
