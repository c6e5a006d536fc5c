"""The campaign loop, run in-process on the real local backend with tiny tasks."""

from __future__ import annotations

import shutil
import textwrap
import time
from pathlib import Path

import pytest

from mummi_like.spec import SpecError

from mummi_like.campaign.control import pending_cancels, request_cancel
from mummi_like.campaign.loop import Campaign, CampaignError, coordinator_lock
from mummi_like.campaign.progress import Reporter
from mummi_like.campaign.summary import Summary
from mummi_like.cli import stage_states
from mummi_like.store import Store
from mummi_like.tasks import TaskSpec, TaskState

HERE = Path(__file__).parent


def write_spec(folder: Path, body: str) -> Path:
    """A spec beside a copy of campaign_tasks.py, so that python_path stays inside the spec's folder."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(HERE / "campaign_tasks.py", folder / "campaign_tasks.py")
    spec = folder / "campaign.yaml"
    spec.write_text(textwrap.dedent(body))
    return spec


def run(spec: Path, directory: Path) -> Summary:
    text = spec.read_text()
    return Campaign.from_text(text, spec, directory).run()


def history_states(directory: Path, task_id: str) -> list[str]:
    with Store.open(directory, readonly=True) as store:
        return [state.value for state, *_ in store.history(task_id)]


def test_dependent_scales_run_in_order_and_every_transition_is_recorded(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec", """
        name: order
        backend: {config: {cores: 2}}
        scales:
          - name: first
            plugin: command
            config:
              argv: ["sh", "-c", "sleep 0.1; echo {x} > {campaign_dir}/{x}.txt"]
              parameters: {x: [a, b]}
          - name: second
            plugin: command
            depends_on: [first]
            config:
              argv: ["cat", "{campaign_dir}/{x}.txt"]
              parameters: {x: [a, b]}
        """)
    directory = tmp_path / "run"
    summary = run(spec, directory)
    assert summary.complete
    assert summary.counts == {"first": {"done": 2}, "second": {"done": 2}}
    with Store.open(directory, readonly=True) as store:
        records = {record.id: record for record in store.tasks()}
        for record in records.values():
            assert [s.value for s, *_ in store.history(record.id)] == ["created", "queued", "running", "done"]
        seconds = [r for r in records.values() if r.spec.scale == "second"]
        firsts = {r.spec.labels["param.x"]: r for r in records.values() if r.spec.scale == "first"}
        for record in seconds:
            upstream = firsts[record.spec.labels["param.x"]]
            assert record.spec.depends_on == [upstream.id]
            assert record.started >= upstream.ended
            assert Path(record.stdout).read_text().strip() == record.spec.labels["param.x"]


FLAKY = """
    name: flaky
    python_path: ["."]
    backend: {{config: {{cores: 2}}}}
    scales:
      - name: work
        plugin: function
        config:
          function: "campaign_tasks:flaky"
          kwargs: {{counter: "{counter}", failures: {failures}, error: {error}}}
          retry: {{max_retries: {retries}, exceptions: [OSError]}}
      - name: after
        plugin: command
        depends_on: [work]
        config: {{argv: ["true"]}}
    """


def test_retryable_exception_is_retried_until_it_succeeds(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    spec = write_spec(tmp_path / "spec", FLAKY.format(counter=counter, failures=2, error="OSError", retries=2))
    summary = run(spec, tmp_path / "run")
    assert summary.complete
    assert counter.read_text() == "3"
    with Store.open(tmp_path / "run", readonly=True) as store:
        record = store.get("work.0")
        assert (record.state, record.attempt, record.failures, record.value) == (TaskState.DONE, 3, 2, 3)
    assert history_states(tmp_path / "run", "work.0") == [
        "created", "queued", "running", "retrying", "queued", "running", "retrying", "queued", "running", "done"]


def test_exception_outside_the_retry_list_fails_at_once_and_fails_its_dependents(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    spec = write_spec(tmp_path / "spec", FLAKY.format(counter=counter, failures=5, error="ValueError", retries=3))
    summary = run(spec, tmp_path / "run")
    assert not summary.complete
    assert counter.read_text() == "1"
    reasons = dict(summary.failures)
    assert "ValueError: planned failure 1 of 5" in reasons["work.0"]
    assert reasons["after.0"] == "dependency work.0 ended failed; this task cannot run"
    assert history_states(tmp_path / "run", "after.0") == ["created", "failed"]


def test_retries_run_out(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    spec = write_spec(tmp_path / "spec", FLAKY.format(counter=counter, failures=5, error="OSError", retries=1))
    summary = run(spec, tmp_path / "run")
    assert counter.read_text() == "2"
    with Store.open(tmp_path / "run", readonly=True) as store:
        record = store.get("work.0")
        assert (record.state, record.attempt, record.failures) == (TaskState.FAILED, 2, 2)
    assert "work.0" in dict(summary.failures)


def test_request_the_node_cannot_hold_is_refused_before_any_task_runs(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec", """
        name: huge
        backend: {config: {cores: 2}}
        scales:
          - name: big
            plugin: command
            config: {argv: ["true"], resources: {cores: 64}}
          - name: small
            plugin: command
            config: {argv: ["true"]}
        """)
    with pytest.raises(SpecError, match="64 cores") as refused:
        run(spec, tmp_path / "run")
    assert "scales[0]" in str(refused.value)
    assert not (tmp_path / "run" / "campaign.db").exists()


def test_max_in_flight_caps_concurrency_of_a_scale(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec", """
        name: capped
        python_path: ["."]
        backend: {config: {cores: 3}}
        scales:
          - name: sim
            plugin: function
            max_in_flight: 1
            config:
              function: "campaign_tasks:interval"
              kwargs: {ms: 60}
              parameters: {i: [0, 1, 2, 3]}
        """)
    summary = run(spec, tmp_path / "run")
    assert summary.complete
    with Store.open(tmp_path / "run", readonly=True) as store:
        spans = sorted((r.value["start"], r.value["end"]) for r in store.tasks())
    assert len(spans) == 4
    assert all(later[0] >= earlier[1] for earlier, later in zip(spans, spans[1:]))


def test_max_failures_budget_stops_the_campaign_resumably(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec", """
        name: budget
        backend: {config: {cores: 1}}
        scales:
          - name: bad
            plugin: command
            config: {argv: ["false"], parameters: {i: [0, 1, 2, 3, 4, 5]}}
        budgets: {max_failures: 1}
        """)
    summary = run(spec, tmp_path / "run")
    assert summary.stopped_because == "2 failed tasks exceed budgets.max_failures (1)"
    assert summary.counts["bad"]["failed"] == 2
    assert summary.counts["bad"].get("done", 0) == 0
    assert sum(summary.counts["bad"].values()) == 6


def test_run_refuses_a_directory_that_already_holds_a_campaign(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec", """
        name: once
        scales: [{name: a, plugin: command, config: {argv: ["true"]}}]
        """)
    run(spec, tmp_path / "run")
    with pytest.raises(CampaignError, match="already holds a campaign; continue it with `mummi-like resume"):
        run(spec, tmp_path / "run")


def test_second_coordinator_is_refused_while_one_holds_the_lock(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec", """
        name: locked
        scales: [{name: a, plugin: command, config: {argv: ["true"]}}]
        """)
    directory = tmp_path / "run"
    campaign = Campaign.from_text(spec.read_text(), spec, directory)
    with coordinator_lock(directory):
        with pytest.raises(CampaignError, match=r"another coordinator \(pid \d+\) is running"):
            campaign.run()
    assert campaign.run().complete


def test_resume_after_clean_finish_runs_nothing_again(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    spec = write_spec(tmp_path / "spec", FLAKY.format(counter=counter, failures=0, error="OSError", retries=0))
    run(spec, tmp_path / "run")
    summary = Campaign.resume(tmp_path / "run", Reporter()).run()
    assert summary.complete
    assert counter.read_text() == "1"
    assert summary.counts == {"work": {"done": 1}, "after": {"done": 1}}


def test_scale_that_cannot_make_its_tasks_is_reported_and_leaves_nothing_behind(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec", """
        name: mismatch
        scales:
          - name: a
            plugin: command
            config: {argv: ["true"], parameters: {x: [1, 2]}}
          - name: b
            plugin: command
            depends_on: [a]
            config: {argv: ["true"], parameters: {x: [3]}}
        """)
    with pytest.raises(CampaignError, match=r"scale 'b' \(command\) could not make its tasks"):
        run(spec, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_loop_blocks_instead_of_spinning_while_the_policy_holds_tasks_back(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec", """
        name: patient
        backend: {config: {cores: 2}}
        scales:
          - name: slow
            plugin: command
            max_in_flight: 1
            config: {argv: ["sleep", "0.4"], parameters: {i: [0, 1, 2]}}
        """)
    wall, cpu = time.monotonic(), time.process_time()
    assert run(spec, tmp_path / "run").complete
    wall, cpu = time.monotonic() - wall, time.process_time() - cpu
    assert wall >= 1.2
    assert cpu < 0.3 * wall, f"the coordinator used {cpu:.2f} s of CPU in {wall:.2f} s: it is spinning"


def make_task(task_id: str, *depends_on: str) -> TaskSpec:
    return TaskSpec(id=task_id, payload={"kind": "executable", "argv": ["true"]}, workdir=f"t/{task_id}",
                    depends_on=list(depends_on))


@pytest.mark.parametrize(("tasks", "known", "message"), [
    ([make_task("a"), make_task("a")], set(), "two tasks share the id 'a'"),
    ([make_task("a")], {"a"}, "two tasks share the id 'a'"),
    ([make_task("a", "ghost")], set(), r"task 'a' depends on unknown task\(s\) ghost"),
    ([make_task("a", "c"), make_task("b", "a"), make_task("c", "b"), make_task("d")], set(),
     "tasks a, b, c depend on each other in a cycle"),
])
def test_task_graph_errors_are_refused_before_anything_runs(
    tasks: list[TaskSpec], known: set[str], message: str,
) -> None:
    with pytest.raises(CampaignError, match=message):
        Campaign._check_dependencies(tasks, known)


def test_task_graph_may_build_on_tasks_already_known() -> None:
    Campaign._check_dependencies([make_task("b", "a"), make_task("c", "a", "b")], known={"a"})


def test_loop_logs_its_reaction_times_and_capacity(tmp_path: Path) -> None:
    counter = tmp_path / "calls"
    spec = write_spec(tmp_path / "spec", FLAKY.format(counter=counter, failures=1, error="OSError", retries=1))
    assert run(spec, tmp_path / "run").complete
    with Store.open(tmp_path / "run", readonly=True) as store:
        windows = [data for _, _, _, data in store.events(kind="loop-stats")]
        (started,) = [data for _, _, _, data in store.events(kind="coordinator-started")]
    assert sum(window["submitted"] for window in windows) == 3  # work.0 twice (one retry), after.0 once
    assert all(window["reaction_ms_max"] >= window["reaction_ms_p50"] >= 0 for window in windows)
    assert (started["backend"], started["cores"], started["nodes"]) == ("local", 2, 1)


SITE = HERE.parent / "data" / "specs" / "site"

STAGES = """
    name: stages
    python_path: ["."]
    backend: {config: {cores: 2}}
    scales:
      - name: square
        plugin: function
        config:
          function: "campaign_tasks:square"
          parameters: {x: [1, 2, 3]}
      - name: report           # listed first: stages open in dependency order, not spec order
        plugin: gather
        depends_on: [total]
      - name: total
        plugin: gather
        depends_on: [square]
        config: {fail: %s}
    """


def stage_events(directory: Path) -> list[tuple[str, str, int | None]]:
    with Store.open(directory, readonly=True) as store:
        return [(kind, data["scale"], data.get("tasks")) for _, _, kind, data in store.events()
                if kind in ("stage-opened", "stage-failed")]


def test_stages_open_in_dependency_order_once_their_upstream_is_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(SITE))
    spec = write_spec(tmp_path / "spec", STAGES % "false")
    summary = run(spec, tmp_path / "run")
    assert summary.complete
    with Store.open(tmp_path / "run", readonly=True) as store:
        squares = store.tasks(scale="square")
        total, report = store.get("total.total"), store.get("report.total")
    assert total.value == 1 + 4 + 9  # the stage saw every upstream result
    assert report.value == 14  # and the stage after it saw the stage's own result
    assert total.created >= max(square.ended for square in squares)
    assert report.created >= total.ended
    assert stage_events(tmp_path / "run") == [("stage-opened", "total", 1), ("stage-opened", "report", 1)]

    with Store.open(tmp_path / "run", readonly=True) as store:
        assert stage_states(store) == {"square": "open", "report": "open", "total": "open"}
    resumed = Campaign.resume(tmp_path / "run", Reporter()).run()
    assert resumed.complete
    assert stage_events(tmp_path / "run") == [("stage-opened", "total", 1), ("stage-opened", "report", 1)]


def test_stage_that_cannot_open_stops_the_campaign_resumably_and_keeps_what_was_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(SITE))
    spec = write_spec(tmp_path / "spec", STAGES % "true")
    summary = run(spec, tmp_path / "run")
    assert not summary.complete
    assert "scale 'total' (gather) could not start its stage" in (summary.stopped_because or "")
    assert "not what this stage expects" in (summary.stopped_because or "")
    with Store.open(tmp_path / "run", readonly=True) as store:
        assert [r.state for r in store.tasks(scale="square")] == [TaskState.DONE] * 3
        assert not store.tasks(scale="total")
    assert stage_events(tmp_path / "run") == [("stage-failed", "total", None)]
    with Store.open(tmp_path / "run", readonly=True) as store:  # what `mummi-like status` shows per stage
        assert stage_states(store) == {
            "square": "open", "report": "waiting for total",
            "total": "could not open: the upstream results are not what this stage expects",
        }


@pytest.mark.parametrize("setting, level", [(None, 2), ("normal", 1), ("full", 2)])
def test_the_campaign_store_syncs_as_the_spec_says_at_create_and_at_resume(
        tmp_path: Path, setting: str | None, level: int) -> None:
    spec = write_spec(tmp_path / "spec", f"""
        name: durable
        scales: [{{name: a, plugin: command, config: {{argv: ["true"]}}}}]
        {"" if setting is None else f"store: {{synchronous: {setting}}}"}
        """)
    levels = []
    for campaign in (lambda: Campaign.from_text(spec.read_text(), spec, tmp_path / "run"),
                     lambda: Campaign.resume(tmp_path / "run", Reporter())):
        store = campaign().store
        levels.append(store._conn.execute("PRAGMA synchronous").fetchone()[0])
        store.close()
    assert levels == [level, level]


def test_two_cancel_requests_made_before_the_coordinator_looks_are_both_honoured(tmp_path: Path) -> None:
    spec = write_spec(tmp_path / "spec", """
        name: two-cancels
        python_path: ["."]
        scales:
          - name: first
            plugin: function
            config: {function: "campaign_tasks:interval", parameters: {ms: [50, 50]}}
          - name: second
            plugin: function
            config: {function: "campaign_tasks:interval", parameters: {ms: [60, 60]}}
          - name: kept
            plugin: function
            config: {function: "campaign_tasks:interval", parameters: {ms: [10]}}
        """)
    campaign = Campaign.from_text(spec.read_text(), spec, tmp_path / "run")
    request_cancel(tmp_path / "run", scales=["first"])
    request_cancel(tmp_path / "run", scales=["second"])
    summary = campaign.run()
    assert summary.counts == {"first": {"canceled": 2}, "second": {"canceled": 2}, "kept": {"done": 1}}
    assert pending_cancels(tmp_path / "run") == []


FAN_IN = """
    name: fan-in
    python_path: ["."]
    backend: {config: {cores: 2}}
    scales:
      - name: dock
        plugin: fan-in
        config: {parts: 3, failing: [1]}
      - name: downstream
        plugin: command
        depends_on: [dock]
        config: {argv: ["true"]}
    """


def test_a_task_after_others_runs_when_one_of_them_failed_and_sees_what_the_rest_produced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(SITE))
    spec = write_spec(tmp_path / "spec", FAN_IN)
    summary = run(spec, tmp_path / "run")
    reasons = dict(summary.failures)
    assert "this part fails" in reasons["dock.part1"]
    assert "dock.collect" not in reasons
    with Store.open(tmp_path / "run", readonly=True) as store:
        collect = store.get("dock.collect")
        assert (collect.state, collect.value) == (TaskState.DONE, 2)  # the two parts that succeeded
        assert store.check_integrity() == []
    assert history_states(tmp_path / "run", "dock.collect")[-1] == "done"


def test_a_task_listed_in_both_depends_on_and_after_is_refused() -> None:
    with pytest.raises(ValueError, match="both depends_on and after"):
        TaskSpec(id="t", workdir="t", payload={"kind": "executable", "argv": ["true"]}, depends_on=["a"], after=["a"])
