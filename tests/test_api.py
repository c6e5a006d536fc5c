"""The Python API (mummi_like.run, resume, open_campaign) on the real local backend, as a script or notebook uses it."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pandas
import pytest

import mummi_like
from mummi_like import CampaignError, RunSummary, SpecError
from mummi_like.campaign.loop import Campaign
from mummi_like.store import StoreError

TASKS = Path(__file__).parent / "campaign" / "campaign_tasks.py"
CLI = [sys.executable, "-m", "mummi_like.cli"]

SQUARES = """\
name: squares
backend: {config: {cores: 2}}
python_path: ["."]
scales:
  - name: square
    plugin: function
    config:
      function: "campaign_tasks:square"
      parameters: {x: [1, 2, 3]}
"""
"""Three Python-callable tasks; their values are 1, 4 and 9."""


def project(folder: Path, text: str = SQUARES) -> Path:
    """A spec file beside the task module its ``python_path: ["."]`` imports."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(TASKS, folder / TASKS.name)
    spec = folder / "campaign.yaml"
    spec.write_text(text)
    return spec


def assert_squares_done(summary: RunSummary, directory: Path) -> None:
    assert summary.outcome == "complete" and summary.exit_code == 0
    assert summary.directory == directory.resolve()
    assert summary.counts == {"square": {"done": 3}}
    assert summary.failures == () and summary.stopped_because is None and summary.ran
    assert (summary.tasks, summary.done) == (3, 3)
    results = summary.records().results()
    assert sorted(row.value for row in results) == [1, 4, 9]


def coordinators_started(directory: Path) -> int:
    return len(mummi_like.open_campaign(directory).events(kind="coordinator-started"))


def test_run_from_a_path(tmp_path: Path) -> None:
    spec = project(tmp_path / "project")
    summary = mummi_like.run(spec, tmp_path / "run")
    assert_squares_done(summary, tmp_path / "run")
    assert summary.elapsed > 0


def test_run_from_a_path_given_as_a_string(tmp_path: Path) -> None:
    spec = project(tmp_path / "project")
    assert_squares_done(mummi_like.run(str(spec), str(tmp_path / "run")), tmp_path / "run")


def test_run_from_yaml_text_resolves_relative_paths_against_spec_dir(tmp_path: Path) -> None:
    folder = project(tmp_path / "project").parent
    summary = mummi_like.run(SQUARES, tmp_path / "run", spec_dir=folder)
    assert_squares_done(summary, tmp_path / "run")


def test_run_from_a_dict_with_paths_and_tuples(tmp_path: Path) -> None:
    folder = project(tmp_path / "project").parent
    spec: dict[str, Any] = {
        "name": "squares",
        "directory": tmp_path / "run",  # a Path, as a script builds it
        "python_path": ["."],
        "scales": [{"name": "square", "plugin": "function",
                    "config": {"function": "campaign_tasks:square", "parameters": {"x": (1, 2, 3)}}}],
    }
    assert_squares_done(mummi_like.run(spec, spec_dir=folder), tmp_path / "run")


def test_run_from_a_thread_runs_without_signal_handlers_and_leaves_the_main_threads_alone(tmp_path: Path) -> None:
    spec = project(tmp_path / "project")
    handlers = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    outcome: list[RunSummary | BaseException] = []

    def body() -> None:
        try:
            outcome.append(mummi_like.run(spec, tmp_path / "run"))
        except BaseException as error:  # noqa: BLE001 (handed to the test's thread, which fails with it)
            outcome.append(error)

    worker = threading.Thread(target=body)
    worker.start()
    worker.join(timeout=100)
    assert not worker.is_alive()
    (result,) = outcome
    assert isinstance(result, RunSummary), result
    assert_squares_done(result, tmp_path / "run")
    assert {signum: signal.getsignal(signum) for signum in handlers} == handlers


def test_run_in_the_main_thread_puts_the_previous_signal_handlers_back(tmp_path: Path) -> None:
    def mine(signum: int, frame: object) -> None:
        raise AssertionError("not called")

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        mummi_like.run(project(tmp_path / "project"), tmp_path / "run")
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_second_run_on_a_finished_directory_returns_its_results_and_runs_nothing(tmp_path: Path) -> None:
    spec = project(tmp_path / "project")
    first = mummi_like.run(spec, tmp_path / "run")
    again = mummi_like.run(spec, tmp_path / "run")
    assert not again.ran and again.elapsed == 0
    assert (again.outcome, again.counts, again.failures) == (first.outcome, first.counts, first.failures)
    assert coordinators_started(tmp_path / "run") == 1, "no coordinator ran the second time"
    # The same spec as text (another form, same campaign once validated) is the same campaign too.
    assert not mummi_like.run(spec.read_text(), tmp_path / "run", spec_dir=spec.parent).ran


def test_a_second_run_of_a_campaign_with_failures_returns_them_with_exit_1(tmp_path: Path) -> None:
    spec = project(tmp_path / "project", textwrap.dedent("""\
        name: mixed
        scales:
          - {name: good, plugin: command, config: {argv: ["true"]}}
          - {name: bad, plugin: command, config: {argv: ["sh", "-c", "exit 4"]}}
        """))
    first = mummi_like.run(spec, tmp_path / "run")
    again = mummi_like.run(spec, tmp_path / "run")
    assert first.outcome == again.outcome == "failed" and again.exit_code == 1
    assert again.failures == first.failures == (("bad.0", "sh exited with code 4"),)
    assert again.failures[0].task == "bad.0"


def test_a_run_on_an_unfinished_campaign_of_the_same_spec_resumes_it(tmp_path: Path) -> None:
    spec = project(tmp_path / "project")
    # Created and never run: what a kernel restarted before the run got going leaves.
    Campaign.from_text(spec.read_text(), spec, tmp_path / "run").store.close()
    summary = mummi_like.run(spec, tmp_path / "run")
    assert summary.ran
    assert_squares_done(summary, tmp_path / "run")


def test_a_run_stopped_by_a_budget_is_resumed_by_the_next_run(tmp_path: Path) -> None:
    spec = project(tmp_path / "project", textwrap.dedent("""\
        name: budgeted
        backend: {config: {cores: 1}}
        scales:
          - {name: bad, plugin: command, config: {argv: ["false"]}}
          - {name: good, plugin: command, config: {argv: ["sleep", "0.1"], parameters: {i: [1, 2, 3]}}}
        budgets: {max_failures: 0}
        """))
    stopped = mummi_like.run(spec, tmp_path / "run")
    assert stopped.outcome == "stopped" and stopped.exit_code == 3
    assert stopped.stopped_because == "1 failed tasks exceed budgets.max_failures (0)"
    assert stopped.counts["good"].get("done", 0) < 3
    again = mummi_like.run(spec, tmp_path / "run")
    assert again.ran, "resumed"
    assert again.counts == {"bad": {"failed": 1}, "good": {"done": 3}} and again.outcome == "failed"
    assert coordinators_started(tmp_path / "run") == 2


def test_a_run_with_another_spec_on_the_directory_is_refused_naming_what_differs(tmp_path: Path) -> None:
    spec = project(tmp_path / "project")
    mummi_like.run(spec, tmp_path / "run")
    other = spec.read_text().replace("[1, 2, 3]", "[1, 2, 3, 4]")
    with pytest.raises(CampaignError, match=r"already holds a campaign made from another spec \(its scales differ\); "
                                            r"continue that one with `mummi-like resume "):
        mummi_like.run(other, tmp_path / "run", spec_dir=spec.parent)
    assert mummi_like.open_campaign(tmp_path / "run").counts() == {"square": {"done": 3}}


def test_resume_continues_a_stopped_campaign(tmp_path: Path) -> None:
    spec = project(tmp_path / "project")
    Campaign.from_text(spec.read_text(), spec, tmp_path / "run").store.close()
    assert_squares_done(mummi_like.resume(tmp_path / "run"), tmp_path / "run")


def test_a_bad_spec_raises_spec_error_with_the_message_the_cli_prints(tmp_path: Path) -> None:
    spec = project(tmp_path / "project", "name: broken\nscales:\n  - {name: a, plugin: comand, config: {}}\n")
    with pytest.raises(SpecError) as raised:
        mummi_like.run(spec, tmp_path / "run")
    cli = subprocess.run([*CLI, "run", str(spec), "--dir", str(tmp_path / "run")], capture_output=True, text=True,
                         timeout=120, check=False)
    assert cli.returncode == 2
    assert cli.stderr.strip() == str(raised.value)
    assert "scales[0].plugin" in str(raised.value) and "did you mean 'command'" in str(raised.value)
    assert not (tmp_path / "run").exists()


def test_a_bad_spec_text_is_named_as_text_and_located_by_line() -> None:
    with pytest.raises(SpecError, match=r"invalid campaign spec <spec text> \(1 problem\):\n  <spec text>:3: "
                                        r"scales\[0\]\.plugin: "):
        mummi_like.run("name: broken\nscales:\n  - {name: a, plugin: comand, config: {}}\n")


def test_a_dict_holding_a_value_yaml_cannot_write_is_a_spec_error() -> None:
    with pytest.raises(SpecError, match=r"<spec dict>: <root>: cannot write the spec as YAML: it holds object value"):
        mummi_like.run({"name": "odd", "scales": [{"name": "a", "plugin": "command", "config": {"argv": object()}}]})


def test_a_missing_spec_file_is_a_spec_error(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="cannot read the spec"):
        mummi_like.run(tmp_path / "missing.yaml")


def test_open_campaign_lists_tasks_results_and_events_as_records_and_frames(tmp_path: Path) -> None:
    spec = project(tmp_path / "project")
    mummi_like.run(spec, tmp_path / "run")
    records = mummi_like.open_campaign(tmp_path / "run")
    tasks = records.tasks()
    assert [task.id for task in tasks] == ["square.0", "square.1", "square.2"]
    assert all(task.state == "done" and task.attempt == 1 and task.seconds is not None for task in tasks)
    assert tasks[0].workdir == (tmp_path / "run" / "tasks" / "square" / "square.0").resolve()
    assert [row.value for row in records.results("square")] == [1, 4, 9]
    assert records.tasks(state="failed") == [] and records.results("other") == []
    assert [event.kind for event in records.events()][:2] == ["campaign-created", "coordinator-started"]
    assert records.promotions() == []

    frame = records.tasks_frame()
    assert isinstance(frame, pandas.DataFrame)
    assert list(frame["id"]) == ["square.0", "square.1", "square.2"] and set(frame["state"]) == {"done"}
    assert list(records.results_frame()["value"]) == [1, 4, 9]
    assert "coordinator-stopped" in set(records.events_frame()["kind"])
    promotions = records.promotions_frame()
    assert promotions.empty and list(promotions.columns) == ["task", "coupling", "frame", "score", "state", "value"]


COUPLED = """\
name: coupled
backend: {config: {cores: 2}}
scales:
  - name: coarse
    plugin: chain-md
    config: {replicas: 1, beads: 8, temperature: 450.0, timestep: 0.03, friction: 5.0, steps: 800,
             report_interval: 100, platform: Reference}
  - name: fine
    plugin: chain-md
    config: {replicas: 0, beads: 8, steps: 200, report_interval: 100, platform: Reference}
couplings:
  - {source: coarse, target: fine, selector: novelty, feature: contact_map, max_total: 2, interval: 0.1,
     config: {min_samples: 0}}
"""
"""A one-replica OpenMM coupling that promotes two frames in a few seconds."""


def test_open_campaign_lists_promotions_with_their_frames_and_scores(tmp_path: Path) -> None:
    summary = mummi_like.run(COUPLED, tmp_path / "run")
    assert summary.outcome == "complete", summary
    records = summary.records()
    promotions = records.promotions()
    assert [row.task for row in promotions] == [task.id for task in records.tasks(scale="fine")]
    assert len(promotions) == 2 and {row.coupling for row in promotions} == {"coarse-to-fine"}
    assert all(row.state == "done" and isinstance(row.score, float) for row in promotions)
    assert len({row.frame for row in promotions}) == 2
    assert list(records.promotions_frame(coupling="coarse-to-fine")["task"]) == [row.task for row in promotions]
    assert records.promotions(coupling="another") == []


def test_frames_without_pandas_say_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    mummi_like.run(project(tmp_path / "project"), tmp_path / "run")
    records = mummi_like.open_campaign(tmp_path / "run")
    monkeypatch.setitem(sys.modules, "pandas", None)  # what `import pandas` meets where it is not installed
    with pytest.raises(ImportError, match="`pip install pandas`"):
        records.tasks_frame()
    assert len(records.tasks()) == 3, "the records need no pandas"


def test_open_campaign_on_a_folder_without_campaign_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="mummi-like run"):
        mummi_like.open_campaign(tmp_path)


def test_the_cli_rerun_of_a_finished_campaign_shows_its_summary_and_says_nothing_ran(tmp_path: Path) -> None:
    spec = project(tmp_path / "project")
    command = [*CLI, "run", str(spec), "--dir", str(tmp_path / "run"), "--quiet"]
    subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    again = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 0, again.stderr
    assert "3/3 tasks done" in again.stderr
    assert f"{(tmp_path / 'run').resolve()} holds this campaign, which had finished; nothing ran" in again.stderr
    assert coordinators_started(tmp_path / "run") == 1


def test_an_unknown_spec_type_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="spec must be a path, YAML text or a dict, not int"):
        mummi_like.run(3)  # type: ignore[arg-type]
