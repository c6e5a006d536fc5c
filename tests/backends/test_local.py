"""Tests of the embedded ``local`` backend, run for real: processes, workers, signals, no mocks.

Every task is tiny (``sleep`` of a fraction of a second, ``sh -c 'echo ...'``, or a
function of :mod:`tasks_for_tests`), so that the whole file runs in a few seconds.
Core and GPU counts are given explicitly in each config: the backend only
accounts for them, so no real GPU (and no particular number of cores) is needed.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from mummi_like.backends.base import BackendEvent, UnsatisfiableRequest
from mummi_like.backends.local import LocalBackend, LocalConfig
from mummi_like.tasks import TaskResult, TaskSpec

HERE = Path(__file__).parent

# -- helpers -----------------------------------------------------------------------------------


def exe(task_id: str, argv: list[str], *, mpi: bool = False, env: dict[str, str] | None = None,
        priority: int = 0, **resources: Any) -> TaskSpec:
    """An executable task working in ``w/<task_id>``."""
    return TaskSpec(
        id=task_id,
        payload={"kind": "executable", "argv": argv, "mpi": mpi, "env": env or {}},
        resources=resources,
        workdir=f"w/{task_id}",
        priority=priority,
    )


def call(task_id: str, function: str, *args: Any, priority: int = 0, **resources: Any) -> TaskSpec:
    """A callable task running ``tasks_for_tests:<function>(*args)`` in ``w/<task_id>``."""
    return TaskSpec(
        id=task_id,
        payload={"kind": "callable", "function": f"tasks_for_tests:{function}", "args": list(args)},
        resources=resources,
        workdir=f"w/{task_id}",
        priority=priority,
    )


def drain(backend: LocalBackend, timeout: float = 15.0) -> list[BackendEvent]:
    """Collect events until no job is active; fail the test if that takes longer than ``timeout``."""
    events: list[BackendEvent] = []
    deadline = time.monotonic() + timeout
    while backend.active_jobs():
        if time.monotonic() > deadline:
            pytest.fail(f"{backend.active_jobs()} job(s) still active after {timeout} s; events so far: {events}")
        events.extend(backend.wait(0.2))
    return events


def wait_until(backend: LocalBackend, condition: Callable[[list[BackendEvent]], bool],
               timeout: float = 10.0) -> list[BackendEvent]:
    """Collect events until ``condition(events)`` holds; fail the test at ``timeout``."""
    events: list[BackendEvent] = []
    deadline = time.monotonic() + timeout
    while not condition(events):
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met after {timeout} s; events so far: {events}")
        events.extend(backend.wait(0.05))
    return events


def results(events: list[BackendEvent]) -> dict[str, TaskResult]:
    return {event.job_id: event.result for event in events if event.kind == "finished"}


def run_one(backend: LocalBackend, task: TaskSpec, timeout: float = 15.0) -> tuple[list[BackendEvent], TaskResult]:
    job_id = backend.submit(task, attempt=1)
    events = drain(backend, timeout)
    result = results(events)[job_id]
    assert result.job_id == job_id
    return events, result


def started_order(events: list[BackendEvent]) -> list[str]:
    return [event.job_id for event in events if event.kind == "started"]


def wait_for_file(path: Path, backend: LocalBackend, timeout: float = 10.0) -> str:
    """Drive the backend until ``path`` exists with content, and return the content."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text().strip()):
        if time.monotonic() > deadline:
            pytest.fail(f"{path} did not appear within {timeout} s")
        backend.wait(0.05)
    return path.read_text().strip()


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie awaiting its reaper counts as dead)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while process_alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def wait_reapable(pid: int, timeout: float = 5.0) -> bool:
    """Wait until ``pid`` has fully exited: a zombie whose threads are all gone, its sockets closed.

    The main thread turns zombie while the others are still being torn down;
    a call sent in that window reaches a socket still open, and the worker's
    death then ends the call, which is what a worker dying mid-call means.
    """
    tasks = Path(f"/proc/{pid}/task")
    deadline = time.monotonic() + timeout
    while process_alive(pid) or (tasks.exists() and len(list(tasks.iterdir())) > 1):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


# A process that ignores SIGTERM, starts a child (which inherits the ignored SIGTERM),
# writes the child's pid to child.pid and sleeps.
STUBBORN = (
    "import signal, subprocess, time\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "child = subprocess.Popen(['sleep', '60'])\n"
    "open('child.pid.tmp', 'w').write(str(child.pid))\n"
    "import os; os.rename('child.pid.tmp', 'child.pid')\n"
    "time.sleep(60)\n"
)

# Writes its own pid to pid, then becomes `sleep 60` (same pid).
PID_THEN_SLEEP = ["sh", "-c", "echo $$ > pid.tmp && mv pid.tmp pid && exec sleep 60"]


@pytest.fixture
def make_backend(tmp_path: Path) -> Iterator[Callable[..., LocalBackend]]:
    """Build and start backends on ``tmp_path/campaign`` (or a given directory); all are shut down at the end."""
    made: list[LocalBackend] = []

    def make(campaign_dir: Path | None = None, **config: Any) -> LocalBackend:
        config.setdefault("cores", 2)
        config.setdefault("gpus", [])
        config.setdefault("kill_grace", 0.5)
        backend = LocalBackend(LocalConfig(**config), campaign_dir or tmp_path / "campaign", python_path=[HERE])
        made.append(backend)
        backend.start()
        return backend

    try:
        yield make
    finally:
        for backend in reversed(made):
            backend.shutdown(cancel_running=True)


@pytest.fixture
def backend(make_backend: Callable[..., LocalBackend]) -> LocalBackend:
    return make_backend()


# -- executables ---------------------------------------------------------------------------------


def test_executable_success_captures_stdout(backend: LocalBackend) -> None:
    before = time.time()
    events, result = run_one(backend, exe("hello", ["sh", "-c", "echo hello out; echo hello err >&2"]))
    assert result.ok and result.failure is None
    assert result.exit_code == 0 and result.signal is None
    assert Path(result.stdout).read_text() == "hello out\n"
    assert Path(result.stderr).read_text() == "hello err\n"
    assert Path(result.stdout) == backend.campaign_dir / "w/hello/stdout.txt"
    assert result.started is not None and result.ended is not None
    assert before <= result.started <= result.ended <= time.time()
    assert [event.kind for event in events] == ["started", "finished"]
    assert events[0].time <= events[1].time
    assert backend.active_jobs() == 0


def test_executable_runs_in_its_workdir(backend: LocalBackend) -> None:
    _, result = run_one(backend, exe("cwd", ["pwd"]))
    assert Path(result.stdout).read_text().strip() == str(backend.campaign_dir / "w/cwd")


def test_nonzero_exit_is_an_exit_failure(backend: LocalBackend) -> None:
    _, result = run_one(backend, exe("bad", ["sh", "-c", "exit 3"]))
    assert not result.ok
    assert result.exit_code == 3
    assert result.failure is not None and result.failure.kind == "exit" and result.failure.exit_code == 3
    assert "3" in result.failure.message


def test_missing_executable_exits_127(backend: LocalBackend) -> None:
    _, result = run_one(backend, exe("missing", ["no-such-program-mummi-xyz", "--flag"]))
    assert not result.ok
    assert result.exit_code == 127
    assert result.failure is not None and result.failure.kind == "exit" and result.failure.exit_code == 127
    assert "cannot start" in result.failure.message
    assert "no-such-program-mummi-xyz" in result.failure.message
    assert "no-such-program-mummi-xyz" in Path(result.stderr).read_text()


def test_thread_and_job_variables(backend: LocalBackend) -> None:
    script = "echo $OMP_NUM_THREADS $MKL_NUM_THREADS $MUMMI_LIKE_JOB_ID $MUMMI_LIKE_CAMPAIGN $EXTRA"
    _, result = run_one(backend, exe("vars", ["sh", "-c", script], cores=2, env={"EXTRA": "x1"}))
    assert result.ok
    assert Path(result.stdout).read_text().split() == ["2", "2", result.job_id, str(backend.campaign_dir), "x1"]
    _, result = run_one(backend, call("cvars", "getenv", "OMP_NUM_THREADS", cores=2))
    assert result.ok and result.value == "2"
    _, result = run_one(backend, call("cjob", "getenv", "MUMMI_LIKE_JOB_ID"))
    assert result.value == result.job_id


def test_mpi_launcher_prefix_is_expanded(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(cores=4, mpi_launcher=["env", "RANKS={ranks}", "CPR={cores_per_rank}"])
    task = exe("mpi", ["sh", "-c", "echo $RANKS $CPR"], mpi=True, ranks=2, cores=4)
    _, result = run_one(backend, task)
    assert result.ok, result.failure
    assert Path(result.stdout).read_text().strip() == "2 2"


def test_mpi_launcher_whole_token_placeholders(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(cores=4, mpi_launcher=["sh", "-c", 'echo "$0 $1 $*"', "{ranks}", "{cores_per_rank}"])
    _, result = run_one(backend, exe("mpi2", ["a", "b"], mpi=True, ranks=4, cores=4))
    assert result.ok, result.failure
    assert Path(result.stdout).read_text().strip() == "4 1 1 a b"


# -- callables -----------------------------------------------------------------------------------


def test_callable_value_and_stdout(backend: LocalBackend) -> None:
    events, result = run_one(backend, call("shout", "shout", "hi"))
    assert result.ok and result.failure is None
    assert result.value == "HI"
    assert Path(result.stdout).read_text() == "printed: hi\n"
    assert [event.kind for event in events] == ["started", "finished"]
    _, result = run_one(backend, call("add", "add", 2, 3))
    assert result.value == 5


def test_callable_exception(backend: LocalBackend) -> None:
    _, result = run_one(backend, call("raises", "fail", "boom 42"))
    assert not result.ok
    assert result.failure is not None and result.failure.kind == "exception"
    assert "builtins.ValueError" in result.failure.exception_types
    assert "boom 42" in result.failure.message
    assert "ValueError" in Path(result.stderr).read_text()


def test_callable_non_json_return_value(backend: LocalBackend) -> None:
    _, result = run_one(backend, call("setret", "not_json"))
    assert not result.ok
    assert result.failure is not None and result.failure.kind == "exception"
    assert "builtins.TypeError" in result.failure.exception_types
    assert "not JSON-serializable" in result.failure.message
    assert "set" in result.failure.message


def test_callable_that_kills_its_worker(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(python_workers=1)
    _, result = run_one(backend, call("dies", "die", 3))
    assert not result.ok
    assert result.failure is not None and result.failure.kind == "exit" and result.failure.exit_code == 3
    _, result = run_one(backend, call("after", "add", 1, 2))
    assert result.ok and result.value == 3


def test_more_callables_than_workers(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(cores=3, python_workers=1)
    ids = [backend.submit(call(f"n{i}", "nap", 0.1), attempt=1) for i in range(3)]
    done = results(drain(backend))
    assert all(done[job_id].ok for job_id in ids), done
    intervals = sorted((done[job_id].started, done[job_id].ended) for job_id in ids)
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in zip(intervals, intervals[1:])), "one worker, one call at a time"


def test_workers_are_reused_but_replaced_after_gpu_tasks(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(cores=2, gpus=[0, 1], python_workers=1)
    first = run_one(backend, call("p1", "pid"))[1].value
    second = run_one(backend, call("p2", "pid"))[1].value
    assert first == second, "a worker is long-lived"
    on_gpu = run_one(backend, call("p3", "pid", gpus=1))[1].value
    assert on_gpu == second
    after_gpu = run_one(backend, call("p4", "pid"))[1].value
    assert after_gpu != on_gpu, "a worker that ran a GPU task is replaced"


# -- resources -----------------------------------------------------------------------------------


def test_never_oversubscribes_cores(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(cores=3)
    rng = random.Random(20240611)
    cores_of: dict[str, int] = {}
    for index in range(30):
        cores = rng.randint(1, 3)
        seconds = rng.choice([0.05, 0.1, 0.15, 0.2])
        if rng.random() < 0.5:
            task = exe(f"e{index}", ["sleep", str(seconds)], cores=cores)
        else:
            task = call(f"c{index}", "nap", seconds, cores=cores)
        cores_of[backend.submit(task, attempt=1)] = cores
    events = drain(backend, 30)
    done = results(events)
    assert set(done) == set(cores_of)
    assert all(result.ok for result in done.values()), [r for r in done.values() if not r.ok]
    start_of = {event.job_id: event.time for event in events if event.kind == "started"}
    assert set(start_of) == set(cores_of)
    # Sweep over the intervals each job held its cores (from its start to its end); ends sort first at ties.
    points = sorted([(start_of[job], 1, cores_of[job]) for job in cores_of]
                    + [(done[job].ended, 0, -cores_of[job]) for job in cores_of])
    in_use = running = peak_running = 0
    for _, is_start, delta in points:
        in_use += delta
        running += 1 if is_start else -1
        assert in_use <= 3, f"{in_use} cores in use at once"
        peak_running = max(peak_running, running)
    assert peak_running >= 2, "tasks ran concurrently"


@pytest.mark.parametrize(
    ("config", "resources", "expected"),
    [
        ({"cores": 3}, {"cores": 5}, ["5 cores", "at most 3"]),
        ({"cores": 3, "gpus": []}, {"gpus": 1}, ["1 GPUs", "at most 0"]),
        ({"cores": 3, "gpus": [0]}, {"gpus": 2}, ["2 GPUs", "at most 1"]),
        ({"cores": 3}, {"nodes": 2}, ["2 nodes", "there are 1"]),
    ],
)
def test_unsatisfiable_request(make_backend: Callable[..., LocalBackend], config: dict[str, Any],
                               resources: dict[str, Any], expected: list[str]) -> None:
    backend = make_backend(**config)
    with pytest.raises(UnsatisfiableRequest) as raised:
        backend.submit(exe("too-big", ["true"], **resources), attempt=1)
    message = str(raised.value)
    assert "'too-big'" in message
    for words in expected:
        assert words in message
    assert backend.active_jobs() == 0


def test_gpu_binding_executables(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(cores=4, gpus=[0, 1])
    show = ["sh", "-c", "echo \"[$CUDA_VISIBLE_DEVICES]\"; sleep 0.4"]
    ids = [backend.submit(exe(f"g{i}", show, gpus=1), attempt=1) for i in range(3)]
    none = backend.submit(exe("nogpu", show), attempt=1)
    done = results(drain(backend))
    assert all(result.ok for result in done.values())
    seen = {job_id: Path(done[job_id].stdout).read_text().strip() for job_id in ids}
    assert set(seen.values()) <= {"[0]", "[1]"}
    # The first two ran at the same time, on different GPUs; the third waited for one of them.
    first, second, third = (done[job_id] for job_id in ids)
    assert first.started < second.ended and second.started < first.ended
    assert seen[ids[0]] != seen[ids[1]]
    assert third.started >= min(first.ended, second.ended)
    assert Path(done[none].stdout).read_text().strip() == "[]"


def test_gpu_binding_callables(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(cores=4, gpus=[0, 1])
    on_gpu = [backend.submit(call(f"cg{i}", "getenv", "CUDA_VISIBLE_DEVICES", gpus=1), attempt=1) for i in range(2)]
    off_gpu = backend.submit(call("cng", "getenv", "CUDA_VISIBLE_DEVICES"), attempt=1)
    done = results(drain(backend))
    assert sorted(done[job_id].value for job_id in on_gpu) == ["0", "1"]
    assert done[off_gpu].value == ""


# -- walltime, cancel, shutdown ------------------------------------------------------------------


def test_walltime_terminates_executable(backend: LocalBackend) -> None:
    _, result = run_one(backend, exe("long", ["sleep", "30"], walltime=0.5))
    assert not result.ok
    assert result.failure is not None and result.failure.kind == "walltime"
    assert result.signal == 15 and result.failure.signal == 15
    assert "walltime" in result.failure.message
    assert 0.4 <= result.ended - result.started < 3.0


def test_walltime_kills_process_group_that_ignores_sigterm(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(kill_grace=0.5)
    task = exe("stubborn", [sys.executable, "-c", STUBBORN], walltime=1.5)
    job_id = backend.submit(task, attempt=1)
    child_pid = int(wait_for_file(backend.campaign_dir / "w/stubborn/child.pid", backend))
    assert process_alive(child_pid)
    result = results(drain(backend))[job_id]
    assert result.failure is not None and result.failure.kind == "walltime"
    assert result.signal == 9 and result.failure.signal == 9
    assert result.ended - result.started >= 1.9, "SIGKILL comes only after the kill grace"
    assert result.ended - result.started < 5.0
    assert wait_gone(child_pid), "the task's child was killed with its process group"


def test_walltime_stops_children_that_outlive_the_leader(backend: LocalBackend) -> None:
    # The shell dies of SIGTERM at once; its background child ignores SIGTERM and would linger.
    script = '(trap "" TERM; exec sleep 60) & echo $! > child.pid.tmp && mv child.pid.tmp child.pid; sleep 60'
    job_id = backend.submit(exe("leader", ["sh", "-c", script], walltime=0.5), attempt=1)
    child_pid = int(wait_for_file(backend.campaign_dir / "w/leader/child.pid", backend))
    assert process_alive(child_pid)
    result = results(drain(backend))[job_id]
    assert result.failure is not None and result.failure.kind == "walltime"
    assert wait_gone(child_pid, 2.0), "a walltime stops the task's whole process group"


def test_walltime_of_callable(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(python_workers=1)
    _, result = run_one(backend, call("sleepy", "nap", 30, walltime=0.5))
    assert not result.ok
    assert result.failure is not None and result.failure.kind == "walltime"
    assert result.ended - result.started < 3.0
    _, result = run_one(backend, call("next", "add", 20, 22))
    assert result.ok and result.value == 42


def test_cancel_waiting_and_running(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(cores=1)
    running = backend.submit(exe("blocker", PID_THEN_SLEEP), attempt=1)
    waiting = backend.submit(exe("waiter", ["true"]), attempt=1)
    pid = int(wait_for_file(backend.campaign_dir / "w/blocker/pid", backend))
    backend.cancel(waiting)
    events = backend.wait(0.0)
    done = results(events)
    assert done[waiting].failure is not None and done[waiting].failure.kind == "canceled"
    assert done[waiting].started is None
    assert backend.active_jobs() == 1
    began = time.monotonic()
    backend.cancel(running)
    events += drain(backend)
    assert time.monotonic() - began < 3.0
    done = results(events)
    assert done[running].failure is not None and done[running].failure.kind == "canceled"
    assert not done[running].ok
    assert waiting not in started_order(events)
    assert not (backend.campaign_dir / "w/waiter").exists()
    assert wait_gone(pid)


def test_cancel_running_callable(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(python_workers=1)
    job_id = backend.submit(call("c", "nap", 30), attempt=1)
    wait_until(backend, lambda events: any(e.kind == "started" for e in events))
    backend.cancel(job_id)
    result = results(drain(backend, 5))[job_id]
    assert result.failure is not None and result.failure.kind == "canceled"
    _, result = run_one(backend, call("again", "add", 1, 1))
    assert result.value == 2


def test_shutdown_stops_running_jobs(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(kill_grace=0.5)
    backend.submit(exe("long", PID_THEN_SLEEP), attempt=1)
    backend.submit(call("longcall", "nap", 30), attempt=1)
    pid = int(wait_for_file(backend.campaign_dir / "w/long/pid", backend))
    began = time.monotonic()
    backend.shutdown(cancel_running=True)
    assert time.monotonic() - began < 0.5 + 3.0
    assert backend.active_jobs() == 0
    assert wait_gone(pid)


# -- scheduling order ----------------------------------------------------------------------------


def _backfill_run(backend: LocalBackend, big_cores: int, smalls: int = 6) -> tuple[list[str], str, str, dict[str, TaskResult]]:
    long_id = backend.submit(exe("long", ["sleep", "1.5"], cores=1), attempt=1)
    big_id = backend.submit(exe("big", ["sleep", "0.05"], cores=big_cores), attempt=1)
    small_ids = [backend.submit(exe(f"s{i}", ["sleep", "0.05"], cores=1), attempt=1) for i in range(smalls)]
    events = drain(backend)
    order = started_order(events)
    done = results(events)
    assert all(result.ok for result in done.values())
    assert order[0] == long_id
    before_big = [job for job in order[: order.index(big_id)] if job in small_ids]
    return before_big, long_id, big_id, done


def test_backfill_is_bounded_by_max_bypass(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(cores=2, max_bypass=2)
    before_big, long_id, big_id, done = _backfill_run(backend, big_cores=2)
    # Small tasks backfill while the big one waits, but only max_bypass of them; then the big one reserves.
    assert before_big == ["s0#1", "s1#1"]
    assert done[big_id].started >= done[long_id].ended


def test_backfill_bound_holds_when_several_start_at_once(make_backend: Callable[..., LocalBackend]) -> None:
    # Three cores are free while the 4-core task waits: the bound must hold within one scheduling pass.
    backend = make_backend(cores=4, max_bypass=2)
    before_big, long_id, big_id, done = _backfill_run(backend, big_cores=4)
    assert before_big == ["s0#1", "s1#1"]
    assert done[big_id].started >= done[long_id].ended


def test_no_backfill_with_max_bypass_zero(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(cores=2, max_bypass=0)
    before_big, long_id, big_id, done = _backfill_run(backend, big_cores=2)
    assert before_big == []
    assert all(done[f"s{i}#1"].started >= done[big_id].ended for i in range(6))


def test_higher_priority_starts_first(make_backend: Callable[..., LocalBackend]) -> None:
    backend = make_backend(cores=1)
    blocker = backend.submit(exe("blocker", ["sleep", "0.3"]), attempt=1)
    wait_until(backend, lambda events: blocker in started_order(events))
    low = backend.submit(exe("low", ["true"], priority=0), attempt=1)
    mid = backend.submit(exe("mid", ["true"], priority=1), attempt=1)
    high = backend.submit(exe("high", ["true"], priority=5), attempt=1)
    order = started_order(drain(backend))
    assert order == [high, mid, low]


# -- restart -------------------------------------------------------------------------------------


def test_reattach_stops_leftovers_and_reports_all_lost(make_backend: Callable[..., LocalBackend], tmp_path: Path) -> None:
    campaign = tmp_path / "shared-campaign"
    old = make_backend(campaign)
    job_id = old.submit(exe("left", PID_THEN_SLEEP), attempt=1)
    pid = int(wait_for_file(campaign / "w/left/pid", old))
    assert process_alive(pid)

    new = make_backend(campaign)
    assert new.reattach({"left": exe("left", PID_THEN_SLEEP)}) == set()
    assert wait_gone(pid), "reattach killed what the previous coordinator left running"
    result = results(drain(old, 5))[job_id]
    assert result.signal == 9 and result.failure is not None and result.failure.kind == "signal"

    # The new backend kept its own workers and runs tasks normally.
    ids = [new.submit(call("after", "add", 1, 2), attempt=1), new.submit(exe("after-exe", ["true"]), attempt=1)]
    done = results(drain(new))
    assert all(done[job_id].ok for job_id in ids), done
    assert done[ids[0]].value == 3


# -- calls handed to a busy worker ahead of time -----------------------------------------------


def test_calls_handed_ahead_never_overlap_on_one_worker_and_report_real_starts(
    make_backend: Callable[..., LocalBackend], tmp_path: Path,
) -> None:
    backend = make_backend(cores=1, python_workers=1)
    for index in range(4):
        backend.submit(call(f"c{index}", "nap", 0.05), attempt=1)
    events = drain(backend)
    starts = {event.job_id: event.time for event in events if event.kind == "started"}
    done = results(events)
    assert [done[f"c{i}#1"].ok for i in range(4)] == [True] * 4
    spans = sorted((done[job].started, done[job].ended) for job in done)
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:])), spans
    for job, result in done.items():
        assert starts[job] <= result.started + 0.05, "the start is reported when the call really begins"


def test_canceling_a_call_handed_ahead_means_it_never_runs(
    make_backend: Callable[..., LocalBackend], tmp_path: Path,
) -> None:
    backend = make_backend(cores=1, python_workers=1)
    marker = tmp_path / "ran"
    first = backend.submit(call("first", "nap", 0.3), attempt=1)
    second = backend.submit(call("second", "touch_after", str(marker), 0.0), attempt=1)
    wait_until(backend, lambda events: any(e.kind == "started" and e.job_id == first for e in events))
    backend.wait(0.0)  # the second call is handed to the busy worker now
    backend.cancel(second)
    done = results(drain(backend))
    assert done[first].ok
    assert done[second].failure is not None and done[second].failure.kind == "canceled"
    assert not marker.exists()


def test_call_handed_ahead_of_one_killed_at_walltime_still_runs(
    make_backend: Callable[..., LocalBackend], tmp_path: Path,
) -> None:
    backend = make_backend(cores=1, python_workers=1)
    marker = tmp_path / "ran"
    slow = backend.submit(call("slow", "nap", 30, walltime=0.3), attempt=1)
    after = backend.submit(call("after", "touch_after", str(marker), 0.0), attempt=1)
    done = results(drain(backend))
    assert done[slow].failure is not None and done[slow].failure.kind == "walltime"
    assert done[after].ok and marker.exists()


def test_a_call_handed_to_a_worker_killed_while_idle_runs_on_a_fresh_worker(
    make_backend: Callable[..., LocalBackend],
) -> None:
    backend = make_backend(cores=1, python_workers=1)
    _, result = run_one(backend, call("first", "pid"))
    os.kill(result.value, signal.SIGKILL)  # from outside, while the worker waits for its next call
    assert wait_reapable(result.value)
    events, result = run_one(backend, call("next", "pid"))  # handed to the dead worker before its death is seen
    assert result.ok and result.value != os.getpid()
    assert [event.kind for event in events if event.job_id == "next#1"].count("finished") == 1


def test_a_call_handed_ahead_to_a_worker_killed_mid_call_runs_on_a_fresh_worker(
    make_backend: Callable[..., LocalBackend],
) -> None:
    backend = make_backend(cores=1, python_workers=1)
    _, result = run_one(backend, call("first", "pid"))
    worker = result.value
    busy = backend.submit(call("busy", "nap", 30), attempt=1)
    wait_until(backend, lambda events: any(e.kind == "started" and e.job_id == busy for e in events))
    os.kill(worker, signal.SIGKILL)
    assert wait_gone(worker)
    after = backend.submit(call("after", "pid"), attempt=1)  # handed ahead to the busy (dead) worker
    done = results(drain(backend))
    assert done[busy].failure is not None and done[busy].failure.kind == "signal"
    assert done[busy].failure.message == "the worker running tasks_for_tests:nap was killed by SIGKILL (Killed)"
    assert done[after].ok and done[after].value != worker


def test_a_call_may_save_and_restore_signal_handlers_as_openmmtools_does(backend: LocalBackend) -> None:
    _, result = run_one(backend, call("handlers", "save_and_restore_termination_handlers"))
    assert result.ok, result.failure
    assert result.value == ["SIGABRT", "SIGINT", "SIGTERM"]
