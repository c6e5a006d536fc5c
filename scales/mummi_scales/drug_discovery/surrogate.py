"""ML1 of the drug-discovery campaign: a fingerprint-MLP ensemble that predicts docking scores and steers docking.

IMPECCABLE's ML1 runs "ML-out": a surrogate trained on the docking scores
gathered so far predicts the score of every molecule of the library, and an
acquisition function chooses which molecules to dock next, so that the best
binders are found with a fraction of the docking calls brute force needs. Here:

- **features**: RDKit fingerprints, computed once per library and cached in an
  ``.npz`` beside it (:func:`library_fingerprints`): by default Morgan (ECFP4)
  substructure counts side by side with atom-pair counts (pairs of atom types
  at every topological distance), which carry the size and shape that Vina
  scores depend on; on MolPAL's Enamine 10k table the pair found 65% of the
  top 100 where Morgan counts alone found 48% (``bench/README.md``);
- **model**: an ensemble of MLPs (:class:`Ensemble`) over all the labels: each
  member holds out its own seeded tenth of them to stop its training when it
  no longer improves there (early stopping), so no label is lost to a fixed
  test split, and the members' held-out predictions (out of fold) are what
  R^2 and Spearman are measured on; targets are standardised;
- **uncertainty**: each member trains on its own bootstrap resample (bagging),
  so a prediction that rests on one or two labels differs between members;
  to the members' spread a term linear in the fingerprint distance to the
  nearest labelled molecule is added in quadrature, its coefficients fitted
  each round to the out-of-fold errors (:func:`distance_noise`); ``ucb`` and
  ``thompson`` use the result;
- **acquisition** (:func:`acquire`): ``greedy`` (lowest predicted score, the
  best binder: Vina scores are negative), ``ucb`` (mean - beta * std,
  optimistic for a minimisation), ``thompson`` (one seeded normal draw per
  molecule from its predictive distribution) and ``random``, the baseline;
  ``explore`` of each later batch goes to novelty instead (``explore_by``):
  half to the largest predicted std, half farthest-first from everything
  docked (:func:`farthest_first`). On the demo library the steroids need
  both: farthest-first docks one when round 0 held none (no MOSES-trained
  model predicts them well, and their std is then unremarkable), and when the
  first steroid docked was an antagonist that does not fit the pocket, the
  agonists' mean turns poor while their std becomes the library's largest,
  so only uncertainty sampling reaches them;
- **a round** (:func:`learn_round`): train, predict the library, measure the
  surrogate by its out-of-fold predictions (R^2 and Spearman), compare the top-k with the previous round's, apply the stop
  rules, choose the next batch among molecules not docked yet.

:func:`train_and_acquire` is the task function an ``active-docking`` training
task runs on the backend; ``bench/effective_performance.py`` replays whole
campaigns with :func:`learn_round` against a table of reference scores. Both
use the same code, so the bench measures what the campaign does.

Everything is seeded: the same labels, settings and seed give the same
predictions and the same next batch (torch on the CPU with one thread). On a
task bound to a GPU, ``device: auto`` trains there (the backend's binding sets
``CUDA_VISIBLE_DEVICES``, so the task's GPU is ``cuda``).
"""

from __future__ import annotations

import csv
import importlib.util
import json
import math
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Self

import numpy as np
import torch
from pydantic import Field, JsonValue, TypeAdapter, ValidationError, model_validator
from torch import nn

from mummi_like import StrictModel, atomic_write
from mummi_scales.drug_discovery.results import DockedLigand, DockingBatch, FailedLigand, SurrogateRound, problem

Acquisition = Literal["greedy", "ucb", "thompson", "random"]
"""How the next batch is chosen from the surrogate's predictions."""
Uncertainty = Literal["ensemble+distance", "ensemble"]
"""What the predicted std is made of: the members' spread plus a term that grows with the distance to the nearest
labelled molecule, calibrated on the out-of-fold errors; or the spread alone."""
SurrogateModel = Literal["fingerprint-mlp", "chemprop-mpnn"]
"""The ensemble's members: MLPs over fingerprints, or chemprop's directed message-passing networks over the
molecular graph (the extra ``chemprop``)."""
Novelty = Literal["uncertainty+distance", "uncertainty", "distance"]
"""How the novelty share of a batch is picked: half by the largest predicted std and half farthest-first from
everything docked; all by std; all farthest-first."""
FingerprintKind = Literal["morgan+atom-pair", "morgan", "morgan-bits", "atom-pair"]
"""Morgan substructure counts and atom-pair counts side by side; Morgan counts; Morgan presence bits; atom-pair
counts."""

PREDICTIONS = "predictions.npz"
"""What a training task writes: library ids, predicted mean and std, docked scores, out-of-fold predictions,
top-k ids."""
MODEL = "model.pt"
"""The trained ensemble a training task writes (see :meth:`Ensemble.save`)."""
SCORES = "scores.json"
"""What a dock task of the ``active-docking`` scale writes beside its poses: its result, for training tasks."""
BATCH = "batch.json"
"""What a dock task writes before it docks: its ``[id, smiles]`` pairs, so that a crashed one's ligands can be named."""
PREDICT_CHUNK = 4096
"""Library rows predicted at once, so that memory stays bounded for large libraries."""


class SurrogateConfig(StrictModel):
    """The surrogate: fingerprints, the MLP ensemble and how it is trained.

    The defaults were chosen on MolPAL's Enamine 10k table and on the PGR
    reference table (``bench/effective_performance.py``; figures in ``bench/README.md``).
    """

    model: SurrogateModel = Field(
        "fingerprint-mlp",
        description="'fingerprint-mlp': MLPs over fingerprint counts (best measured, seconds per round on a core); "
        "'chemprop-mpnn': chemprop v2's directed message-passing network (D-MPNN, MolPAL's MPN) over the "
        "molecular graph, hidden[0] its message size and hidden[1:] its head; needs the extra chemprop "
        "(pip install 'mummi-like[chemprop]'). Both are bagged ensembles trained and stopped the same way.",
    )
    depth: int = Field(3, ge=1, le=10, description="Message-passing steps of 'chemprop-mpnn' (chemprop's default).")
    members: int = Field(
        5, ge=1, le=64, description="MLPs in the ensemble; their spread is the uncertainty ucb and thompson use."
    )
    hidden: list[int] = Field(
        [256, 64],
        min_length=1,
        description="Units of each hidden layer; small layers suffice for fingerprints and train in seconds on a core.",
    )
    epochs: int = Field(
        200,
        ge=1,
        description="Most passes over the training molecules per member; early stopping usually ends it sooner.",
    )
    patience: int = Field(
        20, ge=1, description="Passes without a better loss on the member's validation molecules before it stops."
    )
    validation: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Fraction of the labels each member holds out (its own seeded draw) to stop early and to give "
        "the out-of-fold predictions that R^2 and Spearman are measured on; every label trains the other members. "
        "0: every member trains on all labels for all epochs, and no R^2 is reported.",
    )
    bootstrap: bool = Field(
        True,
        description="Each member trains on its own bootstrap resample of the labels (bagging), so a prediction "
        "that rests on one or two labelled molecules differs between the members that drew them and those that "
        "did not: the spread then says how much of a prediction rests on few labels, which initialisation alone "
        "does not (measured in bench/README.md).",
    )
    batch_size: int = Field(32, ge=1, description="Molecules per optimisation step.")
    learning_rate: float = Field(1e-3, gt=0, description="Adam step size.")
    weight_decay: float = Field(1e-4, ge=0, description="Adam's L2 penalty, against overfitting a few hundred labels.")
    fingerprint: FingerprintKind = Field(
        "morgan+atom-pair",
        description="'morgan+atom-pair': Morgan counts and atom-pair counts side by side (best measured); 'morgan': "
        "Morgan substructure counts; 'morgan-bits': presence only; 'atom-pair': atom-pair counts.",
    )
    fingerprint_bits: int = Field(
        2048, ge=64, le=16384, description="Length of each folded fingerprint; 2048 keeps bit collisions rare."
    )
    fingerprint_radius: int = Field(2, ge=1, le=4, description="Morgan radius; 2 is ECFP4.")
    score_cap: float | None = Field(
        0.0,
        description="Docking scores above this (kcal/mol) are trained on as this value: a positive Vina score means "
        "no pose fits, and its size says nothing the model can use but would dominate a squared loss. None: no cap.",
    )
    uncertainty: Uncertainty = Field(
        "ensemble+distance",
        description="'ensemble+distance': the members' spread combined with a term linear in the fingerprint "
        "distance to the nearest labelled molecule, its two coefficients fitted each round to the out-of-fold "
        "errors, so that a molecule unlike anything docked is never less uncertain than the errors there warrant "
        "(measured: the fitted slope is small inside MOSES, the known ligands' std at the 59th-72nd percentile; "
        "bench/README.md); 'ensemble': the members' spread alone.",
    )
    device: str = Field(
        "auto",
        description="torch device that trains and predicts: 'auto' is the task's GPU when it has one ('cuda', which "
        "the backend's GPU binding makes the task's own) and the CPU otherwise; or 'cpu', 'cuda', 'cuda:1'.",
    )

    @model_validator(mode="after")
    def _model_installed(self) -> Self:
        if self.model == "chemprop-mpnn" and importlib.util.find_spec("chemprop") is None:
            raise ValueError(
                "model 'chemprop-mpnn' needs chemprop, which is not installed: pip install 'mummi-like[chemprop]' "
                "(or use model: fingerprint-mlp)"
            )
        return self

    @model_validator(mode="after")
    def _known_device(self) -> Self:
        if self.device != "auto":
            try:
                torch.device(self.device)
            except (RuntimeError, ValueError) as error:
                raise ValueError(f"device {self.device!r} is no torch device ({error}); use auto, cpu or cuda") from None
        return self

    def torch_device(self) -> torch.device:
        """The device to train on: :attr:`device`, with ``auto`` resolved.

        Raises
        ------
        RuntimeError
            When a CUDA device is asked for and torch sees none (a CPU build of
            torch, or a task not bound to a GPU).
        """
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        device = torch.device(self.device)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError(
                f"surrogate device {self.device!r}: torch sees no CUDA device here (torch {torch.__version__}); give "
                "the training task a GPU (resources: {gpus: 1}) or use device: auto"
            )
        return device


class ActiveLearningConfig(StrictModel):
    """How an active-learning campaign spends its docking calls and when it stops."""

    initial: int = Field(100, ge=1, description="Molecules docked in round 0, drawn at random (seeded).")
    batch: int = Field(50, ge=1, description="Molecules the acquisition function chooses per later round.")
    budget: int = Field(
        500, ge=1, description="Docking calls (molecules docked, failures included) after which the campaign stops."
    )
    acquisition: Acquisition = Field(
        "ucb",
        description="'greedy': lowest predicted score; 'ucb': lowest mean - beta * std; 'thompson': lowest seeded "
        "draw from each molecule's predictive normal; 'random': the baseline.",
    )
    beta: float = Field(
        2.0, ge=0, description="Weight of the predicted std in ucb: larger explores more (2: MolPAL's setting)."
    )
    explore: float = Field(
        0.3,
        ge=0,
        le=1,
        description="Share of each later round's batch chosen for novelty (explore_by) instead of by the "
        "acquisition function, so that a chemotype the surrogate knows little about is docked and it learns what "
        "that chemotype scores. UCB alone does not do this on a few hundred labels: a chemotype first seen through "
        "one poor score (an antagonist that does not fit the pocket) gets a poor mean, and mean - beta * std stays "
        "poor however large its std. The price is exploitation: on MolPAL's Enamine 10k, whose best binders are "
        "one chemistry, 0.3 found 56% of the top 100 where 0 found 64%; set 0 for a library with no chemotype to "
        "find (measured in bench/README.md).",
    )
    explore_by: Novelty = Field(
        "uncertainty+distance",
        description="How the novelty share is picked. 'uncertainty+distance': half (rounded up) the candidates "
        "with the largest predicted std whatever their mean (uncertainty sampling), the rest farthest-first from "
        "everything docked or picked (k-center greedy); 'uncertainty' or 'distance': all one way. Each covers the "
        "other's blind spot: farthest-first reaches a chemotype nothing docked resembles, whose std is "
        "unremarkable while the model extrapolates confidently, and misses it once one member is docked; "
        "uncertainty sampling follows up a chemotype whose first docked member scored poorly (measured on the demo "
        "library in bench/README.md).",
    )
    top_k: int = Field(50, ge=1, description="Size of the best-molecule list whose stability is the convergence test.")
    converged_overlap: float = Field(
        0.9,
        gt=0,
        le=1,
        description="Fraction of the top_k shared with the previous round above which a round counts as converged.",
    )
    patience: int = Field(
        2, ge=1, description="Consecutive converged rounds after which the campaign stops before its budget."
    )

    @model_validator(mode="after")
    def _initial_within_budget(self) -> Self:
        if self.initial > self.budget:
            raise ValueError(
                f"initial ({self.initial}) is larger than budget ({self.budget}): round 0 alone would overspend; "
                "lower initial or raise budget"
            )
        return self


def fingerprints(smiles: Sequence[str], config: SurrogateConfig) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints of ``smiles`` (:attr:`SurrogateConfig.fingerprint`) as ``uint8`` rows, and which SMILES parsed.

    Counts are clipped at 255 (``uint8``), which keeps a 100k-molecule library
    at 200 MB per 2048 bits; no drug-like molecule has a substructure that often.
    A SMILES that does not parse gets a zero row and ``False`` in the mask, so
    it is never acquired (its docking would fail the same way).
    """
    from rdkit import Chem, RDLogger
    from rdkit.Chem import rdFingerprintGenerator

    bits = config.fingerprint_bits
    morgan = rdFingerprintGenerator.GetMorganGenerator(radius=config.fingerprint_radius, fpSize=bits)
    pairs = rdFingerprintGenerator.GetAtomPairGenerator(fpSize=bits)
    kind = config.fingerprint
    width = 2 * bits if kind == "morgan+atom-pair" else bits
    rows = np.zeros((len(smiles), width), dtype=np.uint8)
    valid = np.zeros(len(smiles), dtype=bool)
    RDLogger.DisableLog("rdApp.*")  # a bad SMILES is recorded in the mask; RDKit's log lines would only be noise
    try:
        for row, text in enumerate(smiles):
            molecule = Chem.MolFromSmiles(text)
            if molecule is None:
                continue
            if kind == "morgan-bits":
                rows[row] = morgan.GetFingerprintAsNumPy(molecule)
            if kind in ("morgan", "morgan+atom-pair"):
                rows[row, :bits] = np.minimum(morgan.GetCountFingerprintAsNumPy(molecule), 255)
            if kind in ("atom-pair", "morgan+atom-pair"):
                rows[row, width - bits :] = np.minimum(pairs.GetCountFingerprintAsNumPy(molecule), 255)
            valid[row] = True
    finally:
        RDLogger.EnableLog("rdApp.*")
    return rows, valid


def sparse_features(rows: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Fingerprint rows as the non-zero bits of each row and their ``log1p`` values, padded to the longest row.

    A fingerprint has a few dozen substructures set of thousands of bits, so
    the network's first layer reads only those (see :class:`SparseLinear`).
    ``log1p`` tames large counts (bits become a constant 0.69). Padding
    entries point at index ``rows.shape[1]`` with value 0.

    Returns
    -------
    tuple of torch.Tensor
        ``(index, value)``, both ``(len(rows), longest)``: int64 bit numbers and float32 values.
    """
    count = np.count_nonzero(rows, axis=1)
    width = max(int(count.max(initial=0)), 1)
    index = np.full((len(rows), width), rows.shape[1], dtype=np.int64)
    value = np.zeros((len(rows), width), dtype=np.float32)
    row, bit = np.nonzero(rows)
    column = np.arange(len(row)) - np.repeat(np.cumsum(count) - count, count)
    index[row, column] = bit
    value[row, column] = np.log1p(rows[row, bit].astype(np.float32))
    return torch.from_numpy(index), torch.from_numpy(value)


class SparseLinear(nn.Module):
    """A dense layer over a fingerprint that costs its non-zero bits only.

    The same function as ``nn.Linear(bits, width)`` on the (``log1p``)
    fingerprint, initialised the same way, computed as a weighted sum of the
    weight rows of the set bits (``nn.EmbeddingBag``): some 50 of 2048 rows
    per molecule, a forty-fold saving that makes training an ensemble a matter
    of seconds on one core.
    """

    def __init__(self, bits: int, width: int) -> None:
        super().__init__()
        self.bits = bits
        self.bag = nn.EmbeddingBag(bits + 1, width, mode="sum", padding_idx=bits)
        self.bias = nn.Parameter(torch.empty(width))
        bound = 1 / math.sqrt(bits)
        with torch.no_grad():
            self.bag.weight.uniform_(-bound, bound)
            self.bag.weight[bits].zero_()
            self.bias.uniform_(-bound, bound)

    def forward(self, index: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """The layer's output for :func:`sparse_features` ``(index, value)``."""
        return self.bag(index, per_sample_weights=value) + self.bias


def read_library(path: Path) -> tuple[list[str], list[str]]:
    """Ids and SMILES of a library table (``id,smiles`` CSV) written by the ``active-docking`` scale."""
    with Path(path).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    if rows and not {"id", "smiles"} <= rows[0].keys():
        raise ValueError(f"{path} must have the columns id and smiles, it has {', '.join(rows[0])}")
    return [row["id"] for row in rows], [row["smiles"] for row in rows]


def library_fingerprints(
    ids: Sequence[str], smiles: Sequence[str], config: SurrogateConfig, cache: Path
) -> tuple[np.ndarray, np.ndarray]:
    """Fingerprints of the library, computed once and kept in ``cache`` (an ``.npz``) for later rounds.

    The cache is reused only when it holds the same ids with the same
    fingerprint settings; otherwise it is recomputed and replaced (atomically,
    so a killed task leaves no half file).
    """
    settings = np.array([config.fingerprint, str(config.fingerprint_radius), str(config.fingerprint_bits)])
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as saved:
            if np.array_equal(saved["settings"], settings) and np.array_equal(saved["ids"], np.array(ids)):
                return saved["rows"], saved["valid"]
    rows, valid = fingerprints(smiles, config)
    with atomic_write(cache, "wb") as handle:
        np.savez_compressed(handle, ids=np.array(ids), settings=settings, rows=rows, valid=valid)
    return rows, valid


class FingerprintMLP(nn.Module):
    """One member of the ensemble: a :class:`SparseLinear` layer, then dense ReLU layers, then one output."""

    def __init__(self, bits: int, hidden: Sequence[int]) -> None:
        super().__init__()
        self.first = SparseLinear(bits, hidden[0])
        layers: list[nn.Module] = [nn.ReLU()]
        for inputs, width in zip(hidden[:-1], hidden[1:]):
            layers += [nn.Linear(inputs, width), nn.ReLU()]
        layers.append(nn.Linear(hidden[-1], 1))
        self.rest = nn.Sequential(*layers)

    def forward(self, index: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
        """Predicted (standardised) scores, one per row of :func:`sparse_features`."""
        return self.rest(self.first(index, value)).squeeze(1)


class MessagePassingNet(nn.Module):
    """One member of a ``chemprop-mpnn`` ensemble: chemprop's bond message passing, mean aggregation, an FFN.

    chemprop's :class:`~chemprop.models.MPNN` is a Lightning module; here it
    is used as the plain torch module it also is, so that its members train
    in :class:`Ensemble`'s own loop (bootstrap, early stopping, out of fold)
    exactly as the fingerprint members do.
    """

    def __init__(self, hidden: Sequence[int], depth: int) -> None:
        super().__init__()
        from chemprop import models  # the extra; SurrogateConfig refuses chemprop-mpnn where it is missing
        from chemprop import nn as chemprop_nn

        passing = chemprop_nn.BondMessagePassing(d_h=hidden[0], depth=depth)
        head = chemprop_nn.RegressionFFN(
            input_dim=passing.output_dim, hidden_dim=hidden[-1] if len(hidden) > 1 else hidden[0],
            n_layers=max(len(hidden) - 1, 1),
        )  # fmt: skip
        self.net = models.MPNN(passing, chemprop_nn.MeanAggregation(), head)

    def forward(self, graphs: object) -> torch.Tensor:
        """Predicted (standardised) scores of a chemprop ``BatchMolGraph``."""
        return self.net(graphs).squeeze(1)


Member = FingerprintMLP | MessagePassingNet


class FingerprintInputs:
    """What fingerprint members read: the rows as :func:`sparse_features`, on the ensemble's device."""

    def __init__(self, rows: np.ndarray, smiles: Sequence[str] | None, device: torch.device) -> None:
        self.index, self.value = (tensor.to(device) for tensor in sparse_features(rows))

    def predict(self, model: Member, picked: torch.Tensor) -> torch.Tensor:
        """``model``'s output for the ``picked`` molecules."""
        return model(self.index[picked], self.value[picked])


class GraphInputs:
    """What message-passing members read: chemprop's molecular graph of each SMILES, batched on demand.

    A SMILES that does not parse gets methane's graph: its row is masked
    invalid by :func:`fingerprints`, so its prediction is never used.
    """

    def __init__(self, rows: np.ndarray, smiles: Sequence[str] | None, device: torch.device) -> None:
        from chemprop.featurizers import SimpleMoleculeMolGraphFeaturizer
        from rdkit import Chem, RDLogger

        if smiles is None or len(smiles) != len(rows):
            raise ValueError("surrogate model 'chemprop-mpnn' needs the SMILES of every molecule it trains on or predicts")
        featurize = SimpleMoleculeMolGraphFeaturizer()
        RDLogger.DisableLog("rdApp.*")
        try:
            self.graphs = [featurize(Chem.MolFromSmiles(text) or Chem.MolFromSmiles("C")) for text in smiles]
        finally:
            RDLogger.EnableLog("rdApp.*")
        self.device = device

    def predict(self, model: Member, picked: torch.Tensor) -> torch.Tensor:
        """``model``'s output for the ``picked`` molecules, their graphs collated into one batch."""
        from chemprop.data import BatchMolGraph

        batch = BatchMolGraph([self.graphs[index] for index in picked.tolist()])
        batch.to(self.device)
        return model(batch)


def nearest_distance(rows: np.ndarray, labelled: np.ndarray, exclude: np.ndarray | None = None) -> np.ndarray:
    """Per fingerprint row, 1 - its largest Tanimoto similarity to the ``labelled`` rows (0: a labelled twin).

    Tanimoto on counts (MinMax, ``sum min / sum max``), which on presence
    bits is the usual Tanimoto, computed from L1 distances
    (``sum min = (|a| + |b| - L1) / 2``, ``sum max = (|a| + |b| + L1) / 2``) in
    :data:`PREDICT_CHUNK` rows at a time, so memory stays bounded. Where
    ``exclude`` is given, row ``i`` ignores labelled row ``exclude[i]`` (itself,
    for the labelled molecules' leave-one-out distances; -1: none).
    """
    reference = torch.from_numpy(labelled.astype(np.float32))
    reference_sums = reference.sum(dim=1)
    out = np.empty(len(rows))
    for start in range(0, len(rows), PREDICT_CHUNK):
        chunk = torch.from_numpy(rows[start : start + PREDICT_CHUNK].astype(np.float32))
        l1 = torch.cdist(chunk, reference, p=1)
        sums = chunk.sum(dim=1, keepdim=True) + reference_sums
        similarity = ((sums - l1) / (sums + l1).clamp_min(1e-9)).numpy()
        if exclude is not None:
            skipped = exclude[start : start + len(chunk)]
            picked = np.flatnonzero(skipped >= 0)
            similarity[picked, skipped[picked]] = -np.inf
        out[start : start + len(chunk)] = 1 - similarity.max(axis=1, initial=-np.inf)
    return np.clip(out, 0.0, 1.0)


def distance_noise(distance: np.ndarray, residual: np.ndarray, spread: np.ndarray) -> tuple[float, float]:
    """``(a, b)`` of the std ``a + b * distance`` that, added to the members' ``spread`` in quadrature, makes
    the out-of-fold ``residual`` most likely (Gaussian, maximum likelihood; ``a, b >= 0``).

    ``b`` is how much less a model knows per unit of distance from its data,
    measured on molecules it did not train on; ``(0, 0)`` with fewer than
    :data:`MIN_VALIDATION` residuals.
    """
    from scipy.optimize import minimize

    if len(residual) < MIN_VALIDATION:
        return 0.0, 0.0

    def negative_log_likelihood(params: np.ndarray) -> float:
        variance = spread**2 + (params[0] + params[1] * distance) ** 2
        return float(np.sum(np.log(variance) + residual**2 / variance))

    start = np.array([max(float(np.std(residual)), 1e-3), 0.0])
    fitted = minimize(negative_log_likelihood, start, method="L-BFGS-B", bounds=[(1e-3, None), (0.0, None)])
    return float(fitted.x[0]), float(fitted.x[1])


MIN_VALIDATION = 5
"""Fewest validation molecules worth stopping on: below it, a member trains on all labels for all epochs."""


class Ensemble:
    """Networks trained on all the labelled molecules, each stopping early on its own seeded tenth of them.

    Members are :class:`FingerprintMLP` or :class:`MessagePassingNet`
    (:attr:`SurrogateConfig.model`). Inputs are :func:`fingerprints` rows
    (and, for message passing, the SMILES), featurised a chunk at a time, so
    that predicting a large library never holds it as floats or graphs.
    Targets are standardised with the training mean and std (kept with
    the model), so that one learning rate suits any score scale. Members
    differ by initialisation, batch order and validation draw; each label is
    held out by about ``validation * members`` of them, whose predictions of
    it are its out-of-fold prediction (:attr:`out_of_fold`), an honest measure
    that costs no label.
    """

    def __init__(self, config: SurrogateConfig, seed: int) -> None:
        self.config = config
        self.seed = seed
        self.members: list[Member] = []
        self.center = 0.0
        self.scale = 1.0
        self.out_of_fold = np.empty(0)
        """Per training molecule, the mean prediction of the members that held it out; NaN where none did."""
        self.device = config.torch_device()
        self.bits = 0
        """Fingerprint width of the rows it was trained on."""

    def _inputs(self, rows: np.ndarray, smiles: Sequence[str] | None) -> FingerprintInputs | GraphInputs:
        kind = GraphInputs if self.config.model == "chemprop-mpnn" else FingerprintInputs
        return kind(rows, smiles, self.device)

    def _member(self, bits: int) -> Member:
        if self.config.model == "chemprop-mpnn":
            return MessagePassingNet(self.config.hidden, self.config.depth)
        return FingerprintMLP(bits, self.config.hidden)

    def fit(self, rows: np.ndarray, y: np.ndarray, smiles: Sequence[str] | None = None) -> Self:
        """Train every member on fingerprint ``rows`` (and ``smiles``, which message passing reads) and scores
        ``y``, and record the out-of-fold predictions."""
        if len(y) < 2:
            raise ValueError(f"the surrogate needs at least 2 labelled molecules to train, got {len(y)}")
        self.center, self.scale = float(np.mean(y)), float(np.std(y)) or 1.0
        inputs = self._inputs(rows, smiles)
        self.bits = rows.shape[1]
        targets = torch.from_numpy(((y - self.center) / self.scale).astype(np.float32)).to(self.device)
        held = round(self.config.validation * len(y))
        held = held if held >= MIN_VALIDATION and len(y) - held >= 2 else 0
        sums, counts = np.zeros(len(y)), np.zeros(len(y))
        self.members = []
        for member in range(self.config.members):
            generator = torch.Generator().manual_seed(self.seed * 1009 + member)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(self.seed * 1009 + member)
                model = self._member(self.bits).to(self.device)
            order = torch.randperm(len(y), generator=generator)
            checked, trained = order[:held].to(self.device), order[held:]
            if self.config.bootstrap:
                trained = trained[torch.randint(len(trained), (len(trained),), generator=generator)]
            self._train(model, inputs, targets, trained, checked, generator)
            if held:
                with torch.no_grad():
                    guess = inputs.predict(model, checked).cpu().numpy()
                sums[order[:held].numpy()] += guess * self.scale + self.center
                counts[order[:held].numpy()] += 1
            self.members.append(model)
        with np.errstate(invalid="ignore"):
            self.out_of_fold = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        return self

    def _train(self, model: Member, inputs: FingerprintInputs | GraphInputs, targets: torch.Tensor,
               trained: torch.Tensor, checked: torch.Tensor, generator: torch.Generator) -> None:
        """Adam on ``trained`` rows until ``checked`` rows stop improving (:attr:`SurrogateConfig.patience`
        passes), then the best weights back; all :attr:`SurrogateConfig.epochs` when nothing is checked."""
        # fused: one kernel over all parameters, 4x faster than the default on a CPU core for these layers
        optimizer = torch.optim.Adam(
            model.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay, fused=True
        )
        best, stale, kept = math.inf, 0, None
        for _ in range(self.config.epochs):
            model.train()
            order = trained[torch.randperm(len(trained), generator=generator)].to(self.device)
            for start in range(0, len(order), self.config.batch_size):
                picked = order[start : start + self.config.batch_size]
                optimizer.zero_grad()
                nn.functional.mse_loss(inputs.predict(model, picked), targets[picked]).backward()
                optimizer.step()
            if not len(checked):
                continue
            model.eval()
            with torch.no_grad():
                loss = float(nn.functional.mse_loss(inputs.predict(model, checked), targets[checked]))
            if loss < best - 1e-4:
                best, stale = loss, 0
                kept = {name: tensor.clone() for name, tensor in model.state_dict().items()}
            else:
                stale += 1
                if stale >= self.config.patience:
                    break
        if kept is not None:
            model.load_state_dict(kept)
        model.eval()

    def member_predictions(self, rows: np.ndarray, smiles: Sequence[str] | None = None) -> np.ndarray:
        """``(members, len(rows))`` predicted scores of fingerprint ``rows`` (and ``smiles``), in the targets' units.

        Rows are featurised and predicted :data:`PREDICT_CHUNK` at a time, so
        memory stays bounded however large the library.
        """
        if not self.members:
            raise RuntimeError("the ensemble is not trained: call fit (or load) first")
        out = np.empty((len(self.members), len(rows)), dtype=np.float64)
        with torch.no_grad():
            for start in range(0, len(rows), PREDICT_CHUNK):
                stop = min(start + PREDICT_CHUNK, len(rows))
                chunk = self._inputs(rows[start:stop], None if smiles is None else smiles[start:stop])
                every = torch.arange(stop - start, device=self.device)
                for member, model in enumerate(self.members):
                    out[member, start:stop] = chunk.predict(model, every).cpu().numpy()
        return out * self.scale + self.center

    def predict(self, rows: np.ndarray, smiles: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Mean and std over the members of the predicted scores of fingerprint ``rows`` (and ``smiles``)."""
        predictions = self.member_predictions(rows, smiles)
        return predictions.mean(axis=0), predictions.std(axis=0)

    def save(self, path: Path) -> None:
        """Write the members' weights, the target standardisation and the config to ``path`` (torch, atomically)."""
        with atomic_write(path, "wb") as handle:
            torch.save(
                {
                    "config": self.config.model_dump(),
                    "seed": self.seed,
                    "center": self.center,
                    "scale": self.scale,
                    "bits": self.bits,
                    "members": [{name: t.cpu() for name, t in model.state_dict().items()} for model in self.members],
                },
                handle,
            )

    @classmethod
    def load(cls, path: Path) -> Ensemble:
        """The ensemble :meth:`save` wrote to ``path``, ready to :meth:`predict` (on its config's device)."""
        saved = torch.load(path, weights_only=True)
        ensemble = cls(SurrogateConfig(**saved["config"]), saved["seed"])
        ensemble.center, ensemble.scale = saved["center"], saved["scale"]
        ensemble.bits = saved["bits"]
        for state in saved["members"]:
            model = ensemble._member(ensemble.bits)
            model.load_state_dict(state)
            model.to(ensemble.device).eval()
            ensemble.members.append(model)
        return ensemble


def random_choice(candidates: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """``k`` of ``candidates`` drawn uniformly without replacement: round 0, and the ``random`` baseline."""
    return rng.permutation(np.asarray(candidates, dtype=np.int64))[: min(k, len(candidates))]


def acquire(
    method: Acquisition,
    mean: np.ndarray,
    std: np.ndarray,
    candidates: np.ndarray,
    k: int,
    beta: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Indices of the ``k`` best ``candidates`` (library indices) by ``method``, best first.

    Lower is better throughout (Vina scores: negative is binding). Ties keep
    library order. ``rng`` draws thompson's samples (one per library molecule,
    so a molecule's draw does not depend on which others are candidates) and
    random's choice.
    """
    if method == "random":
        return random_choice(candidates, k, rng)
    candidates = np.asarray(candidates, dtype=np.int64)
    if method == "greedy":
        value = mean
    elif method == "ucb":
        value = mean - beta * std
    elif method == "thompson":
        value = mean + std * rng.standard_normal(len(mean))
    else:
        raise ValueError(f"unknown acquisition {method!r}; use greedy, ucb, thompson or random")
    order = np.argsort(value[candidates], kind="stable")
    return candidates[order[: min(k, len(candidates))]]


def farthest_first(
    rows: np.ndarray, candidates: np.ndarray, docked: np.ndarray, chosen: np.ndarray, k: int
) -> np.ndarray:
    """``k`` of ``candidates`` (library indices), each the one farthest (:func:`nearest_distance`) from the
    ``docked`` molecules, the ``chosen`` ones and the picks before it: k-center greedy, a space-filling batch.

    Ties go to the first in library order, so the picks are deterministic.
    """
    if k <= 0 or not len(candidates):
        return np.empty(0, dtype=np.int64)
    seen = np.concatenate([docked, chosen]).astype(np.int64)
    pool = rows[candidates]
    distance = nearest_distance(pool, rows[seen]) if len(seen) else np.ones(len(candidates))
    picks: list[int] = []
    for _ in range(min(k, len(candidates))):
        best = int(np.argmax(distance))
        picks.append(int(candidates[best]))
        distance = np.minimum(distance, nearest_distance(pool, pool[[best]]))
        distance[best] = -1.0
    return np.array(picks, dtype=np.int64)


def round_rng(seed: int, round_index: int) -> np.random.Generator:
    """The generator of one round's acquisition: fixed by the seed and the round alone, so a resumed run agrees."""
    return np.random.default_rng([seed, round_index])


@dataclass(frozen=True)
class Round:
    """What one round of :func:`learn_round` found and chose."""

    ensemble: Ensemble
    mean: np.ndarray
    """Predicted score of every library molecule."""
    std: np.ndarray
    """Predicted std of every library molecule (:attr:`SurrogateConfig.uncertainty`)."""
    distance_noise: tuple[float, float] | None
    """``(a, b)`` of the distance term ``a + b * distance`` in :attr:`std`; None for the spread alone."""
    out_of_fold: np.ndarray
    """Per library molecule, the prediction of the members that held it out of their training (NaN where none
    did: molecules not labelled, or no member validated on them)."""
    r2: float | None
    """R^2 of the out-of-fold predictions; None with fewer than 2."""
    spearman: float | None
    """Rank correlation of the out-of-fold predictions; None with fewer than 2."""
    top: np.ndarray
    """Library indices of the top_k by the best estimate (docked score where docked, prediction elsewhere)."""
    overlap: float | None
    """Fraction of :attr:`top` that the previous round's top shared; None in the first trained round."""
    stop: str | None
    """Why the campaign stops after this round, or None."""
    chosen: np.ndarray
    """Library indices to dock next, best first; empty when :attr:`stop` is set."""


def r_squared(truth: np.ndarray, predicted: np.ndarray) -> float | None:
    """Coefficient of determination of ``predicted`` against ``truth``; None for fewer than 2 or constant truths."""
    if len(truth) < 2 or np.ptp(truth) == 0:
        return None
    return float(1 - np.sum((truth - predicted) ** 2) / np.sum((truth - np.mean(truth)) ** 2))


def _spearman(truth: np.ndarray, predicted: np.ndarray) -> float | None:
    from scipy.stats import spearmanr

    if len(truth) < 2 or np.ptp(truth) == 0 or np.ptp(predicted) == 0:
        return None
    return float(spearmanr(truth, predicted).statistic)


def capped(scores: np.ndarray, config: SurrogateConfig) -> np.ndarray:
    """The scores the surrogate trains on and is measured against: capped at ``config.score_cap`` (NaN stays NaN)."""
    return scores if config.score_cap is None else np.minimum(scores, config.score_cap)


def stop_reason(docked: int, candidates: int, overlaps: Sequence[float], learning: ActiveLearningConfig) -> str | None:
    """Why an active-learning campaign stops now, or None to go on.

    Parameters
    ----------
    docked:
        Docking calls spent, failed ligands included.
    candidates:
        Molecules still available to dock.
    overlaps:
        Top-k overlaps of every round with its previous one, oldest first.
    learning:
        The budget and the convergence rule.
    """
    if docked >= learning.budget:
        return f"budget: {docked} docking calls spent of {learning.budget}"
    if candidates == 0:
        return f"library exhausted after {docked} docking calls"
    recent = list(overlaps)[-learning.patience :]
    if len(recent) == learning.patience and all(value >= learning.converged_overlap for value in recent):
        return (
            f"converged: the top {learning.top_k} kept >= {learning.converged_overlap:.0%} of its molecules for "
            f"{learning.patience} round(s) in a row"
        )
    return None


def learn_round(
    ids: Sequence[str],
    rows: np.ndarray,
    valid: np.ndarray,
    scores: np.ndarray,
    docked: np.ndarray,
    surrogate: SurrogateConfig,
    learning: ActiveLearningConfig,
    round_index: int,
    previous_top: Sequence[str] | None,
    overlaps: Sequence[float],
    seed: int,
    smiles: Sequence[str] | None = None,
) -> Round:
    """Train on the docked scores, predict the library, check the model, and choose the next batch.

    Parameters
    ----------
    ids, rows, valid:
        The library: ids, :func:`fingerprints` rows, and which parsed.
    scores:
        Docked score per library molecule; NaN where not docked or docking failed.
    docked:
        Which molecules were docked (failures included): never chosen again.
    surrogate, learning:
        The model's and the campaign's settings.
    round_index:
        This round's number; seeds its acquisition.
    previous_top:
        The previous round's top-k ids, or None in the first trained round.
    overlaps:
        Top-k overlaps of the earlier rounds, oldest first (the convergence test).
    seed:
        Seed of the ensemble (its validation draws) and of the acquisition.
    smiles:
        The library's SMILES, which a ``chemprop-mpnn`` surrogate reads (fingerprint members do not need them).
    """
    labelled = ~np.isnan(scores)
    if labelled.sum() < 2:
        raise ValueError(
            f"round {round_index} has {int(labelled.sum())} docked molecule(s) to train on (of {int(docked.sum())} "
            "docked, the rest failed): dock more in round 0 (raise initial)"
        )
    targets = capped(scores, surrogate)
    train = np.flatnonzero(labelled)
    ensemble = Ensemble(surrogate, seed + 7919 * round_index).fit(
        rows[train], targets[train], None if smiles is None else [smiles[index] for index in train]
    )
    out_of_fold = np.full(len(ids), np.nan)
    out_of_fold[labelled] = ensemble.out_of_fold
    out = ~np.isnan(out_of_fold)
    mean, std = ensemble.predict(rows, smiles)
    noise = None
    if surrogate.uncertainty == "ensemble+distance":
        itself = np.full(len(ids), -1)
        itself[train] = np.arange(len(train))
        distance = nearest_distance(rows, rows[train], exclude=itself)
        noise = distance_noise(distance[out], (targets - out_of_fold)[out], std[out])
        std = np.sqrt(std**2 + (noise[0] + noise[1] * distance) ** 2)
    estimate = np.where(labelled, targets, mean)
    estimate[~valid & ~labelled] = np.inf  # an unparsable molecule is no candidate for the best list
    top = np.argsort(estimate, kind="stable")[: learning.top_k]
    overlap = None
    if previous_top is not None:
        overlap = len({ids[index] for index in top} & set(previous_top)) / max(len(top), 1)
    history = [*overlaps, *([] if overlap is None else [overlap])]
    candidates = np.flatnonzero(valid & ~docked)
    spent = int(docked.sum())
    stop = stop_reason(spent, len(candidates), history, learning)
    chosen = np.empty(0, dtype=np.int64)
    if stop is None:
        k = min(learning.batch, learning.budget - spent)
        novel = round(learning.explore * k)
        chosen = acquire(learning.acquisition, mean, std, candidates, k - novel, learning.beta,
                         round_rng(seed, round_index))  # fmt: skip
        if novel:
            rest = np.setdiff1d(candidates, chosen, assume_unique=True)
            by_std = {"uncertainty": novel, "uncertainty+distance": (novel + 1) // 2, "distance": 0}[learning.explore_by]
            uncertain = rest[np.argsort(-std[rest], kind="stable")[:by_std]]
            picked = np.concatenate([chosen, uncertain])
            far = farthest_first(rows, np.setdiff1d(rest, uncertain, assume_unique=True), np.flatnonzero(docked),
                                 picked, novel - by_std)  # fmt: skip
            chosen = np.concatenate([picked, far])
    return Round(
        ensemble=ensemble,
        mean=mean,
        std=std,
        distance_noise=noise,
        out_of_fold=out_of_fold,
        r2=r_squared(targets[out], out_of_fold[out]),
        spearman=_spearman(targets[out], out_of_fold[out]),
        top=top,
        overlap=overlap,
        stop=stop,
        chosen=chosen,
    )


def read_scores(dock_dirs: Sequence[str]) -> dict[str, DockedLigand | FailedLigand]:
    """Every ligand result the dock tasks in ``dock_dirs`` wrote to their :data:`SCORES` file.

    A training task runs ``after`` its dock tasks however they ended, so a
    folder may lack :data:`SCORES`. Where the dock task got as far as writing
    its :data:`BATCH`, it crashed, was killed or ran out of time while docking:
    its ligands count as failed, so that the round goes on and they are not
    chosen again and again. Where it wrote neither (it never started: cancelled,
    or its folder was deleted) its ligands were never tried and stay
    candidates; a warning on the task's stderr names the folder.

    Raises
    ------
    ValueError
        Naming the file, when it holds no docking batch.
    """
    results: dict[str, DockedLigand | FailedLigand] = {}
    for folder in dock_dirs:
        path, batch = Path(folder) / SCORES, Path(folder) / BATCH
        if path.is_file():
            try:
                results.update(DockingBatch.model_validate(json.loads(path.read_text())).root)
            except ValidationError as error:
                raise ValueError(
                    f"{path.resolve()} holds no dock task's scores ({problem(error)}); rerun the dock task of that "
                    "folder"
                ) from None
        elif batch.is_file():
            try:
                pairs = TypeAdapter(list[tuple[str, str]]).validate_json(batch.read_text())
            except ValidationError as error:
                raise ValueError(f"{batch.resolve()} holds no dock task's batch ({problem(error)})") from None
            failure = "docking: the dock task ended without scores (it crashed, was killed or ran out of time)"
            results.update({ligand: FailedLigand(error=failure, smiles=smiles) for ligand, smiles in pairs})
        else:
            print(f"warning: {Path(folder).resolve()} has neither {SCORES} nor {BATCH}: its dock task never ran, so "
                  "its ligands stay candidates", file=sys.stderr)
    return results


def train_and_acquire(
    library: str,
    cache: str,
    dock_dirs: list[str],
    round_index: int,
    previous: str | None,
    overlaps: list[float],
    surrogate: dict[str, JsonValue],
    learning: dict[str, JsonValue],
    seed: int,
    threads: int = 1,
) -> dict[str, JsonValue]:
    """A training task of the ``active-docking`` scale: train on all scores so far and choose the next batch.

    Runs in the task's working directory, where it writes :data:`PREDICTIONS`
    (``ids``, ``mean``, ``std``, ``score`` (NaN where not docked), ``docked``,
    ``out_of_fold``, ``top`` ids) and :data:`MODEL`.

    Parameters
    ----------
    library:
        The scale's ``library.csv`` (``id,smiles``).
    cache:
        Where the library's fingerprints are cached across rounds.
    dock_dirs:
        Working directories of every dock task so far, each with its :data:`SCORES`.
    round_index:
        This round's number.
    previous:
        The previous round's :data:`PREDICTIONS` (for the top-k overlap), or None.
    overlaps:
        Top-k overlaps of the earlier rounds, oldest first.
    surrogate, learning:
        :class:`SurrogateConfig` and :class:`ActiveLearningConfig` as dicts.
    seed:
        The campaign's seed.
    threads:
        torch threads: the cores the task reserved.

    Returns
    -------
    dict
        A dumped :class:`~mummi_scales.drug_discovery.results.SurrogateRound`: ``round``, ``docked``,
        ``labelled``, ``failed``, ``trained_on``, ``held_out``, ``r2``, ``spearman``, ``topk_overlap``,
        ``best_score``, ``best_id``, ``stop``, ``next`` (``[[id, smiles], ...]``), ``seconds``.
    """
    start = time.perf_counter()
    torch.set_num_threads(threads)
    model_config, plan = SurrogateConfig(**surrogate), ActiveLearningConfig(**learning)
    ids, smiles = read_library(Path(library))
    rows, valid = library_fingerprints(ids, smiles, model_config, Path(cache))
    results = read_scores(dock_dirs)
    position = {ligand_id: index for index, ligand_id in enumerate(ids)}
    unknown = sorted(set(results) - position.keys())
    if unknown:
        raise ValueError(
            f"dock results name {len(unknown)} molecule(s) not in {library} (e.g. {unknown[0]!r}): the library file "
            "changed after docking started; restore it or start a new campaign"
        )
    scores = np.full(len(ids), np.nan)
    docked = np.zeros(len(ids), dtype=bool)
    for ligand_id, result in results.items():
        docked[position[ligand_id]] = True
        if isinstance(result, DockedLigand) and math.isfinite(result.score):
            scores[position[ligand_id]] = result.score
    previous_top = None
    if previous is not None:
        with np.load(previous, allow_pickle=False) as saved:
            previous_top = [str(value) for value in saved["top"]]
    found = learn_round(
        ids, rows, valid, scores, docked, model_config, plan, round_index, previous_top, overlaps, seed, smiles
    )
    found.ensemble.save(Path(MODEL))
    with atomic_write(PREDICTIONS, "wb") as handle:
        np.savez_compressed(
            handle,
            ids=np.array(ids),
            mean=found.mean,
            std=found.std,
            score=scores,
            docked=docked,
            out_of_fold=found.out_of_fold,
            top=np.array([ids[index] for index in found.top]),
        )
    labelled = ~np.isnan(scores)
    best = int(np.nanargmin(scores)) if labelled.any() else None
    return SurrogateRound(
        round=round_index,
        docked=int(docked.sum()),
        labelled=int(labelled.sum()),
        failed=int((docked & ~labelled).sum()),
        trained_on=int(labelled.sum()),
        held_out=int((~np.isnan(found.out_of_fold)).sum()),
        r2=found.r2,
        spearman=found.spearman,
        topk_overlap=found.overlap,
        best_score=None if best is None else float(scores[best]),
        best_id=None if best is None else ids[best],
        stop=found.stop,
        next=[(ids[index], smiles[index]) for index in found.chosen],
        seconds=round(time.perf_counter() - start, 3),
    ).model_dump(mode="json")


def load_predictions(path: Path) -> Mapping[str, np.ndarray]:
    """The arrays of a training task's :data:`PREDICTIONS` file, loaded into memory."""
    with np.load(path, allow_pickle=False) as saved:
        return {name: saved[name] for name in saved.files}
