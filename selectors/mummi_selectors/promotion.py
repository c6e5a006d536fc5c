"""Uncertainty-aware promotion of ligands from a coarse binding estimate to a fine one.

The coarse stage of the drug-discovery campaign (S3-CG, ensemble MM/GBSA) gives
every ligand a binding estimate with an error: mean, standard error and a
confidence interval. The fine stage (S3-FG, alchemical free energy) costs
orders of magnitude more per ligand, so it should go where a finer estimate
can change the answer the campaign gives, which is a *ranking* of ligands.
Two kinds of ligand are not worth it:

- a ligand that is confidently bad: whatever its true value within its
  interval, it is not among the best;
- a ligand whose estimate is already tight: refining it moves it by less than
  the tolerance the ranking cares about, whether it is good or bad.

So a ligand's score is the product of two factors, both in [0, 1]:

.. math::

    s_i = \\underbrace{\\Phi\\!\\left(\\frac{m^* + \\delta - \\mu_i}{\\sigma_i}\\right)}_{\\text{competitive}}
          \\;\\times\\;
          \\underbrace{\\frac{h_i^2}{h_i^2 + \\delta^2}}_{\\text{uncertain}}

where :math:`\\mu_i` and :math:`\\sigma_i` are the ligand's mean and standard
error (kcal/mol; lower is tighter binding), :math:`m^*` the lowest mean of all
ligands the selector has seen (promoted ones included: the leader stays the bar
after it was promoted), :math:`\\delta` the ``margin`` and :math:`h_i` the half
width of the confidence interval.

- The *competitive* factor is the probability, under :math:`N(\\mu_i, \\sigma_i^2)`,
  that the ligand binds at least as well as the current best, give or take the
  margin: 1 for a ligand far ahead, about 0.5 or more for the leader itself,
  vanishing for a ligand many standard errors behind. With :math:`\\sigma_i = 0`
  it is 1 or 0, whether the mean is within the margin of the best or not.
- The *uncertain* factor compares the interval with the margin: it vanishes
  when the interval is much narrower than the margin (refinement cannot reorder
  ligands by more than the tolerance) and tends to 1 when it is much wider. The
  interval rather than the standard error is used here because it is what the
  coarse stage reports as its uncertainty, asymmetric bootstrap intervals
  included; the standard error shapes the probability above, where a
  distribution is needed.

The score is therefore probability-like, dimensionless and comparable across
campaigns, which makes ``min_score`` a plain threshold: ligands scoring below
it are never promoted, however many fine slots are free, because spending a
fine simulation on them would not change the ranking.

There is no model and no random phase: scores are a function of the frames
alone, so the selector is deterministic. Expected improvement was considered
and not used: it is in kcal/mol (its scale changes with the system, so a
threshold does not carry over) and, with a margin, does not vanish for a
confident leader.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import Field

from mummi_like import Selector, SelectorConfig, name_frames

FEATURE = ("mean", "sem", "ci_low", "ci_high")
"""What one frame's feature holds, in this order (kcal/mol): the S3-CG summary's ``estimate`` observable."""


class UncertainCompetitiveConfig(SelectorConfig):
    """Settings of the ``uncertain-competitive`` selector."""

    margin: float = Field(
        1.0,
        gt=0,
        description="Tolerance of the ranking (kcal/mol): a ligand is competitive if it may bind within this of the "
        "best mean, and an interval much narrower than this is not worth refining. About 1 kcal/mol, the accuracy "
        "of good alchemical estimates.",
    )
    min_score: float = Field(
        0.05,
        ge=0,
        le=1,
        description="Ligands scoring below this are never promoted, even with fine slots free: a finer estimate "
        "would hardly change the ranking.",
    )


def normal_cdf(x: np.ndarray) -> np.ndarray:
    """The standard normal cumulative distribution, elementwise (no SciPy needed for one function)."""
    return np.array([0.5 * math.erfc(-value / math.sqrt(2.0)) for value in np.ravel(x)]).reshape(np.shape(x))


def scores(estimates: np.ndarray, best: float, margin: float) -> np.ndarray:
    """The score of each ``[mean, sem, ci_low, ci_high]`` row against the best mean ``best`` (see the module).

    Parameters
    ----------
    estimates
        ``(n, 4)`` in kcal/mol, lower binding free energy being better.
    best
        The lowest mean seen so far, promoted ligands included.
    margin
        The ranking's tolerance (kcal/mol), > 0.

    Returns
    -------
    numpy.ndarray
        ``(n,)`` scores in [0, 1].
    """
    mean, sem, low, high = (estimates[:, k] for k in range(4))
    gap = best + margin - mean
    spread = sem > 0
    z = np.where(gap >= 0, np.inf, -np.inf)  # a certain estimate is competitive or not, nothing in between
    z[spread] = gap[spread] / sem[spread]
    competitive = normal_cdf(z)
    half = (high - low) / 2.0
    uncertain = half**2 / (half**2 + margin**2)
    return competitive * uncertain


class UncertainCompetitiveSelector(Selector):
    """Promote the ligands whose finer estimate could change the ranking: competitive and uncertain.

    Frames are one per ligand, their feature ``[mean, sem, ci_low, ci_high]``
    (kcal/mol) as the S3-CG summary streams it. Scores follow the formula of
    the module docstring; :meth:`select` never returns a ligand scoring below
    ``min_score``. No model, no training task.
    """

    config_model = UncertainCompetitiveConfig
    config: UncertainCompetitiveConfig

    def _check_frames(self, ids: Sequence[str], frames: np.ndarray) -> None:
        """Refuse frames that are not ``[mean, sem, ci_low, ci_high]`` with sem >= 0 and ci_low <= ci_high.

        Raises
        ------
        ValueError
            Naming the frames and the coupling's feature that should have been used.
        """
        name = self.context.name
        if frames.shape[1:] != (len(FEATURE),):
            raise ValueError(
                f"selector {name!r}: each frame's feature must be [{', '.join(FEATURE)}] (shape (4,)), got shape "
                f"{frames.shape[1:]}; couple it to the S3-CG summary's stream with feature: estimate"
            )
        bad = (frames[:, 1] < 0) | (frames[:, 2] > frames[:, 3])
        if bad.any():
            raise ValueError(
                f"selector {name!r}: {name_frames(ids, bad)} have a negative standard error or ci_low > ci_high; "
                f"a feature must be [{', '.join(FEATURE)}]; nothing of this batch was ingested"
            )

    def _scores(self) -> np.ndarray:
        pool = self.pool
        means = [pool.vectors[:, 0]]
        if pool.selected_ids:
            means.append(pool.selected_vectors[:, 0])
        best = float(np.concatenate(means).min())
        return scores(pool.vectors.astype(np.float64), best, self.config.margin)

    def select(self, k: int) -> list[tuple[str, float]]:
        """Promote up to ``k`` waiting ligands, highest score first, none scoring below ``min_score``.

        Scores do not change when a ligand is promoted (the best mean counts
        promoted ligands too), so the ligands at or above the threshold are
        exactly the first ones the base class would take.
        """
        eligible = int((self.pool.scores >= self.config.min_score).sum()) if len(self.pool) else 0
        return super().select(min(k, eligible) if k >= 0 else k)
