"""Task faults in a real campaign: each is classified, retried per its policy, shown in `status`, and nothing hangs.

One campaign runs every fault kind side by side with healthy tasks, through
the `mummi-like` command on the real local backend: programs that exit
non-zero, segfault, exceed the file-size limit or write to a full device; Python
callables that raise, segfault their worker, get their worker killed from
outside (by this test, with SIGKILL), hang past their walltime, write to a full
device, or run OpenMM dynamics that diverge to NaN. Each fault's scale has its
own retry policy, and the table :data:`EXPECTED` says, per task, what the
campaign must make of it. Two more campaigns cover a streaming task killed
while it writes a frame (the coupling must take only complete frames), and a
coordinator whose own store cannot be written (a full disk).

Where a task's failed attempts were retried, their classification is read from
the history rows (``info.failure``); the final failure is read from the
record's exit code, signal and reason, which is what `status` shows (the store
keeps no kind for a final failure).

Classifications that may surprise, and why they are right:

* a worker killed from outside is a ``signal`` failure (SIGKILL) that counts
  against the retries, not ``lost``: the backend cannot tell an OOM killer or
  an operator from the task's own doing;
* a write past the file-size limit is a ``signal`` failure (SIGXFSZ), so a
  policy that lists ``exit_codes`` does not retry it, as for any signal;
* a program whose disk is full fails by its own exit code (``head`` exits 1);
  "No space left on device" is in its stderr, which `status` shows under it;
* a callable stopped at its walltime records signal 15: its worker's SIGTERM.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest

from mummi_like import cli
from mummi_like.backends.environment import CAMPAIGN_VARIABLE
from mummi_like.campaign.loop import Campaign
from mummi_like.store import Store
from mummi_like.streams.tailer import read_frame
from mummi_like.tasks import TaskState

HERE = Path(__file__).parent
CLI = [sys.executable, "-m", "mummi_like.cli"]
#: Longest the fault campaign may take; it takes about ten seconds on an idle two-core machine.
CAMPAIGN_TIMEOUT = 120.0

FAULTS = """
name: faults
python_path: ["."]
backend: {config: {cores: 2, kill_grace: 1}}
scales:
  - name: steady-call         # healthy callables beside the faults, on the same worker pool
    plugin: function
    config: {function: "fault_tasks:healthy", parameters: {i: [0, 1, 2, 3, 4, 5]}}
  - name: steady-program      # healthy programs
    plugin: command
    config: {argv: ["sh", "-c", "echo run >> attempts"], parameters: {i: [0, 1, 2, 3]}}
  - name: exit                # code 3 is worth retrying (it fails twice, then succeeds); code 4 is not
    plugin: command
    config:
      argv: ["sh", "-c", "echo run >> attempts; test $(wc -l < attempts) -gt 2 || exit {code}"]
      parameters: {code: [3, 4]}
      retry: {max_retries: 2, exit_codes: [3]}
  - name: segfault            # a program that reads address 0
    plugin: command
    config:
      argv: [PYTHON, "-c", 'open("attempts", "a").write("run\\n"); import ctypes; ctypes.string_at(0)']
      retry: {max_retries: 1}
  - name: file-too-big        # a write past the file-size limit (RLIMIT_FSIZE, as a quota sets it)
    plugin: command
    config:
      argv: ["sh", "-c", "echo run >> attempts; ulimit -f 1; exec head -c 4096 /dev/zero > big"]
      retry: {max_retries: 2, exit_codes: [1]}   # lists exit codes only, so a signal is not retried
  - name: disk-full           # a program whose write fails with ENOSPC (/dev/full refuses every write)
    plugin: command
    config:
      argv: ["sh", "-c", "echo run >> attempts; exec head -c 4096 /dev/zero > /dev/full"]
      retry: {max_retries: 1, exit_codes: [1]}
  - name: exception           # OSError is worth retrying (it fails once, then succeeds); ValueError is not
    plugin: function
    config:
      function: "campaign_tasks:flaky"
      kwargs: {counter: calls, failures: 1}
      parameters: {error: [OSError, ValueError]}
      retry: {max_retries: 2, exceptions: [OSError]}
  - name: disk-full-call      # a callable whose write fails with ENOSPC
    plugin: function
    config:
      function: "fault_tasks:fill_disk"
      retry: {max_retries: 1, exceptions: [OSError]}
  - name: worker-crash        # a callable that segfaults its worker once, and one that always does
    plugin: function
    config:
      function: "fault_tasks:crash_worker"
      parameters: {crashes: [1, 9]}
      retry: {max_retries: 1}
  - name: worker-killed       # a callable whose worker this test kills with SIGKILL
    plugin: function
    config:
      function: "fault_tasks:wait_to_be_killed"
      kwargs: {timeout: 60}
      retry: {max_retries: 1}
  - name: hang                # a program that outlives its walltime, retried since on_walltime is set
    plugin: command
    config:
      argv: ["sleep", "60"]
      resources: {walltime: 0.5}
      retry: {max_retries: 1, on_walltime: true}
  - name: hang-call           # a callable that outlives its walltime, not retried since on_walltime is not set
    plugin: function
    config:
      function: "time:sleep"
      args: [60]
      resources: {walltime: 0.5}
      retry: {max_retries: 2}
  - name: diverge             # the chain-md task at twice its stable timestep: the dynamics turn NaN
    plugin: function
    config:
      function: "mummi_scales.generic.chain_md:run_chain"
      kwargs: {beads: 12, temperature: 300.0, timestep: 0.08, friction: 1.0, steps: 400, report_interval: 20,
               contact_cutoff: 0.6, seed: 1, platform: Reference}
      retry: {max_retries: 1, exceptions: [SimulationDiverged]}
"""


@dataclass(frozen=True)
class Expected:
    """What the campaign must make of one faulty task."""

    task: str
    retried_as: tuple[str, ...]
    """Failure kind of each attempt that was retried, in order."""
    state: TaskState
    runs: int
    """Attempts made, which is also how often the task's body ran."""
    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""
    """Part of the failure reason that `status` must show; empty for a task that ends done."""


EXPECTED = [
    Expected("exit.0", ("exit", "exit"), TaskState.DONE, 3, exit_code=0),
    Expected("exit.1", (), TaskState.FAILED, 1, exit_code=4, reason="sh exited with code 4"),
    Expected("segfault.0", ("signal",), TaskState.FAILED, 2, signal=11,
             reason="was killed by SIGSEGV (Segmentation fault)"),
    Expected("file-too-big.0", (), TaskState.FAILED, 1, signal=25,
             reason="sh was killed by SIGXFSZ (File size limit exceeded)"),
    Expected("disk-full.0", ("exit",), TaskState.FAILED, 2, exit_code=1, reason="sh exited with code 1"),
    Expected("exception.0", ("exception",), TaskState.DONE, 2),
    Expected("exception.1", (), TaskState.FAILED, 1, reason="ValueError: planned failure 1 of 1"),
    Expected("disk-full-call.0", ("exception",), TaskState.FAILED, 2,
             reason="OSError: [Errno 28] No space left on device"),
    Expected("worker-crash.0", ("signal",), TaskState.DONE, 2),
    Expected("worker-crash.1", ("signal",), TaskState.FAILED, 2, signal=11,
             reason="the worker running fault_tasks:crash_worker was killed by SIGSEGV (Segmentation fault)"),
    Expected("worker-killed.0", ("signal",), TaskState.DONE, 2),
    Expected("hang.0", ("walltime",), TaskState.FAILED, 2, signal=15, reason="killed at its walltime of 0.5 s"),
    Expected("hang-call.0", (), TaskState.FAILED, 1, signal=15, reason="killed at its walltime of 0.5 s"),
    Expected("diverge.0", ("exception",), TaskState.FAILED, 2,
             reason="SimulationDiverged: the chain diverged (NaN positions) at step 140"),
]


def write_spec(folder: Path, body: str) -> Path:
    """A spec beside copies of the task modules, so that python_path stays inside the spec's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for module in ("fault_tasks.py", "campaign_tasks.py"):
        shutil.copy(HERE / module, folder / module)
    spec = folder / "campaign.yaml"
    spec.write_text(textwrap.dedent(body).replace("PYTHON", sys.executable))
    return spec


def kill_worker_from_outside(pid_file: Path, directory: Path, coordinator: subprocess.Popen[str]) -> int:
    """Wait for the pid a task publishes, check it is a worker of this campaign, and SIGKILL it; return the pid."""
    deadline = time.monotonic() + CAMPAIGN_TIMEOUT
    while not pid_file.exists():
        if coordinator.poll() is not None or time.monotonic() > deadline:
            pytest.fail(f"no worker published its pid in {pid_file}; coordinator exit status {coordinator.poll()}")
        time.sleep(0.05)
    pid = int(pid_file.read_text())
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert f"{CAMPAIGN_VARIABLE}={directory.resolve()}".encode() in environ, f"pid {pid} is not a worker of ours"
    os.kill(pid, signal.SIGKILL)
    return pid


@dataclass(frozen=True)
class FaultRun:
    """The fault campaign after its coordinator ended, and what `status` said about it."""

    directory: Path
    exit_status: int
    output: str
    seconds: float
    killed_pid: int
    status: str


@pytest.fixture(scope="module")
def faults(tmp_path_factory: pytest.TempPathFactory) -> FaultRun:
    """Run the fault campaign once with `mummi-like run`, killing one worker from outside meanwhile."""
    root = tmp_path_factory.mktemp("faults")
    spec = write_spec(root / "spec", FAULTS)
    directory = root / "run"
    began = time.monotonic()
    coordinator = subprocess.Popen([*CLI, "run", str(spec), "--dir", str(directory), "--quiet"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        killed = kill_worker_from_outside(
            directory / "tasks" / "worker-killed" / "worker-killed.0" / "worker.pid", directory, coordinator)
        output, _ = coordinator.communicate(timeout=CAMPAIGN_TIMEOUT)
    finally:
        if coordinator.poll() is None:  # a failed check above: stop it cleanly, which stops its tasks too
            coordinator.send_signal(signal.SIGTERM)
            coordinator.communicate(timeout=30)
    seconds = time.monotonic() - began
    status = subprocess.run([*CLI, "status", str(directory)], capture_output=True, text=True, timeout=60)
    assert status.returncode == 0, status.stderr
    return FaultRun(directory, coordinator.returncode, output, seconds, killed, status.stdout)


def test_the_fault_campaign_ends_with_the_failed_status_and_every_healthy_task_done(faults: FaultRun) -> None:
    assert faults.exit_status == cli.EXIT_FAILED, faults.output
    assert faults.seconds < CAMPAIGN_TIMEOUT
    with Store.open(faults.directory, readonly=True) as store:
        counts = store.counts()
    assert counts["steady-call"] == {"done": 6}
    assert counts["steady-program"] == {"done": 4}
    failed = sorted(expected.task for expected in EXPECTED if expected.state is TaskState.FAILED)
    assert sorted(line.split()[1] for line in faults.status.splitlines() if line.startswith("failed ")) == failed
    assert "coordinator not running" in faults.status


@pytest.mark.parametrize("expected", EXPECTED, ids=[expected.task for expected in EXPECTED])
def test_each_fault_is_classified_retried_per_its_policy_and_shown_in_status(
    faults: FaultRun, expected: Expected
) -> None:
    with Store.open(faults.directory, readonly=True) as store:
        record = store.get(expected.task)
        history = store.history(expected.task)
    retried_as = tuple(info["failure"] for state, _, _, info in history if state is TaskState.RETRYING)
    assert retried_as == expected.retried_as, history
    assert (record.state, record.attempt) == (expected.state, expected.runs)
    assert (record.exit_code, record.signal) == (expected.exit_code, expected.signal)
    attempts_file = faults.directory / record.spec.workdir / "attempts"
    if attempts_file.exists():  # the bodies that count their runs: each attempt ran exactly once
        assert len(attempts_file.read_text().splitlines()) == expected.runs
    shown = [line for line in faults.status.splitlines() if line.startswith(f"failed {expected.task} ")]
    if expected.state is TaskState.DONE:
        assert shown == []
    else:
        assert len(shown) == 1 and expected.reason in record.reason
        assert shown[0].startswith(f"failed {expected.task} after {expected.runs} attempt(s): {record.reason}")


def status_block(status: str, task: str) -> list[str]:
    """The failure line of ``task`` in `status` output and the stderr lines shown under it."""
    lines = status.splitlines()
    start = next(index for index, line in enumerate(lines) if line.startswith(f"failed {task} "))
    end = next((index for index in range(start + 1, len(lines)) if not lines[index].startswith("    ")), len(lines))
    return lines[start:end]


def test_a_full_disk_is_named_in_status_for_a_program_and_for_a_callable(faults: FaultRun) -> None:
    program = status_block(faults.status, "disk-full.0")
    assert any("No space left on device" in line for line in program[1:]), program
    callable_ = status_block(faults.status, "disk-full-call.0")
    assert "No space left on device" in callable_[0]


def test_a_callable_that_segfaults_loses_only_its_worker_and_the_next_attempt_runs_on_a_fresh_one(
    faults: FaultRun,
) -> None:
    with Store.open(faults.directory, readonly=True) as store:
        recovered = store.get("worker-crash.0")
        crashed = store.get("worker-crash.1")
    crashed_pids = (faults.directory / recovered.spec.workdir / "crashed.pids").read_text().split()
    assert recovered.value["runs"] == 2 and str(recovered.value["pid"]) not in crashed_pids
    assert len(set((faults.directory / crashed.spec.workdir / "crashed.pids").read_text().split())) == 2
    stderr = Path(crashed.stderr).read_text()  # the crashed worker's last words, kept as the task's stderr
    assert "Fatal Python error: Segmentation fault" in stderr and "in crash_worker" in stderr
    assert list((faults.directory / ".workers").iterdir()) == [], "dead workers leave no scratch files behind"


def test_a_worker_killed_from_outside_is_a_sigkill_and_its_task_runs_again(faults: FaultRun) -> None:
    with Store.open(faults.directory, readonly=True) as store:
        record = store.get("worker-killed.0")
        (retry,) = [info for state, _, _, info in store.history("worker-killed.0") if state is TaskState.RETRYING]
    assert retry == {"failure": "signal",
                     "message": "the worker running fault_tasks:wait_to_be_killed was killed by SIGKILL (Killed)"}
    runs = (faults.directory / record.spec.workdir / "attempts").read_text().split()
    assert runs[0] == str(faults.killed_pid) and runs[1] != runs[0]
    assert record.value == 2


def test_diverging_dynamics_fail_clearly_and_keep_the_frames_written_before(faults: FaultRun) -> None:
    with Store.open(faults.directory, readonly=True) as store:
        record = store.get("diverge.0")
    assert "timestep 0.08 ps" in record.reason and "NaN" in record.reason
    trajectory = faults.directory / record.spec.workdir / "trajectory.h5md"
    frames = [read_frame(trajectory, index) for index in range(6)]  # steps 20 ... 120, before it blew up at 140
    assert [frame.step for frame in frames] == [20, 40, 60, 80, 100, 120]
    assert all(np.isfinite(frame.positions).all() for frame in frames)
    with pytest.raises(IndexError, match="the file has 6 complete frames"):
        read_frame(trajectory, 6)


TORN = """
name: torn
python_path: ["."]
backend: {config: {cores: 2, kill_grace: 1}}
scales:
  - name: coarse
    plugin: function
    config:
      function: "fault_tasks:torn_stream"
      kwargs: {frames: 8, attempt_frames: 3}
      retry: {max_retries: 1}
  - name: fine
    plugin: chain-md
    config: {replicas: 0, beads: 12, steps: 40, report_interval: 20, platform: Reference}
couplings:
  - source: coarse
    target: fine
    selector: novelty
    feature: contact_map
    max_in_flight: 1
    max_total: 2
    interval: 0.1
    config: {min_samples: 0, latent_dim: null}
"""


def test_a_stream_writer_killed_mid_frame_feeds_the_coupling_only_complete_frames_and_runs_again(
    tmp_path: Path,
) -> None:
    spec = write_spec(tmp_path / "spec", TORN)
    directory = tmp_path / "run"
    summary = Campaign.from_text(spec.read_text(), spec, directory).run()
    assert summary.complete, (summary.counts, summary.failures)
    with Store.open(directory, readonly=True) as store:
        history = store.history("coarse.0")
        candidates = {(Path(row.id.rpartition(":")[0]).name, int(row.id.rpartition(":")[2]))
                      for row in store.load_candidates("coarse-to-fine")}
        fine = store.tasks(scale="fine")
        workdir = directory / store.get("coarse.0").spec.workdir
    (retry,) = [info for state, _, _, info in history if state is TaskState.RETRYING]
    assert retry == {"failure": "signal",
                     "message": "the worker running fault_tasks:torn_stream was killed by SIGKILL (Killed)"}
    with h5py.File(workdir / "attempt-1.h5md", "r", swmr=True, locking=False) as handle:
        positions = handle["particles/trajectory/position/value"]
        assert positions.shape[0] == 4 and positions[3].max() == 99.0, "the torn frame is in the file"
    assert candidates == {("attempt-1.h5md", index) for index in range(3)} | {
        ("attempt-2.h5md", index) for index in range(8)}
    assert len(fine) == 2 and all(record.state is TaskState.DONE for record in fine)
    for record in fine:
        start = np.load(directory / record.spec.workdir / "start.npz")["positions"]
        assert start.max() < 99.0


STORE_FULL = """
name: store-full
backend: {{config: {{cores: 2}}}}
scales:
  - name: work
    plugin: command
    config:
      argv: ["sh", "-c", "sleep 0.05; echo {{task_id}} >> {log}"]
      parameters: {{i: {indices}}}
"""


def test_a_store_that_cannot_be_written_stops_the_campaign_resumably_and_resume_loses_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    """The coordinator's disk fills once four tasks have run and two are recorded done: SQLite itself refuses to
    grow the database (``PRAGMA max_page_count`` capped at its size, and a large event that needs new pages
    buffered)."""
    log = tmp_path / "executions.log"
    tasks = 16
    spec = write_spec(tmp_path / "spec", STORE_FULL.format(log=log, indices=list(range(tasks))))
    directory = tmp_path / "run"
    write_rows = Store.flush
    filled = []

    def flush_on_a_disk_that_fills(store: Store) -> int:
        if (not filled and log.exists() and len(log.read_text().splitlines()) >= 4
                and store.counts().get("work", {}).get("done", 0) >= 2):
            filled.append(store.path)
            store.log_event("filler", time.time(), blob="x" * 100_000)
            size = store._conn.execute("PRAGMA page_count").fetchone()[0]  # noqa: SLF001 (the coordinator's connection)
            store._conn.execute(f"PRAGMA max_page_count = {size}")  # noqa: SLF001
        return write_rows(store)

    monkeypatch.setattr(Store, "flush", flush_on_a_disk_that_fills)
    assert cli.main(["run", str(spec), "--dir", str(directory), "--quiet"]) == cli.EXIT_STOPPED
    message = " ".join(capsys.readouterr().err.split())
    assert filled == [directory / Store.FILENAME]
    assert (f"stopped: the campaign store {directory / Store.FILENAME} could not be written: database or disk is full; "
            f"free space on its file system; continue with `mummi-like resume {directory}`") in message
    with Store.open(directory, readonly=True) as store:
        done_before = {record.id for record in store.tasks(states=[TaskState.DONE])}
        assert not store.events(kind="filler")
    assert 2 <= len(done_before) < tasks

    assert cli.main(["resume", str(directory), "--quiet"]) == cli.EXIT_OK
    executions = Counter(log.read_text().split())
    with Store.open(directory, readonly=True) as store:
        assert store.counts() == {"work": {"done": tasks}}
        for record in store.tasks():
            states = [state for state, *_ in store.history(record.id)]
            assert states.count(TaskState.DONE) == 1, (record.id, states)
    assert set(executions) == {f"work.{index:02d}" for index in range(tasks)}
    assert all(executions[task] == 1 for task in done_before), "a task recorded done never runs again"
