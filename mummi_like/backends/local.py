"""The embedded ``local`` backend: resource-aware co-scheduling on one node.

It never oversubscribes: a task starts only when its cores and GPUs are free, and
GPUs are bound by index through ``CUDA_VISIBLE_DEVICES``. Executables run as their
own process groups, so a walltime or a cancel stops the whole tree, and whatever a
task leaves running in its group when its main process exits is killed, as a
batch system does at the end of a job. Python callables run in a pool of
long-lived worker processes (:mod:`.pyworker`), spawned when first needed; a
worker that ran a GPU task or was stopped is replaced rather than reused.

Everything happens in the caller's thread: :meth:`LocalBackend.wait` blocks in one
``epoll`` over the workers' pipes and a ``pidfd`` per running process, so an exit
is seen the moment it happens and no thread per task is needed.

Backfill rule
-------------
Waiting tasks are considered in order of priority (higher first), then of
submission. Any task that fits in the free resources starts, even if an earlier
one is still waiting for more (backfill). Each time a later task starts ahead of a
waiting one, the waiting task's *bypass count* grows; once it reaches
``max_bypass`` the task holds a reservation: from then on, later tasks may start
only in what is free beyond its request, so running tasks drain until it fits. A
large task therefore waits at most ``max_bypass`` backfilled starts plus the
time the tasks already running need to finish.

Restart
-------
Jobs of this backend live inside the coordinator's process tree, so they cannot
be taken back by a new coordinator: :meth:`LocalBackend.reattach` stops any
process a previous coordinator of the same campaign left behind (found through
the ``MUMMI_LIKE_CAMPAIGN`` variable every task carries) and reports all jobs
lost, so the campaign requeues them.
"""

from __future__ import annotations

import bisect
import itertools
import json
import os
import selectors
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from mummi_like.backends import pyworker
from mummi_like.backends.base import Backend, BackendConfig, BackendEvent, Capacity, describe_signal
from mummi_like.backends.channel import Channel
from mummi_like.backends.environment import CAMPAIGN_VARIABLE, JOB_VARIABLE, inherited_environment, task_environment
from mummi_like.tasks import CallablePayload, ExecutablePayload, Failure, TaskResult, TaskSpec

#: Largest request handed to a busy worker ahead of time, below a socket pair's buffer.
PREFETCH_LIMIT = 64 * 1024
#: Why the backend stops a running job; the kind of failure it then reports.
StopReason = Literal["walltime", "canceled"]


def detected_gpus() -> list[int]:
    """GPU indices visible to this process: ``CUDA_VISIBLE_DEVICES`` if set, else what ``nvidia-smi`` lists."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [int(item) for item in visible.split(",") if item.strip().isdigit()]
    nvidia_smi = shutil.which("nvidia-smi")
    if nvidia_smi is None:
        return []
    try:
        listing = subprocess.run([nvidia_smi, "-L"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (subprocess.SubprocessError, OSError):
        return []
    return list(range(sum(1 for line in listing.splitlines() if line.startswith("GPU "))))


class LocalConfig(BackendConfig):
    """Settings of the ``local`` backend."""

    cores: int | None = Field(
        None, ge=1, description="Cores tasks may use; default: the cores this process may run on."
    )
    gpus: list[int] | None = Field(
        None, description="GPU indices tasks may use; default: CUDA_VISIBLE_DEVICES, else all GPUs nvidia-smi lists."
    )
    python_workers: int | None = Field(
        None, ge=1, description="Worker processes for Python-callable tasks; default: one per core."
    )
    mpi_launcher: list[str] = Field(
        default_factory=lambda: ["mpirun", "-np", "{ranks}"],
        description="Argv prefix for MPI tasks; '{ranks}' and '{cores_per_rank}' are replaced.",
    )
    kill_grace: float = Field(5.0, ge=0, description="Seconds between SIGTERM and SIGKILL at walltime or cancel.")
    max_bypass: int = Field(32, ge=0, description="Backfilled starts a waiting task tolerates before it reserves.")


def usable_cores(config: LocalConfig) -> int:
    """The cores tasks share: ``config.cores``, else the cores this process may run on."""
    return config.cores or len(os.sched_getaffinity(0))


def usable_gpus(config: LocalConfig) -> list[int]:
    """The GPU indices tasks share: ``config.gpus``, else what :func:`detected_gpus` finds."""
    return list(config.gpus) if config.gpus is not None else detected_gpus()


@dataclass(eq=False)
class _Worker:
    process: subprocess.Popen[bytes]
    conn: Channel
    job: _Job | None = None
    next: _Job | None = None  # handed over ahead of time; starts when `job` ends


@dataclass(eq=False)
class _Job:
    job_id: str
    task: TaskSpec
    order: tuple[int, int]
    workdir: str
    bypassed: int = 0
    gpu_ids: list[int] = field(default_factory=list)
    process: subprocess.Popen[bytes] | None = None
    pidfd: int | None = None
    worker: _Worker | None = None
    started: float | None = None
    deadline: float | None = None
    kill_at: float | None = None
    stop_reason: StopReason | None = None  # set once we started stopping it
    cancel_on_start: bool = False  # canceled while handed to a worker ahead of time
    undelivered: bool = False  # its worker was dead before the call reached it, so the call never ran

    def __post_init__(self) -> None:
        self.stdout = os.path.join(self.workdir, "stdout.txt")
        self.stderr = os.path.join(self.workdir, "stderr.txt")


class LocalBackend(Backend):
    """Co-schedules executables and Python callables on the cores and GPUs of this node."""

    name: ClassVar[str] = "local"
    config_model: ClassVar[type[BackendConfig]] = LocalConfig
    config: LocalConfig

    def __init__(self, config: BackendConfig, campaign_dir: Path, python_path: Any = ()) -> None:
        super().__init__(config, campaign_dir, python_path)
        self.campaign_dir = self.campaign_dir.resolve()
        self._cores = usable_cores(self.config)
        self._gpus = usable_gpus(self.config)
        self._free_cores = self._cores
        self._free_gpus = list(self._gpus)
        self._waiting: list[_Job] = []
        self._jobs: dict[str, _Job] = {}
        self._running: set[_Job] = set()
        self._events: list[BackendEvent] = []
        self._sequence = itertools.count()
        self._selector = selectors.DefaultSelector()
        self._idle_workers: list[_Worker] = []
        self._workers: list[_Worker] = []
        self._base_env: dict[str, str] = {}
        self._scratch = self.campaign_dir / ".workers"
        self._max_workers = self.config.python_workers or self._cores
        self._campaign_root = str(self.campaign_dir)
        self._started = False

    # -- life cycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Spawn the Python worker pool and freeze the environment tasks inherit."""
        if self._started:
            return
        self._scratch.mkdir(parents=True, exist_ok=True)
        self._base_env = inherited_environment(self.campaign_dir)
        self._started = True

    def capacity(self) -> Capacity:
        return Capacity(nodes=1, cores_per_node=self._cores, gpus_per_node=len(self._gpus))

    @classmethod
    def declared_capacity(cls, config: BackendConfig) -> Capacity:
        """This node as ``config`` gives it: its ``cores`` and ``gpus``, else what this process may use here."""
        assert isinstance(config, LocalConfig)
        return Capacity(nodes=1, cores_per_node=usable_cores(config), gpus_per_node=len(usable_gpus(config)))

    def active_jobs(self) -> int:
        return len(self._jobs)

    def shutdown(self, cancel_running: bool = True) -> None:
        """Stop every job (when asked), wait for them within the kill grace, then stop the workers."""
        if not self._started:
            return
        if cancel_running:
            for job_id in list(self._jobs):
                self.cancel(job_id)
        give_up = time.monotonic() + self.config.kill_grace + 5.0
        while self._jobs and time.monotonic() < give_up:
            self.wait(0.05)
        for worker in self._workers:
            try:
                worker.conn.send(None)
            except OSError:
                pass
        for worker in self._workers:
            try:
                worker.process.wait(timeout=2)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            self._unregister(worker.conn)
            worker.conn.close()
        self._workers.clear()
        self._idle_workers.clear()
        self._selector.close()
        self._started = False

    # -- submission ---------------------------------------------------------------------------

    def submit(self, task: TaskSpec, attempt: int) -> str:
        """Queue ``task``; it starts in :meth:`wait` once its resources are free."""
        self.check(task)
        job_id = f"{task.id}#{attempt}"
        workdir = os.path.join(self._campaign_root, task.workdir)
        job = _Job(job_id, task, (-task.priority, next(self._sequence)), workdir)
        self._jobs[job_id] = job
        bisect.insort(self._waiting, job, key=lambda queued: queued.order)
        return job_id

    def cancel(self, job_id: str) -> None:
        job = self._jobs.get(job_id)
        if job is None or job.stop_reason is not None:
            return
        if job.started is None and job.worker is not None:
            # Handed to a busy worker ahead of time: the worker skips it if the cancel arrives
            # before it starts, and it is stopped as it starts otherwise.
            job.cancel_on_start = True
            try:
                job.worker.conn.send((pyworker.CANCEL, job_id))
            except OSError:  # the worker died: the job is requeued and then finished as canceled
                pass
            return
        if job.started is None:
            self._waiting.remove(job)
            now = time.time()
            failure = Failure(kind="canceled", message="canceled before it started")
            self._finish(job, TaskResult(job_id=job_id, ok=False, failure=failure, ended=now))
            return
        self._stop(job, "canceled", time.monotonic())

    def reattach(self, jobs: dict[str, TaskSpec]) -> set[str]:
        """Stop what a dead coordinator of this campaign left running; every job is lost."""
        ours = {os.getpid(), *(worker.process.pid for worker in self._workers)}
        ours.update(job.process.pid for job in self._running if job.process is not None)
        marker = f"{CAMPAIGN_VARIABLE}={self.campaign_dir}".encode()
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in ours:
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in environ:
                try:
                    os.killpg(int(entry.name), signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    try:
                        os.kill(int(entry.name), signal.SIGKILL)
                    except (ProcessLookupError, PermissionError):
                        pass
        return set()

    # -- the event loop -----------------------------------------------------------------------

    def wait(self, timeout: float) -> list[BackendEvent]:
        """Start what fits, then block until something ends, a deadline passes or ``timeout`` elapses."""
        self._schedule()
        poll_for = 0.0 if self._events else self._poll_timeout(timeout)
        for key, _ in self._selector.select(poll_for):
            source = key.data
            if isinstance(source, _Worker):
                self._collect_worker(source)
            else:
                self._collect_process(source)
        self._enforce_deadlines(time.monotonic())
        self._schedule()
        events, self._events = self._events, []
        return events

    def _poll_timeout(self, timeout: float) -> float:
        now = time.monotonic()
        deadlines = [job.kill_at or job.deadline for job in self._running]
        upcoming = [when for when in deadlines if when is not None]
        return max(0.0, min([timeout, *(when - now for when in upcoming)]))

    def _schedule(self) -> None:
        """Start waiting tasks that fit, honouring reservations of tasks bypassed too often."""
        free_cores = self._free_cores
        free_gpus = len(self._free_gpus)
        if not self._waiting:
            return
        if free_cores == 0 and free_gpus == 0:
            self._prefetch()
            return
        # Workers are spawned on demand, up to python_workers: a campaign of executables pays for none.
        idle_workers = len(self._idle_workers) + self._max_workers - len(self._workers)
        passed_over: list[_Job] = []
        started: list[int] = []
        for index, job in enumerate(self._waiting):
            need = job.task.resources
            is_call = isinstance(job.task.payload, CallablePayload)
            if need.cores <= free_cores and need.gpus <= free_gpus and (idle_workers > 0 or not is_call):
                started.append(index)
                free_cores -= need.cores
                free_gpus -= need.gpus
                idle_workers -= is_call
                for waiting in passed_over:
                    waiting.bypassed += 1
                    if waiting.bypassed == self.config.max_bypass:  # reserves from now on, in this pass too
                        free_cores -= min(waiting.task.resources.cores, free_cores)
                        free_gpus -= min(waiting.task.resources.gpus, free_gpus)
            else:
                passed_over.append(job)
                if job.bypassed >= self.config.max_bypass:
                    free_cores -= min(need.cores, free_cores)
                    free_gpus -= min(need.gpus, free_gpus)
            if free_cores == 0 and free_gpus == 0:
                break
        launching = [self._waiting[index] for index in started]
        for index in reversed(started):
            del self._waiting[index]
        for job in launching:
            self._launch(job)
        self._prefetch()

    def _prefetch(self) -> None:
        """Hand busy workers their next call, so that no worker idles for a round trip between tasks.

        Only the head of the queue is handed over, and only to a worker whose
        current call holds exactly what the head needs (same cores, no GPUs): the
        head then starts the moment that call ends, on the cores it releases,
        which is where the scheduler would have started it anyway. Its cores are
        reserved, and its start reported, only then.
        """
        for worker in self._workers:
            if not self._waiting:
                return
            head, current = self._waiting[0], worker.job
            if not isinstance(head.task.payload, CallablePayload) or head.task.resources.gpus:
                return
            if (current is None or worker.next is not None or current.gpu_ids or current.stop_reason is not None
                    or current.task.resources.cores != head.task.resources.cores):
                continue
            frame = self._call_frame(head)
            if len(frame) > PREFETCH_LIMIT:
                return  # a busy worker does not read: a large request could block the coordinator
            del self._waiting[0]
            worker.next = head
            self._send_call(worker, head, frame)

    def _occupy(self, job: _Job, started: float) -> None:
        """Reserve the job's cores and GPUs from now on, and report it started."""
        need = job.task.resources
        self._free_cores -= need.cores
        job.gpu_ids, self._free_gpus = self._free_gpus[: need.gpus], self._free_gpus[need.gpus :]
        job.started = started
        self._running.add(job)
        if need.walltime is not None:
            job.deadline = time.monotonic() + need.walltime
        self._events.append(BackendEvent(job_id=job.job_id, kind="started", time=started))

    def _environment(self, job: _Job) -> dict[str, str]:
        """Variables a task runs with, on top of the coordinator's: thread caps, job id, GPU binding, its own.

        GPUs are bound only on a node that has some, where a task without GPUs gets none visible.
        """
        return task_environment(job.task, {JOB_VARIABLE: job.job_id}, job.gpu_ids if self._gpus else None)

    def _call_frame(self, job: _Job) -> bytes:
        """The encoded request that asks a worker to run ``job``."""
        payload = job.task.payload
        assert isinstance(payload, CallablePayload)
        return Channel.encode((job.job_id, payload.function, payload.args, payload.kwargs, self._environment(job),
                               job.workdir, job.stdout, job.stderr))

    def _send_call(self, worker: _Worker, job: _Job, frame: bytes | None = None) -> None:
        """Hand ``job`` to ``worker``; a worker that died unnoticed (a segfault, a kill from outside) gets it too.

        Such a worker's socket refuses the call, and it reports its death at the
        next :meth:`wait`, which puts the call back in the queue rather than
        failing it: the call never ran.
        """
        job.worker = worker
        try:
            worker.conn.send_encoded(frame or self._call_frame(job))
        except OSError:
            job.undelivered = True

    def _launch(self, job: _Job) -> None:
        self._occupy(job, time.time())
        payload = job.task.payload
        if isinstance(payload, CallablePayload):
            worker = self._idle_workers.pop() if self._idle_workers else self._spawn_worker()
            worker.job = job
            self._send_call(worker, job)
            return
        argv = list(payload.argv)
        if payload.mpi:
            argv = self._mpi_prefix(job) + argv
        self._spawn_process(job, argv, {**self._base_env, **self._environment(job)})

    def _spawn_process(self, job: _Job, argv: list[str], env: dict[str, str]) -> None:
        """Start an executable in its own session and watch it through a pidfd; fail the task if it cannot start.

        It runs in the coordinator's thread: handing it to helper threads was
        measured slower here, since they wait for the GIL while the loop works.
        """
        try:
            os.makedirs(job.workdir, exist_ok=True)
            with open(job.stdout, "wb") as out, open(job.stderr, "wb") as err:
                job.process = subprocess.Popen(
                    argv, cwd=job.workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                    env=env, start_new_session=True,
                )
        except OSError as error:
            with open(job.stderr, "w") as stderr:
                stderr.write(f"cannot start {argv[0]!r}: {error}\n")
            self._release(job)
            self._finish(job, self._result(job, ok=False, exit_code=127, failure=Failure(
                kind="exit", exit_code=127,
                message=f"cannot start {argv[0]!r}: {error.strerror}; check that it is installed and on PATH, "
                "or give its absolute path in argv",
            )))
            return
        job.pidfd = os.pidfd_open(job.process.pid)
        self._selector.register(job.pidfd, selectors.EVENT_READ, job)

    def _mpi_prefix(self, job: _Job) -> list[str]:
        need = job.task.resources
        ranks, cores_per_rank = str(need.ranks), str(need.cores // need.ranks)
        return [token.replace("{ranks}", ranks).replace("{cores_per_rank}", cores_per_rank)
                for token in self.config.mpi_launcher]

    # -- completions --------------------------------------------------------------------------

    def _collect_process(self, job: _Job) -> None:
        assert job.process is not None and job.pidfd is not None
        # The leader has exited but is not reaped yet, so its pid still names the group: kill
        # what it left behind (background children, children ignoring SIGTERM at a walltime),
        # as a batch system does at the end of a job, so nothing outlives its task's cores.
        self._signal(job, signal.SIGKILL)
        code = job.process.poll()
        if code is None:
            return
        self._unregister(job.pidfd)
        os.close(job.pidfd)
        job.pidfd = None
        self._release(job)
        exit_code, signum = (code, None) if code >= 0 else (None, -code)
        assert isinstance(job.task.payload, ExecutablePayload)  # callables run in workers
        program = job.task.payload.argv[0]
        failure: Failure | None = None
        if job.stop_reason is not None:
            failure = Failure(kind=job.stop_reason, signal=signum, exit_code=exit_code, message=self._stop_message(job))
        elif signum is not None:
            failure = Failure(kind="signal", signal=signum,
                              message=f"{program} was killed by {describe_signal(signum)}")
        elif exit_code:
            failure = Failure(kind="exit", exit_code=exit_code, message=f"{program} exited with code {exit_code}")
        self._finish(job, self._result(job, ok=failure is None, exit_code=exit_code, signal=signum, failure=failure))

    def _collect_worker(self, worker: _Worker) -> None:
        """A worker's socket is readable: its one call ended (one reply), or the worker died."""
        if worker.conn.closed:  # retired earlier in this round of events
            return
        try:
            reply = pyworker.CallReply(*worker.conn.recv())
        except (EOFError, OSError):
            self._worker_died(worker)
            return
        job = worker.job
        assert job is not None and job.job_id == reply.job_id
        worker.job, job.worker = None, None
        # A GPU task leaves CUDA bound to its devices, and a stopped one may have a SIGTERM
        # in flight that would kill the worker under its next task: neither worker is reused.
        must_retire = bool(job.gpu_ids) or job.stop_reason is not None
        self._release(job)  # clears job.gpu_ids
        following, worker.next = worker.next, None
        if must_retire:
            self._retire(worker)
            if following is not None:
                self._requeue(following)
        elif following is not None:
            worker.job = following
            self._occupy(following, reply.ended)
            if following.cancel_on_start:
                self._stop(following, "canceled", time.monotonic())
        else:
            self._idle_workers.append(worker)
        outputs = {"started": reply.started, "ended": reply.ended,
                   "stdout": job.stdout if reply.wrote_stdout else None,
                   "stderr": job.stderr if reply.wrote_stderr else None}
        if reply.ok:
            self._finish(job, self._result(job, ok=True, value=json.loads(reply.value_json or "null"), **outputs))
        elif job.stop_reason is not None:
            message = reply.message if reply.message == pyworker.SKIPPED else self._stop_message(job)
            self._finish(job, self._result(job, ok=False, failure=Failure(kind=job.stop_reason, message=message),
                                           **outputs))
        else:
            self._finish(job, self._result(job, ok=False, failure=Failure(
                kind="exception", exception_types=reply.exception_types, message=reply.message), **outputs))

    def _worker_died(self, worker: _Worker) -> None:
        """A worker's pipe closed: it was stopped by us (walltime, cancel) or it crashed."""
        self._unregister(worker.conn)
        worker.conn.close()
        code = worker.process.wait()
        self._workers.remove(worker)
        if worker in self._idle_workers:
            self._idle_workers.remove(worker)
        job, worker.job = worker.job, None
        self._keep_output(worker, None if job is None or job.undelivered else job)
        if worker.next is not None:
            self._requeue(worker.next)
            worker.next = None
        if job is None:
            return
        self._release(job)
        if job.undelivered:
            job.started = job.deadline = None
            self._requeue(job)
            return
        assert isinstance(job.task.payload, CallablePayload)  # only callables run in workers
        running = f"the worker running {job.task.payload.function}"
        if job.stop_reason is not None:
            failure = Failure(kind=job.stop_reason, signal=-code if code and code < 0 else None,
                              message=self._stop_message(job))
        elif code is not None and code < 0:
            failure = Failure(kind="signal", signal=-code, message=f"{running} was killed by {describe_signal(-code)}")
        else:
            failure = Failure(kind="exit", exit_code=code, message=f"{running} exited with code {code} mid-call")
        self._finish(job, self._result(job, ok=False, signal=failure.signal, exit_code=failure.exit_code,
                                       failure=failure))

    def _keep_output(self, worker: _Worker, job: _Job | None) -> None:
        """Move what a dead worker's last call wrote into the task's output files; drop the worker's scratch files.

        A worker moves a call's output into place only when the call returns
        (see :class:`.pyworker.Capture`), so the last words of a call that killed
        its worker (a C library's error, the faulthandler stack of a segfault)
        would otherwise be lost, and the scratch files of dead workers would pile up.
        """
        for stream, destination in (("stdout", job and job.stdout), ("stderr", job and job.stderr)):
            scratch = self._scratch / f"{worker.process.pid}.{stream}"
            try:
                if destination and scratch.stat().st_size:
                    os.replace(scratch, destination)
                    continue
            except OSError:  # no scratch file, or the task's directory was never made
                pass
            scratch.unlink(missing_ok=True)

    def _requeue(self, job: _Job) -> None:
        """Put back a job handed to a worker that will not run it (the worker stops or died first)."""
        job.worker, job.undelivered = None, False
        if job.cancel_on_start:
            self._finish(job, TaskResult(job_id=job.job_id, ok=False, ended=time.time(),
                                         failure=Failure(kind="canceled", message="canceled before it started")))
            return
        bisect.insort(self._waiting, job, key=lambda queued: queued.order)

    def _retire(self, worker: _Worker) -> None:
        """Stop a worker that must not take another task; the pool spawns a fresh one when needed."""
        self._unregister(worker.conn)
        try:
            worker.conn.send(None)
        except OSError:  # already dying from the SIGTERM of a stop
            pass
        worker.conn.close()
        worker.process.wait()
        self._workers.remove(worker)

    def _stop_message(self, job: _Job) -> str:
        if job.stop_reason == "walltime":
            return f"killed at its walltime of {job.task.resources.walltime:g} s"
        return "canceled while running"

    # -- deadlines, stopping ------------------------------------------------------------------

    def _enforce_deadlines(self, now: float) -> None:
        for job in list(self._running):
            if job.kill_at is not None and now >= job.kill_at and self._signal(job, signal.SIGKILL):
                job.kill_at = None
            elif job.stop_reason is None and job.deadline is not None and now >= job.deadline:
                self._stop(job, "walltime", now)

    def _stop(self, job: _Job, reason: StopReason, now: float) -> None:
        job.stop_reason = reason
        job.deadline = None
        self._signal(job, signal.SIGTERM)
        job.kill_at = now + self.config.kill_grace

    def _signal(self, job: _Job, signum: signal.Signals) -> bool:
        """Signal the job's process group (or its worker); false while its process is not started yet."""
        try:
            if job.process is not None:
                os.killpg(job.process.pid, signum)
            elif job.worker is not None:
                os.kill(job.worker.process.pid, signum)
            else:
                return False
        except ProcessLookupError:
            pass
        return True

    # -- bookkeeping --------------------------------------------------------------------------

    def _release(self, job: _Job) -> None:
        self._running.discard(job)
        self._free_cores += job.task.resources.cores
        self._free_gpus = sorted(self._free_gpus + job.gpu_ids)
        job.gpu_ids = []

    def _result(self, job: _Job, ok: bool, **fields: Any) -> TaskResult:
        fields.setdefault("started", job.started)
        fields.setdefault("ended", time.time())
        fields.setdefault("stdout", job.stdout)
        fields.setdefault("stderr", job.stderr)
        return TaskResult(job_id=job.job_id, ok=ok, **fields)

    def _finish(self, job: _Job, result: TaskResult) -> None:
        del self._jobs[job.job_id]
        ended = result.ended or time.time()
        self._events.append(BackendEvent(job_id=job.job_id, kind="finished", time=ended, result=result))

    def _spawn_worker(self) -> _Worker:
        """Start a worker as ``python -m mummi_like.backends.pyworker`` on one end of a socket pair.

        A fresh interpreter rather than :mod:`multiprocessing`'s spawn, which would
        re-import the caller's ``__main__`` (a user's script without a main guard).
        The worker enables :mod:`faulthandler` (see :func:`pyworker.serve`), so a
        call that crashes it (a segfault in a C extension) leaves the Python stack
        of the crash in its ``stderr.txt``.
        """
        ours, theirs = socket.socketpair()
        argv = [sys.executable, "-m", "mummi_like.backends.pyworker", str(theirs.fileno()),
                str(os.getpid()), str(self._scratch)]
        process = subprocess.Popen(
            argv + [str(path) for path in self.python_path],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=self._base_env,
        )
        theirs.close()
        worker = _Worker(process, Channel(ours.detach()))
        self._workers.append(worker)
        self._selector.register(worker.conn, selectors.EVENT_READ, worker)
        return worker

    def _unregister(self, source: Any) -> None:
        try:
            self._selector.unregister(source)
        except (KeyError, ValueError):
            pass
