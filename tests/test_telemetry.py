"""Telemetry: hand-built intervals and stores with known answers, then a real tiny campaign."""

from __future__ import annotations

import random
import textwrap
from pathlib import Path

import pytest

from mummi_like.campaign.loop import Campaign
from mummi_like.store import Store
from mummi_like.tasks import Failure, TaskResult, TaskSpec, TaskState
from mummi_like.telemetry import (
    FAILURE_INFO,
    REQUEUED,
    store_recent_utilization,
    Interval,
    Telemetry,
    busy_seconds,
    busy_timeline,
    gantt_lanes,
    integrate,
    overall_utilization,
    read_telemetry,
    recent_utilization,
    steady_state,
    steady_state_utilization,
    throughput,
)


def iv(task: str, start: float, end: float, cores: int = 1, gpus: int = 0, scale: str = "s",
       outcome: str = "done", attempt: int = 1) -> Interval:
    return Interval(task, scale, attempt, start, end, cores, gpus, outcome)


def telemetry(intervals: list[Interval], queue: list[tuple[float, int]], cores: int = 2, gpus: int = 0,
              now: float = 100.0) -> Telemetry:
    return Telemetry(now=now, cores=cores, gpus=gpus, intervals=intervals, queue=queue, completions=[])


# -- step functions and the two ways of measuring busy time ------------------------------------------


def test_busy_timeline_per_resource_and_scale() -> None:
    intervals = [iv("a", 0, 4, cores=2, gpus=1, scale="x"), iv("b", 1, 2, cores=1, scale="y"),
                 iv("c", 2, 3, cores=3, gpus=2, scale="x")]
    assert busy_timeline(intervals) == [(0, 2), (1, 3), (2, 5), (3, 2), (4, 0)]
    assert busy_timeline(intervals, "gpus") == [(0, 1), (2, 3), (3, 1), (4, 0)]
    assert busy_timeline(intervals, scale="y") == [(1, 1), (2, 0)]
    assert busy_timeline([]) == []


def test_back_to_back_intervals_leave_no_dip_in_the_timeline() -> None:
    assert busy_timeline([iv("a", 0, 1), iv("b", 1, 2)]) == [(0, 1), (2, 0)]


def test_integrate_a_step_function_over_windows() -> None:
    steps = [(1.0, 2), (3.0, 5), (4.0, 0)]
    assert integrate(steps, 0, 10) == 2 * 2 + 5 * 1
    assert integrate(steps, 2, 3.5) == 2 * 1 + 5 * 0.5
    assert integrate(steps, -5, 1) == 0
    assert integrate(steps, 3.5, 3.5) == 0
    assert integrate([(0.0, 3)], 1, 2) == 3  # the last value holds after the last point
    assert integrate([], 0, 1) == 0


def test_utilization_two_ways_agree_on_random_intervals() -> None:
    generator = random.Random(4)
    base = 1.7e9  # epoch-scale times, as a store holds them
    intervals = []
    for n in range(300):
        start = base + generator.uniform(0, 500)
        intervals.append(iv(f"t{n}", start, start + generator.expovariate(1 / 20), cores=generator.randint(1, 4),
                            gpus=generator.randint(0, 2)))
    for resource in ("cores", "gpus"):
        timeline = busy_timeline(intervals, resource)
        for _ in range(50):
            a, b = sorted(base + generator.uniform(-50, 700) for _ in range(2))
            assert integrate(timeline, a, b) == pytest.approx(busy_seconds(intervals, a, b, resource), abs=1e-9)
        total = sum(i.units(resource) * (i.end - i.start) for i in intervals)
        assert busy_seconds(intervals, base - 1, base + 1e4, resource) == pytest.approx(total, rel=1e-12)


# -- steady state and utilization figures ------------------------------------------------------------------


def test_steady_state_periods_come_from_the_queue_within_first_and_last_start() -> None:
    intervals = [iv("a", 10, 30), iv("b", 12, 40), iv("c", 30, 50), iv("d", 45, 60)]
    # work waits in [5, 15) and [20, 25) and [25, 50) (adjacent: merged) and [70, 80) (after the last start)
    queue = [(5.0, 2), (15.0, 0), (20.0, 1), (25.0, 3), (50.0, 0), (70.0, 1), (80.0, 0)]
    data = telemetry(intervals, queue)
    assert steady_state(data) == [(10, 15), (20, 45)]
    busy = busy_seconds(intervals, 10, 15) + busy_seconds(intervals, 20, 45)
    assert busy == 5 + 3 + 10 + 20 + 15  # a 10..15, b 12..15; a 20..30, b 20..40, c 30..45
    assert steady_state_utilization(data) == pytest.approx(busy / (2 * (5 + 25)))
    assert overall_utilization(data) == pytest.approx((20 + 28 + 20 + 15) / (2 * 50))
    assert steady_state_utilization(data, "gpus") is None  # no GPUs
    assert steady_state(telemetry([], queue)) == []
    assert steady_state_utilization(telemetry(intervals, [])) is None  # nothing ever waited
    assert steady_state_utilization(telemetry(intervals, queue, cores=0)) is None


def test_recent_utilization_is_clipped_to_the_first_start() -> None:
    data = telemetry([iv("a", 90, 100, cores=2, outcome="running")], [], cores=4, now=100)
    assert recent_utilization(data, seconds=60) == pytest.approx(0.5)  # window [90, 100], not [40, 100]
    assert recent_utilization(data, seconds=5) == pytest.approx(0.5)
    assert recent_utilization(telemetry([], []), seconds=60) is None


# -- Gantt lanes and throughput -------------------------------------------------------------------------


def test_gantt_lanes_never_share_a_lane_and_never_exceed_the_slots() -> None:
    generator = random.Random(9)
    slots, intervals, free_at = 8, [], [0.0] * 8
    for n in range(400):  # a valid schedule: each task takes the earliest-free cores
        cores = generator.randint(1, 4)
        order = sorted(range(slots), key=lambda lane: free_at[lane])[:cores]
        start = max(free_at[lane] for lane in order) + generator.choice([0, 0, 0.5])
        end = start + generator.uniform(0.1, 5)
        for lane in order:
            free_at[lane] = end
        intervals.append(iv(f"t{n}", start, end, cores=cores))
    placed = gantt_lanes(intervals, slots)
    assert len(placed) == sum(i.cores for i in intervals)
    by_lane: dict[int, list[Interval]] = {}
    for lane, interval in placed:
        assert 0 <= lane < slots
        by_lane.setdefault(lane, []).append(interval)
    for lane_intervals in by_lane.values():
        lane_intervals.sort(key=lambda i: i.start)
        for earlier, later in zip(lane_intervals, lane_intervals[1:]):
            assert earlier.end <= later.start
    for interval in intervals:  # each interval on as many distinct lanes as cores
        assert len({lane for lane, other in placed if other is interval}) == interval.cores


def test_gantt_lanes_reuse_lanes_freed_at_the_same_instant_and_refuse_oversubscription() -> None:
    placed = gantt_lanes([iv("a", 0, 1, cores=2), iv("b", 1, 2, cores=2), iv("c", 0.5, 1.5)], 3)
    assert sorted((i.task_id, lane) for lane, i in placed) == [("a", 0), ("a", 1), ("b", 0), ("b", 1), ("c", 2)]
    with pytest.raises(ValueError, match="oversubscribe 3 slots"):
        gantt_lanes([iv("a", 0, 2, cores=2), iv("b", 1, 3, cores=2)], 3)


def test_throughput_counts_done_per_bin_and_scale_on_shared_bins() -> None:
    completions = [(0.0, "x", "done"), (0.5, "x", "done"), (1.0, "x", "failed"), (2.9, "y", "done"),
                   (3.0, "x", "done"), (3.2, "y", "canceled")]
    assert throughput(completions, 1.0) == {
        "x": [(0.0, 2), (1.0, 0), (2.0, 0), (3.0, 1)],
        "y": [(0.0, 0), (1.0, 0), (2.0, 1), (3.0, 0)],
    }
    assert throughput(completions, 2.0, origin=-1.0)["x"] == [(-1.0, 2), (1.0, 0), (3.0, 1)]
    assert throughput([], 1.0) == {}
    with pytest.raises(ValueError):
        throughput(completions, 0)


# -- read_telemetry on a store with every kind of history --------------------------------------------------


def task(task_id: str, scale: str, cores: int = 1, gpus: int = 0) -> TaskSpec:
    return TaskSpec(id=task_id, payload={"kind": "executable", "argv": ["true"]}, workdir=f"tasks/{scale}/{task_id}",
                    labels={"scale": scale}, resources={"cores": cores, "gpus": gpus})


def test_read_telemetry_pairs_running_rows_and_builds_the_queue(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.add_tasks([task("ok", "x", cores=2, gpus=1), task("flaky", "x"), task("crash", "y", cores=3),
                         task("dep", "y"), task("live", "x")], time=0.0)
        store.log_event("coordinator-started", 0.5, pid=1, backend="local", nodes=1, cores=4, gpus=1)
        store.transition("ok", TaskState.QUEUED, 1.0, attempt=1, job_id="j1")
        store.transition("flaky", TaskState.QUEUED, 1.0, attempt=1, job_id="j2")
        store.transition("crash", TaskState.QUEUED, 1.0, attempt=1, job_id="j3")
        store.transition("ok", TaskState.RUNNING, 1.5)
        store.transition("flaky", TaskState.RUNNING, 2.0)
        store.transition("flaky", TaskState.RETRYING, 3.0, failures=1,
                         info={FAILURE_INFO: "exit", "message": "exit code 1"},
                         result=TaskResult(job_id="j2", ok=False, exit_code=1, started=2.0, ended=3.0,
                                           failure=Failure(kind="exit", exit_code=1, message="exit code 1")))
        store.transition("crash", TaskState.RUNNING, 3.0)
        store.transition("ok", TaskState.DONE, 4.0, result=TaskResult(job_id="j1", ok=True, started=1.5, ended=4.0))
        store.transition("flaky", TaskState.QUEUED, 4.0, attempt=2, job_id="j4")
        # the coordinator dies; a new one requeues what it finds at 10.0 (not a failure: no FAILURE_INFO)
        store.transition("flaky", TaskState.RETRYING, 10.0, info={"reason": "requeued: never reached the backend"})
        store.transition("crash", TaskState.RETRYING, 10.0,
                         info={"reason": "requeued: the backend no longer holds job j3"})
        store.log_event("coordinator-started", 10.5, pid=2, backend="local", nodes=1, cores=8, gpus=2)
        store.transition("dep", TaskState.FAILED, 11.0, reason="dependency gone")
        store.transition("live", TaskState.QUEUED, 11.0, attempt=1, job_id="j5")
        store.transition("live", TaskState.RUNNING, 12.0)
        store.transition("live", TaskState.RUNNING, 12.5)  # a re-attached backend reports the start again
        store.log_event("selector-retrained", 12.0, duration=1.5)
        store.log_event("selector-retrained", 13.0, duration=2)
        store.log_event("loop-stats", 13.0, window=5.0, ticks=10, events=4, submitted=2, reaction_ms_p50=0.5,
                        reaction_ms_p95=1.0, reaction_ms_max=2.0)
        store.log_event("other", 13.0, duration="long")  # not a number: not a timing
    with Store.open(tmp_path, readonly=True) as store:
        data = read_telemetry(store, now=20.0)
    assert (data.now, data.cores, data.gpus) == (20.0, 8, 2)  # capacity of the last coordinator
    assert sorted((i.task_id, i.attempt, i.start, i.end, i.cores, i.gpus, i.outcome) for i in data.intervals) == [
        ("crash", 1, 3.0, 10.0, 3, 0, REQUEUED),
        ("flaky", 1, 2.0, 3.0, 1, 0, "retrying"),
        ("live", 1, 12.0, 20.0, 1, 0, "running"),
        ("ok", 1, 1.5, 4.0, 2, 1, "done"),
    ]
    # queued: ok 1-1.5, flaky 1-2 and 4-10, crash 1-3, live 11-12
    assert data.queue == [(1.0, 3), (1.5, 2), (2.0, 1), (3.0, 0), (4.0, 1), (10.0, 0), (11.0, 1), (12.0, 0)]
    assert data.completions == [(4.0, "x", "done"), (11.0, "y", "failed")]
    assert data.timings == {"selector-retrained": [1.5, 2.0]}
    assert data.loop_stats == [{"window": 5.0, "ticks": 10, "events": 4, "submitted": 2, "reaction_ms_p50": 0.5,
                                "reaction_ms_p95": 1.0, "reaction_ms_max": 2.0, "time": 13.0}]
    assert data.failures == [("dep", "y", "dependency gone", None)]
    assert data.counts == {"x": {"done": 1, "retrying": 1, "running": 1}, "y": {"retrying": 1, "failed": 1}}
    assert steady_state(data) == [(1.5, 3.0), (4.0, 10.0), (11.0, 12.0)]  # within [first start, last start]
    assert data.elapsed == 18.5


# -- a real campaign ----------------------------------------------------------------------------------


def run_campaign(tmp_path: Path, body: str) -> Path:
    spec = tmp_path / "campaign.yaml"
    spec.write_text(textwrap.dedent(body))
    directory = tmp_path / "run"
    summary = Campaign.from_text(spec.read_text(), spec, directory).run()
    assert summary.complete, summary
    return directory


def test_telemetry_of_a_real_campaign(tmp_path: Path) -> None:
    directory = run_campaign(tmp_path, """
        name: sleepers
        backend: {config: {cores: 2}}
        scales:
          - name: nap
            plugin: command
            config:
              argv: ["sleep", "0.2"]
              parameters: {i: [0, 1, 2, 3, 4, 5, 6, 7]}
        """)
    with Store.open(directory, readonly=True) as store:
        data = read_telemetry(store)
        records = {record.id: record for record in store.tasks()}
    assert (data.cores, data.gpus) == (2, 0)
    assert len(records) == 8
    assert data.counts == {"nap": {"done": 8}}
    by_task: dict[str, list[Interval]] = {}
    for interval in data.intervals:
        by_task.setdefault(interval.task_id, []).append(interval)
    assert set(by_task) == set(records)
    for task_id, record in records.items():
        [interval] = by_task[task_id]
        assert (interval.scale, interval.outcome, interval.cores) == ("nap", "done", 1)
        assert interval.start == pytest.approx(record.started, abs=0.05)
        assert interval.end == pytest.approx(record.ended, abs=0.05)
        assert 0.15 < interval.end - interval.start < 5
    first, last = data.first_start, data.last_end
    assert first is not None and last is not None
    timeline = busy_timeline(data.intervals)
    assert max(value for _, value in timeline) <= data.cores
    assert integrate(timeline, first, last) == pytest.approx(busy_seconds(data.intervals, first, last), abs=1e-9)
    assert gantt_lanes(data.intervals, data.cores)  # the local backend never oversubscribes
    periods = steady_state(data)
    assert periods and all(first <= a < b <= data.last_start for a, b in periods)
    steady = steady_state_utilization(data)
    assert steady is not None and 0.5 <= steady <= 1.0
    overall = overall_utilization(data)
    assert overall is not None and 0.3 <= overall <= 1.0
    assert sum(n for _, n in throughput(data.completions, 0.1)["nap"]) == 8
    assert [state for _, _, state in data.completions] == ["done"] * 8
    # What status shows, read without the history, agrees with the history over any recent window ...
    with Store.open(directory, readonly=True) as store:
        for seconds in (0.3, 1.0, 60.0):
            quick = store_recent_utilization(store, seconds, now=data.now)
            assert quick == pytest.approx(recent_utilization(data, seconds), abs=0.02)
    # ... and the coordinator logged the steady state when it stopped, for status to show without the history.
    with Store.open(directory, readonly=True) as store:
        [(_, _, _, at_stop)] = store.events(kind="utilization")
    assert at_stop == {"steady_state": pytest.approx(steady), "overall": pytest.approx(overall), "cores": 2, "gpus": 0}


def test_recent_utilization_from_the_store_counts_running_attempts_until_now(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.add_tasks([task("done", "x", cores=2), task("live", "x"), task("old", "x")], time=0.0)
        store.log_event("coordinator-started", 0.0, pid=1, backend="local", nodes=1, cores=4, gpus=0)
        for task_id in ("done", "live", "old"):
            store.transition(task_id, TaskState.QUEUED, 0.5, attempt=1, job_id=task_id)
        store.transition("old", TaskState.DONE, 2.0, result=TaskResult(job_id="old", ok=True, started=1.0, ended=2.0))
        store.transition("live", TaskState.RUNNING, 6.0)
        store.transition("done", TaskState.DONE, 9.0, result=TaskResult(job_id="done", ok=True, started=4.0, ended=9.0))
    with Store.open(tmp_path, readonly=True) as store:
        # window 10 - 5 = [5, 10]: done holds 2 cores for 4 s, live 1 core for 4 s, old ended before it.
        assert store_recent_utilization(store, 5.0, now=10.0) == pytest.approx((2 * 4 + 1 * 4) / (4 * 5))
        # the window is clipped to the first start (1.0): [1, 10]
        assert store_recent_utilization(store, 60.0, now=10.0) == pytest.approx((1 + 2 * 5 + 4) / (4 * 9))
        assert store_recent_utilization(store, 5.0, now=10.0, resource="gpus") is None  # no GPUs
