"""The selector: what it promotes first, and what it refuses, without a coordinator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mummi_like import SelectorContext

from mummi_plugin_example.selector import NearBarrierConfig, NearBarrierSelector


def selector(tmp_path: Path, **config: float) -> NearBarrierSelector:
    context = SelectorContext(name="coarse-to-fine", campaign_dir=tmp_path)
    return NearBarrierSelector(NearBarrierConfig(**config), context)


def test_frames_nearest_the_barrier_are_promoted_first_and_never_twice(tmp_path: Path) -> None:
    chooser = selector(tmp_path)
    x = np.array([[-1.0, 1.0], [0.0, 0.05], [-1.0, 0.1], [1.0, 1.0]])
    chooser.ingest(["a:0", "a:1", "a:2", "a:3"], x)
    assert [frame for frame, _ in chooser.select(2)] == ["a:1", "a:2"]
    chooser.ingest(["a:1", "a:4"], np.array([[0.0, 0.0], [0.9, -0.9]]))  # a:1 again: already promoted, skipped
    assert [frame for frame, _ in chooser.select(5)] == ["a:4", "a:0", "a:3"]
    assert chooser.select(1) == []


def test_scores_are_the_mean_closeness_to_the_barrier(tmp_path: Path) -> None:
    chooser = selector(tmp_path, width=0.5)
    chooser.ingest(["a:0"], np.array([[0.0, 0.5]]))
    [(_, score)] = chooser.select(1)
    assert score == pytest.approx((1 + np.exp(-1)) / 2)


def test_a_map_per_frame_is_refused_naming_the_feature_to_use(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"got frames of shape \(2, 2\); give the coupling `feature: reaction_coo"):
        selector(tmp_path).ingest(["a:0"], np.zeros((1, 2, 2)))
