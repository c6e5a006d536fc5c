"""The whole campaign through mummi-like's Python API: the plugins as the coordinator runs them."""

from __future__ import annotations

from pathlib import Path

import mummi_like
import yaml

SPEC = Path(__file__).parents[1] / "campaign.yaml"


def test_the_campaign_runs_and_promotes_frames_near_the_barrier(tmp_path: Path) -> None:
    spec = yaml.safe_load(SPEC.read_text())
    coarse, fine = spec["scales"]
    coarse["config"].update(steps=20_000, report_interval=100)  # shorter runs than the example's, as many frames
    fine["config"].update(steps=2_000, report_interval=500)
    summary = mummi_like.run(spec, tmp_path / "campaign")
    assert summary.outcome == "complete", summary.failures
    assert summary.counts == {"coarse": {"done": 2}, "fine": {"done": 4}}
    promotions = mummi_like.open_campaign(tmp_path / "campaign").promotions()
    assert len(promotions) == spec["couplings"][0]["max_total"]
    for promotion in promotions:
        assert promotion.frame.startswith("tasks/coarse/coarse.")
        assert promotion.state == "done" and promotion.value["frames"] == 4
        assert promotion.value["near_barrier"] >= 1  # it was chosen for particles near the barrier
