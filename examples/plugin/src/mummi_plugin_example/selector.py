"""The ``near-barrier`` selector: promote the frames whose particles sit nearest the barrier top.

A frame near the barrier is where a fine run says the most: from a well, every
particle stays where it is; from the barrier top, half go each way, and which
half is what the fine scale measures. A frame's score is the mean over its
particles of ``exp(-(x / width)**2)``: 1 with every particle on the barrier
top, near 0 with every particle in a well.

The base class :class:`mummi_like.Selector` does the rest the same way for
every selector: input checks, the bounded candidate pool (its lowest scores
are dropped when it is full), promotion without repeats (highest score first,
the older frame among equals), and persistence in the campaign store, so a
resumed campaign continues with the same pool. This selector learns no model,
so it keeps the defaults of :meth:`~mummi_like.Selector.retrain_due` (never)
and :meth:`~mummi_like.Selector.training_task` (none).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
from mummi_like import Selector, SelectorConfig
from pydantic import Field


class NearBarrierConfig(SelectorConfig):
    """Config of the ``near-barrier`` selector; ``pool_size`` comes from :class:`mummi_like.SelectorConfig`."""

    width: float = Field(
        0.3, gt=0, description="How near the barrier (x = 0) a particle counts as near, in nm: its closeness is "
        "exp(-(x / width)^2), 1 on the barrier top and under 0.01 past 2.15 widths."
    )


class NearBarrierSelector(Selector):
    """Promote the frames whose particles sit nearest the barrier top, where a fine run tells most."""

    config_model: ClassVar[type[NearBarrierConfig]] = NearBarrierConfig
    config: NearBarrierConfig

    def _check_frames(self, ids: Sequence[str], frames: np.ndarray) -> None:
        """Refuse anything but one coordinate per particle, a vector per frame, naming the feature to use."""
        if frames.ndim != 2:
            raise ValueError(
                f"selector {self.context.name!r} scores one x per particle, a vector per frame, but got frames of "
                f"shape {frames.shape[1:]}; give the coupling `feature: reaction_coordinate`"
            )

    def _scores(self) -> np.ndarray:
        """The mean closeness of each waiting frame's particles to the barrier; higher is promoted first."""
        x = self.pool.vectors.astype(np.float64)
        return np.exp(-((x / self.config.width) ** 2)).mean(axis=1)
