"""The `mummi-like` command, run as a user runs it: in a separate process, killed and resumed."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mummi_like.cli import status_report
from mummi_like.store import SCHEMA_VERSION, Store, StoreError
from mummi_like.tasks import TaskState

CLI = [sys.executable, "-m", "mummi_like.cli"]


def mummi(*args: str | Path, check: bool = False) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def start(*args: str | Path) -> subprocess.Popen[str]:
    return subprocess.Popen([*CLI, *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_until(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def counts(directory: Path) -> dict[str, int]:
    try:
        with Store.open(directory, readonly=True) as store:
            return dict(store.counts().get("work", {}))
    except StoreError:  # not created yet
        return {}


def spec_file(tmp_path: Path, body: str) -> Path:
    spec = tmp_path / "campaign.yaml"
    spec.write_text(textwrap.dedent(body))
    return spec


# Each task appends its id to a log as it starts, then takes a while: the log tells
# which tasks were executed, and how often, independently of the store.
LOGGED = """
    name: logged
    backend: {{config: {{cores: 2, kill_grace: 1}}}}
    scales:
      - name: work
        plugin: command
        config:
          argv: ["sh", "-c", "echo {{task_id}} >> {log}; sleep {seconds}"]
          parameters: {{i: {indices}}}
    """


def test_kill_9_then_resume_loses_nothing_and_never_reruns_a_finished_task(tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    spec = spec_file(tmp_path, LOGGED.format(log=log, seconds=0.15, indices=list(range(30))))
    directory = tmp_path / "run"
    coordinator = start("run", spec, "--dir", directory, "--quiet")
    wait_until(lambda: counts(directory).get("done", 0) >= 8, what="8 tasks done")
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()
    with Store.open(directory, readonly=True) as store:
        done_before = {record.id for record in store.tasks(states=[TaskState.DONE])}
    executed_before = len(log.read_text().splitlines())
    assert 8 <= len(done_before) < 30

    resumed = mummi("resume", directory, "--quiet")
    assert resumed.returncode == 0, resumed.stderr

    executions = log.read_text().splitlines()
    rerun_after_kill = set(executions[executed_before:])
    assert not rerun_after_kill & done_before, "a task recorded done ran again"
    assert set(executions) == {f"work.{i:02d}" for i in range(30)}, "every task ran"
    with Store.open(directory, readonly=True) as store:
        assert store.counts() == {"work": {"done": 30}}
        for record in store.tasks():
            finals = [state for state, *_ in store.history(record.id) if state is TaskState.DONE]
            assert len(finals) == 1, f"{record.id} recorded done {len(finals)} times"


def test_sigterm_stops_cleanly_with_exit_3_and_resume_finishes(tmp_path: Path) -> None:
    log = tmp_path / "executions.log"
    spec = spec_file(tmp_path, LOGGED.format(log=log, seconds=0.3, indices=list(range(12))))
    directory = tmp_path / "run"
    coordinator = start("run", spec, "--dir", directory, "--quiet")
    wait_until(lambda: counts(directory).get("done", 0) >= 2, what="2 tasks done")
    coordinator.send_signal(signal.SIGTERM)
    _, stderr = coordinator.communicate(timeout=30)
    assert coordinator.returncode == 3
    assert "received SIGTERM" in stderr and f"mummi-like resume {directory}" in stderr
    stopped = counts(directory)
    assert stopped.get("running", 0) == 0 and stopped.get("queued", 0) == 0
    assert stopped.get("retrying", 0) + stopped.get("created", 0) > 0

    assert mummi("resume", directory, "--quiet").returncode == 0
    assert counts(directory) == {"done": 12}


def start_long_tasks(tmp_path: Path, count: int) -> tuple[Path, subprocess.Popen[str]]:
    """A coordinator running ``count`` 30-second tasks, returned once two of them run."""
    spec = spec_file(tmp_path, LOGGED.format(log=tmp_path / "log", seconds=30, indices=list(range(count))))
    directory = tmp_path / "run"
    coordinator = start("run", spec, "--dir", directory, "--quiet")
    wait_until(lambda: counts(directory).get("running", 0) == 2, what="2 tasks running")
    return directory, coordinator


def test_cancel_reaches_the_running_coordinator(tmp_path: Path) -> None:
    directory, coordinator = start_long_tasks(tmp_path, 5)
    began = time.monotonic()
    assert "asked the running coordinator to cancel" in mummi("cancel", directory, check=True).stdout
    coordinator.communicate(timeout=30)
    assert time.monotonic() - began < 10
    assert coordinator.returncode == 1
    assert counts(directory) == {"canceled": 5}


def test_cancel_without_coordinator_marks_the_rest_canceled(tmp_path: Path) -> None:
    directory, coordinator = start_long_tasks(tmp_path, 4)
    coordinator.send_signal(signal.SIGKILL)
    coordinator.wait()
    result = mummi("cancel", directory, "--scale", "work", check=True)
    assert "canceled 4 task(s)" in result.stdout
    assert counts(directory) == {"canceled": 4}
    leftovers = subprocess.run(["pgrep", "-f", f"echo work.0. >> {tmp_path}/log"], capture_output=True, text=True)
    assert leftovers.stdout.strip() == "", "the killed coordinator's tasks were stopped"


def test_status_reports_counts_running_and_failures_with_stderr(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, """
        name: mixed
        scales:
          - name: good
            plugin: command
            config: {argv: ["true"], parameters: {i: [1, 2]}}
          - name: bad
            plugin: command
            config: {argv: ["sh", "-c", "echo first line >&2; echo 'the real reason' >&2; exit 4"]}
        """)
    directory = tmp_path / "run"
    assert mummi("run", spec, "--dir", directory, "--quiet").returncode == 1
    report = json.loads(mummi("status", directory, "--json", check=True).stdout)
    assert report["counts"] == {"good": {"done": 2}, "bad": {"failed": 1}}
    assert report["coordinator_running"] is False
    (failure,) = report["failures"]
    assert failure["task"] == "bad.0" and failure["reason"] == "sh exited with code 4"
    assert failure["stderr_tail"] == ["first line", "the real reason"]
    text = mummi("status", directory, check=True).stdout
    assert "failed bad.0 after 1 attempt(s): sh exited with code 4" in text
    assert "the real reason" in text


def test_validate_prints_every_error_with_line_and_hint(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, """
        name: broken
        scales:
          - name: a
            plugin: comand
            config: {argv: ["true"]}
          - name: b
            plugin: command
            config: {argv: ["true"], resources: {cors: 2}}
        budgets: {max_failures: lots}
        """)
    result = mummi("validate", spec)
    assert result.returncode == 2
    assert "scales[0].plugin" in result.stderr and "did you mean 'command'" in result.stderr
    assert "scales[1].config.resources.cors" in result.stderr and "did you mean 'cores'" in result.stderr
    assert "budgets.max_failures" in result.stderr and ":10:" in result.stderr


def test_validate_accepts_the_examples() -> None:
    examples = Path(__file__).parents[1] / "examples"
    # examples/plugin's spec names the plugins of its own package, which tests/examples/test_plugin_template.py
    # installs into an environment of its own and validates there.
    specs = sorted(spec for spec in examples.glob("*/campaign.yaml") if spec.parent.name != "plugin")
    assert len(specs) >= 2
    for spec in specs:
        assert "valid campaign" in mummi("validate", spec, check=True).stdout


def test_plugins_lists_the_generic_scales_and_the_local_backend() -> None:
    output = mummi("plugins", check=True).stdout
    for name in ("command", "function", "local", "dag"):
        assert f"  {name} " in output


def test_status_of_a_folder_without_campaign_says_what_to_do(tmp_path: Path) -> None:
    result = mummi("status", tmp_path)
    assert result.returncode == 2
    assert str(tmp_path) in result.stderr and "mummi-like run" in result.stderr


@pytest.mark.skipif(os.cpu_count() is None, reason="needs a CPU count")
def test_json_log_format_ends_with_a_summary(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, """
        name: quietly
        scales: [{name: a, plugin: command, config: {argv: ["true"], parameters: {i: [1, 2, 3]}}}]
        """)
    result = mummi("run", spec, "--dir", tmp_path / "run", "--log-format", "json", check=True)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[-1]["event"] == "finished"
    assert lines[-1]["counts"] == {"a": {"done": 3}}


def test_backend_that_cannot_start_is_a_clean_error(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, """
        name: elsewhere
        backend: {plugin: flux}
        scales: [{name: a, plugin: command, config: {argv: ["true"]}}]
        """)
    environment = {**os.environ, "FLUX_URI": f"local://{tmp_path}/no-such-broker"}
    result = subprocess.run([*CLI, "run", str(spec), "--dir", str(tmp_path / "run"), "--quiet"],
                            capture_output=True, text=True, timeout=120, env=environment)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "flux" in result.stderr.lower()


def test_the_cli_imports_neither_the_loop_nor_numpy_until_a_command_needs_them() -> None:
    # `status` on a login node must answer fast: what it does not need, it does not import.
    probe = ("import sys, mummi_like.cli; heavy = {'numpy', 'h5py', 'mummi_like.campaign.loop', 'mummi_like.spec'}; "
             "print(sorted(heavy & set(sys.modules)))")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "[]"


# The CLI under an audit hook that records every SQLite connection it opens and every file it opens for writing,
# written as JSON to $AUDIT_RECORD when it exits: what `status` and `report` touch, seen from inside the process.
AUDITED_CLI = """
import json, os, runpy, sys
connections, writes = [], []
WRITING = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
def record(event, args):
    if event == "sqlite3.connect":
        connections.append(str(args[0]))
    elif event == "open" and isinstance(args[0], str) and (
            (args[2] or 0) & WRITING or any(letter in (args[1] or "") for letter in "wax+")):
        writes.append(os.path.abspath(args[0]))
sys.addaudithook(record)
sys.argv = ["mummi-like", *sys.argv[1:]]
try:
    runpy.run_module("mummi_like.cli", run_name="__main__")
finally:
    found = {"connections": list(connections), "writes": list(writes)}
    with open(os.environ["AUDIT_RECORD"], "w") as out:
        json.dump(found, out)
"""


def audited(record: Path, *args: str | Path) -> tuple[subprocess.CompletedProcess[str], dict[str, list[str]]]:
    """Run the CLI under :data:`AUDITED_CLI`; its result and what it connected to and wrote."""
    result = subprocess.run([sys.executable, "-c", AUDITED_CLI, *map(str, args)], capture_output=True, text=True,
                            timeout=120, env={**os.environ, "AUDIT_RECORD": str(record)})
    return result, json.loads(record.read_text())


# Tasks 0 to free-1 end at once; the others start, then wait while the hold file exists: the campaign stays
# running, with tasks done and tasks running, for as long as the test looks at it.
HELD = """
    name: watched
    backend: {{config: {{cores: 2, kill_grace: 1}}}}
    scales:
      - name: work
        plugin: command
        config:
          argv: ["sh", "-c", "echo {{task_id}} >> {log}; if [ {{i}} -ge {free} ]; then while [ -e {hold} ]; do sleep 0.05; done; fi"]
          parameters: {{i: {indices}}}
    """


def test_status_and_report_during_a_run_read_the_store_read_only_and_the_run_finishes_intact(tmp_path: Path) -> None:
    log, hold, tasks, free = tmp_path / "executions.log", tmp_path / "hold", 10, 4
    hold.touch()
    spec = spec_file(tmp_path, HELD.format(log=log, hold=hold, free=free, indices=list(range(tasks))))
    directory = tmp_path / "run"
    coordinator = start("run", spec, "--dir", directory, "--quiet")
    try:
        wait_until(lambda: counts(directory) == {"done": free, "running": 2, "queued": tasks - free - 2},
                   what=f"{free} tasks done and 2 held running")
        for look in range(3):
            result, seen = audited(tmp_path / f"status-{look}.json", "status", directory, "--json")
            assert result.returncode == 0, result.stderr
            report = json.loads(result.stdout)
            assert report["coordinator_running"] is True
            assert report["counts"] == {"work": {"done": free, "running": 2, "queued": tasks - free - 2}}
            assert {task["task"] for task in report["running"]} == {f"work.{free}", f"work.{free + 1}"}
            assert seen["connections"] and all(c.endswith("campaign.db?mode=ro") for c in seen["connections"])
            assert not [path for path in seen["writes"] if path.startswith(str(directory))]
        for look in range(2):
            result, seen = audited(tmp_path / f"report-{look}.json", "report", directory)
            assert result.returncode == 0, result.stderr
            assert seen["connections"] and all(c.endswith("campaign.db?mode=ro") for c in seen["connections"])
            written = {Path(path).parent for path in seen["writes"] if path.startswith(str(directory))}
            assert written == {directory / "report"}, "report writes its own folder and nothing else of the campaign"
            page = (directory / "report" / "index.html").read_text()
            assert "Campaign report: watched" in page and "data:image/png;base64," in page
            assert not [p.name for p in (directory / "report").iterdir() if p.name.startswith(".")], "no temporary"
        assert coordinator.poll() is None, "the coordinator kept running while watched"
    finally:
        hold.unlink()
        _, stderr = coordinator.communicate(timeout=60)
    assert coordinator.returncode == 0, stderr
    executions = log.read_text().splitlines()
    assert sorted(executions) == [f"work.{i}" for i in range(tasks)], "every task ran exactly once"
    with Store.open(directory, readonly=True) as store:
        assert store.counts() == {"work": {"done": tasks}}
        for record in store.tasks():
            assert [state for state, *_ in store.history(record.id)].count(TaskState.DONE) == 1


def test_status_answers_at_once_while_another_connection_holds_the_write_lock(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, LOGGED.format(log=tmp_path / "log", seconds=0, indices=[0, 1, 2]))
    directory = tmp_path / "run"
    mummi("run", spec, "--dir", directory, "--quiet", check=True)
    writer = sqlite3.connect(directory / Store.FILENAME, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        writer.execute("UPDATE tasks SET state = 'failed'")  # never committed: status must not see it
        began = time.monotonic()
        report = status_report(directory)
        assert time.monotonic() - began < 1.0
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert report["counts"] == {"work": {"done": 3}}


def test_status_check_passes_a_sound_store_and_fails_naming_what_is_broken(tmp_path: Path) -> None:
    spec = spec_file(tmp_path, """
        name: checked
        scales:
          - name: work
            plugin: command
            config: {argv: ["true"], parameters: {i: [1, 2]}}
        """)
    directory = tmp_path / "run"
    mummi("run", spec, "--dir", directory, "--quiet", check=True)
    sound = mummi("status", directory, "--check")
    assert sound.returncode == 0 and "store integrity: ok" in sound.stdout
    with sqlite3.connect(directory / Store.FILENAME) as conn:  # a state change without its history row
        conn.execute("UPDATE tasks SET state = 'running' WHERE id = 'work.1'")
    broken = mummi("status", directory, "--check")
    assert broken.returncode == 1
    assert "integrity problem: task work.1 is running but its history ends done" in broken.stdout
    assert json.loads(mummi("status", directory, "--check", "--json").stdout)["integrity_problems"] == [
        "task work.1 is running but its history ends done"
    ]


@pytest.mark.parametrize("command", ["status", "resume"])
def test_a_store_from_a_newer_mummi_like_is_refused_in_one_line_and_left_as_it_is(tmp_path: Path, command: str) -> None:
    spec = spec_file(tmp_path, """
        name: future
        scales: [{name: a, plugin: command, config: {argv: ["true"]}}]
        """)
    directory = tmp_path / "run"
    mummi("run", spec, "--dir", directory, "--quiet", check=True)
    with sqlite3.connect(directory / Store.FILENAME) as conn:  # what a later mummi-like would leave
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    conn.close()
    before = (directory / Store.FILENAME).read_bytes()
    result = mummi(command, directory)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"mummi-like {command}: {directory / Store.FILENAME} was written by a newer mummi-like (store schema "
        f"{SCHEMA_VERSION + 1}; this one reads schema {SCHEMA_VERSION} and older): upgrade mummi-like to open it; "
        "the store was left as it is"
    ]
    assert (directory / Store.FILENAME).read_bytes() == before
