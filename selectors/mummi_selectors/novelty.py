"""Latent novelty selection, after MuMMI's DynIm: promote the frames least like anything promoted so far.

DynIm samples a high-dimensional space evenly with few expensive simulations
by choosing, each time, the candidate farthest from the ones already chosen
(farthest-point sampling); a frame next to a promoted one adds little that the
fine simulation of its neighbour will not show. Until ``min_samples`` frames have
been seen there is too little to judge novelty by, and candidates are chosen at
random (seeded).

There is no model to train: :meth:`~mummi_like.selection.Selector.retrain_due`
stays ``False`` and :meth:`~mummi_like.selection.Selector.training_task` ``None``,
which the selector interface allows.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from mummi_like import Selector, SelectorConfig, SelectorContext, seeded_uniform
from mummi_selectors.neighbours import pairwise_distances


class NoveltyConfig(SelectorConfig):
    """Settings of the ``novelty`` selector."""

    min_samples: int = Field(
        100,
        ge=0,
        description="Frames to see before novelty decides; until then candidates are chosen at random (seeded), "
        "since distances among a handful of frames say little about what is new.",
    )
    latent_dim: int | None = Field(
        32,
        ge=1,
        description="Frames with more (flattened) features than this are reduced to this many by a fixed Gaussian "
        "random projection (seeded), which nearly preserves distances (Johnson-Lindenstrauss) and bounds the memory "
        "and distance cost per frame, e.g. for contact maps; null keeps every feature.",
    )


class NoveltySelector(Selector):
    """Latent novelty (MuMMI's DynIm): farthest-point promotion of the frames least like those promoted.

    A waiting frame's score is its distance to the nearest promoted frame; before
    any promotion, its distance to the mean of the waiting frames, so that the
    first pick is the most atypical one. :meth:`select` is greedy: after each
    pick the scores of the others shrink to their distance from it where that is
    nearer, so one call never returns two frames from the same neighbourhood
    while a farther one waits. A full pool evicts its least novel frames.
    """

    config_model = NoveltyConfig
    config: NoveltyConfig

    def __init__(self, config: NoveltyConfig, context: SelectorContext) -> None:
        self._projection: np.ndarray | None = None
        super().__init__(config, context)

    def _vectors(self, frames: np.ndarray) -> np.ndarray:
        flat = frames.reshape(len(frames), -1)
        latent_dim = self.config.latent_dim
        if latent_dim is None or flat.shape[1] <= latent_dim:
            return flat
        if self._projection is None:
            # Drawn from the seed alone, so a restarted selector projects new frames as the one before did.
            rng = np.random.default_rng(self.context.seed)
            self._projection = rng.standard_normal((flat.shape[1], latent_dim)) / np.sqrt(latent_dim)
        return flat @ self._projection

    def _novelty_phase(self) -> bool:
        return self.frames_seen >= self.config.min_samples

    def _scores(self) -> np.ndarray:
        pool = self.pool
        if not self._novelty_phase():
            return seeded_uniform(self.context.seed, pool.ids)
        if not pool.selected_ids:
            return pairwise_distances(pool.vectors, pool.vectors.mean(axis=0, keepdims=True))[:, 0]
        return pairwise_distances(pool.vectors, pool.selected_vectors).min(axis=1)

    def _on_selected(self) -> None:
        pool = self.pool
        if not self._novelty_phase() or not len(pool):
            return
        nearest = pairwise_distances(pool.vectors, pool.selected_vectors[-1:])[:, 0]
        # The first promotion replaces the distances to the mean; later ones can only bring frames nearer.
        pool.rescore(nearest if len(pool.selected_ids) == 1 else np.minimum(pool.scores, nearest))
