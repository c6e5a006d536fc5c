"""The HTML report and the CLI's `report` and utilization figures, on real tiny campaigns."""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from mummi_like import report as report_module
from mummi_like.campaign.loop import Campaign
from mummi_like.campaign.policy import DependencyPolicy
from mummi_like.campaign.progress import Reporter
from mummi_like.report import PluginSections, ReportSection, collect_sections, write_report, write_report_files
from mummi_like.store import Store, StoreError
from mummi_like.telemetry import REQUEUED, read_telemetry
from mummi_like.view import CampaignView
from mummi_scales.generic.command import CommandScale

CLI = [sys.executable, "-m", "mummi_like.cli"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
EXPECTED_PNGS = {"utilization.png", "gantt.png", "throughput.png", "queue.png", "latency.png"}

# Eight short sleeps on two cores, and one task that fails with markup in its stderr.
SPEC = """
    name: sleepers
    backend: {config: {cores: 2}}
    scales:
      - name: nap
        plugin: command
        config:
          argv: ["sleep", "0.2"]
          parameters: {i: [0, 1, 2, 3, 4, 5, 6, 7]}
      - name: broken
        plugin: command
        config:
          argv: ["sh", "-c", "echo '<script>alert(1)</script>' >&2; exit 4"]
    """


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished campaign directory (read-only for the tests that use it)."""
    root = tmp_path_factory.mktemp("report")
    spec = root / "campaign.yaml"
    spec.write_text(textwrap.dedent(SPEC))
    directory = root / "run"
    summary = Campaign.from_text(spec.read_text(), spec, directory).run()
    assert summary.counts == {"nap": {"done": 8}, "broken": {"failed": 1}}
    return directory


def mummi(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *map(str, args)], capture_output=True, text=True, timeout=120)


def embedded_pngs(page: str) -> list[bytes]:
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_report_of_a_finished_campaign_is_self_contained(campaign: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    index, pngs = write_report_files(campaign, out)
    assert index == out / "index.html"
    assert {png.name for png in pngs} == EXPECTED_PNGS
    for png in pngs:
        assert png.read_bytes().startswith(PNG_MAGIC)
    page = index.read_text(encoding="utf-8")
    embedded = embedded_pngs(page)
    assert sorted(embedded) == sorted(png.read_bytes() for png in pngs)  # each figure embedded, as written
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page  # no JavaScript, and the task's stderr markup is escaped
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "<h1>Campaign report: sleepers</h1>" in page
    assert "<td>coordinator</td><td>not running</td>" in page
    assert "sh exited with code 4" in page
    counts_row = re.search(r"<tr><td>nap</td>(.*?)</tr>", page)
    assert counts_row is not None and '<td class="n">8</td>' in counts_row.group(1)
    steady = re.search(r'<div class="value">([\d.]+)%</div><div class="label">steady-state utilization of 2 cores',
                       page)
    assert steady is not None and 50 <= float(steady.group(1)) <= 100


def test_report_defaults_to_the_campaign_report_folder(campaign: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(campaign, copy)
    assert write_report(copy) == copy / "report" / "index.html"
    assert {p.name for p in (copy / "report").glob("*.png")} == EXPECTED_PNGS


def test_report_of_a_missing_campaign_raises_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no campaign store"):
        write_report(tmp_path)
    assert not (tmp_path / "report").exists()


def test_a_spec_that_no_longer_loads_is_reported_not_fatal(campaign: Path, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(campaign, copy)
    with Store.open(copy) as store:
        saved = store.get_meta("spec")
        store.set_meta("spec", {**saved, "text": saved["text"].replace("plugin: command", "plugin: uninstalled")})
    page = write_report(copy, tmp_path / "out").read_text()
    assert "Could not load the campaign spec" in page
    assert "uninstalled" in page
    assert "<h2>Failures</h2>" in page  # the report went on


# -- the plugin hook ------------------------------------------------------------------------------


def science_figure():
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3, 2))
    figure.subplots().plot([0, 1], [1, 0])
    return figure


class Docking:
    calls: list[tuple[object, str]] = []

    @classmethod
    def report_sections(cls, view: CampaignView, scale_name: str) -> list[ReportSection]:
        cls.calls.append((view, scale_name))
        return [
            ReportSection(title=f"Hits of {scale_name} <top 1%>", text="score < -9 & rising",
                          html="<table><tr><td>ZINC42</td><td>-11.2</td></tr></table>", figure=science_figure()),
            ReportSection(title="Second", text="just text"),
        ]


class Funnel:
    """A policy's hook: the view alone, no scale name."""

    @classmethod
    def report_sections(cls, view: CampaignView) -> list[ReportSection]:
        return [ReportSection(title="Funnel", text=f"{len(view.done())} tasks done")]


class Broken:
    @classmethod
    def report_sections(cls, view: CampaignView, scale_name: str) -> list[ReportSection]:
        raise RuntimeError("model file <missing>")


class WrongType:
    @classmethod
    def report_sections(cls, view: CampaignView) -> object:
        return "not a list"


class NoHook:
    report_sections = "not callable"


def test_collect_sections_calls_each_hook_and_keeps_errors(campaign: Path) -> None:
    Docking.calls.clear()
    with CampaignView.open(campaign) as view:
        collected = collect_sections(view, [("scale dock", Docking, "dock"), ("scale x", NoHook, "x"),
                                            ("scale bad", Broken, "bad"), ("scale base", CommandScale, "nap"),
                                            ("policy", WrongType, None), ("policy", Funnel, None),
                                            ("policy base", DependencyPolicy, None)])
        assert Docking.calls == [(view, "dock")]
    # The base classes' hooks return no section, and so add no entry.
    assert [entry.owner for entry in collected] == ["scale dock", "scale bad", "policy", "policy"]
    assert [s.title for s in collected[0].sections] == ["Hits of dock <top 1%>", "Second"]
    assert collected[0].error is None
    assert collected[1] == PluginSections("scale bad",
                                          error="report_sections raised RuntimeError: model file <missing>")
    assert collected[2].error == "report_sections returned str, not a list of ReportSection"
    assert collected[3].sections[0].text == "8 tasks done"


def test_campaign_view_reads_done_tasks_and_events_and_refuses_a_writable_store(campaign: Path) -> None:
    with CampaignView.open(campaign) as view:
        assert view.directory == campaign.resolve()
        naps = view.done("nap")
        assert [task.spec.scale for task in naps] == ["nap"] * 8 and view.done("broken") == []
        assert all(task.workdir == campaign.resolve() / task.spec.workdir for task in naps)
        assert view.done("nap", stage="dock") == []  # the command scale labels no stage
        assert [event.kind for event in view.events(kind="campaign-created")] == ["campaign-created"]
        assert view.candidates("no-such-coupling") == []
    with Store.open(campaign) as store, pytest.raises(ValueError, match="needs a store opened read-only"):
        CampaignView(store)


def test_plugin_sections_are_rendered_and_escaped(campaign: Path, tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    owners = [("scale dock (Docking)", Docking, "dock"), ("scale bad (Broken)", Broken, "bad")]
    monkeypatch.setattr(report_module, "plugin_owners", lambda resolved: owners)
    index, pngs = write_report_files(campaign, tmp_path / "out")
    page = index.read_text()
    # The outcome leads: the science right after the summary, the infrastructure figures after it.
    assert page.index("<h2>Summary</h2>") < page.index("<h2>Science</h2>") < page.index("<h2>Utilization</h2>")
    science = page[page.index("<h2>Science</h2>"):page.index("<h2>Utilization</h2>")]
    assert "<h3>Hits of dock &lt;top 1%&gt;</h3>" in science
    assert "score &lt; -9 &amp; rising" in science  # text escaped
    assert "<table><tr><td>ZINC42</td><td>-11.2</td></tr></table>" in science  # html trusted
    assert "report_sections raised RuntimeError: model file &lt;missing&gt;" in science
    assert len(embedded_pngs(science)) == 1
    science_pngs = [p.name for p in pngs if p.name not in EXPECTED_PNGS]
    assert science_pngs == ["science-scale-dock-docking-hits-of-dock-top-1.png"]
    # The plain text of the sections, unescaped, for `mummi-like report` to print in a terminal.
    assert (tmp_path / "out" / "summary.txt").read_text() == (
        "Hits of dock <top 1%>\nscore < -9 & rising\n\nSecond\njust text\n")


# -- a running campaign -----------------------------------------------------------------------------


def test_report_while_the_campaign_runs_does_not_disturb_it(tmp_path: Path) -> None:
    from matplotlib.figure import Figure  # noqa: F401  (imported now, not while the campaign runs)

    spec = tmp_path / "campaign.yaml"
    spec.write_text(textwrap.dedent("""
        name: live
        backend: {config: {cores: 2}}
        scales:
          - name: work
            plugin: command
            config:
              argv: ["sleep", "2"]
              parameters: {i: [0, 1, 2, 3, 4, 5]}
        """))
    directory = tmp_path / "run"
    coordinator = subprocess.Popen([*CLI, "run", spec, "--dir", directory, "--quiet"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with Store.open(directory, readonly=True) as store:
                    if store.counts().get("work", {}).get("running", 0) >= 1:
                        break
            except StoreError:  # not created yet
                pass
            assert time.monotonic() < deadline, "no task started"
            assert coordinator.poll() is None, coordinator.communicate()
            time.sleep(0.05)
        status = json.loads(mummi("status", directory, "--json").stdout)
        assert status["coordinator_running"] and status["utilization"]["cores"] == 2
        assert 0 < status["utilization"]["recent"] <= 1
        index, pngs = write_report_files(directory)
        page = index.read_text()
        assert "<td>coordinator</td><td>running</td>" in page
        attempts = re.search(r"<td>attempts</td><td>(\d+) ran, (\d+) running now</td>", page)
        assert attempts is not None and int(attempts.group(2)) >= 1
        assert {"utilization.png", "gantt.png", "queue.png"} <= {p.name for p in pngs}
        _, stderr = coordinator.communicate(timeout=120)
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.wait()
    assert coordinator.returncode == 0, stderr
    with Store.open(directory, readonly=True) as store:
        assert store.counts() == {"work": {"done": 6}}


# -- the CLI ---------------------------------------------------------------------------------------


def test_cli_report_prints_the_page_and_the_figure_count(campaign: Path, tmp_path: Path) -> None:
    result = mummi("report", campaign, "--out", tmp_path / "out")
    assert result.returncode == 0, result.stderr
    # No plugin of this campaign has sections with text, so only the page is named.
    assert result.stdout.strip() == (
        f"report: {tmp_path / 'out' / 'index.html'} (5 PNG figure(s) in {tmp_path / 'out'})")
    assert not (tmp_path / "out" / "summary.txt").exists()
    assert (tmp_path / "out" / "index.html").is_file()
    missing = mummi("report", tmp_path / "nowhere")
    assert missing.returncode == 2
    assert missing.stderr.startswith("mummi-like report: no campaign store")


def test_cli_status_shows_utilization(campaign: Path) -> None:
    text = mummi("status", campaign)
    assert text.returncode == 0, text.stderr
    line = re.search(r"^utilization: steady state (\d+\.\d)% of 2 cores$", text.stdout, re.MULTILINE)
    assert line is not None, text.stdout
    assert "over the last" not in text.stdout  # no coordinator: its 'running' rows would be stale
    data = json.loads(mummi("status", campaign, "--json").stdout)
    utilization = data["utilization"]
    assert utilization["recent"] is None and (utilization["cores"], utilization["gpus"]) == (2, 0)
    assert 0.5 <= utilization["steady_state"] <= 1.0
    assert f"{100 * utilization['steady_state']:.1f}" == line.group(1)


def test_utilization_line_leaves_out_what_is_unknown() -> None:
    from mummi_like.cli import _utilization_line

    assert _utilization_line({"recent": 0.975, "steady_state": 0.989, "cores": 8, "gpus": 0}) == (
        "utilization: 97.5% of 8 cores busy over the last 60 s; steady state 98.9%")
    assert _utilization_line({"recent": 0.5, "steady_state": None, "cores": 8, "gpus": 0}) == (
        "utilization: 50.0% of 8 cores busy over the last 60 s")
    assert _utilization_line({"recent": None, "steady_state": None, "cores": 0, "gpus": 0}) is None


# -- the Gantt ---------------------------------------------------------------------------------------


def test_the_gantt_draws_an_attempt_killed_with_its_coordinator_as_requeued_not_failed(tmp_path: Path) -> None:
    """kill -9 of the coordinator while a task runs, then resume: the cut attempt is no failure of the task."""
    spec = tmp_path / "campaign.yaml"
    spec.write_text(textwrap.dedent("""
        name: killed
        backend: {config: {cores: 2}}
        scales:
          - name: work
            plugin: command
            config:
              argv: ["sleep", "1"]
        """))
    directory = tmp_path / "run"
    coordinator = subprocess.Popen([*CLI, "run", spec, "--dir", directory, "--quiet"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with Store.open(directory, readonly=True) as store:
                    if store.counts().get("work", {}).get("running", 0) == 1:
                        break
            except StoreError:  # not created yet
                pass
            assert time.monotonic() < deadline, "the task did not start"
            assert coordinator.poll() is None, "the campaign ended before it was killed"
            time.sleep(0.05)
        coordinator.send_signal(signal.SIGKILL)
        coordinator.wait(timeout=30)
    finally:
        if coordinator.poll() is None:
            coordinator.kill()
            coordinator.wait()
    assert Campaign.resume(directory, Reporter()).run().complete
    with Store.open(directory, readonly=True) as store:
        data = read_telemetry(store)
    assert [interval.outcome for interval in data.intervals] == [REQUEUED, "done"]

    figure, _ = report_module.gantt_figure(data, data.first_start or 0.0, {"work": "tab:blue"})
    ax = figure.axes[0]
    assert [text.get_text() for text in ax.get_legend().get_texts()] == [
        "work", "killed and requeued (not a failure)"]
    assert sorted(str(collection.get_hatch()) for collection in ax.collections) == ["..", "None"]

    failed = [dataclasses.replace(data.intervals[0], outcome="retrying"), data.intervals[1]]
    figure, _ = report_module.gantt_figure(dataclasses.replace(data, intervals=failed), data.first_start or 0.0,
                                           {"work": "tab:blue"})
    assert [text.get_text() for text in figure.axes[0].get_legend().get_texts()] == ["work", "failed attempt"]
