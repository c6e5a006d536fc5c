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

DOCKED = {
    "moses-1": {"score": -9.0, "smiles": "c1ccccc1O"},
    "known-a": {"score": -8.5, "smiles": "CCO"},
    "moses-2": {"score": -8.0, "smiles": "CCN"},
    "moses-3": {"score": -7.0, "smiles": "CCC"},
    "moses-bad": {"error": "parse: 'C1CC': unclosed ring", "smiles": "C1CC"},
}
SEGMENTS = [
    {"ligand": "moses-1", "left_pocket": False, "ligand_rmsd_max": 1.2, "smiles": "c1ccccc1O"},
    {"ligand": "moses-1", "left_pocket": True, "ligand_rmsd_max": 6.5, "smiles": "c1ccccc1O"},
    {"ligand": "known-a", "left_pocket": False, "ligand_rmsd_max": 0.8, "smiles": "CCO"},
    {"ligand": "moses-2", "left_pocket": False, "ligand_rmsd_max": 1.0, "smiles": "CCN"},
]
COARSE = {
    "moses-1": {"dg_mean": -40.0, "ci_low": -42.0, "ci_high": -38.0},
    "known-a": {"dg_mean": -30.0, "ci_low": -35.0, "ci_high": -25.0},
    "moses-2": {"dg_mean": -33.0, "ci_low": -38.0, "ci_high": -28.0},
}
FINE = [{"ligand": "known-a", "dg": -9.0, "dg_err": 0.5}, {"ligand": "moses-2", "dg": -6.0, "dg_err": 0.5}]


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
    workdir = tmp_path / "tasks" / "ranking" / "ranking.final"
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    outcome = rank("../../..", DOCKED, "tasks/ml1/r2/predictions.npz", SEGMENTS, COARSE, FINE, "known-", 0.2)

    # moses-1 left the pocket: last finalist. known-a and moses-2 were refined: they swap by S3-FG.
    assert [f["ligand"] for f in outcome["finalists"]] == ["known-a", "moses-2", "moses-1"]
    with open(RANKING_CSV) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["ligand"] for row in rows] == [
        "known-a", "moses-2", "moses-1", "moses-3", "moses-4", "known-b", "moses-bad"]
    assert [row["rank"] for row in rows] == ["1", "2", "3", "4", "5", "6", ""]  # failures stay unranked
    assert rows[-1]["error"].startswith("parse:")
    assert rows[2]["left_pocket"] == "True" and rows[2]["ligand_rmsd_max"] == "6.500"
    assert rows[4]["docking_score"] == "" and rows[4]["predicted_score"] == "-7.500"  # never docked

    assert outcome["molecules"] == 7 and outcome["docked"] == 4 and outcome["failed"] == 1
    enrichment = outcome["enrichment"]
    # 7 molecules, top 20% = 2; after S1 the top 2 are moses-1, known-a; after S3 known-a, moses-2.
    assert enrichment["after_s1"] == pytest.approx((1 / 2) / (2 / 7))
    assert enrichment["after_s3"] == pytest.approx((1 / 2) / (2 / 7))
    assert enrichment["known_finalists"] == 1
    assert outcome["known_ranks"] == {"known-a": [2, 1], "known-b": [6, 6]}


def test_scale_waits_for_upstream_then_reads_each_stage_by_the_shape_of_its_results(tmp_path: Path) -> None:
    scale = RankingScale(RankingConfig(enrichment_fraction=0.05),
                         ScaleContext(name="ranking", campaign_dir=tmp_path, spec_dir=tmp_path))
    assert scale.tasks() == []

    def done(task_id: str, value: object) -> DoneTask:
        workdir = tmp_path / "tasks" / "s" / task_id
        workdir.mkdir(parents=True)
        spec = TaskSpec(id=task_id, workdir=f"tasks/s/{task_id}", payload=CallablePayload(function="m:f"))
        return DoneTask(spec, value, workdir)

    train_old, train_new = done("r0.train", {"round": 0, "r2": 0.4}), done("r1.train", {"round": 1, "r2": 0.7})
    (train_new.workdir / "predictions.npz").write_bytes(b"")
    upstream = {
        "ml1": [done("r0.b0", dict(list(DOCKED.items())[:2])), train_old, done("r1.b0", dict(list(DOCKED.items())[2:])),
                train_new],
        "s2": [done(f"md{i}", segment) for i, segment in enumerate(SEGMENTS)],
        "s3cg": [done("summary", {"ligands": COARSE})],
        "s3fg": [done(f"fg{i}", value) for i, value in enumerate(FINE)],
    }
    (task,) = scale.on_upstream_done(upstream)
    assert task.id == "ranking.final" and task.labels["stage"] == "ranking"
    kwargs = task.payload.kwargs
    assert kwargs["docked"] == DOCKED
    assert kwargs["predictions"] == "tasks/s/r1.train/predictions.npz"  # the last round's
    assert kwargs["segments"] == SEGMENTS and kwargs["coarse"] == COARSE and kwargs["fine"] == FINE
    assert kwargs["root"] == "../../.." and kwargs["fraction"] == 0.05
