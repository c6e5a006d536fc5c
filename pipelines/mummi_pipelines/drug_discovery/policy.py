"""The ``drug-discovery`` pipeline plugin: the campaign's policy and its campaign-level science in the report.

Scheduling is the ``dag`` policy's (every ready task, within each scale's
``max_in_flight`` and core ``shares``): the stages of this campaign follow one
another through stage barriers, and inside a stage the scale plugins already
order their own work (a surrogate round's training waits for its dockings, S2
restarts wait for the selector). What the pipeline adds is the view across
stages that no single scale has, drawn in ``mummi-like report``:

* the outcome, first, as a chemist reads it: a one-line headline, the
  finalists drawn as 2D structures (RDKit) in their final order, and every
  stage's estimate with its uncertainty (S1's Vina score, whether the ligand
  held its pose in S2, S3-CG's confidence interval, S3-FG's error);
* the known ligands, drawn, with their ranks after S1 and S3 and their docked
  score or, when never docked, the surrogate's prediction and its spread;
* the enrichment of the known ligands after S1 and after S3;
* the funnel: how many molecules each stage took on, from the library to the
  alchemical estimates.

All of it is read from the value of the ``ranking`` stage's task
(:func:`~mummi_pipelines.drug_discovery.ranking.rank`); a campaign that has not
reached that stage yet gets a section saying so.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from mummi_scales.drug_discovery.results import CoarseEstimate, FineResult, RankingOutcome

from mummi_like import DependencyPolicy, ReportSection
from mummi_pipelines.drug_discovery.ranking import RANKING_CSV, STAGE

if TYPE_CHECKING:
    from mummi_like import CampaignView


def ranking_outcome(view: CampaignView) -> tuple[RankingOutcome, str] | None:
    """The outcome and working directory (relative to the campaign directory) of the last ranking task; ``None``
    before it ran."""
    ranked = view.done(stage=STAGE)
    if not ranked:
        return None
    return RankingOutcome.model_validate(ranked[-1].value), ranked[-1].spec.workdir


def _coarse(estimate: CoarseEstimate | None) -> str:
    return "" if estimate is None else f"{estimate.dg_mean:.1f} [{estimate.ci_low:.1f}, {estimate.ci_high:.1f}]"


def _fine(result: FineResult | None) -> str:
    return "" if result is None else f"{result.dg:.1f} ± {result.dg_err:.1f}"


def _ef(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def structure_svg(smiles: str, legend: str, size: tuple[int, int] = (220, 170)) -> str:
    """The 2D structure of ``smiles`` as inline SVG (RDKit's depiction), or a note when RDKit cannot parse it."""
    from rdkit import Chem
    from rdkit.Chem.Draw import rdMolDraw2D

    molecule = Chem.MolFromSmiles(smiles) if smiles else None
    if molecule is None:
        return f'<span class="note">no structure for {html.escape(smiles or "(no SMILES)")}</span>'
    drawer = rdMolDraw2D.MolDraw2DSVG(*size)
    drawer.drawOptions().legendFontSize = 14
    rdMolDraw2D.PrepareAndDrawMolecule(drawer, molecule, legend=legend)
    drawer.FinishDrawing()
    svg = drawer.GetDrawingText()
    return svg[svg.index("<svg"):]  # inline in HTML: without the XML declaration


def _cells(values: list[str]) -> str:
    return "<tr>" + "".join(f"<td>{value}</td>" for value in values) + "</tr>"


def _header(names: tuple[str, ...]) -> str:
    return "<tr>" + "".join(f"<th>{html.escape(name)}</th>" for name in names) + "</tr>"


def _rank(value: int | None) -> str:
    return "unranked" if value is None else str(value)


class DrugDiscoveryPolicy(DependencyPolicy):
    """The ``dag`` policy, plus the report's campaign-level sections (see the module docstring)."""

    @classmethod
    def report_sections(cls, view: CampaignView) -> list[ReportSection]:
        """Outcome (finalists drawn, every stage's estimate), known ligands, enrichment, then the funnel."""
        found = ranking_outcome(view)
        if found is None:
            return [ReportSection("Outcome", text="The ranking stage has not run yet: the campaign is still in an "
                                  "earlier stage (see the task counts above), or stopped before it.")]
        outcome, workdir = found
        return [cls._outcome(outcome, workdir), cls._known(outcome), cls._enrichment(outcome), cls._funnel(outcome)]

    @staticmethod
    def _headline(outcome: RankingOutcome) -> str:
        enrichment = outcome.enrichment
        percent = f"{100 * enrichment.fraction:g}%"
        best = outcome.finalists[0] if outcome.finalists else None
        found_in_top = sum(1 for known in outcome.known_ligands if known.rank_after_s3 is not None
                           and known.rank_after_s3 <= max(1, round(enrichment.fraction * outcome.molecules)))
        if best is None:
            lead = "No finalist: S2 simulated no ligand. "
        else:
            estimates = [f"Vina {best.docking_score:.1f} kcal/mol", *([f"S3-CG {_coarse(best.s3cg)}"] if best.s3cg else []),
                         *([f"S3-FG {_fine(best.s3fg)}"] if best.s3fg else [])]
            lead = f"Best candidate: {best.ligand} ({', '.join(estimates)}). "
        return (f"{lead}{enrichment.known_finalists} of the {enrichment.known} known ligands among the "
                f"{len(outcome.finalists)} finalists, {found_in_top} in the top {percent} of the final ranking; "
                f"EF{percent} {_ef(enrichment.after_s1)} after S1 and {_ef(enrichment.after_s3)} after S3 (random: 1). "
                f"{outcome.docked} of {outcome.molecules} molecules docked.")

    @classmethod
    def _outcome(cls, outcome: RankingOutcome, workdir: str) -> ReportSection:
        drawings = "".join(
            f'<div style="display:inline-block;margin:4px;text-align:center">'
            f"{structure_svg(finalist.smiles, f'{position}. {finalist.ligand}')}</div>"
            for position, finalist in enumerate(outcome.finalists, start=1))
        rows, lines = [], []
        for position, finalist in enumerate(outcome.finalists, start=1):
            rmsd = "" if finalist.ligand_rmsd_max is None else f"{finalist.ligand_rmsd_max:.1f}"
            left = {True: "left the pocket", False: "stayed", None: ""}[finalist.left_pocket]
            cells = [str(position), finalist.ligand, f"{finalist.docking_score:.1f}", f"{left} (max {rmsd} A)"
                     if rmsd else left, _coarse(finalist.s3cg), _fine(finalist.s3fg), finalist.smiles]
            rows.append(_cells([html.escape(cell) for cell in cells]))
            lines.append(f"{position}. {finalist.ligand}: Vina {cells[2]}, S2 {cells[3] or '-'}, "
                         f"S3-CG {cells[4] or '-'}, S3-FG {cells[5] or '-'}")
        table = "<table>" + _header((
            "rank", "ligand", "S1 Vina (kcal/mol)", "S2 ligand in the pocket (RMSD from the docked pose)",
            "S3-CG MM/GBSA dG [95% CI]", "S3-FG alchemical dG ± err", "SMILES")) + "".join(rows) + "</table>"
        caveat = ("<p class=\"note\">MM/GBSA has no entropy term and runs tens of kcal/mol below an alchemical free "
                  "energy: compare it within its column only. Demo-sized alchemical windows give a ranking signal, "
                  "not a converged free energy.</p>")
        text = "\n".join([cls._headline(outcome), *lines, f"The whole ranking: {workdir}/{RANKING_CSV}."])
        return ReportSection("Outcome: the finalists", html=f"<p>{html.escape(cls._headline(outcome))}</p>"
                             f"<div>{drawings}</div>{table}{caveat}", text=text)

    @staticmethod
    def _known(outcome: RankingOutcome) -> ReportSection:
        rows, lines = [], []
        for known in outcome.known_ligands:
            if known.docking_score is not None:
                evidence = f"docked {known.docking_score:.1f}"
            elif known.predicted is not None:
                evidence = f"never docked; predicted {known.predicted:.1f} ± {known.predicted_std or 0:.1f}"
            else:
                evidence = "failed preparation or docking"
            rows.append(_cells([structure_svg(known.smiles, known.ligand, (170, 130)), html.escape(known.ligand),
                                _rank(known.rank_after_s1), _rank(known.rank_after_s3), html.escape(evidence)]))
            lines.append(f"{known.ligand}: rank {_rank(known.rank_after_s1)} after S1, "
                         f"{_rank(known.rank_after_s3)} after S3; {evidence}")
        if not rows:
            return ReportSection("Known ligands", text="The library holds no known ligand to check the campaign on.")
        table = ("<table>" + _header(("structure", "ligand", "rank after S1", "rank after S3",
                                      "Vina score or surrogate prediction (kcal/mol)")) + "".join(rows) + "</table>")
        return ReportSection(f"Known ligands (of {outcome.molecules} molecules)", html=table, text="\n".join(lines))

    @staticmethod
    def _funnel(outcome: RankingOutcome) -> ReportSection:
        import matplotlib.pyplot as plt

        finalists = outcome.finalists
        stages = {
            "library": outcome.molecules,
            "docked (S1)": outcome.docked + outcome.failed,
            "MD (S2)": len(finalists),
            "MM/GBSA (S3-CG)": sum(finalist.s3cg is not None for finalist in finalists),
            "alchemical (S3-FG)": sum(finalist.s3fg is not None for finalist in finalists),
        }
        figure, axes = plt.subplots(figsize=(7, 3))
        bars = axes.barh(list(stages)[::-1], list(stages.values())[::-1], color="#4878a8")
        axes.bar_label(bars, padding=3)
        axes.set_xscale("log")
        axes.set_xlabel("molecules (log scale)")
        figure.tight_layout()
        return ReportSection("Funnel through the stages", figure=figure)

    @staticmethod
    def _enrichment(outcome: RankingOutcome) -> ReportSection:
        import matplotlib.pyplot as plt

        enrichment = outcome.enrichment
        percent = f"{100 * enrichment.fraction:g}%"
        text = (f"EF at {percent} of the {enrichment.known} known ligands: {_ef(enrichment.after_s1)} after S1 "
                f"(docked molecules by Vina score, the others by the surrogate's prediction), "
                f"{_ef(enrichment.after_s3)} after S3 (finalists reordered by their free-energy estimates); "
                f"{enrichment.known_finalists} known ligand(s) among the {len(outcome.finalists)} finalists. "
                f"A random order gives 1 on average.")
        ranks = {known.ligand: (known.rank_after_s1, known.rank_after_s3) for known in outcome.known_ligands}
        if not ranks:
            return ReportSection("Enrichment of known ligands", text=text)
        figure, axes = plt.subplots(figsize=(7, 0.4 * len(ranks) + 1.6))
        names = list(ranks)
        axes.scatter([ranks[name][0] for name in names], names, label="after S1", marker="o")
        axes.scatter([ranks[name][1] for name in names], names, label="after S3", marker="x")
        axes.axvline(max(1, enrichment.fraction * outcome.molecules), color="grey", linestyle="--",
                     label=f"top {percent}")
        axes.set_xscale("log")
        axes.set_xlabel("rank in the library (1 = best; log scale)")
        # Below the axes: inside, the legend would hide the markers of the worst-ranked ligands.
        axes.legend(loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3, fontsize="small")
        figure.tight_layout()
        return ReportSection("Enrichment of known ligands", figure=figure, text=text)
