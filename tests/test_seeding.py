"""Seeds derived from the campaign's seed and an id (mummi_like.seeding)."""

from __future__ import annotations

import numpy as np

from mummi_like.seeding import id_hash, seeded_uniform, task_seed


def test_seeded_uniform_depends_on_seed_and_id_only() -> None:
    ids = [f"f:{i}" for i in range(100)]
    values = seeded_uniform(3, ids)
    assert values.shape == (100,) and ((0 <= values) & (values < 1)).all()
    assert len(set(values)) == 100
    np.testing.assert_array_equal(seeded_uniform(3, ids[::-1]), values[::-1])
    assert not np.array_equal(seeded_uniform(4, ids), values)
    assert seeded_uniform(3, []).shape == (0,)


def test_task_seed_is_a_nonzero_engine_seed_fixed_by_seed_and_id() -> None:
    seeds = [task_seed(7, f"coarse.{i}") for i in range(1000)]
    assert all(1 <= s <= 2**31 - 1 for s in seeds)
    assert len(set(seeds)) == 1000
    assert task_seed(7, "coarse.3") == seeds[3] and task_seed(8, "coarse.3") != seeds[3]


def test_uniform_and_task_seeds_come_from_one_hash() -> None:
    """A selector's random score and a task's engine seed are the same hash read two ways."""
    assert seeded_uniform(5, ["a"])[0] == id_hash(5, "a") / 2.0**64
    assert task_seed(5, "a") == id_hash(5, "a") % (2**31 - 1) + 1
