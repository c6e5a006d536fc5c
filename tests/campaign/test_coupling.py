"""A two-scale campaign with a learned coupling, on the real engines (OpenMM, torch), at a tiny size."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from mummi_scales.generic.chain_md import ChainMDConfig, ChainMDScale
from mummi_selectors.novelty import NoveltyConfig, NoveltySelector

from mummi_like import cli, events
from mummi_like.campaign.coupling import (
    COUPLING_LABEL,
    PROMOTED_LABEL,
    Coupling,
    CouplingError,
)
from mummi_like.campaign.loop import Campaign
from mummi_like.campaign.progress import Reporter
from mummi_like.cli import status_report
from mummi_like.scale import ScaleContext
from mummi_like.spec import CouplingSpec
from mummi_like.store import CandidateRow, Store, StoreError
from mummi_like.streams import H5MDWriter
from mummi_like.streams.tailer import read_frame
from mummi_like.tasks import TaskState

SPEC = """
name: coupled
backend: {config: {cores: 2}}
scales:
  - name: coarse
    plugin: chain-md
    config: {replicas: 2, beads: 12, temperature: 450.0, timestep: 0.03, friction: 5.0,
             steps: 3000, report_interval: 100, platform: Reference, restart_from_fine: true}
  - name: fine
    plugin: chain-md
    config: {replicas: 0, beads: 12, temperature: 300.0, timestep: 0.01, friction: 1.0,
             steps: 400, report_interval: 100, platform: Reference}
couplings:
  - source: coarse
    target: fine
    selector: cvae-outliers
    feature: contact_map
    max_in_flight: 1
    max_total: 3
    interval: 0.2
    config: {retrain_every: 20, latent_dim: 3, filters: 4, hidden: 16, epochs: 2, lof_neighbors: 5, pool_size: 100}
"""


@pytest.fixture(scope="module")
def campaign_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Run the campaign once for the tests of this module."""
    root = tmp_path_factory.mktemp("coupled")
    spec = root / "campaign.yaml"
    spec.write_text(textwrap.dedent(SPEC))
    directory = root / "run"
    summary = Campaign.from_text(spec.read_text(), spec, directory).run()
    assert summary.complete, (summary.counts, summary.failures)
    return directory


def test_coarse_training_and_fine_tasks_all_ran(campaign_dir: Path) -> None:
    counts = status_report(campaign_dir)["counts"]
    assert counts["fine"] == {"done": 3}, "max_total promotions"
    assert counts["coarse"] == {"done": 2 + 3}, "2 replicas, and one restart fed back by each fine run"
    assert counts["coarse-to-fine-training"]["done"] >= 1
    with Store.open(campaign_dir, readonly=True) as store:
        retrained = [data for _, _, _, data in store.events(kind="selector-retrained")]
    assert retrained and all(event["duration"] > 0 for event in retrained)


def test_fine_tasks_start_from_exactly_the_promoted_frames(campaign_dir: Path) -> None:
    with Store.open(campaign_dir, readonly=True) as store:
        fine = store.tasks(scale="fine")
    sources = set()
    for record in fine:
        assert record.spec.labels[COUPLING_LABEL] == "coarse-to-fine"
        file, _, index = record.spec.labels[PROMOTED_LABEL].rpartition(":")
        assert Path(file).parts[:2] == ("tasks", "coarse"), "relative to the campaign directory"
        promoted = read_frame(campaign_dir / file, int(index))
        start = np.load(campaign_dir / record.spec.workdir / "start.npz")
        np.testing.assert_array_equal(start["positions"], promoted.positions)
        sources.add(record.spec.labels[PROMOTED_LABEL])
    assert len(sources) == len(fine) == 3, "no frame is promoted twice"


def test_each_fine_run_feeds_a_coarse_restart_from_its_last_frame(campaign_dir: Path) -> None:
    with Store.open(campaign_dir, readonly=True) as store:
        restarts = [r for r in store.tasks(scale="coarse") if "restarted_from" in r.spec.labels]
        fine = {r.id: r for r in store.tasks(scale="fine")}
    assert sorted(r.spec.labels["restarted_from"] for r in restarts) == sorted(fine)
    for restart in restarts:
        origin = fine[restart.spec.labels["restarted_from"]]
        last = read_frame(campaign_dir / origin.spec.workdir / "trajectory.h5md", origin.value["frames"] - 1)
        start = np.load(campaign_dir / restart.spec.workdir / "start.npz")
        np.testing.assert_array_equal(start["positions"], last.positions)


def test_resuming_a_finished_coupled_campaign_promotes_nothing_more(campaign_dir: Path) -> None:
    before = status_report(campaign_dir)["counts"]
    summary = Campaign.resume(campaign_dir, Reporter()).run()
    assert summary.complete
    assert status_report(campaign_dir)["counts"] == before


def test_a_frame_whose_stream_went_bad_before_its_promotion_is_logged_and_skipped(tmp_path: Path) -> None:
    """The selector scored frames of two streams; one file is then cut short. Its frames are rejected with the
    file and the reason in the event log, the other stream's frames are promoted, and the round does not raise."""
    beads = 4
    for name in ("good", "bad"):
        (tmp_path / "tasks" / "coarse" / name).mkdir(parents=True)
        with H5MDWriter(tmp_path / "tasks" / "coarse" / name / "trajectory.h5md", beads,
                        observables={"feature": ((3,), np.float32)}) as writer:
            for index in range(3):
                writer.write_frame(np.full((beads, 3), index, np.float32), step=index, time=float(index),
                                   observables={"feature": np.array([index, len(name), 0], np.float32)})
    scales = {name: ChainMDScale(ChainMDConfig(replicas=0, beads=beads),
                                 ScaleContext(name=name, campaign_dir=tmp_path, spec_dir=tmp_path))
              for name in ("coarse", "fine")}
    spec = CouplingSpec(source="coarse", target="fine", selector="novelty", feature="feature", max_in_flight=10,
                        max_total=0)
    with Store.open(tmp_path) as store:
        coupling = Coupling.build(spec, NoveltySelector, NoveltyConfig(min_samples=0), scales, tmp_path, store)
        assert coupling.round().frames == 6, "all six frames scored, none promoted yet (max_total 0)"
        bad = tmp_path / "tasks" / "coarse" / "bad" / "trajectory.h5md"
        whole = bad.read_bytes()
        cut = bad.with_suffix(".partial")
        cut.write_bytes(whole[: len(whole) // 2])
        cut.replace(bad)  # a new file under the old name, as a copy interrupted half-way leaves it
        coupling.spec = spec.model_copy(update={"max_total": None})
        promoted = coupling.round().new_tasks
        store.flush()
        rejected = [data for _, _, _, data in store.events(kind=events.FRAMES_REJECTED)]
        coupling.close()
    assert sorted(task.labels[PROMOTED_LABEL] for task in promoted) == [
        f"tasks/coarse/good/trajectory.h5md:{index}" for index in range(3)]
    assert sorted(event["frames"][0] for event in rejected) == [
        f"tasks/coarse/bad/trajectory.h5md:{index}" for index in range(3)]
    assert all(event["reason"].startswith(f"cannot promote it, its stream is unreadable: {bad}: it is truncated: ")
               for event in rejected)
    assert coupling.promoted == 3 and len(coupling.live) == 3


SMALL_SPEC = """
name: small-coupling
backend: {{config: {{cores: 2}}}}
scales:
  - name: coarse
    plugin: chain-md
    config: {{replicas: 1, beads: 8, temperature: 450.0, timestep: 0.03, friction: 5.0, steps: {steps},
             report_interval: 100, platform: Reference}}
  - name: fine
    plugin: chain-md
    config: {{replicas: 0, beads: 8, steps: 200, report_interval: 100, platform: Reference}}
couplings:
  - source: coarse
    target: fine
    selector: {selector}
    feature: {feature}
    max_total: {max_total}
    interval: 0.1
    config: {config}
"""
"""A one-replica chain-md coupling that runs in about a second, with the selector and feature left open."""


def small_spec(folder: Path, feature: str, selector: str = "novelty", config: str = "{min_samples: 0}",
               steps: int = 800, max_total: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    spec = folder / "campaign.yaml"
    spec.write_text(SMALL_SPEC.format(feature=feature, selector=selector, config=config, steps=steps,
                                      max_total=max_total))
    return spec


def assert_stopped_resumably(directory: Path) -> None:
    """Nothing is left queued or running under no coordinator, and the store is whole."""
    with Store.open(directory, readonly=True) as store:
        states = {record.state for record in store.tasks()}
        assert not states & {TaskState.QUEUED, TaskState.RUNNING}, states
        assert store.check_integrity() == []
        stopped = [data["reason"] for _, _, _, data in store.events(kind=events.COORDINATOR_STOPPED)]
    assert stopped and stopped[-1], "the coordinator recorded why it stopped"


def test_a_scalar_observable_is_a_one_element_feature_whose_frames_are_promoted(tmp_path: Path) -> None:
    """chain-md's own radius_of_gyration (shape () per frame) as the feature: the campaign runs and promotes."""
    spec = small_spec(tmp_path / "spec", feature="radius_of_gyration")
    summary = Campaign.from_text(spec.read_text(), spec, tmp_path / "run").run()
    assert summary.complete, (summary.counts, summary.stopped_because)
    assert summary.counts["fine"] == {"done": 2}
    with Store.open(tmp_path / "run", readonly=True) as store:
        candidates = store.load_candidates("coarse-to-fine")
    assert len(candidates) == 8, "one candidate per streamed frame (800 steps, a frame every 100)"
    assert {len(row.vector) for row in candidates} == {4}, "one float32 per frame"


def test_a_selector_that_refuses_the_feature_stops_the_campaign_resumably_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """cvae-outliers scores (h, w) maps: given a scalar, its ValueError is a clean stop, not a dead coordinator."""
    spec = small_spec(tmp_path / "spec", feature="radius_of_gyration", selector="cvae-outliers",
                      config="{retrain_every: 5}")
    directory = tmp_path / "run"
    assert cli.main(["run", str(spec), "--dir", str(directory), "--quiet"]) == cli.EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "Traceback" not in error
    message = " ".join(error.split())
    assert ("mummi-like run: coupling 'coarse-to-fine': selector 'cvae-outliers' refused the frames of feature "
            "'radius_of_gyration' (shape (1,) per frame): selector 'coarse-to-fine' scores (h, w) maps") in message
    assert "give the coupling a `feature:` this selector scores" in message
    assert_stopped_resumably(directory)
    with Store.open(directory, readonly=True) as store:
        [failed] = [data for _, _, _, data in store.events(kind=events.COUPLING_FAILED)]
    assert failed["coupling"] == "coarse-to-fine" and "ValueError" in failed["traceback"]
    assert cli.main(["resume", str(directory), "--quiet"]) == cli.EXIT_BAD_INPUT, "resume meets the same frames"
    assert "refused the frames of feature 'radius_of_gyration'" in capsys.readouterr().err
    assert_stopped_resumably(directory)


class BrokenSelector(NoveltySelector):
    """A selector with a bug: scoring fails with something other than the ValueError of bad input."""

    def _scores(self) -> np.ndarray:
        raise ZeroDivisionError("a bug")


def test_a_selector_bug_is_a_coupling_error_that_names_where_it_was_raised(tmp_path: Path) -> None:
    directory = tmp_path / "run"
    folder = directory / "tasks" / "coarse" / "coarse.0"
    folder.mkdir(parents=True)
    with H5MDWriter(folder / "trajectory.h5md", 3, observables={"energy": ((), np.float64)}) as writer:
        for index in range(2):
            writer.write_frame(np.zeros((3, 3)), step=index, time=float(index), observables={"energy": index})
    scales = {name: ChainMDScale(ChainMDConfig(replicas=0, beads=3),
                                 ScaleContext(name=name, campaign_dir=directory, spec_dir=tmp_path))
              for name in ("coarse", "fine")}
    spec = CouplingSpec(source="coarse", target="fine", selector="broken", feature="energy")
    with Store.open(directory) as store:
        coupling = Coupling.build(spec, BrokenSelector, NoveltyConfig(), scales, directory, store)
        with pytest.raises(CouplingError) as raised:
            coupling.round()
        coupling.close()
        store.flush()
        [failed] = [data for _, _, _, data in store.events(kind=events.COUPLING_FAILED)]
    message = str(raised.value)
    assert message.startswith("coupling 'coarse-to-fine': selector 'broken' refused the frames of feature 'energy' "
                              "(shape (1,) per frame) with ZeroDivisionError: a bug (raised at ")
    assert f"{Path(__file__)}:" in message and "in _scores" in message
    assert message.endswith(f"a bug in the selector plugin; fix it, then `mummi-like resume {directory}`")
    assert "ZeroDivisionError: a bug" in failed["traceback"]


def test_a_feature_the_streams_lack_stops_the_campaign_at_the_first_frame_with_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Not a campaign that exits 0 with no promotion while it warns, forever, that the stream is not readable yet."""
    spec = small_spec(tmp_path / "spec", feature="contact_mapp")
    directory = tmp_path / "run"
    assert cli.main(["run", str(spec), "--dir", str(directory), "--quiet"]) == cli.EXIT_BAD_INPUT
    error = capsys.readouterr().err
    assert "Traceback" not in error and "not readable yet" not in error
    assert (f"mummi-like run: coupling 'coarse-to-fine': its feature 'contact_mapp' is not an observable of the "
            f"stream tasks/coarse/coarse.0/trajectory.h5md (in {directory}), which has 'contact_map', 'end_to_end', 'radius_of_gyration'; a stream's observables "
            "are fixed when it is written, so waiting cannot bring it: change `feature:` in the coupling to one of "
            "them") in " ".join(error.split())
    assert_stopped_resumably(directory)
    with Store.open(directory, readonly=True) as store:
        assert store.load_candidates("coarse-to-fine") == []
        assert store.tasks(scale="fine") == []
    assert cli.main(["resume", str(directory), "--quiet"]) == cli.EXIT_BAD_INPUT
    assert "its feature 'contact_mapp' is not an observable" in capsys.readouterr().err
    assert_stopped_resumably(directory)


def test_a_campaign_directory_moved_mid_run_resumes_in_its_new_place_with_its_pool_and_promotions(
    tmp_path: Path,
) -> None:
    """Stopped (SIGTERM) once its coarse task was done and a fine task ran, copied elsewhere and the original deleted:
    the resumed campaign promotes no frame twice, scores no frame twice and reads every frame where it now is.

    Stopped only after the coarse task, so that resume does not run it again: a rerun rewrites its stream, and the
    frames scored from the first run that the rewritten file has not reached yet cannot be promoted (rejected).
    """
    spec = small_spec(tmp_path / "spec", feature="radius_of_gyration", steps=6000, max_total=6)
    first, moved = tmp_path / "first", tmp_path / "elsewhere" / "moved"
    process = subprocess.Popen([sys.executable, "-m", "mummi_like.cli", "run", str(spec), "--dir", str(first),
                                "--quiet"], stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, f"the campaign ended before it was stopped: {process.stderr.read()}"
            assert time.monotonic() < deadline, "the coarse task and a fine task were not done within 2 minutes"
            try:
                with Store.open(first, readonly=True) as store:
                    counts = store.counts()
            except StoreError:  # not created yet, or its schema not yet written
                counts = {}
            if counts.get("coarse") == {"done": 1} and counts.get("fine", {}).get("done", 0) >= 1:
                break
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == cli.EXIT_STOPPED, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    with Store.open(first, readonly=True) as store:
        pool_before = store.load_candidates("coarse-to-fine")
        promoted_before = {r.id: r.spec.labels[PROMOTED_LABEL] for r in store.tasks(scale="fine")}
        fine_before = store.counts()["fine"]
    assert len(pool_before) == 60, "every frame of the stream scored (6000 steps, a frame every 100)"
    assert fine_before != {"done": 6}, f"stopped mid-run, with fine tasks to go: {fine_before}"
    shutil.copytree(first, moved)
    shutil.rmtree(first)

    summary = Campaign.resume(moved, Reporter()).run()
    assert summary.complete, (summary.counts, summary.stopped_because)
    with Store.open(moved, readonly=True) as store:
        pool = {row.id: row for row in store.load_candidates("coarse-to-fine")}
        fine = store.tasks(scale="fine")
        rejected = store.events(kind=events.FRAMES_REJECTED)
        stream_state = store.get_meta("coupling:coarse-to-fine:streams")
    assert not rejected, "every promoted frame was read in the new place"
    assert {row.id for row in pool_before} <= set(pool), "the pool kept the frames it held"
    assert all(pool[row.id].selected or not row.selected for row in pool_before), "promoted frames stay promoted"
    assert len(pool) == 60, "no frame scored again under another id"
    assert {r.id: r.spec.labels[PROMOTED_LABEL] for r in fine if r.id in promoted_before} == promoted_before
    assert len(fine) == 6 and len({r.spec.labels[PROMOTED_LABEL] for r in fine}) == 6, "no frame promoted twice"
    assert list(stream_state) == ["tasks/coarse/coarse.0/trajectory.h5md"]
    for record in fine:
        name, _, index = record.spec.labels[PROMOTED_LABEL].rpartition(":")
        start = np.load(moved / record.spec.workdir / "start.npz")
        np.testing.assert_array_equal(start["positions"], read_frame(moved / name, int(index)).positions)


def test_absolute_frame_ids_of_an_older_campaign_become_relative_when_a_coordinator_opens_it(tmp_path: Path) -> None:
    """Before frame ids were relative, the pool and the stream positions named streams by absolute paths."""
    stream = tmp_path / "tasks" / "coarse" / "coarse.0" / "trajectory.h5md"
    stream.parent.mkdir(parents=True)
    with H5MDWriter(stream, 3, observables={"energy": ((), np.float64)}) as writer:
        for index in range(3):
            writer.write_frame(np.full((3, 3), index), step=index, time=float(index), observables={"energy": index})
    elsewhere = "/old/place/tasks/coarse/coarse.0/trajectory.h5md:9"  # a campaign moved before it was converted
    vector = np.zeros(1, np.float32).tobytes()
    scales = {name: ChainMDScale(ChainMDConfig(replicas=0, beads=3),
                                 ScaleContext(name=name, campaign_dir=tmp_path, spec_dir=tmp_path))
              for name in ("coarse", "fine")}
    spec = CouplingSpec(source="coarse", target="fine", selector="novelty", feature="energy", max_in_flight=5)
    with Store.open(tmp_path) as store:
        store.save_candidates("coarse-to-fine", [CandidateRow(f"{stream}:0", 0, 0.5, False, vector),
                                                 CandidateRow(f"{stream}:1", 1, 0.2, True, vector),
                                                 CandidateRow(elsewhere, 2, 0.1, False, vector)])
        store.save_selector_state("coarse-to-fine", {"frames_seen": 3, "next_seq": 3, "frame_shape": [1]})
        store.flush()
        store.set_meta("coupling:coarse-to-fine:streams", {str(stream): 2})
        coupling = Coupling.build(spec, NoveltySelector, NoveltyConfig(min_samples=0), scales, tmp_path, store)
        assert coupling.selector.pool.ids == ["tasks/coarse/coarse.0/trajectory.h5md:0", elsewhere]
        assert coupling.selector.pool.selected_ids == ["tasks/coarse/coarse.0/trajectory.h5md:1"]
        outcome = coupling.round()
        store.flush()
        rows = store.load_candidates("coarse-to-fine")
        state = store.get_meta("coupling:coarse-to-fine:streams")
        rejected = [data for _, _, _, data in store.events(kind=events.FRAMES_REJECTED)]
        coupling.close()
    assert outcome.frames == 1, "the stream continues at its saved position, frame 2"
    assert [row.id for row in rows] == [f"tasks/coarse/coarse.0/trajectory.h5md:{index}" for index in (0, 1)] + [
        elsewhere, "tasks/coarse/coarse.0/trajectory.h5md:2"]
    assert state == {"tasks/coarse/coarse.0/trajectory.h5md": 3}
    assert sorted(task.labels[PROMOTED_LABEL] for task in outcome.new_tasks) == [
        f"tasks/coarse/coarse.0/trajectory.h5md:{index}" for index in (0, 2)]
    [event] = rejected
    assert event["frames"] == [elsewhere]
    assert event["reason"] == (
        f"cannot promote it, its stream is unreadable: /old/place/tasks/coarse/coarse.0/trajectory.h5md: lies "
        f"outside {tmp_path}/tasks/coarse, where the streams of scale 'coarse' are: the campaign was moved since this "
        "frame was scored")
