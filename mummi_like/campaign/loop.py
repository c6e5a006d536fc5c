"""The campaign loop: one thread that owns the campaign.

Each tick it reads backend events, applies retry rules, releases dependents,
checks control requests (cancel) and budgets, asks the policy what to submit,
and submits in chunks. Every change goes to the store's buffer in the order it
happened, and the buffer is committed as one transaction at most
``commit_interval`` seconds apart, so the store never holds an effect without
its cause (a follow-up task without the result that created it, a dependent
queued without its dependency done). A coordinator killed at any instant
therefore leaves a consistent store:

* a task recorded ``done``, ``failed`` or ``canceled`` is never run again;
* a task recorded ``queued`` or ``running`` is offered back to the backend
  (:meth:`~mummi_like.backends.base.Backend.reattach`) and requeued if the
  backend no longer holds it. This requeue does not count as a failure;
* a task whose completion had not been committed yet is one of those: it runs
  again, and its result is recorded once.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, cast

from mummi_like import events
from mummi_like.backends.base import Backend, BackendEvent, UnsatisfiableRequest
from mummi_like.campaign.coupling import COUPLING_LABEL, PROMOTED_LABEL, Coupling, CouplingError
from mummi_like.campaign.control import SPEC_META, CampaignError, coordinator_lock, pending_cancels
from mummi_like.campaign.policy import Load, Policy
from mummi_like.campaign.progress import Reporter
from mummi_like.campaign.stats import LoopStats
from mummi_like.campaign.summary import Summary
from mummi_like.crashpoints import crash_point
from mummi_like.scale import DoneTask, Scale, ScaleContext
from mummi_like.spec import ResolvedCampaign, load_spec_text
from mummi_like.store import Store, StoreError
from mummi_like.tasks import Failure, StrictModel, TaskResult, TaskSpec, TaskState
from mummi_like.telemetry import FAILURE_INFO, overall_utilization, read_telemetry, steady_state_utilization




@dataclass(eq=False)
class _Entry:
    """The loop's view of one task; the store holds the same facts durably."""

    spec: TaskSpec
    state: TaskState
    attempt: int = 0
    failures: int = 0
    job_id: str | None = None
    unmet: int = 0


def labelled(scale: str, tasks: list[TaskSpec]) -> list[TaskSpec]:
    """Make sure every task carries its scale's name, which status and policies group by."""
    return [
        task if task.labels.get("scale") == scale
        else task.model_copy(update={"labels": {**task.labels, "scale": scale}})
        for task in tasks
    ]


def build_scales(resolved: ResolvedCampaign, create_tasks: bool) -> tuple[dict[str, Scale], list[TaskSpec]]:
    """Instantiate the scale plugins in dependency order and, for a new campaign, collect their tasks.

    Raises
    ------
    CampaignError
        A plugin failed to make its tasks; the message names the scale.
    """
    scales: dict[str, Scale] = {}
    produced: dict[str, list[TaskSpec]] = {}
    pending = list(resolved.scales)
    while pending:
        scale_spec = next(s for s in pending if all(dep in produced for dep in s.spec.depends_on))
        pending.remove(scale_spec)
        name = scale_spec.spec.name
        context = ScaleContext(
            name=name, campaign_dir=resolved.directory, spec_dir=resolved.spec_dir,
            upstream={dep: produced[dep] for dep in scale_spec.spec.depends_on},
        )
        try:
            scale = scales[name] = scale_spec.plugin(cast(StrictModel, scale_spec.config), context)
            produced[name] = labelled(name, scale.tasks()) if create_tasks else []
        except (ValueError, KeyError, OSError) as error:
            raise CampaignError(f"scale {name!r} ({scale_spec.spec.plugin}) could not make its tasks: {error}") from error
    return scales, [task for tasks in produced.values() for task in tasks]


def saved_spec(directory: Path) -> ResolvedCampaign:
    """The spec the campaign in ``directory`` was created from, resolved again as it was then.

    Raises
    ------
    CampaignError
        When the store holds no spec (it was not made by ``mummi-like run`` or :func:`mummi_like.run`).
    StoreError
        When ``directory`` holds no campaign store.
    """
    with Store.open(directory, readonly=True) as store:
        saved = store.get_meta(SPEC_META)
    if saved is None:
        raise CampaignError(f"{directory} holds no campaign spec; it was not made by `mummi-like run`")
    return load_spec_text(saved["text"], Path(saved["source"]), directory=directory)


class Campaign:
    """Runs a campaign to completion, persisting every state change.

    Use :meth:`create` for a new campaign directory and :meth:`resume` for one
    a previous coordinator left, then :meth:`run`.
    """

    #: Tasks submitted per tick at most, so a huge ready set cannot stall event handling.
    submit_chunk = 1000
    #: Jobs a backend may hold (queued or running) before the loop stops submitting more.
    max_backend_jobs = 20_000
    #: Seconds between checks for control requests when the loop is busy.
    control_interval = 0.5
    #: Seconds between the loop's reaction-time summaries in the event log; None switches them off.
    stats_interval: float | None = 5.0
    #: Longest the loop blocks waiting for the backend when it has nothing else to do.
    idle_wait = 0.2
    #: Seconds between commits: one transaction holds every change of the ticks in between.
    #: A crash loses at most this much recent progress, which resume then runs again.
    commit_interval = 0.02

    def __init__(self, resolved: ResolvedCampaign, store: Store, reporter: Reporter, scales: dict[str, Scale]) -> None:
        self.resolved = resolved
        self.directory = resolved.directory
        self.store = store
        self.reporter = reporter
        self.backend: Backend = resolved.backend(
            resolved.backend_config, self.directory, python_path=resolved.spec.python_path
        )
        self.scales = scales
        limits = {scale.spec.name: scale.spec.max_in_flight for scale in resolved.scales}
        policy_class = cast("type[Policy]", resolved.policy)  # the resolver checked it subclasses Policy
        self.policy: Policy = policy_class(cast(StrictModel, resolved.policy_config or policy_class.config_model()), limits)
        self.entries: dict[str, _Entry] = {}
        self.dependents: dict[str, list[str]] = defaultdict(list)
        # Keyed by scale, in spec order; couplings add their training scales as their tasks appear.
        self.ready: dict[str, deque[TaskSpec]] = defaultdict(deque, {s.spec.name: deque() for s in resolved.scales})
        self.in_flight: dict[str, Load] = defaultdict(Load)
        self.jobs: dict[str, _Entry] = {}
        self.failed: list[tuple[str, str]] = []
        self.counts: dict[str, Counter[str]] = defaultdict(Counter, {s.spec.name: Counter() for s in resolved.scales})
        self.couplings: list[Coupling] = []
        self._coupled: dict[str, Coupling] = {}
        # Stages whose upstream scales have finished and been handed on; scales without depends_on are open from the start.
        self._opened: set[str] = {s.spec.name for s in resolved.scales if not s.spec.depends_on}
        self._stop_reason: str | None = None
        self._coupling_error: CouplingError | None = None  # raised once the coordinator is down
        self._store_failed = False
        self._dropped_followups = 0
        self._chunk_was_full = True

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def create(cls, resolved: ResolvedCampaign, spec_text: str, reporter: Reporter | None = None) -> Campaign:
        """Start a new campaign directory from a validated spec.

        The scales make their tasks and the tasks are checked before anything is
        written, so a spec whose tasks cannot be made leaves no directory behind.
        Without a ``reporter`` the run shows nothing (a script or a notebook reads
        the summary :meth:`run` returns).
        """
        directory = resolved.directory
        if (directory / Store.FILENAME).exists():
            raise CampaignError(
                f"{directory} already holds a campaign; continue it with `mummi-like resume {directory}` "
                "or choose another directory with --dir"
            )
        scales, tasks = build_scales(resolved, create_tasks=True)
        budget = resolved.spec.budgets.max_tasks
        if budget is not None and len(tasks) > budget:
            raise CampaignError(
                f"the scales create {len(tasks)} tasks but budgets.max_tasks is {budget}; "
                "raise the budget or shrink the parameter sets"
            )
        cls._check_dependencies(tasks, known=set())
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:  # a read-only or virtual file system (/proc), no permission
            raise CampaignError(
                f"cannot create the campaign directory {directory}: {error.strerror}; choose another with --dir or "
                "the spec's `directory:`"
            ) from error
        store = Store.open(directory, synchronous=resolved.spec.store.synchronous)
        store.set_meta(SPEC_META, {"text": spec_text, "source": str(resolved.source)})
        campaign = cls(resolved, store, reporter or Reporter(), scales)
        now = time.time()
        store.add_tasks(tasks, now)
        for task in tasks:
            campaign.entries[task.id] = _Entry(task, TaskState.CREATED)
            campaign.counts[task.scale][TaskState.CREATED.value] += 1
        store.log_event(events.CAMPAIGN_CREATED, now, tasks=len(tasks))
        store.flush()
        return campaign

    @classmethod
    def from_text(cls, text: str, source: Path, directory: Path | None = None,
                  reporter: Reporter | None = None) -> Campaign:
        """Validate spec ``text`` (named ``source``, whose folder relative paths resolve against) and create it.

        The text validated is the text saved for ``resume``, so the two cannot differ.
        """
        return cls.create(load_spec_text(text, source, directory=directory), text, reporter)

    @classmethod
    def resume(cls, directory: Path, reporter: Reporter | None = None) -> Campaign:
        """Continue the campaign a previous coordinator left in ``directory``; without a ``reporter``, silently."""
        resolved = saved_spec(directory)
        scales, _ = build_scales(resolved, create_tasks=False)
        store = Store.open(directory, synchronous=resolved.spec.store.synchronous)
        return cls(resolved, store, reporter or Reporter(), scales)

    @staticmethod
    def _check_dependencies(tasks: list[TaskSpec], known: set[str]) -> None:
        """Refuse duplicate ids, dependencies on unknown tasks, and dependency cycles among ``tasks``."""
        ids = set(known)
        for task in tasks:
            if task.id in ids:
                raise CampaignError(f"two tasks share the id {task.id!r}; task ids must be unique in a campaign")
            ids.add(task.id)
        for task in tasks:
            missing = [dep for dep in task.prerequisites if dep not in ids]
            if missing:
                raise CampaignError(f"task {task.id!r} depends on unknown task(s) {', '.join(missing)}")
        unmet = {task.id: sum(dep not in known for dep in task.prerequisites) for task in tasks}
        dependents: dict[str, list[str]] = defaultdict(list)
        for task in tasks:
            for dep in task.prerequisites:
                if dep not in known:
                    dependents[dep].append(task.id)
        free = [task_id for task_id, count in unmet.items() if count == 0]
        while free:
            for dependent in dependents[free.pop()]:
                unmet[dependent] -= 1
                if unmet[dependent] == 0:
                    free.append(dependent)
        cyclic = sorted(task_id for task_id, count in unmet.items() if count)
        if cyclic:
            raise CampaignError(
                f"tasks {', '.join(cyclic[:5])}{' ...' if len(cyclic) > 5 else ''} depend on each other in a cycle "
                "and could never start"
            )

    # -- the loop --------------------------------------------------------------------------------

    def run(self) -> Summary:
        """Run until every task is final, a budget stops the campaign, or a signal asks it to stop."""
        started = time.time()
        with coordinator_lock(self.directory), self._stop_on_signals(), self.backend, self._stop_on_store_failure():
            self._load()
            self._build_couplings()
            capacity = self.backend.capacity()
            self.policy.bind(capacity)
            self.store.log_event(events.COORDINATOR_STARTED, time.time(), pid=os.getpid(), backend=self.backend.name,
                                 nodes=capacity.nodes, cores=capacity.nodes * capacity.cores_per_node,
                                 gpus=capacity.nodes * capacity.gpus_per_node)
            stats = LoopStats(self.store, self.stats_interval)
            self.store.flush()
            self.reporter.update(self.counts, force=True)
            next_control = next_commit = 0.0
            while not self._finished():
                happened = self.backend.wait(self._wait_timeout(next_commit))
                received = time.perf_counter()
                for event in happened:
                    self._on_event(event)
                now = time.monotonic()
                if self._stop_reason is None:
                    self._run_couplings(now)
                if now >= next_control:
                    self._check_control(started)
                    next_control = now + self.control_interval
                submitted = self._submit() if self._stop_reason is None else 0
                stats.record(len(happened), submitted, time.perf_counter() - received)
                if now >= next_commit:
                    self.store.flush()
                    next_commit = now + self.commit_interval
                self.reporter.update(self.counts)
                if self._stop_reason is not None:
                    self._interrupt()
                    break
            stats.write()
            for coupling in self.couplings:
                coupling.close()
            if self._dropped_followups:
                self.store.log_event(events.BUDGET_EXHAUSTED, time.time(), dropped_followups=self._dropped_followups)
            self.store.log_event(events.COORDINATOR_STOPPED, time.time(), reason=self._stop_reason)
            self.store.flush()
            self._record_utilization()
        summary = Summary(self.directory, self.store.counts(), time.time() - started, self._stop_reason, self.failed)
        self.reporter.update(self.counts, force=True)
        self.reporter.finish(summary)
        try:
            self.store.close()
        except StoreError:
            if not self._store_failed:  # the buffer of a failed store is dropped (see _stop_on_store_failure)
                raise
        if self._coupling_error is not None:
            raise self._coupling_error
        return summary

    def _record_utilization(self) -> None:
        """Log the campaign's utilization so far, read once from the whole history, for `status` to show cheaply.

        Everything else is committed before, so a coordinator killed while it
        reads (a batch system's grace period ending) loses only this figure.
        """
        telemetry = read_telemetry(self.store)
        self.store.log_event(events.UTILIZATION, time.time(), steady_state=steady_state_utilization(telemetry),
                             overall=overall_utilization(telemetry), cores=telemetry.cores, gpus=telemetry.gpus)
        self.store.flush()

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """Turn SIGINT and SIGTERM (a batch system's walltime warning) into a clean, resumable stop.

        Python lets only the main thread of the main interpreter set signal
        handlers. Run from another thread (a script's worker, a web server), the
        campaign runs without them: SIGINT and SIGTERM then do what the program's
        own handlers do, and a killed coordinator is resumed like a crashed one.
        In Jupyter cells run in the main thread, so interrupting the kernel stops
        the campaign cleanly.
        """

        def stop(signum: int, _frame: FrameType | None) -> None:
            self._stop_reason = f"received {signal.Signals(signum).name}"

        previous: dict[signal.Signals, Callable[[int, FrameType | None], Any] | int | None] = {}
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                previous[signum] = signal.signal(signum, stop)
            except ValueError:  # "signal only works in main thread of the main interpreter"
                break
        try:
            yield
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    @contextmanager
    def _stop_on_store_failure(self) -> Iterator[None]:
        """Turn a store that cannot be written (its disk full) into a clean, resumable stop instead of a traceback.

        Nothing more can be recorded, so the loop stops at once and leaving the
        backend stops what runs. The changes still buffered are dropped: the
        store stays as a coordinator killed after its last commit leaves it,
        which resume is built for (what ran since runs again, recorded once).
        """
        try:
            yield
        except (StoreError, sqlite3.OperationalError) as error:
            cause = error.__cause__ if isinstance(error, StoreError) and error.__cause__ is not None else error
            self._stop_reason = (f"the campaign store {self.store.path} could not be written: {cause}; "
                                 "free space on its file system")
            self._store_failed = True
            for coupling in self.couplings:
                coupling.close()

    def _load(self) -> None:
        """Rebuild the loop's state from the store, taking back or requeueing what was in flight.

        A campaign made by :meth:`create` already holds the tasks it just recorded.
        """
        now = time.time()
        self._opened.update(data["scale"] for _, _, _, data in self.store.events(kind=events.STAGE_OPENED))
        if not self.entries:
            for record in self.store.tasks():
                self.entries[record.id] = _Entry(record.spec, record.state, record.attempt, record.failures, record.job_id)
                self.counts[record.spec.scale][record.state.value] += 1
        in_flight = {entry.job_id: entry for entry in self.entries.values() if entry.state.is_active and entry.job_id}
        held = self.backend.reattach({job_id: entry.spec for job_id, entry in in_flight.items()}) if in_flight else set()
        for job_id, entry in in_flight.items():
            if job_id in held:
                self.jobs[job_id] = entry
                self._hold(entry.spec, 1)
            else:
                self._set(entry, TaskState.RETRYING, now, info={"reason": f"requeued: the backend no longer holds job {job_id}"})
        for entry in self.entries.values():
            if entry.state.is_active and entry.job_id is None:
                self._set(entry, TaskState.RETRYING, now, info={"reason": "requeued: never reached the backend"})
        for entry in self.entries.values():
            if entry.state in (TaskState.CREATED, TaskState.RETRYING):
                self._wire(entry, now)
            elif entry.state is TaskState.FAILED:
                self.failed.append((entry.spec.id, self.store.get(entry.spec.id).reason or "failed"))

    def _wire(self, entry: _Entry, now: float) -> None:
        """Count the unmet prerequisites of a waiting task; queue it when there are none."""
        for dep in entry.spec.prerequisites:
            state = self.entries[dep].state
            if state is TaskState.DONE or (state.is_final and dep in entry.spec.after):
                continue
            if state.is_final:
                self._fail_dependent(entry, dep, now)
                return
            entry.unmet += 1
            self.dependents[dep].append(entry.spec.id)
        if entry.unmet == 0:
            self.ready[entry.spec.scale].append(entry.spec)

    def _finished(self) -> bool:
        """Nothing runs, nothing waits, no coupling has frames left to promote, and no stage is left to open."""
        if self.jobs or any(self.ready.values()):
            return False
        if self._run_couplings(time.monotonic(), final=True):
            return False
        return self._stop_reason is not None or not self._open_stages()

    def _open_stages(self) -> bool:
        """Call ``on_upstream_done`` of the scales whose upstream scales are all open and, the campaign being dry,
        finished for good; return whether any stage opened.

        Eligibility is judged against the stages open before this call, so a
        stage opened now waits for its own tasks before its downstream opens.
        The event that marks a stage open is buffered with the tasks it made:
        one commit holds both, and a crash before it reopens the stage on resume.
        """
        eligible = [scale for scale in self.resolved.scales if scale.spec.name not in self._opened
                    and all(dep in self._opened for dep in scale.spec.depends_on)]
        if not eligible:
            return False
        self.store.flush()  # the upstream results are read back from the store
        for scale in eligible:
            name = scale.spec.name
            upstream = {dep: [DoneTask(record.spec, record.value, self.directory / record.spec.workdir)
                              for record in self.store.tasks(states=[TaskState.DONE], scale=dep)]
                        for dep in scale.spec.depends_on}
            now = time.time()
            try:
                new = labelled(name, self.scales[name].on_upstream_done(upstream))
                self._check_dependencies(new, known=set(self.entries))
            except (ValueError, KeyError, OSError, CampaignError) as error:
                self._stop_reason = f"scale {name!r} ({scale.spec.plugin}) could not start its stage: {error}"
                self.store.log_event(events.STAGE_FAILED, now, scale=name, error=str(error))
                return True
            self._opened.add(name)
            self.store.log_event(events.STAGE_OPENED, now, scale=name, tasks=len(new))
            self._add_tasks(new, now)
            crash_point("stage.open")
        return True

    def _build_couplings(self) -> None:
        """Start each coupling's tailer and selector; on resume, count what it already promoted and trains."""
        for resolved in self.resolved.couplings:
            coupling = Coupling.build(resolved.spec, resolved.selector, resolved.config, self.scales,
                                      self.directory, self.store)
            for entry in self.entries.values():
                if entry.spec.labels.get(COUPLING_LABEL) == coupling.name:
                    coupling.adopt(entry.spec, entry.state.is_final)
            self.couplings.append(coupling)
            self._coupled[coupling.name] = coupling

    def _coupling_of(self, spec: TaskSpec) -> Coupling | None:
        """The coupling a task was made by (a promotion or a training), if any."""
        label = spec.labels.get(COUPLING_LABEL)
        return None if label is None else self._coupled.get(label)

    def _run_couplings(self, now: float, final: bool = False) -> bool:
        """Give the couplings that are due a round (all of them, until they are dry, when ``final``).

        Returns whether any frame or task came of it. A coupling that cannot go on stops the campaign, resumably.
        """
        progressed = False
        for coupling in self.couplings:
            while final or now >= coupling.next_round:
                try:
                    outcome = coupling.round(final)
                except CouplingError as error:
                    self._stop_reason, self._coupling_error = str(error), error
                    return True
                self._add_tasks(outcome.new_tasks, time.time())
                if not (outcome.frames or outcome.new_tasks):
                    break
                progressed = True
                if not final:
                    break
        return progressed

    def _wait_timeout(self, next_commit: float) -> float:
        """How long the backend may block: not at all while a full chunk is waiting to be
        submitted, and no later than the next commit while changes are buffered."""
        if self._chunk_was_full:
            return 0.0
        if self.store.pending():
            return min(self.idle_wait, max(0.0, next_commit - time.monotonic()))
        return self.idle_wait

    def _submit(self) -> int:
        """Hand the tasks the policy admits to the backend; return how many were handed over."""
        room = min(self.submit_chunk, self.max_backend_jobs - self.backend.active_jobs())
        if room <= 0:
            self._chunk_was_full = False
            return 0
        now = time.time()
        admitted = self.policy.admit(self.ready, self.in_flight, room)
        # Fewer than asked means the policy holds the rest back (max_in_flight): only an
        # event can change that, so the loop may block instead of spinning.
        self._chunk_was_full = len(admitted) == room
        attempts = [(spec, self.entries[spec.id].attempt + 1) for spec in admitted]
        outcomes = self.backend.submit_many(attempts)
        crash_point("loop.submit")
        for (spec, attempt), outcome in zip(attempts, outcomes, strict=True):
            entry = self.entries[spec.id]
            if isinstance(outcome, UnsatisfiableRequest):
                self._final_failure(entry, now, str(outcome), attempt=attempt)
                continue
            job_id = outcome
            entry.attempt, entry.job_id = attempt, job_id
            self.jobs[job_id] = entry
            self._hold(spec, 1)
            self._set(entry, TaskState.QUEUED, now, attempt=attempt, job_id=job_id)
        return len(admitted)

    def _hold(self, spec: TaskSpec, sign: int) -> None:
        """Count a task in (+1) or out (-1) of what its scale holds on the backend."""
        load = self.in_flight[spec.scale]
        self.in_flight[spec.scale] = Load(load.tasks + sign, load.cores + sign * spec.resources.cores)

    def _on_event(self, event: BackendEvent) -> None:
        entry = self.jobs.get(event.job_id)
        if entry is None:
            return
        if event.kind == "started":
            if entry.state is not TaskState.RUNNING:  # a re-attached job is reported started again
                self._set(entry, TaskState.RUNNING, event.time)
            return
        result = event.result
        assert result is not None
        del self.jobs[event.job_id]
        self._hold(entry.spec, -1)
        if result.ok:
            self._set(entry, TaskState.DONE, event.time, result=result)
            self._release_dependents(entry, event.time)
            self._follow_up(entry, result, event.time)
            coupling = self._coupling_of(entry.spec)
            if coupling is not None and PROMOTED_LABEL in entry.spec.labels:
                self._add_tasks(coupling.feedback(entry.spec, result), event.time)
            return
        failure = result.failure or Failure(kind="exit", exit_code=result.exit_code)
        if failure.kind == "lost":  # not the task's fault (its allocation ended): run it again, uncounted
            self._set(entry, TaskState.RETRYING, event.time, result=result, info={"reason": failure.message})
            self.ready[entry.spec.scale].append(entry.spec)
            return
        if failure.kind == "canceled":
            self._set(entry, TaskState.CANCELED, event.time, result=result)
            self._cancel_dependents(entry, event.time)
            return
        entry.failures += 1
        if entry.spec.retry.accepts(failure, entry.failures):
            self._set(entry, TaskState.RETRYING, event.time, result=result, failures=entry.failures,
                      info={FAILURE_INFO: failure.kind, "message": failure.message})
            self.ready[entry.spec.scale].append(entry.spec)
            return
        self._final_failure(entry, event.time, failure.message, result=result)

    def _follow_up(self, entry: _Entry, result: TaskResult, now: float) -> None:
        """Record the tasks a scale creates from a result."""
        scale = self.scales.get(entry.spec.scale)  # training tasks of couplings belong to no scale plugin
        if scale is not None:
            self._add_tasks(labelled(entry.spec.scale, scale.on_result(entry.spec, result)), now)

    def _add_tasks(self, new: list[TaskSpec], now: float) -> None:
        """Record tasks made while the campaign runs (follow-ups, promotions, trainings), within max_tasks."""
        if not new:
            return
        budget = self.resolved.spec.budgets.max_tasks
        if budget is not None:
            room = max(0, budget - len(self.entries))
            self._dropped_followups += len(new) - min(len(new), room)
            new = new[:room]
        self._check_dependencies(new, known=set(self.entries))
        self.store.add_tasks(new, now)
        for spec in new:
            self.entries[spec.id] = _Entry(spec, TaskState.CREATED)
            self.counts[spec.scale][TaskState.CREATED.value] += 1
        for spec in new:
            self._wire(self.entries[spec.id], now)
        self.reporter.update(self.counts, force=True)

    def _release_dependents(self, entry: _Entry, now: float) -> None:
        for dependent_id in self.dependents.pop(entry.spec.id, []):
            self._release(self.entries[dependent_id])

    def _release(self, dependent: _Entry) -> None:
        """One prerequisite of ``dependent`` has ended as it needed; queue it when that was the last."""
        dependent.unmet -= 1
        if dependent.unmet == 0 and not dependent.state.is_final:
            self.ready[dependent.spec.scale].append(dependent.spec)

    def _final_failure(self, entry: _Entry, now: float, reason: str, **fields: Any) -> None:
        self._set(entry, TaskState.FAILED, now, reason=reason, failures=entry.failures or 1, **fields)
        self.failed.append((entry.spec.id, reason))
        self._cancel_dependents(entry, now)
        budget = self.resolved.spec.budgets.max_failures
        if budget is not None and len(self.failed) > budget:
            self._stop_reason = f"{len(self.failed)} failed tasks exceed budgets.max_failures ({budget})"

    def _cancel_dependents(self, entry: _Entry, now: float) -> None:
        """``entry`` failed or was canceled: its dependents fail, except those that only run ``after`` it."""
        for dependent_id in self.dependents.pop(entry.spec.id, []):
            dependent = self.entries[dependent_id]
            if entry.spec.id in dependent.spec.after:
                self._release(dependent)
            elif not dependent.state.is_final:
                self._fail_dependent(dependent, entry.spec.id, now)

    def _fail_dependent(self, entry: _Entry, dependency: str, now: float) -> None:
        reason = f"dependency {dependency} ended {self.entries[dependency].state.value}; this task cannot run"
        self._final_failure(entry, now, reason)

    def _set(self, entry: _Entry, state: TaskState, now: float, **fields: Any) -> None:
        states = self.counts[entry.spec.scale]
        states[entry.state.value] -= 1
        states[state.value] += 1
        entry.state = state
        if state.is_final and (coupling := self._coupling_of(entry.spec)) is not None:
            result = fields.get("result")
            seconds = (result.ended or now) - (result.started or now) if result is not None else 0.0
            coupling.task_final(entry.spec, state is TaskState.DONE, seconds)
        self.store.transition(entry.spec.id, state, now, **fields)

    # -- control, budgets, stopping ---------------------------------------------------------------

    def _check_control(self, started: float) -> None:
        max_hours = self.resolved.spec.budgets.max_hours
        if max_hours is not None and time.time() - started > max_hours * 3600:
            self._stop_reason = f"budgets.max_hours ({max_hours:g} h) reached"
        self._stop_reason = self._stop_reason or self.backend.stop_reason()
        requests = pending_cancels(self.directory)
        for path in requests:
            try:
                request = json.loads(path.read_text())
                self.cancel(request.get("tasks"), request.get("scales"))
            except (OSError, ValueError, AttributeError) as error:  # not written by `mummi-like cancel`
                self.store.log_event(events.CANCEL_REQUESTED, time.time(), request=path.name,
                                     error=f"unreadable request, ignored: {error}")
        if requests:
            self.store.flush()  # the cancellations are committed before their requests go: a crash repeats, not loses
            for path in requests:
                path.unlink()

    def cancel(self, tasks: list[str] | None = None, scales: list[str] | None = None) -> int:
        """Cancel matching tasks that are not final (all when no filter); returns how many."""
        now = time.time()
        wanted_tasks, wanted_scales = set(tasks or ()), set(scales or ())

        def matches(spec: TaskSpec) -> bool:
            if not wanted_tasks and not wanted_scales:
                return True
            return spec.id in wanted_tasks or spec.scale in wanted_scales

        count = 0
        for job_id, entry in list(self.jobs.items()):
            if matches(entry.spec):
                self.backend.cancel(job_id)
                count += 1
        for scale, queue in self.ready.items():
            keep: deque[TaskSpec] = deque()
            for spec in queue:
                if matches(spec):
                    self._set(self.entries[spec.id], TaskState.CANCELED, now, reason="canceled by request")
                    count += 1
                else:
                    keep.append(spec)
            self.ready[scale] = keep
        for entry in self.entries.values():
            if entry.state is TaskState.CREATED and entry.unmet and matches(entry.spec):
                self._set(entry, TaskState.CANCELED, now, reason="canceled by request")
                count += 1
        self.store.log_event(events.CANCEL_REQUESTED, now, tasks=sorted(wanted_tasks), scales=sorted(wanted_scales), count=count)
        return count

    def cancel_offline(self, tasks: list[str] | None = None, scales: list[str] | None = None) -> int:
        """Cancel tasks of a campaign no coordinator is running, stopping what its backend still holds."""
        with coordinator_lock(self.directory), self.backend:
            self._load()
            count = self.cancel(tasks, scales)
            while self.jobs:
                for event in self.backend.wait(0.5):
                    self._on_event(event)
            self.store.flush()
        self.store.close()
        return count

    def _interrupt(self) -> None:
        """Stop cleanly: in-flight tasks go back to waiting so that `resume` runs them again."""
        now = time.time()
        for job_id, entry in list(self.jobs.items()):
            self.backend.cancel(job_id)
            self._set(entry, TaskState.RETRYING, now, info={"reason": f"interrupted: {self._stop_reason}"})
        self.jobs.clear()
        self.store.flush()

