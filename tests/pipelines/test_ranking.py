"""The ranking stage: the order it gives, the enrichment it measures, and how it reads upstream results."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from mummi_like.scale import DoneTask, ScaleContext
from mummi_like.tasks import CallablePayload, TaskSpec
from mummi_pipelines.drug_discovery.ranking import (
    RANKING_CSV,
    RankingConfig,
    RankingScale,
    order_enrichment,
    rank,
)
from mummi_scales.drug_discovery.results import (
    CoarseEstimate,
    CoarseSummary,
    FineResult,
    RankingOutcome,
    ReplicaResult,
    Segment,
    SurrogateRound,
)


def docked(score: float, smiles: str) -> dict[str, object]:
    return {"score": score, "poses": "poses/x.sdf", "smiles": smiles}


def segment(ligand: str, left_pocket: bool, rmsd_max: float, smiles: str) -> dict[str, object]:
    """An S2 segment's value, as complex-md's run_segment returns it."""
    return Segment(ligand=ligand, smiles=smiles, docking_score=-8.0, complex=f"tasks/s2/{ligand}.prep",
                   trajectory=f"tasks/s2/{ligand}.md000/trajectory.h5md", start_frame=None, frames=2,
                   times=[1.0, 2.0], ligand_rmsd=[0.5, rmsd_max], contacts=[30, 28], ligand_rmsd_max=rmsd_max,
                   ligand_rmsd_final=rmsd_max, left_pocket=left_pocket, leave_pocket_rmsd=5.0, ns_per_day=20.0,
                   atoms=900).model_dump(mode="json")


def estimate(dg: float, half_width: float) -> dict[str, object]:
    """One ligand's S3-CG estimate, as the mmgbsa summary returns it."""
    return CoarseEstimate(dg_mean=dg, dg_sem=half_width / 2, ci_low=dg - half_width, ci_high=dg + half_width,
                          n_replicas=2, n_frames=4, failed_replicas=0, smiles="C", docking_score=-8.0,
                          left_pocket=False, complex="tasks/s2/x.prep", frame=0).model_dump(mode="json")


def fine(ligand: str, dg: float) -> dict[str, object]:
    """An S3-FG task's value, as run_alchemical returns it."""
    leg = {"dg": 1.0, "dg_err": 0.3, "windows": 3, "iterations": 2, "seconds": 1.0}
    return FineResult(ligand=ligand, dg=dg, dg_err=0.5, method="ABFE", windows=6, seconds=10.0, coarse=None,
                      legs={"complex": leg, "solvent": leg}, restraint_correction=-1.0).model_dump(mode="json")


def surrogate_round(number: int, r2: float) -> dict[str, object]:
    """A training task's value, as train_and_acquire returns it."""
    return SurrogateRound(round=number, docked=8, labelled=8, failed=0, trained_on=6, held_out=2, r2=r2,
                          spearman=0.5, topk_overlap=None, best_score=-9.0, best_id="moses-1", stop=None,
                          next=[], seconds=1.0).model_dump(mode="json")


DOCKED = {
    "moses-1": docked(-9.0, "c1ccccc1O"),
    "known-a": docked(-8.5, "CCO"),
    "moses-2": docked(-8.0, "CCN"),
    "moses-3": docked(-7.0, "CCC"),
    "moses-bad": {"error": "parse: 'C1CC': unclosed ring", "smiles": "C1CC"},
}
SEGMENTS = [
    segment("moses-1", False, 1.2, "c1ccccc1O"),
    segment("moses-1", True, 6.5, "c1ccccc1O"),
    segment("known-a", False, 0.8, "CCO"),
    segment("moses-2", False, 1.0, "CCN"),
]
COARSE = {"moses-1": estimate(-40.0, 2.0), "known-a": estimate(-30.0, 5.0), "moses-2": estimate(-33.0, 5.0)}
FINE = [fine("known-a", -9.0), fine("moses-2", -6.0)]


def test_enrichment_of_an_order_ranks_unranked_molecules_last_and_needs_actives() -> None:
    order = ["a", "x", "y", "b", "z", "w", "v", "u"]
    assert order_enrichment(order, ["f1", "f2"], {"a", "b"}, 0.2) == pytest.approx((1 / 2) / (2 / 10))
    assert order_enrichment(order, ["f1", "f2"], {"f1"}, 0.2) == pytest.approx(0.0)  # a failed active is last
    assert order_enrichment(order, [], {"nowhere"}, 0.1) is None
    assert order_enrichment([], [], {"a"}, 0.1) is None


def test_rank_orders_finalists_by_s3_with_fine_refining_and_pocket_leavers_last(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tasks" / "ml1" / "r2").mkdir(parents=True)
    np.savez(tmp_path / "tasks" / "ml1" / "r2" / "predictions.npz",
             ids=np.array(["moses-1", "known-a", "moses-2", "moses-3", "moses-4", "known-b"]),
             mean=np.array([-8.8, -8.0, -7.9, -7.2, -7.5, -6.0]), std=np.full(6, 0.3))
    (tmp_path / "tasks" / "ml1" / "library.csv").write_text(
        "id,smiles\nknown-a,CCO\nknown-b,CC(=O)O\nmoses-1,c1ccccc1O\nmoses-2,CCN\nmoses-3,CCC\nmoses-4,CCCl\n"
        "moses-bad,C1CC\n")
    workdir = tmp_path / "tasks" / "ranking" / "ranking.final"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    outcome = RankingOutcome.model_validate(rank(
        "../../..", DOCKED, "tasks/ml1/r2/predictions.npz", SEGMENTS, COARSE, FINE, "known-", 0.2,
        library="tasks/ml1/library.csv"))

    # moses-1 left the pocket: last finalist. known-a and moses-2 were refined: they swap by S3-FG.
    assert [f.ligand for f in outcome.finalists] == ["known-a", "moses-2", "moses-1"]
    assert outcome.finalists[0].s3fg is not None and outcome.finalists[0].s3fg.dg == -9.0
    last = outcome.finalists[2]
    assert last.left_pocket is True and last.s3cg is not None and last.s3cg.ci_low == -42.0
    with open(RANKING_CSV) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["ligand"] for row in rows] == [
        "known-a", "moses-2", "moses-1", "moses-3", "moses-4", "known-b", "moses-bad"]
    assert [row["rank"] for row in rows] == ["1", "2", "3", "4", "5", "6", ""]  # failures stay unranked
    assert rows[-1]["error"].startswith("parse:")
    assert rows[2]["left_pocket"] == "True" and rows[2]["ligand_rmsd_max"] == "6.500"
    assert rows[4]["docking_score"] == "" and rows[4]["predicted_score"] == "-7.500"  # never docked
    assert [row["smiles"] for row in rows] == ["CCO", "CCN", "c1ccccc1O", "CCC", "CCCl", "CC(=O)O", "C1CC"]
    assert last.ligand_rmsd_max == 6.5

    assert outcome.molecules == 7 and outcome.docked == 4 and outcome.failed == 1
    enrichment = outcome.enrichment
    # 7 molecules, top 20% = 2; after S1 the top 2 are moses-1, known-a; after S3 known-a, moses-2.
    assert enrichment.after_s1 == pytest.approx((1 / 2) / (2 / 7))
    assert enrichment.after_s3 == pytest.approx((1 / 2) / (2 / 7))
    assert enrichment.known_finalists == 1
    known = [(k.ligand, k.smiles, k.rank_after_s1, k.rank_after_s3, k.docking_score, k.predicted, k.predicted_std)
             for k in outcome.known_ligands]
    assert known == [("known-a", "CCO", 2, 1, -8.5, None, None), ("known-b", "CC(=O)O", 6, 6, None, -6.0, 0.3)]


def test_scale_waits_for_upstream_then_reads_each_stage_by_the_shape_of_its_results(tmp_path: Path) -> None:
    scale = RankingScale(RankingConfig(enrichment_fraction=0.05),
                         ScaleContext(name="ranking", campaign_dir=tmp_path, spec_dir=tmp_path))
    assert scale.tasks() == []

    def done(task_id: str, value: object, **kwargs: object) -> DoneTask:
        workdir = tmp_path / "tasks" / "s" / task_id
        workdir.mkdir(parents=True)
        payload = CallablePayload(function="m:f", kwargs=kwargs)  # type: ignore[arg-type]
        return DoneTask(TaskSpec(id=task_id, workdir=f"tasks/s/{task_id}", payload=payload), value, workdir)

    (tmp_path / "tasks" / "s" / "library.csv").parent.mkdir(parents=True)
    (tmp_path / "tasks" / "s" / "library.csv").write_text("id,smiles\nmoses-1,c1ccccc1O\n")
    train_old = done("r0.train", surrogate_round(0, 0.4), library="../nowhere.csv")
    train_new = done("r1.train", surrogate_round(1, 0.7), library="../library.csv")
    (train_new.workdir / "predictions.npz").write_bytes(b"")
    # A replica's value is of no kind the ranking reads: it must not be taken for an S3-FG result or a segment.
    replica = ReplicaResult(ligand="moses-1", replica=0, dg_mean=-41.0, frames=2, seconds=1.0).model_dump(mode="json")
    upstream = {
        "ml1": [done("r0.b0", dict(list(DOCKED.items())[:2])), train_old, done("r1.b0", dict(list(DOCKED.items())[2:])),
                train_new],
        "s2": [done(f"md{i}", value) for i, value in enumerate(SEGMENTS)],
        "s3cg": [done("r00", replica),
                 done("summary", CoarseSummary(ligands=COARSE, failed={}, confidence=0.95,  # type: ignore[arg-type]
                                               seconds=1.0).model_dump(mode="json"))],
        "s3fg": [done(f"fg{i}", value) for i, value in enumerate(FINE)],
    }
    (task,) = scale.on_upstream_done(upstream)
    assert task.id == "ranking.final" and task.labels["stage"] == "ranking"
    kwargs = task.payload.kwargs
    assert kwargs["docked"] == DOCKED
    assert kwargs["predictions"] == "tasks/s/r1.train/predictions.npz"  # the last round's
    assert kwargs["library"] == "tasks/s/library.csv"  # the library that round predicted, for every SMILES
    assert kwargs["segments"] == SEGMENTS and kwargs["coarse"] == COARSE and kwargs["fine"] == FINE
    assert kwargs["root"] == "../../.." and kwargs["fraction"] == 0.05
