"""A two-scale campaign with a learned coupling, on the real engines (OpenMM, torch), at a tiny size."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from mummi_like.campaign.coupling import COUPLING_LABEL, PROMOTED_LABEL
from mummi_like.campaign.loop import Campaign
from mummi_like.campaign.reporting import Reporter
from mummi_like.cli import status_report
from mummi_like.store import Store
from mummi_like.streams.tailer import read_frame

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
