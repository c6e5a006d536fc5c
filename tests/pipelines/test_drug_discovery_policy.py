"""The drug-discovery policy's report sections: the outcome a chemist reads first."""

from __future__ import annotations

import pytest

from mummi_pipelines.drug_discovery import policy
from mummi_pipelines.drug_discovery.policy import DrugDiscoveryPolicy, structure_svg
from mummi_scales.drug_discovery.results import (
    CoarseEstimate,
    Enrichment,
    Finalist,
    KnownLigand,
    RankingOutcome,
)

COARSE = CoarseEstimate(dg_mean=-35.0, dg_sem=1.0, ci_low=-37.0, ci_high=-33.0, n_replicas=3, n_frames=30,
                        failed_replicas=0, smiles="CCO", docking_score=-9.1, left_pocket=False,
                        complex="tasks/s2/x.prep", frame=0)
OUTCOME = RankingOutcome(
    molecules=200, docked=30, failed=1,
    finalists=[Finalist(ligand="known-progesterone", smiles="CC(=O)C1CCC2C1(C)CCC1C2CCC2=CC(=O)CCC21C",
                        docking_score=-10.2, left_pocket=False, ligand_rmsd_max=1.4, s3cg=COARSE, s3fg=None),
               Finalist(ligand="moses-7", smiles="c1ccccc1O", docking_score=-9.0, left_pocket=True,
                        ligand_rmsd_max=7.5, s3cg=None, s3fg=None)],
    enrichment=Enrichment(fraction=0.01, after_s1=50.0, after_s3=100.0, known=2, known_finalists=1),
    known_ligands=[KnownLigand(ligand="known-progesterone", smiles="CC(=O)C1CCC2C1(C)CCC1C2CCC2=CC(=O)CCC21C",
                               rank_after_s1=2, rank_after_s3=1, docking_score=-10.2, predicted=None,
                               predicted_std=None),
                   KnownLigand(ligand="known-tanaproget", smiles="not a smiles", rank_after_s1=150,
                               rank_after_s3=150, docking_score=None, predicted=-7.9, predicted_std=0.6)],
)


def test_structures_are_drawn_inline_and_a_bad_smiles_says_so() -> None:
    svg = structure_svg("c1ccccc1O", "phenol")
    assert svg.startswith("<svg") and svg.rstrip().endswith("</svg>") and "class='legend'" in svg
    assert "no structure for not a smiles" in structure_svg("not a smiles", "x")


def test_the_outcome_leads_with_drawn_finalists_and_every_stage_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(policy, "ranking_outcome", lambda view: (OUTCOME, "tasks/ranking/ranking.final"))
    sections = DrugDiscoveryPolicy.report_sections(None)  # type: ignore[arg-type]
    assert [section.title for section in sections] == [
        "Outcome: the finalists", "Known ligands (of 200 molecules)", "Enrichment of known ligands",
        "Funnel through the stages"]
    outcome, known = sections[0], sections[1]
    assert outcome.text is not None and outcome.text.startswith(
        "Best candidate: known-progesterone (Vina -10.2 kcal/mol, S3-CG -35.0 [-37.0, -33.0]). 1 of the 2 known "
        "ligands among the 2 finalists, 1 in the top 1% of the final ranking; EF1% 50.0 after S1 and 100.0 after S3")
    assert outcome.html is not None and outcome.html.count("<svg") == 2
    assert "left the pocket (max 7.5 A)" in outcome.html and "stayed (max 1.4 A)" in outcome.html
    assert known.html is not None and known.html.count("<svg") == 1 and "no structure for not a smiles" in known.html
    assert known.text == ("known-progesterone: rank 2 after S1, 1 after S3; docked -10.2\n"
                          "known-tanaproget: rank 150 after S1, 150 after S3; never docked; predicted -7.9 ± 0.6")
