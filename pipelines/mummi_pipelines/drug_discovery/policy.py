"""The ``drug-discovery`` pipeline plugin: the campaign's policy and its campaign-level science in the report.

Scheduling is the ``dag`` policy's (every ready task, within each scale's
``max_in_flight`` and core ``shares``): the stages of this campaign follow one
another through stage barriers, and inside a stage the scale plugins already
order their own work (a surrogate round's training waits for its dockings, S2
restarts wait for the selector). What the pipeline adds is the view across
stages that no single scale has, drawn in ``mummi-like report``:

* the funnel: how many molecules each stage took on, from the library to the
  alchemical estimates;
* the outcome: the finalists in their final order with every stage's estimate;
* the enrichment of the known ligands after S1 and after S3, and where each
  known ligand ranked.

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


class DrugDiscoveryPolicy(DependencyPolicy):
    """The ``dag`` policy, plus the report's campaign-level sections (see the module docstring)."""


    @classmethod
    def report_sections(cls, view: CampaignView) -> list[ReportSection]:
        """Outcome, funnel and enrichment, from the ranking stage's result."""
        found = ranking_outcome(view)
        if found is None:
            return [ReportSection("Outcome", text="The ranking stage has not run yet: the campaign is still in an "
                                  "earlier stage (see the task counts above), or stopped before it.")]
        outcome, workdir = found
        return [cls._outcome(outcome, workdir), cls._funnel(outcome), cls._enrichment(outcome)]

    @staticmethod
    def _outcome(outcome: RankingOutcome, workdir: str) -> ReportSection:
        rows = []
        lines = []
        for position, finalist in enumerate(outcome.finalists, start=1):
            cells = [str(position), finalist.ligand, finalist.smiles, f"{finalist.docking_score:.1f}",
                     "yes" if finalist.left_pocket else "no", _coarse(finalist.s3cg), _fine(finalist.s3fg)]
            rows.append("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in cells) + "</tr>")
            lines.append(f"{position}. {finalist.ligand}: Vina {cells[3]}, S3-CG {cells[5] or '-'}, "
                         f"S3-FG {cells[6] or '-'}{', left the pocket' if finalist.left_pocket else ''}")
        header = "".join(f"<th>{name}</th>" for name in (
            "rank", "ligand", "SMILES", "Vina (kcal/mol)", "left pocket in S2",
            "S3-CG MM/GBSA dG [95% CI]", "S3-FG alchemical dG ± err"))
        table = f"<table><tr>{header}</tr>{''.join(rows)}</table>"
        text = "\n".join([
            f"{outcome.molecules} molecules, {outcome.docked} docked ({outcome.failed} failed preparation "
            f"or docking); the whole ranking is {workdir}/{RANKING_CSV}.", *lines])
        return ReportSection("Outcome: the finalists", html=table, text=text)

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
        ranks = outcome.known_ranks
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
