"""The novelty selector (DynIm-like farthest-point promotion)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mummi_like.selection import SelectorContext
from mummi_selectors.novelty import NoveltyConfig, NoveltySelector

CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0], [10.0, 10.0], [5.0, 20.0]])


def novelty(tmp_path: Path, seed: int = 0, **config: object) -> NoveltySelector:
    return NoveltySelector(NoveltyConfig(**config), SelectorContext("novelty", tmp_path, seed))


def clusters(per_cluster: int = 40, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Points around each centre (radius about 0.5), shuffled; returns ids, points and each point's cluster."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.repeat(np.arange(len(CENTRES)), per_cluster))
    points = CENTRES[labels] + 0.2 * rng.standard_normal((len(labels), 2))
    return [f"p:{i}" for i in range(len(labels))], points, labels


def test_farthest_point_selection_picks_one_point_per_cluster_first(tmp_path: Path) -> None:
    ids, points, labels = clusters()
    selector = novelty(tmp_path, min_samples=50)
    selector.ingest(ids[:100], points[:100])
    selector.ingest(ids[100:], points[100:])
    first = selector.select(len(CENTRES))
    assert sorted(labels[int(i.split(":")[1])] for i, _ in first) == list(range(len(CENTRES)))
    nearest = [score for _, score in selector.select(5)]
    assert max(nearest) < 2.0 < min(score for _, score in first)  # then only what is near a promoted point is left


def test_novelty_decides_once_min_samples_frames_were_seen(tmp_path: Path) -> None:
    ids, points, _ = clusters()
    selector = novelty(tmp_path, min_samples=150)
    selector.ingest(ids[:100], points[:100])
    assert ((0 <= selector.pool.scores) & (selector.pool.scores < 1)).all()  # seeded random scores
    selector.ingest(ids[100:], points[100:])
    distance_to_mean = np.linalg.norm(selector.pool.vectors - selector.pool.vectors.mean(axis=0), axis=1)
    np.testing.assert_allclose(selector.pool.scores, distance_to_mean, rtol=1e-6)


def test_a_full_pool_evicts_the_frames_nearest_to_what_was_promoted(tmp_path: Path) -> None:
    ids, points, labels = clusters()
    selector = novelty(tmp_path, min_samples=0, pool_size=50)
    selector.ingest(ids[:20], points[:20])
    (promoted, _), = selector.select(1)
    selector.ingest(ids[20:], points[20:])
    kept = {labels[int(i.split(":")[1])] for i in selector.pool.ids}
    assert labels[int(promoted.split(":")[1])] not in kept


def test_large_frames_are_projected_to_latent_dim_by_the_seed(tmp_path: Path) -> None:
    maps = np.random.default_rng(0).random((30, 12, 12))
    ids = [f"m:{i}" for i in range(30)]
    vectors = []
    for seed in (3, 3, 4):
        selector = novelty(tmp_path, seed, latent_dim=16, min_samples=0)
        selector.ingest(ids, maps)
        assert selector.pool.vectors.shape == (30, 16)
        vectors.append(selector.pool.vectors)
    np.testing.assert_array_equal(vectors[0], vectors[1])
    assert not np.array_equal(vectors[0], vectors[2])
    whole = novelty(tmp_path, latent_dim=None)
    whole.ingest(ids, maps)
    assert whole.pool.vectors.shape == (30, 144)
