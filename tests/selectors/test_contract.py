"""The selector contract, held by every built-in selector, each loaded through its entry point as a campaign would."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mummi_like import plugins
from mummi_like.selection import Selector, SelectorContext
from mummi_like.store import Store

# Small pools and a novelty phase that starts mid-run, so the contract is checked across eviction and both phases.
CONFIGS = {
    "novelty": {"pool_size": 15, "min_samples": 20, "latent_dim": 8},
    "cvae-outliers": {"pool_size": 15, "retrain_every": 25},
}
NAMES = sorted(CONFIGS)


def make(name: str, tmp_path: Path, seed: int = 0, store: Store | None = None, **overrides: object) -> Selector:
    cls = plugins.load("selector", name, Selector)
    return cls(cls.config_model(**{**CONFIGS[name], **overrides}), SelectorContext(name, tmp_path, seed, store))


def batch(start: int, n: int = 10) -> tuple[list[str], np.ndarray]:
    """Frames ``start`` ... of one trajectory: symmetric binary 8x8 maps, fixed by their index."""
    maps = np.stack([np.random.default_rng(i).random((8, 8)) < 0.3 for i in range(start, start + n)]).astype(float)
    return [f"traj.h5:{i}" for i in range(start, start + n)], np.maximum(maps, maps.transpose(0, 2, 1))


# Overlapping batches: a stream re-delivering frames after a restart must do no harm.
BATCHES = [batch(0), batch(5), batch(15), batch(25), batch(30, 20)]


def run(selector: Selector, batches: list[tuple[list[str], np.ndarray]], k: int = 4) -> list[list[tuple[str, float]]]:
    selections = []
    for ids, features in batches:
        selector.ingest(ids, features)
        assert len(selector.pool) <= selector.config.pool_size
        selections.append(selector.select(k))
    return selections


def test_the_builtin_selectors_are_registered_with_described_configs() -> None:
    assert set(NAMES) <= set(plugins.installed("selector"))
    for name in NAMES:
        for field_name, field in plugins.load("selector", name, Selector).config_model.model_fields.items():
            assert field.description, f"{name}: config field {field_name} has no description"


@pytest.mark.parametrize("name", NAMES)
def test_select_gives_at_most_k_best_first_never_twice_from_a_bounded_pool(name: str, tmp_path: Path) -> None:
    selections = run(make(name, tmp_path), BATCHES)
    ingested = {i for ids, _ in BATCHES for i in ids}
    promoted = [i for chosen in selections for i, _ in chosen]
    assert all(len(chosen) == 4 for chosen in selections)
    assert len(set(promoted)) == len(promoted) and set(promoted) <= ingested
    for chosen in selections:
        scores = [score for _, score in chosen]
        assert scores == sorted(scores, reverse=True)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_selections_and_another_seed_other_random_picks(name: str, tmp_path: Path) -> None:
    assert run(make(name, tmp_path, seed=1), BATCHES) == run(make(name, tmp_path, seed=1), BATCHES)
    random_phase = {"min_samples": 1000} if name == "novelty" else {}  # the CVAE is random until its first model
    first, other = (run(make(name, tmp_path, seed, **random_phase), BATCHES[:2]) for seed in (1, 2))
    assert first != other


@pytest.mark.parametrize("name", NAMES)
def test_a_restored_selector_continues_as_if_never_stopped(name: str, tmp_path: Path) -> None:
    uninterrupted = run(make(name, tmp_path / "twin"), BATCHES)
    with Store.open(tmp_path) as store:
        before = run(make(name, tmp_path, store=store), BATCHES[:3])
    with Store.open(tmp_path) as store:
        restored = make(name, tmp_path, store=store)
        assert restored.frames_seen == len({i for ids, _ in BATCHES[:3] for i in ids})
        after = run(restored, BATCHES[3:])
    assert before + after == uninterrupted


@pytest.mark.parametrize("name", NAMES)
def test_nan_features_are_refused_naming_the_frames(name: str, tmp_path: Path) -> None:
    selector = make(name, tmp_path)
    ids, features = batch(0, 3)
    features[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=r"1 of 3 frames: 'traj.h5:1' hold NaN"):
        selector.ingest(ids, features)
    assert len(selector.pool) == 0
