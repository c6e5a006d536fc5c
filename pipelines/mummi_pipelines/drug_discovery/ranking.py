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

Which upstream result is which is read from the shape of the task values the
stage plugins document (a docking batch maps ligand ids to ``score`` or
``error``; a surrogate round has ``round`` and ``r2``; an S2 segment
``ligand`` and ``left_pocket``; the S3-CG summary ``ligands``; an S3-FG task
``ligand`` and ``dg``), so the scale works with any scale names and any subset
of the stages.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from mummi_scales.drug_discovery.data import enrichment_factor
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


def _is_docking(value: JsonValue) -> bool:
    return isinstance(value, dict) and bool(value) and all(
        isinstance(entry, dict) and ("score" in entry or "error" in entry) for entry in value.values()
    )


def _is_surrogate_round(value: JsonValue) -> bool:
    return isinstance(value, dict) and "round" in value and "r2" in value


def _is_segment(value: JsonValue) -> bool:
    return isinstance(value, dict) and "ligand" in value and "left_pocket" in value


def _is_coarse_summary(value: JsonValue) -> bool:
    return isinstance(value, dict) and isinstance(value.get("ligands"), dict)


def _is_fine(value: JsonValue) -> bool:
    return isinstance(value, dict) and "ligand" in value and "dg" in value


class RankingScale(Scale):
    """One task, once every upstream stage is done, that ranks all molecules (see the module docstring)."""

    config_model: ClassVar[type[RankingConfig]] = RankingConfig
    config: RankingConfig

    def tasks(self) -> list[TaskSpec]:
        """Nothing to rank before the upstream stages are done."""
        return []

    def on_upstream_done(self, upstream: Mapping[str, list[DoneTask]]) -> list[TaskSpec]:
        """The ranking task over every upstream result, classified by shape (see the module docstring)."""
        done = [task for tasks in upstream.values() for task in tasks]
        docked: dict[str, Any] = {}
        for task in done:
            if _is_docking(task.value):
                docked.update(task.value)  # type: ignore[arg-type]
        rounds = [task for task in done if _is_surrogate_round(task.value)]
        last_round = max(rounds, key=lambda task: task.value["round"], default=None)  # type: ignore[index]
        root = self.context.campaign_dir
        predictions = None
        if last_round is not None and (last_round.workdir / PREDICTIONS).is_file():
            predictions = str((last_round.workdir / PREDICTIONS).relative_to(root))
        coarse: dict[str, Any] = {}
        for task in done:
            if _is_coarse_summary(task.value):
                coarse.update(task.value["ligands"])  # type: ignore[index]
        task_id = f"{self.context.name}.final"
        workdir = self.workdir(task_id)
        kwargs: dict[str, JsonValue] = {
            "root": campaign_root(workdir),
            "docked": docked,
            "predictions": predictions,
            "segments": [task.value for task in done if _is_segment(task.value)],
            "coarse": coarse,
            "fine": [task.value for task in done if _is_fine(task.value)],
            "known_prefix": self.config.known_prefix,
            "fraction": self.config.enrichment_fraction,
        }
        return [TaskSpec(id=task_id, workdir=workdir, resources=self.config.resources, labels={"stage": STAGE},
                         payload=CallablePayload(function=RANK_FUNCTION, kwargs=kwargs))]


def order_enrichment(order: list[str], unranked: list[str], actives: set[str], fraction: float) -> float | None:
    """EF at ``fraction`` of an ordered library (best first), ``unranked`` molecules tied last; ``None`` without
    actives (see :func:`~mummi_scales.drug_discovery.data.enrichment_factor` for the definition and its tie rule)."""
    scores = {ligand: float(position) for position, ligand in enumerate(order)} | dict.fromkeys(unranked, math.inf)
    if not scores or not actives & scores.keys():
        return None
    return enrichment_factor(scores, actives, fraction)


def _final_order(finalists: list[str], coarse: Mapping[str, Any], fine: Mapping[str, Any],
                 left: set[str]) -> list[str]:
    """Finalists ordered by S3-CG, refined ones swapped among themselves by S3-FG, pocket leavers last."""
    by_coarse = sorted(finalists, key=lambda ligand: (
        ligand in left, coarse[ligand]["dg_mean"] if ligand in coarse else math.inf))
    slots = [i for i, ligand in enumerate(by_coarse) if ligand in fine and ligand not in left]
    refined = sorted((by_coarse[i] for i in slots), key=lambda ligand: fine[ligand]["dg"])
    for slot, ligand in zip(slots, refined, strict=True):
        by_coarse[slot] = ligand
    return by_coarse


def _number(value: Any) -> str:
    return "" if value is None else f"{float(value):.3f}"


def rank(root: str, docked: dict[str, dict[str, Any]], predictions: str | None, segments: list[dict[str, Any]],
         coarse: dict[str, dict[str, Any]], fine: list[dict[str, Any]], known_prefix: str,
         fraction: float) -> dict[str, Any]:
    """Write :data:`RANKING_CSV` in the current directory and return the campaign's outcome.

    Parameters
    ----------
    root:
        The campaign directory, relative to the current (the task's working) directory.
    docked:
        Ligand id -> ``{"score", "smiles", ...}`` or ``{"error", "smiles"}``, every docking result.
    predictions:
        The last surrogate round's :data:`PREDICTIONS`, relative to ``root``; ``None`` without a surrogate.
    segments:
        Values of the S2 segments (``ligand``, ``left_pocket``, ``ligand_rmsd_max``, ``smiles``, ...).
    coarse:
        Ligand id -> S3-CG estimate (``dg_mean``, ``ci_low``, ``ci_high``, ...).
    fine:
        Values of the S3-FG tasks (``ligand``, ``dg``, ``dg_err``).
    known_prefix:
        Ids of known actives start with this.
    fraction:
        Top fraction at which enrichment factors are measured.

    Returns
    -------
    dict
        ``molecules``, ``docked``, ``failed``, ``finalists`` (final order, with each stage's estimate),
        ``enrichment`` (EF after S1 and after S3, known ligands and how many became finalists) and
        ``known_ranks`` (each known ligand's rank after S1 and after S3, 1-based).
    """
    predicted: dict[str, tuple[float, float]] = {}
    if predictions is not None:
        with np.load(Path(root) / predictions, allow_pickle=False) as table:
            predicted = {str(i): (float(m), float(s))
                         for i, m, s in zip(table["ids"], table["mean"], table["std"], strict=True)}
    scored = {ligand: entry for ligand, entry in docked.items() if "score" in entry}
    failed = {ligand: entry for ligand, entry in docked.items() if "score" not in entry}
    md: dict[str, dict[str, Any]] = {}
    for segment in segments:
        entry = md.setdefault(segment["ligand"], {"left_pocket": False, "ligand_rmsd_max": 0.0})
        entry["left_pocket"] = entry["left_pocket"] or bool(segment["left_pocket"])
        entry["ligand_rmsd_max"] = max(entry["ligand_rmsd_max"], float(segment.get("ligand_rmsd_max") or 0.0))
    refined = {value["ligand"]: value for value in fine}
    left = {ligand for ligand, entry in md.items() if entry["left_pocket"]}
    finalists = [ligand for ligand in scored if ligand in md or ligand in coarse]
    by_docking = sorted(scored, key=lambda ligand: scored[ligand]["score"])
    undocked = sorted((ligand for ligand in predicted if ligand not in docked), key=lambda ligand: predicted[ligand][0])
    after_s1 = [*by_docking, *undocked]
    s3_order = _final_order(finalists, coarse, refined, left)
    after_s3 = [*s3_order, *(ligand for ligand in after_s1 if ligand not in set(s3_order))]

    with atomic_write(RANKING_CSV, newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for position, ligand in enumerate([*after_s3, *sorted(failed)], start=1):
            entry = docked.get(ligand, {})
            mean, std = predicted.get(ligand, (None, None))
            estimate, finer, dynamics = coarse.get(ligand, {}), refined.get(ligand, {}), md.get(ligand, {})
            writer.writerow([
                "" if ligand in failed else position, ligand, entry.get("smiles", ""),
                ligand.startswith(known_prefix), ligand in s3_order, _number(entry.get("score")), _number(mean),
                _number(std), dynamics.get("left_pocket", ""), _number(dynamics.get("ligand_rmsd_max")),
                _number(estimate.get("dg_mean")), _number(estimate.get("ci_low")), _number(estimate.get("ci_high")),
                _number(finer.get("dg")), _number(finer.get("dg_err")), entry.get("error", ""),
            ])

    # Failed molecules belong to the library too: last in every order, as a campaign would leave them.
    unranked = sorted(failed)
    molecules = set(after_s1) | set(failed)
    actives = {ligand for ligand in molecules if ligand.startswith(known_prefix)}
    return {
        "molecules": len(molecules),
        "docked": len(scored),
        "failed": len(failed),
        "finalists": [
            {"ligand": ligand, "smiles": scored[ligand].get("smiles", ""), "docking_score": scored[ligand]["score"],
             "left_pocket": md.get(ligand, {}).get("left_pocket"),
             "s3cg": coarse.get(ligand), "s3fg": refined.get(ligand)}
            for ligand in s3_order
        ],
        "enrichment": {
            "fraction": fraction,
            "after_s1": order_enrichment(after_s1, unranked, actives, fraction),
            "after_s3": order_enrichment(after_s3, unranked, actives, fraction),
            "known": len(actives),
            "known_finalists": sum(ligand in actives for ligand in s3_order),
        },
        "known_ranks": {ligand: [after_s1.index(ligand) + 1 if ligand in after_s1 else None,
                                 after_s3.index(ligand) + 1 if ligand in after_s3 else None]
                        for ligand in sorted(actives)},
    }
