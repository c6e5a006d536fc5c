"""A two-scale campaign with a learned coupling, on the real engines (OpenMM, torch), at a tiny size."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from mummi_like import events
from mummi_like.campaign.coupling import COUPLING_LABEL, PROMOTED_LABEL, Coupling
from mummi_like.campaign.loop import Campaign
from mummi_like.campaign.progress import Reporter
from mummi_like.cli import status_report
from mummi_like.scale import ScaleContext
from mummi_like.spec import CouplingSpec
from mummi_like.store import Store
from mummi_like.streams import H5MDWriter
from mummi_like.streams.tailer import read_frame
from mummi_scales.generic.chain_md import ChainMDConfig, ChainMDScale
from mummi_selectors.novelty import NoveltyConfig, NoveltySelector

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
        assert Path(file).is_relative_to(campaign_dir / "tasks" / "coarse")
        promoted = read_frame(Path(file), int(index))
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
    good = tmp_path / "tasks" / "coarse" / "good" / "trajectory.h5md"
    assert sorted(task.labels[PROMOTED_LABEL] for task in promoted) == [f"{good}:{index}" for index in range(3)]
    assert sorted(event["frames"][0] for event in rejected) == [f"{bad}:{index}" for index in range(3)]
    assert all(event["reason"].startswith(f"cannot promote it, its stream is unreadable: {bad}: it is truncated: ")
               for event in rejected)
    assert coupling.promoted == 3 and len(coupling.live) == 3
