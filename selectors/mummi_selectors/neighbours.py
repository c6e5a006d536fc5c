"""Distances and local outlier factors in numpy, shared by the selectors that score by neighbourhood.

The local outlier factor is written here (25 lines) rather than taken from
scikit-learn's ``LocalOutlierFactor``: a selector's pool is bounded, so the
exact O(n^2) computation over it is cheap, and the project does not gain a
dependency (with scipy, joblib and threadpoolctl behind it) for one function.
"""

from __future__ import annotations

import numpy as np

_LRD_EPSILON = 1e-10
"""Added to mean reachability distances so that duplicate points get a large, finite density (as scikit-learn does)."""


def pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances between the rows of ``a`` (n, d) and of ``b`` (m, d), as an (n, m) float64 array.

    Computed as ``|a|^2 + |b|^2 - 2 a.b``, which needs O(n m) memory instead of
    the O(n m d) of broadcasting differences; its rounding error (relative to the
    squared norms) is far below what separates frames worth promoting.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    squared = (a * a).sum(axis=1)[:, None] + (b * b).sum(axis=1)[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(squared, 0.0))


def local_outlier_factor(points: np.ndarray, n_neighbors: int) -> np.ndarray:
    """The local outlier factor of every point among the others (Breunig et al., 2000).

    About 1 for a point as densely surrounded as its neighbours, larger the
    sparser its neighbourhood is compared with theirs: DeepDriveMD promotes the
    largest, the conformations least like what was sampled around them.

    Parameters
    ----------
    points
        (n, d) array.
    n_neighbors
        Neighbourhood size ``k``; capped at ``n - 1``.

    Returns
    -------
    numpy.ndarray
        (n,) float64; ones when there are fewer than two points (nothing to compare with).
    """
    n = len(points)
    if n < 2:
        return np.ones(n)
    k = min(n_neighbors, n - 1)
    distances = pairwise_distances(points, points)
    np.fill_diagonal(distances, np.inf)
    # A stable sort makes the neighbour sets, hence the scores, independent of platform tie-breaking.
    neighbours = np.argsort(distances, axis=1, kind="stable")[:, :k]
    rows = np.arange(n)[:, None]
    k_distance = distances[rows[:, 0], neighbours[:, -1]]
    reachability = np.maximum(distances[rows, neighbours], k_distance[neighbours])
    density = 1.0 / (reachability.mean(axis=1) + _LRD_EPSILON)
    return density[neighbours].mean(axis=1) / density
