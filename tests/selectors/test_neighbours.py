"""Distances and the local outlier factor of the neighbourhood-scoring selectors."""

from __future__ import annotations

import numpy as np

from mummi_selectors.neighbours import local_outlier_factor, pairwise_distances


def test_pairwise_distances_match_the_direct_formula() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((7, 5)), rng.standard_normal((4, 5))
    direct = np.linalg.norm(a[:, None] - b[None], axis=2)
    np.testing.assert_allclose(pairwise_distances(a, b), direct, rtol=1e-10)
    assert (pairwise_distances(a, a).diagonal() >= 0).all()


def test_lof_is_one_inside_a_regular_lattice_and_largest_for_an_isolated_point() -> None:
    lattice = np.stack(np.meshgrid(np.arange(10.0), np.arange(10.0)), axis=-1).reshape(-1, 2)
    points = np.vstack([lattice, [[4.5, 30.0]]])
    factors = local_outlier_factor(points, n_neighbors=4)
    interior = (lattice.min(axis=1) >= 3) & (lattice.max(axis=1) <= 6)  # edge effects reach two rows in
    np.testing.assert_allclose(factors[:-1][interior], 1.0)
    assert factors.argmax() == len(points) - 1 and factors[-1] > 5


def test_lof_handles_duplicates_few_points_and_a_large_k() -> None:
    duplicates = np.zeros((5, 3))
    assert np.isfinite(local_outlier_factor(duplicates, 2)).all()
    assert local_outlier_factor(np.zeros((1, 3)), 20).tolist() == [1.0]
    assert local_outlier_factor(np.zeros((0, 3)), 20).shape == (0,)
    line = np.array([[0.0], [1.0], [2.0], [10.0]])
    np.testing.assert_array_equal(local_outlier_factor(line, 20), local_outlier_factor(line, 3))
