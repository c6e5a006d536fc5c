"""Telemetry of a campaign, computed from its store: utilization, queue depth, throughput, timings.

Everything here is derived from what the coordinator already persists, so it
works the same on a finished campaign and on one that is running (the store is
opened read-only and never blocks the coordinator):

* the **state history** gives, for every attempt of every task, when it started
  running, when it stopped and why (:class:`Interval`), and when tasks waited in
  the backend's queue;
* the **event log** gives the node's capacity (``coordinator-started``), the
  loop's reaction times (``loop-stats``) and the durations of any event that
  carries a numeric ``duration`` (e.g. a selector retraining).

Utilization is computed two independent ways, which tests hold to agree:
summing each interval's overlap with a window (:func:`busy_seconds`), and
integrating the busy step function (:func:`integrate` of :func:`busy_timeline`).

*Steady state* is the time, between the first and the last start, during which
some task was waiting in the backend's queue: idle capacity then is the
coordinator's or scheduler's loss, not a lack of work. This is the figure MuMMI
reports as occupancy.

Nothing here plots; :mod:`mummi_like.report` does.
"""

from __future__ import annotations

import bisect
import dataclasses
import heapq
import math
import time
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from mummi_like import events
from mummi_like.store import Store
from mummi_like.tasks import TaskState

Resource = Literal["cores", "gpus"]
StepFunction = list[tuple[float, int]]
"""A piecewise-constant function as ``(time, value from this time on)``, sorted by time; 0 before the first point."""

_ENDINGS = (TaskState.DONE, TaskState.FAILED, TaskState.CANCELED)
FAILURE_INFO = "failure"
"""The key of a ``retrying`` history row's info that names the failure of the attempt it ends (its kind); the
loop writes it for a failed attempt that runs again, and leaves it out when an attempt is requeued though it did not
fail (its coordinator stopped or was killed, its allocation was lost)."""
REQUEUED = "requeued"
"""The :attr:`Interval.outcome` of an attempt that ended without failing and runs again."""


@dataclass(frozen=True)
class Interval:
    """One attempt of a task occupying its resources.

    Attributes
    ----------
    task_id, scale, attempt
        Which task and which of its attempts.
    start, end
        When it started running and when it stopped (seconds since the epoch).
        ``end == now`` for an attempt still running when the store was read.
    cores, gpus
        What the task reserved.
    outcome
        The state that closed the attempt: ``'done'``, ``'failed'``,
        ``'retrying'`` (a failed attempt that runs again) or ``'canceled'``;
        :data:`REQUEUED` for an attempt that did not fail but was cut short and
        runs again, uncounted (its coordinator stopped or was killed, its
        allocation was lost); ``'running'`` while it still runs.
    """

    task_id: str
    scale: str
    attempt: int
    start: float
    end: float
    cores: int
    gpus: int
    outcome: str

    def units(self, resource: Resource) -> int:
        """How many of ``resource`` (``'cores'`` or ``'gpus'``) the attempt held."""
        return self.cores if resource == "cores" else self.gpus


@dataclass
class Telemetry:
    """What :func:`read_telemetry` reads from a campaign store.

    Attributes
    ----------
    now
        When the store was read; still-running attempts end here.
    cores, gpus
        Capacity of the node(s), from the last ``coordinator-started`` event; 0
        before a coordinator ever started.
    intervals
        One :class:`Interval` per attempt that reached ``running``, sorted by start.
    queue
        Backend queue depth (tasks in state ``queued``) as a step function
        ``(time, depth from this time on)``, sorted.
    completions
        ``(time, scale, state)`` of every ``done``, ``failed`` or ``canceled``
        history row, sorted by time.
    loop_stats
        Data of the ``loop-stats`` events, each with its event ``time`` added.
    timings
        For every event kind whose data holds a numeric ``duration`` (seconds):
        those durations, oldest first.
    failures
        ``(task_id, scale, reason, stderr path)`` of every task in state ``failed``.
    counts
        Tasks per scale and state (:meth:`Store.counts`).
    """

    now: float
    cores: int
    gpus: int
    intervals: list[Interval]
    queue: StepFunction
    completions: list[tuple[float, str, str]]
    loop_stats: list[dict[str, Any]] = field(default_factory=list)
    timings: dict[str, list[float]] = field(default_factory=dict)
    failures: list[tuple[str, str, str | None, str | None]] = field(default_factory=list)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def capacity(self, resource: Resource) -> int:
        """Capacity of ``resource``: :attr:`cores` or :attr:`gpus`."""
        return self.cores if resource == "cores" else self.gpus

    @property
    def first_start(self) -> float | None:
        """When the first attempt started running; ``None`` before any did."""
        return min((i.start for i in self.intervals), default=None)

    @property
    def last_start(self) -> float | None:
        """When the last attempt started running; ``None`` before any did."""
        return max((i.start for i in self.intervals), default=None)

    @property
    def last_end(self) -> float | None:
        """When the last attempt stopped (``now`` while one runs); ``None`` before any started."""
        return max((i.end for i in self.intervals), default=None)

    @property
    def elapsed(self) -> float:
        """Seconds from the first start to the last end (or now); 0 before any start."""
        first, last = self.first_start, self.last_end
        return 0.0 if first is None or last is None else last - first

    @property
    def done(self) -> int:
        """Tasks in state ``done``, all scales together."""
        return sum(states.get(TaskState.DONE.value, 0) for states in self.counts.values())


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def read_telemetry(store: Store, now: float | None = None) -> Telemetry:
    """Read a campaign's telemetry from its store; safe while a coordinator writes.

    Parameters
    ----------
    store
        The campaign store, typically opened with ``readonly=True``. Only
        committed data is read.
    now
        The read time, where still-running attempts end; defaults to the
        current time, taken after the reads.

    Returns
    -------
    Telemetry
        Intervals, queue depth, completions, capacity, loop statistics, event
        durations, failures and counts.

    Notes
    -----
    The history is read first and the tasks after it, so every task the history
    names is known (tasks are never deleted). An attempt's end is never taken
    before its start, so a clock that stepped back cannot make a negative interval.
    Only the tasks with an attempt ended by ``retrying`` have their history
    details read (one query each), to tell a failure from a requeue.
    """
    history = store.all_history()
    shapes = store.task_resources()
    failed = store.tasks(states=[TaskState.FAILED])
    counts = store.counts()
    log = store.events()
    # Taken after the reads, so that no committed row is later than the read time.
    now = time.time() if now is None else now

    intervals: list[Interval] = []
    queued_periods: list[tuple[float, float | None]] = []
    completions: list[tuple[float, str, str]] = []
    running: dict[str, tuple[int, float]] = {}  # task -> (attempt, start) of the open attempt
    queued: dict[str, float] = {}  # task -> when it entered the queue

    retried: dict[tuple[str, int, float], int] = {}  # (task, attempt, time) of a retrying row -> its interval

    def close(task_id: str, start: float, attempt: int, end: float, outcome: str) -> None:
        shape = shapes.get(task_id)
        if shape is None:  # cannot happen with a consistent store; skip rather than guess resources
            return
        scale, cores, gpus = shape
        if outcome == TaskState.RETRYING.value:
            retried[(task_id, attempt, end)] = len(intervals)
        intervals.append(Interval(task_id, scale, attempt, start, max(start, end), cores, gpus, outcome))

    for task_id, attempt, state, when in history:
        if state is TaskState.RUNNING and task_id in running and running[task_id][0] == attempt:
            pass  # the same attempt reported started twice (a backend re-attached): keep the first start
        elif task_id in running:
            open_attempt, start = running.pop(task_id)
            close(task_id, start, open_attempt, when, state.value)
        if state is TaskState.QUEUED:
            queued.setdefault(task_id, when)
        elif task_id in queued:
            since = queued.pop(task_id)
            queued_periods.append((since, max(since, when)))
        if state is TaskState.RUNNING and task_id not in running:
            running[task_id] = (attempt, when)
        if state in _ENDINGS:
            completions.append((when, shapes[task_id][0] if task_id in shapes else "?", state.value))
    for task_id, (attempt, start) in running.items():
        close(task_id, start, attempt, now, TaskState.RUNNING.value)
    for task_id in {task_id for task_id, _, _ in retried}:
        for state, attempt, when, info in store.history(task_id):
            at = retried.get((task_id, attempt, when))
            if at is not None and state is TaskState.RETRYING and FAILURE_INFO not in info:
                intervals[at] = dataclasses.replace(intervals[at], outcome=REQUEUED)
    queued_periods.extend((since, None) for since in queued.values())
    intervals.sort(key=lambda i: (i.start, i.end, i.task_id))
    completions.sort(key=lambda row: row[0])

    cores = gpus = 0
    loop_stats: list[dict[str, Any]] = []
    timings: dict[str, list[float]] = defaultdict(list)
    for _seq, when, kind, data in log:
        if kind == events.COORDINATOR_STARTED:
            cores, gpus = int(data.get("cores") or 0), int(data.get("gpus") or 0)
        elif kind == events.LOOP_STATS:
            loop_stats.append({**data, "time": when})
        if _is_number(data.get("duration")):
            timings[kind].append(float(data["duration"]))

    failures = [(record.id, record.spec.scale, record.reason, record.stderr) for record in failed]
    return Telemetry(
        now=now, cores=cores, gpus=gpus, intervals=intervals, queue=_depth(queued_periods),
        completions=completions, loop_stats=loop_stats, timings=dict(timings), failures=failures, counts=counts,
    )


def _steps(changes: Iterable[tuple[float, int]]) -> StepFunction:
    """Step function from ``(time, delta)`` changes: one point per time at which the value changes."""
    by_time: dict[float, int] = defaultdict(int)
    for when, delta in changes:
        by_time[when] += delta
    steps: StepFunction = []
    value = 0
    for when in sorted(by_time):
        delta = by_time[when]
        if delta or not steps:
            value += delta
            steps.append((when, value))
    return steps


def _depth(periods: Iterable[tuple[float, float | None]]) -> StepFunction:
    """How many of ``periods`` (``(start, end)``, ``end`` ``None`` for still open) cover each time."""
    changes: list[tuple[float, int]] = []
    for start, end in periods:
        changes.append((start, 1))
        if end is not None:
            changes.append((end, -1))
    return _steps(changes)


def busy_timeline(
    intervals: Iterable[Interval], resource: Resource = "cores", scale: str | None = None
) -> StepFunction:
    """Units of ``resource`` busy over time, as a step function.

    Parameters
    ----------
    intervals
        Attempts, e.g. :attr:`Telemetry.intervals`.
    resource
        ``'cores'`` or ``'gpus'``.
    scale
        Only the attempts of this scale; all when ``None``.

    Returns
    -------
    list of (float, int)
        ``(time, units busy from this time on)``, sorted, starting at the first
        start (value 0 before it) and with one point per time the value changes;
        empty without intervals.
    """
    changes: list[tuple[float, int]] = []
    for interval in intervals:
        if scale is not None and interval.scale != scale:
            continue
        units = interval.units(resource)
        changes.append((interval.start, units))
        changes.append((interval.end, -units))
    return _steps(changes)


def busy_seconds(intervals: Iterable[Interval], start: float, end: float, resource: Resource = "cores") -> float:
    """Resource-seconds busy within ``[start, end]``, summed interval by interval.

    Parameters
    ----------
    intervals
        Attempts.
    start, end
        The window; an empty or reversed window gives 0.
    resource
        ``'cores'`` or ``'gpus'``.

    Returns
    -------
    float
        Sum over intervals of ``units * overlap with the window``.
    """
    return math.fsum(
        i.units(resource) * (min(end, i.end) - max(start, i.start))
        for i in intervals
        if i.end > start and i.start < end and i.units(resource)
    )


def integrate(timeline: Sequence[tuple[float, int | float]], start: float, end: float) -> float:
    """Integral of a step function over ``[start, end]``.

    Parameters
    ----------
    timeline
        ``(time, value from this time on)``, sorted by time; the value is 0
        before the first point and keeps the last point's value after it.
    start, end
        The window; an empty or reversed window gives 0.

    Returns
    -------
    float
        The area under the function within the window.
    """
    return _integrate(timeline, [point[0] for point in timeline], start, end)


def _integrate(
    timeline: Sequence[tuple[float, int | float]], times: Sequence[float], start: float, end: float
) -> float:
    """:func:`integrate` with the timeline's times given, so many windows cost one pass each, not a copy."""
    if end <= start or not timeline:
        return 0.0
    index = max(0, bisect.bisect_right(times, start) - 1)
    parts: list[float] = []
    for i in range(index, len(timeline)):
        left, value = timeline[i]
        if left >= end:
            break
        right = timeline[i + 1][0] if i + 1 < len(timeline) else end
        left, right = max(left, start), min(right, end)
        if right > left and value:
            parts.append(value * (right - left))
    return math.fsum(parts)


def _positive_periods(steps: StepFunction, start: float, end: float) -> list[tuple[float, float]]:
    """Maximal periods within ``[start, end]`` where the step function is above 0."""
    periods: list[tuple[float, float]] = []
    for i, (left, value) in enumerate(steps):
        if value <= 0:
            continue
        right = steps[i + 1][0] if i + 1 < len(steps) else end
        left, right = max(left, start), min(right, end)
        if right <= left:
            continue
        if periods and periods[-1][1] >= left:
            periods[-1] = (periods[-1][0], max(periods[-1][1], right))
        else:
            periods.append((left, right))
    return periods


def steady_state(telemetry: Telemetry) -> list[tuple[float, float]]:
    """Periods of steady state: between the first and last start, with work waiting in the backend's queue.

    Parameters
    ----------
    telemetry
        From :func:`read_telemetry`.

    Returns
    -------
    list of (float, float)
        ``(start, end)`` periods within ``[first start, last start]`` during
        which the queue depth was above 0; merged, sorted, none of length 0.
    """
    first, last = telemetry.first_start, telemetry.last_start
    if first is None or last is None:
        return []
    return _positive_periods(telemetry.queue, first, last)


def _utilization(telemetry: Telemetry, periods: Sequence[tuple[float, float]], resource: Resource) -> float | None:
    capacity = telemetry.capacity(resource)
    length = math.fsum(end - start for start, end in periods)
    if capacity <= 0 or length <= 0:
        return None
    timeline = busy_timeline(telemetry.intervals, resource)
    times = [point[0] for point in timeline]
    busy = math.fsum(_integrate(timeline, times, start, end) for start, end in periods)
    return busy / (capacity * length)


def steady_state_utilization(telemetry: Telemetry, resource: Resource = "cores") -> float | None:
    """Fraction of ``resource`` busy during the steady-state periods (:func:`steady_state`).

    Returns
    -------
    float or None
        Busy resource-seconds within the periods over capacity times their
        total length; ``None`` without a steady state or with capacity 0.
    """
    return _utilization(telemetry, steady_state(telemetry), resource)


def overall_utilization(telemetry: Telemetry, resource: Resource = "cores") -> float | None:
    """Fraction of ``resource`` busy from the first start to the last end (or now, while tasks run).

    Returns
    -------
    float or None
        ``None`` before any start, or with capacity 0.
    """
    first, last = telemetry.first_start, telemetry.last_end
    if first is None or last is None:
        return None
    return _utilization(telemetry, [(first, last)], resource)


def store_capacity(store: Store) -> tuple[int, int]:
    """``(cores, gpus)`` of the node(s), from the last ``coordinator-started`` event; ``(0, 0)`` before any."""
    started = store.events(kind=events.COORDINATOR_STARTED)
    if not started:
        return 0, 0
    data = started[-1][3]
    return int(data.get("cores", 0)), int(data.get("gpus", 0))


def store_recent_utilization(store: Store, seconds: float = 60.0, now: float | None = None,
                             resource: Resource = "cores") -> float | None:
    """Fraction of ``resource`` busy over the last ``seconds``, read in SQL from the tasks table.

    What :func:`recent_utilization` computes from the whole history, at a cost
    that does not grow with the campaign (``status`` of a campaign of 100,000
    tasks must answer in under a second): only the attempts running now or
    ended in the window are summed (:meth:`Store.recent_busy`). The window is
    clipped to the first start.

    Returns
    -------
    float or None
        ``None`` before any start, with capacity 0, or for an empty window.
    """
    cores, gpus = store_capacity(store)
    capacity = cores if resource == "cores" else gpus
    first = store.first_start()
    now = time.time() if now is None else now
    if first is None or capacity <= 0:
        return None
    start = max(now - seconds, first)
    if now <= start:
        return None
    busy_cores, busy_gpus = store.recent_busy(start, now)
    return (busy_cores if resource == "cores" else busy_gpus) / (capacity * (now - start))


def recent_utilization(telemetry: Telemetry, seconds: float = 60.0, resource: Resource = "cores") -> float | None:
    """Fraction of ``resource`` busy over the last ``seconds`` before :attr:`Telemetry.now`.

    The window is clipped to the first start, so a campaign that started 10 s
    ago is judged on those 10 s.

    Returns
    -------
    float or None
        ``None`` before any start, with capacity 0, or for an empty window.
    """
    first = telemetry.first_start
    if first is None:
        return None
    return _utilization(telemetry, [(max(telemetry.now - seconds, first), telemetry.now)], resource)


def gantt_lanes(intervals: Iterable[Interval], slots: int) -> list[tuple[int, Interval]]:
    """Place every attempt on as many lanes (core slots) as it has cores, as a Gantt chart shows them.

    Intervals are placed greedily by start time, each on the lowest-numbered
    free lanes (not necessarily consecutive); an interval frees its lanes at its
    end, and an interval starting at that same instant may take them.

    Parameters
    ----------
    intervals
        Attempts.
    slots
        Lanes available, numbered ``0 .. slots - 1`` (the node's cores).

    Returns
    -------
    list of (int, Interval)
        One ``(lane, interval)`` pair per lane an interval occupies.

    Raises
    ------
    ValueError
        When more than ``slots`` lanes would be busy at once, i.e. the
        intervals oversubscribe the cores.
    """
    free = list(range(slots))
    active: list[tuple[float, int, list[int]]] = []  # (end, tie-breaker, lanes) heap
    placed: list[tuple[int, Interval]] = []
    for n, interval in enumerate(sorted(intervals, key=lambda i: (i.start, i.end))):
        while active and active[0][0] <= interval.start:
            for lane in heapq.heappop(active)[2]:
                heapq.heappush(free, lane)
        if interval.cores > len(free):
            raise ValueError(
                f"{interval.task_id} (attempt {interval.attempt}) needs {interval.cores} lane(s) "
                f"at {interval.start:.3f} "
                f"but only {len(free)} of {slots} are free: the intervals oversubscribe {slots} slots"
            )
        lanes = [heapq.heappop(free) for _ in range(interval.cores)]
        placed.extend((lane, interval) for lane in lanes)
        heapq.heappush(active, (interval.end, n, lanes))
    return placed


def throughput(
    completions: Iterable[tuple[float, str, str]], bin_seconds: float, origin: float | None = None
) -> dict[str, list[tuple[float, int]]]:
    """Tasks completed ``done`` per time bin, per scale.

    Parameters
    ----------
    completions
        ``(time, scale, state)``, as :attr:`Telemetry.completions`.
    bin_seconds
        Width of a bin; must be positive.
    origin
        Start of the first bin; defaults to the earliest completion.

    Returns
    -------
    dict of str to list of (float, int)
        For every scale with a completion (of any state): ``(bin start, tasks
        done in [bin start, bin start + bin_seconds))`` for every bin from
        ``origin`` to the one holding the last completion (of any scale), so all
        scales share the same bins and empty bins count 0.

    Raises
    ------
    ValueError
        When ``bin_seconds`` is not positive.
    """
    if not bin_seconds > 0:
        raise ValueError(f"bin_seconds must be positive, not {bin_seconds!r}")
    rows = list(completions)
    if not rows:
        return {}
    if origin is None:
        origin = min(row[0] for row in rows)
    bins = max(0, math.floor((max(row[0] for row in rows) - origin) / bin_seconds)) + 1
    counts: dict[str, list[int]] = {}
    for when, scale, state in rows:
        per_bin = counts.setdefault(scale, [0] * bins)
        if state == TaskState.DONE.value and when >= origin:
            per_bin[min(bins - 1, math.floor((when - origin) / bin_seconds))] += 1
    return {
        scale: [(origin + k * bin_seconds, n) for k, n in enumerate(per_bin)]
        for scale, per_bin in sorted(counts.items())
    }
