"""Seeds and random numbers derived from a campaign's seed and an id, never from a generator's state.

Every random choice a plugin makes (an OpenMM seed per task, a random score per
frame, a random split of molecules) is a hash of the campaign's seed and the id
of what it is for. The result does not depend on batch sizes, arrival order or
how often the coordinator restarted, and there is no generator state to persist
for a resumed campaign to continue the same way.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

__all__ = ["id_hash", "seeded_uniform", "task_seed"]


def id_hash(seed: int, key: str) -> int:
    """A 64-bit integer fixed by ``seed`` and ``key`` alone (BLAKE2b of ``"<seed>\\0<key>"``)."""
    return int.from_bytes(hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest(), "little")


def seeded_uniform(seed: int, ids: Sequence[str]) -> np.ndarray:
    """A uniform number in [0, 1) per id, fixed by ``seed`` and the id alone."""
    return np.fromiter((id_hash(seed, i) / 2.0**64 for i in ids), dtype=np.float64, count=len(ids))


def task_seed(seed: int, task_id: str) -> int:
    """The engine seed of task ``task_id`` in a campaign seeded with ``seed``, in [1, 2**31 - 1].

    A hash rather than ``seed + index``, so that promoted tasks (which have no
    index) get one too and two scales never share seeds; never 0, because
    OpenMM (and Vina) read 0 as "pick a random seed", which would make a run
    irreproducible.
    """
    return id_hash(seed, task_id) % (2**31 - 1) + 1
