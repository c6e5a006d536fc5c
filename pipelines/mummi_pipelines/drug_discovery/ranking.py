"""The ``ranking`` scale: the campaign's last stage, one task that ranks every ligand on all the evidence.

Once the stages it ``depends_on`` are done, the scale reads their results and
makes one task (:func:`rank`) that writes ``ranking.csv`` and returns the
campaign's outcome: the finalists in their final order, and the enrichment of
the known ligands after S1 and after S3.

The order of the ranking, and why:

1. the finalists (the ligands S2 simulated) first, ordered by their S3-CG
   MM/GBSA estimate; the ligands a selector promoted to S3-FG then swap places
   among themselves by their alchemical estimate. The finer result replaces the
   coarse one *among the ligands it was computed for* rather than being compared
   with coarse numbers: MM/GBSA without an entropy term is systematically tens
   of kcal/mol more negative than an alchemical free energy, so sorting the two
   together would sink every refined ligand;
2. finalists whose ligand left the pocket in S2 go after the other finalists:
   a docked pose that does not hold under dynamics is a likely false positive;
3. then every other docked ligand by its Vina score;
4. then the molecules never docked, by the surrogate's last prediction of their
   score (the campaign's best guess for them);
5. molecules that failed preparation or docking come last, unranked.

Which upstream result is which is read from the kind of each task value: the
first of the stage models of :mod:`mummi_scales.drug_discovery.results` it
validates as (a docking batch, a surrogate round, an S2 segment, the S3-CG
summary, an S3-FG result), so the scale works with any scale names and any
subset of the stages; values of other kinds (S2 preparations, S3-CG replicas)
are not read.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, NamedTuple

import numpy as np
from mummi_scales.drug_discovery.data import enrichment_factor
from mummi_scales.drug_discovery.results import (
    CoarseEstimate,
    CoarseSummary,
    DockedLigand,
    DockingBatch,
    Enrichment,
    FailedLigand,
    Finalist,
    FineResult,
    KnownLigand,
    RankingOutcome,
    Segment,
    SurrogateRound,
    parse_as,
)
from mummi_scales.generic.parameters import campaign_root
from pydantic import Field, JsonValue

from mummi_like import CallablePayload, DoneTask, Resources, Scale, StrictModel, TaskSpec, atomic_write

RANK_FUNCTION = "mummi_pipelines.drug_discovery.ranking:rank"
"""What the scale's task calls."""
RANKING_CSV = "ranking.csv"
"""The table :func:`rank` writes in its working directory, one row per molecule."""
PREDICTIONS = "predictions.npz"
"""What a surrogate round writes in its working directory: ``ids``, ``mean``, ``std`` over the whole library."""
STAGE = "ranking"
"""The ``stage`` label of the ranking task, by which reports find it."""
COLUMNS = (
    "rank", "ligand", "smiles", "known", "finalist", "docking_score", "predicted_score", "predicted_std",
    "left_pocket", "ligand_rmsd_max", "s3cg_dg", "s3cg_ci_low", "s3cg_ci_high", "s3fg_dg", "s3fg_err", "error",
)
"""Columns of :data:`RANKING_CSV`; energies in kcal/mol, RMSD in angstrom; empty where a stage did not run."""


class RankingConfig(StrictModel):
    """Config of the ``ranking`` scale."""

    enrichment_fraction: float = Field(
        0.01, gt=0, le=1, description="Top fraction of the ranked library at which the enrichment factor of the "
        "known ligands is measured (0.01: EF at 1%).",
    )
    known_prefix: str = Field(
        "known-", description="Ids of the known actives start with this (the docking scales' known ligands do).",
    )
    resources: Resources = Field(default_factory=Resources, description="What the ranking task needs (little).")


class RankingScale(Scale):
    """One task, once every upstream stage is done, that ranks all molecules (see the module docstring)."""

    config_model: ClassVar[type[RankingConfig]] = RankingConfig
    config: RankingConfig

    def tasks(self) -> list[TaskSpec]:
        """Nothing to rank before the upstream stages are done."""
        return []

    def on_upstream_done(self, upstream: Mapping[str, list[DoneTask]]) -> list[TaskSpec]:
        """The ranking task over every upstream result, classified by kind (see the module docstring)."""
        done = [task for tasks in upstream.values() for task in tasks]
        docked: dict[str, DockedLigand | FailedLigand] = {}
        rounds: list[tuple[int, DoneTask]] = []
        segments: list[Segment] = []
        coarse: dict[str, CoarseEstimate] = {}
        fine: list[FineResult] = []
        for task in done:
            if (batch := parse_as(DockingBatch, task.value)) is not None:
                docked.update(batch.root)
            elif (trained := parse_as(SurrogateRound, task.value)) is not None:
                rounds.append((trained.round, task))
            elif (segment := parse_as(Segment, task.value)) is not None:
                segments.append(segment)
            elif (summary := parse_as(CoarseSummary, task.value)) is not None:
                coarse.update(summary.ligands)
            elif (refined := parse_as(FineResult, task.value)) is not None:
                fine.append(refined)
        root = self.context.campaign_dir
        predictions = library = None
        last_round = max(rounds, key=lambda found: found[0], default=None)
        if last_round is not None:
            trained_in = last_round[1].workdir
            if (trained_in / PREDICTIONS).is_file():
                predictions = str((trained_in / PREDICTIONS).relative_to(root))
            library = _library_of(last_round[1], root)
        task_id = f"{self.context.name}.final"
        workdir = self.workdir(task_id)
        kwargs: dict[str, JsonValue] = {
            "root": campaign_root(workdir),
            "docked": DockingBatch(docked).model_dump(mode="json"),
            "predictions": predictions,
            "library": library,
            "segments": [segment.model_dump(mode="json") for segment in segments],
            "coarse": {ligand: estimate.model_dump(mode="json") for ligand, estimate in coarse.items()},
            "fine": [refined.model_dump(mode="json") for refined in fine],
            "known_prefix": self.config.known_prefix,
            "fraction": self.config.enrichment_fraction,
        }
        return [TaskSpec(id=task_id, workdir=workdir, resources=self.config.resources, labels={"stage": STAGE},
                         payload=CallablePayload(function=RANK_FUNCTION, kwargs=kwargs))]


def _library_of(training: DoneTask, root: Path) -> str | None:
    """The library table (``id,smiles``, relative to ``root``) a surrogate round predicted, from its task's
    ``library`` argument; ``None`` when the task names none that exists."""
    payload = training.spec.payload
    named = payload.kwargs.get("library") if isinstance(payload, CallablePayload) else None
    if not isinstance(named, str):
        return None
    path = (training.workdir / named).resolve()
    return str(path.relative_to(root.resolve())) if path.is_file() and path.is_relative_to(root.resolve()) else None


def _smiles(root: str, library: str | None) -> dict[str, str]:
    """Id -> SMILES of every library molecule; empty without a library table."""
    if library is None:
        return {}
    with (Path(root) / library).open(newline="") as handle:
        return {row["id"]: row["smiles"] for row in csv.DictReader(handle)}


def order_enrichment(order: list[str], unranked: list[str], actives: set[str], fraction: float) -> float | None:
    """EF at ``fraction`` of an ordered library (best first), ``unranked`` molecules tied last; ``None`` without
    actives (see :func:`~mummi_scales.drug_discovery.data.enrichment_factor` for the definition and its tie rule)."""
    scores = {ligand: float(position) for position, ligand in enumerate(order)} | dict.fromkeys(unranked, math.inf)
    if not scores or not actives & scores.keys():
        return None
    return enrichment_factor(scores, actives, fraction)


def _final_order(finalists: list[str], coarse: Mapping[str, CoarseEstimate], fine: Mapping[str, FineResult],
                 left: set[str]) -> list[str]:
    """Finalists ordered by S3-CG, refined ones swapped among themselves by S3-FG, pocket leavers last."""
    by_coarse = sorted(finalists, key=lambda ligand: (
        ligand in left, coarse[ligand].dg_mean if ligand in coarse else math.inf))
    slots = [i for i, ligand in enumerate(by_coarse) if ligand in fine and ligand not in left]
    refined = sorted((by_coarse[i] for i in slots), key=lambda ligand: fine[ligand].dg)
    for slot, ligand in zip(slots, refined, strict=True):
        by_coarse[slot] = ligand
    return by_coarse


def _number(value: float | None) -> str:
    return "" if value is None else f"{float(value):.3f}"


def _numbers(found: object | None, *fields: str) -> list[str]:
    """``fields`` of a stage's result for one ligand as CSV cells; empty where that stage has no result for it."""
    return [_number(None if found is None else getattr(found, name)) for name in fields]


class _Dynamics(NamedTuple):
    """What S2 found for one ligand over all its segments."""

    left_pocket: bool
    ligand_rmsd_max: float


def rank(root: str, docked: dict[str, Any], predictions: str | None, segments: list[Any], coarse: dict[str, Any],
         fine: list[Any], known_prefix: str, fraction: float, library: str | None = None) -> dict[str, JsonValue]:
    """Write :data:`RANKING_CSV` in the current directory and return the campaign's outcome.

    Parameters
    ----------
    root:
        The campaign directory, relative to the current (the task's working) directory.
    docked:
        Every docking result, a :class:`~mummi_scales.drug_discovery.results.DockingBatch`.
    predictions:
        The last surrogate round's :data:`PREDICTIONS`, relative to ``root``; ``None`` without a surrogate.
    segments:
        Values of the S2 segments (:class:`~mummi_scales.drug_discovery.results.Segment`).
    coarse:
        Ligand id -> S3-CG estimate (:class:`~mummi_scales.drug_discovery.results.CoarseEstimate`).
    fine:
        Values of the S3-FG tasks (:class:`~mummi_scales.drug_discovery.results.FineResult`).
    known_prefix:
        Ids of known actives start with this.
    fraction:
        Top fraction at which enrichment factors are measured.
    library:
        The library table (``id,smiles``) the surrogate predicted, relative to ``root``: the SMILES of the
        molecules never docked; ``None`` without a surrogate.

    Returns
    -------
    dict
        A dumped :class:`~mummi_scales.drug_discovery.results.RankingOutcome`:
        ``molecules``, ``docked``, ``failed``, ``finalists`` (final order, with each stage's estimate),
        ``enrichment`` (EF after S1 and after S3, known ligands and how many became finalists) and
        ``known_ligands`` (each known ligand's rank after S1 and after S3, 1-based, with its score or prediction).
    """
    predicted: dict[str, tuple[float, float]] = {}
    if predictions is not None:
        with np.load(Path(root) / predictions, allow_pickle=False) as table:
            predicted = {str(i): (float(m), float(s))
                         for i, m, s in zip(table["ids"], table["mean"], table["std"], strict=True)}
    batch = DockingBatch.model_validate(docked)
    smiles = _smiles(root, library) | {ligand: entry.smiles for ligand, entry in batch.root.items()}
    scored, failed = batch.docked(), batch.failed()
    estimates = {ligand: CoarseEstimate.model_validate(estimate) for ligand, estimate in coarse.items()}
    refined = {result.ligand: result for result in map(FineResult.model_validate, fine)}
    md: dict[str, _Dynamics] = {}
    for segment in map(Segment.model_validate, segments):
        earlier = md.get(segment.ligand, _Dynamics(False, 0.0))
        md[segment.ligand] = _Dynamics(earlier.left_pocket or segment.left_pocket,
                                       max(earlier.ligand_rmsd_max, segment.ligand_rmsd_max))
    left = {ligand for ligand, dynamics in md.items() if dynamics.left_pocket}
    finalists = [ligand for ligand in scored if ligand in md or ligand in estimates]
    by_docking = sorted(scored, key=lambda ligand: scored[ligand].score)
    undocked = sorted((ligand for ligand in predicted if ligand not in docked), key=lambda ligand: predicted[ligand][0])
    after_s1 = [*by_docking, *undocked]
    s3_order = _final_order(finalists, estimates, refined, left)
    after_s3 = [*s3_order, *(ligand for ligand in after_s1 if ligand not in set(s3_order))]

    with atomic_write(RANKING_CSV, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for position, ligand in enumerate([*after_s3, *sorted(failed)], start=1):
            mean, std = predicted.get(ligand, (None, None))
            dynamics = md.get(ligand)
            writer.writerow([
                "" if ligand in failed else position, ligand, smiles.get(ligand, ""),
                ligand.startswith(known_prefix), ligand in s3_order, *_numbers(scored.get(ligand), "score"),
                _number(mean), _number(std), "" if dynamics is None else dynamics.left_pocket,
                *_numbers(dynamics, "ligand_rmsd_max"),
                *_numbers(estimates.get(ligand), "dg_mean", "ci_low", "ci_high"),
                *_numbers(refined.get(ligand), "dg", "dg_err"), failed[ligand].error if ligand in failed else "",
            ])

    # Failed molecules belong to the library too: last in every order, as a campaign would leave them.
    unranked = sorted(failed)
    molecules = set(after_s1) | set(failed)
    s1_rank = {ligand: position for position, ligand in enumerate(after_s1, start=1)}
    s3_rank = {ligand: position for position, ligand in enumerate(after_s3, start=1)}
    actives = {ligand for ligand in molecules if ligand.startswith(known_prefix)}
    return RankingOutcome(
        molecules=len(molecules),
        docked=len(scored),
        failed=len(failed),
        finalists=[
            Finalist(ligand=ligand, smiles=scored[ligand].smiles, docking_score=scored[ligand].score,
                     left_pocket=md[ligand].left_pocket if ligand in md else None,
                     ligand_rmsd_max=md[ligand].ligand_rmsd_max if ligand in md else None,
                     s3cg=estimates.get(ligand), s3fg=refined.get(ligand))
            for ligand in s3_order
        ],
        enrichment=Enrichment(
            fraction=fraction,
            after_s1=order_enrichment(after_s1, unranked, actives, fraction),
            after_s3=order_enrichment(after_s3, unranked, actives, fraction),
            known=len(actives),
            known_finalists=sum(ligand in actives for ligand in s3_order),
        ),
        known_ligands=sorted(
            (KnownLigand(ligand=ligand, smiles=smiles.get(ligand, ""),
                         rank_after_s1=s1_rank.get(ligand), rank_after_s3=s3_rank.get(ligand),
                         docking_score=scored[ligand].score if ligand in scored else None,
                         predicted=None if ligand in scored else predicted.get(ligand, (None, None))[0],
                         predicted_std=None if ligand in scored else predicted.get(ligand, (None, None))[1])
             for ligand in actives),
            key=lambda known: (known.rank_after_s3 is None, known.rank_after_s3 or 0, known.ligand),
        ),
    ).model_dump(mode="json")
