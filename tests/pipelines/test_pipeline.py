"""The reference campaign end to end at a tiny size: every stage, every coupling, the ranking and the report.

The spec is ``configs/demo.yaml`` itself with only its sizes shrunk, so the test
follows the demo as it changes: a few dozen molecules, two finalists, short MD,
two MM/GBSA replicas and an alchemical run of a few windows, on real engines.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import yaml

from mummi_like.campaign.loop import Campaign
from mummi_like.cli import stage_states
from mummi_like.report import write_report_files
from mummi_like.store import Store
from mummi_like.tasks import TaskState
from mummi_like.view import CampaignView
from mummi_pipelines.drug_discovery.policy import ranking_outcome

DEMO = Path(__file__).resolve().parents[2] / "pipelines" / "mummi_pipelines" / "drug_discovery" / "configs" / "demo.yaml"

TINY = {
    "ml1-s1": {"library_size": 12, "ligands_per_task": 4, "initial": 8, "batch": 4, "budget": 12, "top_k": 4,
               "surrogate": {"members": 2, "epochs": 5}},
    "s2": {"top_k": 2, "steps": 200, "report_interval": 20, "minimize_iterations": 20},
    "s3-cg": {"replicas": 2, "steps": 100, "report_interval": 50},
    "s3-fg": {"restraint_windows": 1, "electrostatics_windows": 1, "sterics_windows": 2, "iterations": 2,
              "steps_per_iteration": 10, "resources": {"cores": 1, "walltime": 600}},
}


def tiny_spec() -> dict[str, Any]:
    spec = yaml.safe_load(DEMO.read_text())
    spec["name"] = "tiny-drug-discovery"
    for scale in spec["scales"]:
        scale.setdefault("config", {}).update(TINY.get(scale["name"], {}))
    couplings = {coupling["name"]: coupling for coupling in spec["couplings"]}
    couplings["s2-restarts"].update(max_total=1)
    couplings["s2-restarts"]["config"].update(retrain_every=1000, lof_neighbors=3)
    couplings["s3-promotion"].setdefault("config", {}).update(min_score=0.0)  # promote the best, however sure
    return spec


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_reference_campaign_runs_every_stage_and_ranks_the_finalists(tmp_path: Path) -> None:
    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump(tiny_spec(), sort_keys=False))
    directory = tmp_path / "run"
    summary = Campaign.from_text(spec.read_text(), spec, directory).run()
    assert summary.complete, summary

    with Store.open(directory, readonly=True) as store:
        assert stage_states(store) == dict.fromkeys(["ml1-s1", "s2", "s3-cg", "s3-fg", "ranking"], "open")
        opened = [data["scale"] for _, _, _, data in store.events(kind="stage-opened")]
        assert opened == ["s2", "s3-cg", "ranking"]  # in dependency order, each once
        records = store.tasks()
        by_stage = {(r.spec.scale, r.spec.labels.get("stage")) for r in records}
        assert {("ml1-s1", "dock"), ("ml1-s1", "train"), ("s2", "prep"), ("s2", "md"), ("s3-cg", "replica"),
                ("s3-cg", "summary"), ("ranking", "ranking")} <= by_stage
        assert all(r.state is TaskState.DONE for r in records)
        restarts = [r for r in records if r.spec.scale == "s2" and "promoted_from" in r.spec.labels]
        fine = [r for r in records if r.spec.scale == "s3-fg"]
        assert len(restarts) == 1 and len(fine) == 1
    with CampaignView.open(directory) as view:
        found = ranking_outcome(view)
    assert found is not None
    outcome, workdir = found

    finalists = outcome.finalists
    assert len(finalists) == 2
    assert all(f.s3cg is not None and f.s3cg.ci_low <= f.s3cg.dg_mean <= f.s3cg.ci_high for f in finalists)
    refined = [f for f in finalists if f.s3fg is not None]
    assert len(refined) == 1 and refined[0].ligand == fine[0].value["ligand"]
    with open(directory / workdir / "ranking.csv") as handle:
        rows = list(csv.DictReader(handle))
    known = outcome.enrichment.known
    assert known > 0 and len(rows) == outcome.molecules == 12 + known
    assert [row["ligand"] for row in rows[:2]] == [f.ligand for f in finalists]
    assert all(row["smiles"] for row in rows)  # the never-docked molecules too
    assert len(outcome.known_ligands) == known and all(k.smiles for k in outcome.known_ligands)

    index, pngs = write_report_files(directory)
    summary_text = (index.parent / "summary.txt").read_text()
    assert "Outcome: the finalists" in summary_text and "EF at 1%" in summary_text
    page = index.read_text()
    assert "Funnel through the stages" in page and "report_sections raised" not in page
    # A chemist's report: the outcome, with the finalists and the known ligands drawn, before any infrastructure.
    assert page.index("Outcome: the finalists") < page.index("Known ligands") < page.index("<h2>Utilization</h2>")
    assert page.count("<svg") >= len(finalists) + known
    assert len(pngs) > 8  # telemetry figures plus the stages' science plots
