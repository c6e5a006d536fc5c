"""Tests of the ``flux`` backend against a real Flux instance (two brokers), no mocks.

The instance comes from the session fixture ``flux_instance`` (tests/conftest.py);
where no ``flux`` command is on PATH these tests are skipped with a message that
says how to get one. Tasks are tiny: ``sh -c``, ``sleep`` that is canceled or
killed at a walltime of one second, and functions of :mod:`tasks_for_tests`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mummi_like import plugins
from mummi_like.backends.base import UnsatisfiableRequest
from mummi_like.backends.flux import FluxBackend, FluxConfig, FluxUnavailable, urgency
from mummi_like.store import Store, StoreError
from mummi_like.tasks import TaskState
from conftest import running_flux_instance
from test_local import call, drain, exe, results, run_one, wait_until

HERE = Path(__file__).parent


@pytest.fixture
def backend(flux_instance: str, tmp_path: Path) -> Iterator[FluxBackend]:
    with FluxBackend(FluxConfig(), tmp_path, python_path=[HERE]) as started:
        yield started


def flux_jobs(job_id: str, fields: str) -> str:
    """One job as `flux jobs` shows it, e.g. ``fields="{ncores} {ntasks}"``."""
    return subprocess.run(["flux", "jobs", "-n", "-o", fields, job_id], capture_output=True, text=True,
                          check=True).stdout.strip()


# -- plain executables -----------------------------------------------------------------------------


@pytest.mark.flux
def test_executable_runs_with_its_output_captured_and_an_f58_job_id(backend: FluxBackend, tmp_path: Path) -> None:
    events, result = run_one(backend, exe("hello", ["sh", "-c", "echo hello; echo oops >&2"]))
    job_id = result.job_id
    assert job_id.startswith("f") and int(flux_jobs(job_id, "{id.dec}")) > 0, "an F58 id Flux itself resolves"
    assert [event.kind for event in events] == ["started", "finished"]
    assert result.ok and result.exit_code == 0 and result.failure is None
    assert result.started is not None and result.ended is not None and result.started <= result.ended
    assert Path(result.stdout).read_text() == "hello\n" and Path(result.stderr).read_text() == "oops\n"
    assert result.stdout == str(tmp_path / "w" / "hello" / "stdout.txt")
    assert flux_jobs(job_id, "{name}") == "hello#1"


@pytest.mark.flux
def test_exit_code_and_signal_are_reported_like_the_local_backend(backend: FluxBackend) -> None:
    exited = backend.submit(exe("exits", ["sh", "-c", "exit 3"]), attempt=1)
    killed = backend.submit(exe("killed", ["sh", "-c", "kill -9 $$"]), attempt=1)
    missing = backend.submit(exe("missing", ["/no/such/program"]), attempt=1)
    ended = results(drain(backend))
    assert ended[exited].failure.kind == "exit" and ended[exited].exit_code == 3
    assert ended[killed].failure.kind == "signal" and ended[killed].signal == signal.SIGKILL
    assert "SIGKILL" in ended[killed].failure.message
    assert ended[missing].failure.kind == "exit" and ended[missing].exit_code == 127
    assert "/no/such/program: No such file or directory" in ended[missing].failure.message


@pytest.mark.flux
def test_environment_names_the_campaign_task_and_job(backend: FluxBackend, tmp_path: Path) -> None:
    script = 'echo "$MUMMI_LIKE_CAMPAIGN $MUMMI_LIKE_TASK $MUMMI_LIKE_JOB_ID $OMP_NUM_THREADS $EXTRA"'
    job_id = backend.submit(exe("env", ["sh", "-c", script], env={"EXTRA": "yes"}, cores=2), attempt=3)
    result = results(drain(backend))[job_id]
    assert Path(result.stdout).read_text().split() == [str(tmp_path), "env#3", job_id, "2", "yes"]


# -- resources -------------------------------------------------------------------------------------


@pytest.mark.flux
def test_capacity_matches_flux_resource_list(backend: FluxBackend) -> None:
    listing = subprocess.run(["flux", "resource", "list", "-s", "up", "-n", "-o", "{nnodes} {ncores} {ngpus}"],
                             capture_output=True, text=True, check=True).stdout.split()
    nodes, cores, gpus = map(int, listing)
    capacity = backend.capacity()
    assert (capacity.nodes, capacity.nodes * capacity.cores_per_node, capacity.nodes * capacity.gpus_per_node) == (
        nodes, cores, gpus)


@pytest.mark.flux
def test_cores_and_mpi_ranks_become_flux_tasks(backend: FluxBackend) -> None:
    two_cores = backend.submit(exe("two", ["true"], cores=2), attempt=1)
    ranks = backend.submit(exe("mpi", ["sh", "-c", "echo rank $FLUX_TASK_RANK"], mpi=True, ranks=2, cores=2, nodes=2),
                           attempt=1)
    ended = results(drain(backend))
    assert ended[two_cores].ok and flux_jobs(two_cores, "{ncores} {ntasks} {nnodes}") == "2 1 1"
    assert ended[ranks].ok and flux_jobs(ranks, "{ncores} {ntasks} {nnodes}") == "2 2 2"
    assert sorted(Path(ended[ranks].stdout).read_text().splitlines()) == ["rank 0", "rank 1"], "Flux launched the ranks"


@pytest.mark.flux
def test_requests_the_instance_can_never_satisfy_are_refused_at_submit(backend: FluxBackend) -> None:
    total = backend.capacity().nodes * backend.capacity().cores_per_node
    with pytest.raises(UnsatisfiableRequest, match=rf"{total + 1} cores"):
        backend.submit(exe("huge", ["true"], cores=total + 1), attempt=1)
    with pytest.raises(UnsatisfiableRequest, match="must be an MPI executable"):
        backend.submit(exe("spread", ["true"], nodes=2), attempt=1)
    assert backend.active_jobs() == 0


# -- stopping --------------------------------------------------------------------------------------


@pytest.mark.flux
def test_cancel_stops_a_running_job(backend: FluxBackend) -> None:
    job_id = backend.submit(exe("long", ["sleep", "30"]), attempt=1)
    events = wait_until(backend, lambda new: any(event.kind == "started" for event in new))
    began = time.monotonic()
    backend.cancel(job_id)
    result = results(events + drain(backend))[job_id]
    assert result.failure.kind == "canceled" and result.failure.message == "canceled while running"
    assert time.monotonic() - began < 10


@pytest.mark.flux
def test_urgency_follows_priority_and_a_held_job_cancels_before_it_starts(backend: FluxBackend) -> None:
    assert (urgency(0), urgency(5), urgency(-16), urgency(100), urgency(-100)) == (16, 21, 0, 31, 0)
    held = backend.submit(exe("held", ["true"], priority=-16), attempt=1)
    assert flux_jobs(held, "{urgency} {state}") == "0 SCHED"
    backend.cancel(held)
    events = drain(backend)
    assert [event.kind for event in events] == ["finished"]
    failure = events[0].result.failure
    assert failure.kind == "canceled" and failure.message == "canceled before it started"


@pytest.mark.flux
def test_walltime_kills_the_job(backend: FluxBackend) -> None:
    _, result = run_one(backend, exe("slow", ["sleep", "30"], walltime=1))
    assert result.failure.kind == "walltime" and "walltime of 1 s" in result.failure.message
    assert result.ended - result.started < 10


@pytest.mark.flux
def test_submit_rate_holds_the_pace_beyond_a_burst(flux_instance: str, tmp_path: Path) -> None:
    with FluxBackend(FluxConfig(submit_rate=4, submit_chunk=2), tmp_path) as backend:
        began = time.monotonic()
        for index in range(4):
            backend.submit(exe(f"t{index}", ["true"]), attempt=1)
        assert time.monotonic() - began >= 0.45, "two jobs at once, then one every 0.25 s"
        drain(backend)


# -- Python callables ------------------------------------------------------------------------------


@pytest.mark.flux
def test_callable_returns_its_value_and_reports_exceptions_with_their_types(backend: FluxBackend) -> None:
    added = backend.submit(call("add", "add", 2, 3), attempt=1)
    raised = backend.submit(call("fail", "fail", "boom"), attempt=1)
    variable = backend.submit(call("getenv", "getenv", "MUMMI_LIKE_TASK"), attempt=2)
    died = backend.submit(call("die", "die", 4), attempt=1)
    ended = results(drain(backend))
    assert ended[added].ok and ended[added].value == 5 and ended[added].stdout is None
    assert ended[raised].failure.kind == "exception" and "boom" in ended[raised].failure.message
    assert ended[raised].failure.exception_types[0] == "builtins.ValueError"
    assert "ValueError: boom" in Path(ended[raised].stderr).read_text(), "the traceback is in stderr.txt"
    assert ended[variable].value == "getenv#2"
    assert ended[died].failure.kind == "exit" and ended[died].exit_code == 4
    assert "without a result" in ended[died].failure.message


@pytest.mark.flux
def test_a_retried_callable_never_reads_the_result_of_an_earlier_attempt(backend: FluxBackend) -> None:
    task = call("again", "add", 1, 1)
    assert run_one(backend, task)[1].value == 2
    died = backend.submit(task.model_copy(update={"payload": call("again", "die", 5).payload}), attempt=2)
    assert results(drain(backend))[died].failure.exit_code == 5


# -- restart ---------------------------------------------------------------------------------------


@pytest.mark.flux
def test_reattach_follows_running_and_finished_jobs_and_cancels_unrecorded_ones(
        flux_instance: str, tmp_path: Path) -> None:
    tasks = {name: exe(name, argv) for name, argv in (
        ("running", ["sleep", "2"]), ("finished", ["sh", "-c", "exit 7"]), ("canceled", ["sleep", "30"]),
        ("renamed", ["true"]), ("unrecorded", ["sleep", "30"]))}
    first = FluxBackend(FluxConfig(), tmp_path)
    first.start()
    ids = {name: first.submit(task, attempt=1) for name, task in tasks.items()}
    wait_until(first, lambda events: ids["finished"] in results(events))
    first.shutdown(cancel_running=False)  # as if killed: the jobs go on in Flux

    with FluxBackend(FluxConfig(), tmp_path) as second:
        recorded = {ids[name]: tasks[name] for name in ("running", "finished", "canceled")}
        recorded[ids["renamed"]] = exe("another-task", ["true"])  # an id Flux knows, but for another job
        recorded["fBogus1"] = exe("bogus", ["true"])  # an id Flux does not know
        assert second.reattach(recorded) == {ids["running"], ids["finished"], ids["canceled"]}
        second.cancel(ids["canceled"])
        events = drain(second)
    ended = results(events)
    assert set(ended) == {ids["running"], ids["finished"], ids["canceled"]}
    assert ended[ids["finished"]].failure.exit_code == 7, "the real result of a job that ended meanwhile"
    assert ended[ids["running"]].ok
    assert ended[ids["canceled"]].failure.kind == "canceled"
    assert {ids["running"], ids["finished"]} <= {event.job_id for event in events if event.kind == "started"}
    deadline = time.monotonic() + 10
    while flux_jobs(ids["unrecorded"], "{status}") != "CANCELED":
        assert time.monotonic() < deadline, "a job of the campaign that no coordinator recorded is canceled"
        time.sleep(0.1)


CAMPAIGN = """
    name: fluxy
    backend: {{plugin: flux}}
    scales:
      - name: slow
        plugin: command
        config:
          argv: ["sh", "-c", "echo {{task_id}} >> {log}; sleep {{seconds}}"]
          parameters: {{seconds: [1, 2, 5, 6]}}
      - name: quick
        plugin: command
        depends_on: [slow]
        config:
          argv: ["sh", "-c", "echo {{task_id}} >> {log}"]
          parameters: {{i: [1, 2]}}
    """


def store_tasks(directory: Path) -> dict[str, Any]:
    """Task id -> record, or nothing while the coordinator has not created the store."""
    try:
        with Store.open(directory, readonly=True) as store:
            return {record.id: record for record in store.tasks()}
    except StoreError:
        return {}


@pytest.mark.flux
@pytest.mark.slow
def test_kill_9_then_resume_reattaches_instead_of_resubmitting(flux_instance: str, tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    spec = tmp_path / "campaign.yaml"
    spec.write_text(textwrap.dedent(CAMPAIGN.format(log=log)))
    directory = tmp_path / "run"
    cli = [sys.executable, "-m", "mummi_like.cli"]
    coordinator = subprocess.Popen([*cli, "run", spec, "--dir", directory, "--quiet"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while sum(record.state is TaskState.RUNNING for record in store_tasks(directory).values()) < 4:
        assert coordinator.poll() is None, coordinator.stderr.read()
        assert time.monotonic() < deadline, "the four slow tasks did not all start"
        time.sleep(0.05)
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()
    coordinator.stderr.close()
    before = {task_id: record.job_id for task_id, record in store_tasks(directory).items()
              if record.state is TaskState.RUNNING}
    # Let the two short ones end while no coordinator runs; the two long ones still run at resume.
    short = [task_id for task_id, record in store_tasks(directory).items()
             if record.spec.labels.get("param.seconds") in ("1", "2")]
    assert len(short) == 2
    for task_id in short:
        while flux_jobs(before[task_id], "{state}") != "INACTIVE":
            assert time.monotonic() < deadline + 30
            time.sleep(0.1)

    resumed = subprocess.run([*cli, "resume", directory, "--quiet"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr

    after = store_tasks(directory)
    assert {record.state for record in after.values()} == {TaskState.DONE}
    assert {task_id: after[task_id].job_id for task_id in before} == before, "the running jobs were taken back"
    assert all(after[task_id].attempt == 1 for task_id in before), "and not submitted again"
    executions = log.read_text().splitlines()
    assert sorted(executions) == sorted(after), "every task ran exactly once"



# -- faults from outside the campaign --------------------------------------------------------------


# Each task logs its id and takes a second; a held one then waits while the file `hold` exists.
OUTSIDE = """
    name: watched
    backend: {{plugin: flux}}
    scales:
      - name: work
        plugin: command
        config:
          argv: ["sh", "-c", "echo {{task_id}} >> {log}; sleep 1; if [ {{held}} = 1 ]; then while [ -e {hold} ]; do sleep 0.1; done; fi"]
          parameters: {{held: {held}}}
    """
CLI = [sys.executable, "-m", "mummi_like.cli"]


def start_campaign(tmp_path: Path, held: list[int]) -> tuple[Path, Path, subprocess.Popen[str]]:
    """A coordinator running one task per entry of ``held`` (1: held while ``tmp_path/hold`` exists) on FLUX_URI."""
    log, spec, directory, hold = (tmp_path / name for name in ("executions.log", "campaign.yaml", "run", "hold"))
    hold.touch()
    spec.write_text(textwrap.dedent(OUTSIDE.format(log=log, hold=hold, held=held)))
    coordinator = subprocess.Popen([*CLI, "run", spec, "--dir", directory, "--quiet"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return log, directory, coordinator


def wait_for_states(directory: Path, coordinator: subprocess.Popen[str], wanted: dict[str, TaskState],
                    timeout: float = 60) -> dict[str, Any]:
    """Wait until each task of ``wanted`` is in its state; the tasks' records then."""
    deadline = time.monotonic() + timeout
    while True:
        tasks = store_tasks(directory)
        if tasks and all(tasks[task_id].state is state for task_id, state in wanted.items()):
            return tasks
        assert coordinator.poll() is None, coordinator.communicate()[1]
        assert time.monotonic() < deadline, f"tasks never reached {wanted}: {tasks}"
        time.sleep(0.05)


@pytest.mark.flux
def test_a_job_canceled_with_flux_cancel_ends_its_task_canceled_saying_so_and_the_rest_finish(
        flux_instance: str, tmp_path: Path) -> None:
    log, directory, coordinator = start_campaign(tmp_path, [1, 0, 0, 0])
    try:
        running = wait_for_states(directory, coordinator, {"work.0": TaskState.RUNNING})
        subprocess.run(["flux", "cancel", "-m", "operator needs the node", running["work.0"].job_id], check=True)
        _, stderr = coordinator.communicate(timeout=60)
    finally:
        coordinator.kill()
        coordinator.wait()
    assert coordinator.returncode == 1, stderr  # finished, with a task not done
    after = store_tasks(directory)
    assert {task_id: record.state for task_id, record in after.items()} == {
        "work.0": TaskState.CANCELED, "work.1": TaskState.DONE, "work.2": TaskState.DONE, "work.3": TaskState.DONE}
    canceled = after["work.0"]
    assert (canceled.attempt, canceled.failures) == (1, 0), "an operator's cancel is not a failure to retry"
    assert canceled.reason == ("canceled while running from outside the campaign (`flux cancel`: "
                               "operator needs the node)")
    assert sorted(log.read_text().split()) == ["work.0", "work.1", "work.2", "work.3"], "each ran once"
    status = subprocess.run([*CLI, "status", directory], capture_output=True, text=True, timeout=60, check=True)
    assert f"canceled work.0: {canceled.reason}" in status.stdout


@pytest.mark.flux
@pytest.mark.slow
@pytest.mark.parametrize("how", [signal.SIGTERM, signal.SIGKILL], ids=["shut-down", "killed"])
def test_a_flux_instance_that_goes_away_stops_the_campaign_resumably_and_a_new_one_finishes_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: signal.Signals) -> None:
    # An instance of this test's own: SIGTERM shuts it down as `flux shutdown` would (it cancels its jobs first),
    # SIGKILL makes its brokers vanish. The session instance other tests use is left alone.
    (tmp_path / "first").mkdir()
    with running_flux_instance(tmp_path / "first") as (first, uri):
        monkeypatch.setenv("FLUX_URI", uri)
        log, directory, coordinator = start_campaign(tmp_path, [0, 1, 1, 0])
        try:
            wait_for_states(directory, coordinator, {"work.0": TaskState.DONE, "work.1": TaskState.RUNNING,
                                                     "work.2": TaskState.RUNNING, "work.3": TaskState.DONE})
            os.killpg(first.pid, how)
            began = time.monotonic()
            _, stderr = coordinator.communicate(timeout=60)
        finally:
            coordinator.kill()
            coordinator.wait()
    assert time.monotonic() - began < 30, "the coordinator noticed the instance was gone, and did not hang"
    assert coordinator.returncode == 3, stderr  # stopped early, resumable
    assert "Flux instance" in stderr and f"mummi-like resume {directory}" in stderr and "Traceback" not in stderr
    stopped = store_tasks(directory)
    assert {stopped[t].state for t in ("work.1", "work.2")} == {TaskState.RETRYING}, "the lost jobs wait to rerun"
    assert all(record.failures == 0 for record in stopped.values()), "losing the instance is no task's failure"

    (tmp_path / "second").mkdir()
    with running_flux_instance(tmp_path / "second") as (_, uri):
        monkeypatch.setenv("FLUX_URI", uri)
        log.write_text("")  # what runs from here on
        (tmp_path / "hold").unlink()
        resumed = subprocess.run([*CLI, "resume", directory, "--quiet"], capture_output=True, text=True, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    after = store_tasks(directory)
    assert {record.state for record in after.values()} == {TaskState.DONE}
    assert sorted(log.read_text().split()) == ["work.1", "work.2"], "only the lost tasks ran again, once each"
    with Store.open(directory, readonly=True) as store:
        for task_id, record in after.items():
            assert record.failures == 0
            assert [state for state, *_ in store.history(task_id)].count(TaskState.DONE) == 1


# -- without Flux: these need no broker, so they run everywhere ------------------------------------


def test_is_registered_as_a_backend_plugin() -> None:
    assert plugins.load("backend", "flux") is FluxBackend


def test_start_without_the_bindings_says_what_to_do(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "flux", None)  # `import flux` now fails, as where flux-core is not installed
    with pytest.raises(FluxUnavailable, match=r"needs flux-core's Python bindings .*`flux batch`"):
        FluxBackend(FluxConfig(), tmp_path).start()



def test_walltime_is_capped_by_the_allocation_and_its_end_is_not_the_tasks_failure(tmp_path: Path) -> None:
    """Needs no broker: these rules depend only on the instance's expiration time."""
    backend = FluxBackend(FluxConfig(stop_before=10), tmp_path)
    assert backend._duration(600.0) == 600.0 and backend.stop_reason() is None  # no expiration: no limit
    backend._expiration = time.time() + 100
    assert 95 <= backend._duration(600.0) <= 100  # Flux would refuse a job outliving its instance
    assert backend._duration(30.0) == 30.0 and backend._duration(None) is None
    job = type("Job", (), {"task": exe("t", ["true"], walltime=600.0), "started": 1000.0})()
    assert backend._stopped_by_allocation(job, ended=1050.0)  # ran 50 s of its 600 s
    assert not backend._stopped_by_allocation(job, ended=1600.0)  # its own walltime
    backend._expiration = time.time() + 5
    assert "ends in less than 10 s" in backend.stop_reason()
