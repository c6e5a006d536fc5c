"""Effective performance of ML1: how many docking calls active learning saves to find a table's best binders.

Replays the ``active-docking`` campaign against a table of docking scores (``smiles,score``, ids optional): the
table is the oracle, so a "docking call" is a look-up, and a whole campaign takes seconds of surrogate training
instead of hours of Vina. The replay uses the scale's own code (:func:`mummi_scales.drug_discovery.surrogate.learn_round`:
the same fingerprints, ensemble, acquisition and stop rules; round 0 drawn by the same seeded
:func:`~mummi_scales.drug_discovery.surrogate.random_choice`), once per acquisition function and seed, side by side.

Two protocols:

- ``--protocol campaign`` (default; the table defaults to ``data/pgr_reference_scores.csv.gz``, 5,009 molecules
  docked into PGR by ``bench/dock_reference.py``): 2% at random, then rounds of 1%, to 10% of the library; the
  top 1% is what the campaign should find;
- ``--protocol molpal`` (MolPAL's, Graff et al., Chem. Sci. 2021): 1% at random, then 5 rounds of 1% (6% in
  all), retrained from scratch each round, UCB's beta 2; the top 100 is what it should find. On MolPAL's Enamine
  10k table (``../shared/data/molpal/Enamine10k_scores.csv.gz``) MolPAL's published figures are printed beside.

Figures per acquisition (mean over seeds):

- **found, by molecule**: fraction of the table's top molecules (by docked score) that the campaign docked;
- **found, by score value**: fraction of the top score values (a multiset: ties count) among the campaign's best
  as many docked scores, MolPAL's "scores" metric;
- **effective performance**: the calls brute force (docking in random order) needs on average to find 70% of
  the top, ``m (N + 1) / (n + 1)`` for ``m = ceil(0.7 n)`` of ``n`` top molecules among ``N``, over the calls
  the campaign needed (counted at the end of the round that crossed 70%); the same for 50%, a milestone;
- **the surrogate**: R^2 of its out-of-fold predictions (what the campaign itself can measure) and on the
  whole undocked library (what only the oracle knows), and how much its uncertainty knows: the rank
  correlation of the predicted std with the absolute error over the undocked molecules, and (on the PGR
  table) the percentile of the known ligands' std in the library after round 0.

Run (figures in ``bench/README.md``)::

    OMP_NUM_THREADS=1 .venv/bin/python bench/effective_performance.py
    OMP_NUM_THREADS=1 .venv/bin/python bench/effective_performance.py --protocol molpal \\
        --table ../shared/data/molpal/Enamine10k_scores.csv.gz --seeds 0 1 2 3 4

``--help`` lists the settings; the plot (found and R^2 against calls) goes to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args

import numpy as np
import torch
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from mummi_pipelines.drug_discovery.ranking import order_enrichment
from mummi_scales.drug_discovery.data import KNOWN_PREFIX
from mummi_scales.drug_discovery.surrogate import (
    ActiveLearningConfig,
    FingerprintKind,
    Novelty,
    SurrogateConfig,
    SurrogateModel,
    Uncertainty,
    capped,
    fingerprints,
    learn_round,
    r_squared,
    random_choice,
    round_rng,
    stop_reason,
)

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "pgr_reference_scores.csv.gz"
"""The default oracle: 5,009 molecules docked into PGR."""
TARGET_RECALL = 0.7
"""The fraction of the top the campaign should find."""
RECALLS = (0.5, TARGET_RECALL)
"""Recalls whose calls (and effective performance) the table reports: the target, and a milestone before it."""
STRATEGIES = ("greedy", "ucb", "thompson", "random")
"""Acquisition functions compared, the baseline last."""


@dataclass(frozen=True)
class Protocol:
    """How a replayed campaign spends its calls (fractions of the table) and what it should find."""

    initial: float
    batch: float
    budget: float
    top: int | None
    """The best molecules to find, a count; None: the top 1% of the table."""
    beta: float
    explore: float
    """Share of each later batch chosen for novelty (the scale's ``explore_by``)."""
    acquisitions: tuple[str, ...]


PROTOCOLS = {
    "campaign": Protocol(0.02, 0.01, 0.1, None, ActiveLearningConfig().beta, ActiveLearningConfig().explore, STRATEGIES),
    "molpal": Protocol(0.01, 0.01, 0.06, 100, 2.0, 0.0, ("greedy", "ucb", "random")),
}
"""``campaign``: the demo's shape (2%, rounds of 1%, to 10%; top 1%) with the scale's acquisition defaults.
``molpal``: MolPAL's (1%, 5 rounds of 1%, 6% in all; top 100; UCB's beta 2; no novelty share, which MolPAL
does not have)."""
MOLPAL_PUBLISHED = {
    "random": (5.0, 5.6),
    "RF greedy": (44.8, 51.6),
    "RF ucb": (37.2, 43.2),
    "NN greedy": (59.2, 66.8),
    "NN ucb": (51.2, 58.0),
    "MPN greedy": (59.6, 67.0),
    "MPN ucb": (57.0, 64.4),
}
"""MolPAL's published % of the top 100 of Enamine 10k found after 6%, (by molecule, by score value), mean of 5
runs (its analysis notebook at the ``publication`` tag; ``../shared/data/molpal/README.md``)."""
ENAMINE_10K = "Enamine10k_scores"
"""The name MolPAL's table goes by: its published figures are printed beside ours for it."""


@dataclass
class Trace:
    """One replayed campaign: its figures after every round."""

    strategy: str
    seed: int
    calls: list[int] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    """Fraction of the top molecules docked."""
    score_recall: list[float] = field(default_factory=list)
    """Fraction of the top score values among the best docked scores."""
    r2_out_of_fold: list[float] = field(default_factory=list)
    r2_library: list[float] = field(default_factory=list)
    uncertainty_rho: list[float] = field(default_factory=list)
    """Spearman of the predicted std with the absolute error, over the undocked molecules."""
    known_std_percentile: float | None = None
    """Mean percentile (0-100) of the known ligands' std in the library after round 0, while none is docked."""
    known_docked: int = 0
    """Known ligands (ids starting ``known-``) the campaign docked."""
    enrichment: float | None = None
    """EF1% of the known ligands in the campaign's order after S1 (docked by score, then the rest by prediction),
    as the ``ranking`` scale computes it; None without known ligands."""
    converged_at: int | None = None
    """Calls spent when the scale's convergence rule would have stopped the campaign, or None."""
    seconds: float = 0.0

    def calls_to(self, recall: float) -> int | None:
        """Calls spent at the end of the first round that reached ``recall``; None if none did."""
        return next((calls for calls, found in zip(self.calls, self.recall) if found >= recall), None)


def read_table(path: Path, limit: int | None) -> tuple[list[str], list[str], np.ndarray]:
    """Ids, SMILES and scores (NaN where docking failed) of the first ``limit`` rows of a ``smiles,score`` table.

    Ids come from an ``id`` column where there is one, else ``row-<n>``. A SMILES that appears twice keeps its
    last row, as MolPAL's look-up does. Plain or gzip CSV.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    if not rows:
        raise SystemExit(f"{path} holds no rows: give a smiles,score table (bench/dock_reference.py writes one)")
    if not {"smiles", "score"} <= rows[0].keys():
        raise SystemExit(f"{path} has the columns {', '.join(rows[0])}; it needs smiles and score (id optional)")
    last = {row["smiles"]: (index, row) for index, row in enumerate(rows)}
    kept = sorted(last.values(), key=lambda item: item[0])
    ids = [row.get("id") or f"row-{index}" for index, row in kept]
    scores = np.array([float(row["score"]) if row["score"] else np.nan for _, row in kept])
    return ids, [row["smiles"] for _, row in kept], scores


def score_recall(found: np.ndarray, top_values: np.ndarray) -> float:
    """Fraction of the ``top_values`` multiset held by the best ``len(top_values)`` of the ``found`` scores."""
    best = np.sort(found[~np.isnan(found)])[: len(top_values)]
    return sum((Counter(best.tolist()) & Counter(top_values.tolist())).values()) / len(top_values)


def _spearman(first: np.ndarray, second: np.ndarray) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(first, second).statistic) if len(first) > 2 else float("nan")


def replay(
    ids: Sequence[str],
    rows: np.ndarray,
    valid: np.ndarray,
    truth: np.ndarray,
    top: np.ndarray,
    surrogate: SurrogateConfig,
    plan: ActiveLearningConfig,
    seed: int,
    smiles: Sequence[str] | None = None,
) -> Trace:
    """Run one campaign of ``plan`` with ``truth`` as the docking oracle, to its budget.

    The convergence rule is evaluated every round as the scale would, but the
    replay goes on to the budget so that every campaign has a full curve; the
    call count at which it would have stopped is recorded.
    """
    start = time.perf_counter()
    trace = Trace(plan.acquisition, seed)
    never = plan.model_copy(update={"patience": 10**9})  # the replay itself stops on budget or exhaustion only
    docked = np.zeros(len(ids), dtype=bool)
    labels = np.full(len(ids), np.nan)
    chosen = random_choice(np.arange(len(ids)), plan.initial, round_rng(seed, 0))
    overlaps: list[float] = []
    previous_top: list[str] | None = None
    truth_capped = capped(truth, surrogate)
    top_values = np.sort(truth[top])
    known = np.array([ligand_id.startswith(KNOWN_PREFIX) for ligand_id in ids])
    round_index = 0
    while True:
        docked[chosen] = True
        labels[chosen] = truth[chosen]
        found = learn_round(
            ids, rows, valid, labels, docked, surrogate, never, round_index, previous_top, overlaps, seed, smiles
        )
        unseen = ~docked & valid & ~np.isnan(truth)
        trace.calls.append(int(docked.sum()))
        trace.recall.append(float(docked[top].mean()))
        trace.score_recall.append(score_recall(np.where(docked, truth, np.nan), top_values))
        trace.r2_out_of_fold.append(np.nan if found.r2 is None else found.r2)
        r2_library = r_squared(truth_capped[unseen], found.mean[unseen])
        trace.r2_library.append(np.nan if r2_library is None else r2_library)
        trace.uncertainty_rho.append(_spearman(found.std[unseen], np.abs(found.mean - truth_capped)[unseen]))
        if round_index == 0 and (known & ~docked).any():
            percentile = 100 * np.argsort(np.argsort(found.std)) / max(len(ids) - 1, 1)
            trace.known_std_percentile = float(percentile[known & ~docked].mean())
        if found.overlap is not None:
            overlaps.append(found.overlap)
        reason = stop_reason(int(docked.sum()), int(unseen.sum()), overlaps, plan)
        if trace.converged_at is None and reason is not None and reason.startswith("converged"):
            trace.converged_at = int(docked.sum())
        if found.stop is not None:
            trace.known_docked = int((docked & known).sum())
            if known.any():
                scored = np.flatnonzero(docked & ~np.isnan(truth))
                undocked = np.flatnonzero(~docked)
                after_s1 = [ids[int(i)] for i in (*scored[np.argsort(truth[scored], kind="stable")],
                                                  *undocked[np.argsort(found.mean[undocked], kind="stable")])]
                failed = [ids[int(i)] for i in np.flatnonzero(docked & np.isnan(truth))]
                trace.enrichment = order_enrichment(after_s1, failed, {ids[int(i)] for i in np.flatnonzero(known)}, 0.01)
            break
        chosen = found.chosen
        previous_top = [ids[index] for index in found.top]
        round_index += 1
    trace.seconds = time.perf_counter() - start
    return trace


def brute_force_calls(library: int, top: int, recall: float) -> float:
    """Expected calls of docking in random order until ``ceil(recall * top)`` of ``top`` hits among ``library``."""
    wanted = math.ceil(recall * top)
    return wanted * (library + 1) / (top + 1)


def calls_needed(traces: Sequence[Trace], recall: float, brute: float, budget: int) -> str:
    """``"<mean calls> (<effective performance>x)"`` to reach ``recall``, over the seeds that reached it."""
    reached = [calls for calls in (trace.calls_to(recall) for trace in traces) if calls is not None]
    if not reached:
        return f"> {budget} (< {brute / budget:.1f}x)"
    text = f"{np.mean(reached):.0f} ({brute / np.mean(reached):.1f}x)"
    return text if len(reached) == len(traces) else f"{text} in {len(reached)}/{len(traces)} seeds"


def _mean(values: Sequence[float | None]) -> float:
    present = [value for value in values if value is not None and not np.isnan(value)]
    return float(np.mean(present)) if present else float("nan")


def _spread(values: Sequence[float | None]) -> str:
    """``mean (min-max)`` of per-seed figures."""
    present = [value for value in values if value is not None]
    return f"{np.mean(present):.1f} ({min(present):.1f}-{max(present):.1f})"


def _percent(values: Sequence[float]) -> str:
    """``mean ± s.d.`` in percent, as MolPAL reports its runs."""
    return f"{100 * np.mean(values):.1f} ± {100 * np.std(values):.1f}"


def plot(traces: Sequence[Trace], library: int, budget: int, name: str, out: Path) -> None:
    """Found and R^2 against docking calls, one colour per acquisition, seeds faint, means bold."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    figure = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    colors = dict(zip(STRATEGIES, ("#e63946", "#1d3557", "#2a9d8f", "#8d99ae")))
    for strategy in dict.fromkeys(trace.strategy for trace in traces):
        mine = [trace for trace in traces if trace.strategy == strategy]
        for trace in mine:
            left.plot(trace.calls, trace.recall, color=colors[strategy], alpha=0.25, linewidth=0.8)
        calls = mine[0].calls
        left.plot(calls, [_mean([t.recall[i] for t in mine]) for i in range(len(calls))], color=colors[strategy],
                  marker="o", markersize=3, label=strategy)  # fmt: skip
        right.plot(calls, [_mean([t.r2_out_of_fold[i] for t in mine]) for i in range(len(calls))],
                   color=colors[strategy], marker="o", markersize=3, label=f"{strategy}: out of fold")  # fmt: skip
        right.plot(calls, [_mean([t.r2_library[i] for t in mine]) for i in range(len(calls))],
                   color=colors[strategy], linestyle="--", label=f"{strategy}: rest of library")  # fmt: skip
    left.plot([0, budget], [0, budget / library], color="black", linestyle=":", label="brute force (expected)")
    left.axhline(TARGET_RECALL, color="grey", linewidth=0.8)
    left.set_xlabel("docking calls")
    left.set_ylabel("fraction of the top molecules docked")
    left.set_title(f"Best binders found: {name} ({library} molecules)")
    left.legend(fontsize="small")
    right.set_xlabel("docking calls")
    right.set_ylabel("surrogate R^2")
    right.set_title("Surrogate accuracy")
    right.legend(fontsize="x-small", ncols=2)
    for ax in (left, right):
        ax.grid(alpha=0.3)
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=110)


def main(argv: Sequence[str] | None = None) -> int:
    """Replay every acquisition for every seed, print the table, save the plot."""
    defaults = SurrogateConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=REFERENCE, help="The oracle: a smiles,score table (id optional).")
    parser.add_argument("--protocol", choices=list(PROTOCOLS), default="campaign",
                        help="campaign: 2%% then rounds of 1%% to 10%%, top 1%%; molpal: 1%% then 5 x 1%%, top 100.")
    parser.add_argument("--rows", type=int, default=None, help="Use the first N rows only (a quicker run).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds; figures are their means.")
    parser.add_argument("--acquisitions", nargs="+", choices=STRATEGIES, help="Default: the protocol's.")
    parser.add_argument("--initial", type=float, help="Random molecules of round 0: a count, or a fraction (< 1) "
                        "of the library (default: the protocol's).")  # fmt: skip
    parser.add_argument("--batch", type=float, help="Molecules chosen per round (count or fraction).")
    parser.add_argument("--budget", type=float, help="Docking calls (count or fraction).")
    parser.add_argument("--top", type=int, help="How many best molecules to find (default: the protocol's).")
    parser.add_argument("--beta", type=float, help="ucb's weight of the std (default: the protocol's).")
    parser.add_argument("--explore", type=float, help="Share of each later batch chosen for novelty "
                        "(default: the protocol's).")  # fmt: skip
    parser.add_argument("--explore-by", choices=get_args(Novelty), default=ActiveLearningConfig().explore_by,
                        help="How the novelty share is picked: half by the largest std and half "
                        "farthest-first from the docked, or all one way.")
    parser.add_argument("--model", choices=get_args(SurrogateModel), default=defaults.model,
                        help="The ensemble's members (chemprop-mpnn needs the chemprop extra).")
    parser.add_argument("--depth", type=int, default=defaults.depth, help="chemprop-mpnn's message-passing steps.")
    parser.add_argument("--members", type=int, default=defaults.members, help="MLPs in the ensemble.")
    parser.add_argument("--hidden", type=int, nargs="+", default=defaults.hidden, help="Hidden layer widths.")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="Most training passes per member.")
    parser.add_argument("--patience", type=int, default=defaults.patience, help="Early stopping's patience.")
    parser.add_argument("--validation", type=float, default=defaults.validation, help="Each member's validation share.")
    parser.add_argument("--fingerprint", choices=get_args(FingerprintKind), default=defaults.fingerprint)
    parser.add_argument("--bits", type=int, default=defaults.fingerprint_bits, help="Fingerprint length.")
    parser.add_argument("--uncertainty", choices=get_args(Uncertainty), default=defaults.uncertainty,
                        help="The predicted std: the members' spread with or without the distance term.")
    parser.add_argument("--bootstrap", action=argparse.BooleanOptionalAction, default=defaults.bootstrap,
                        help="Members train on bootstrap resamples of the labels.")
    parser.add_argument("--score-cap", type=float, default=defaults.score_cap, help="Scores above are trained on "
                        "(and R^2 measured) as this (kcal/mol).")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/bench-effective-performance/recall.png"),
                        help="Where the plot goes.")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    console = Console(width=220)
    protocol = PROTOCOLS[args.protocol]
    name = args.table.name.split(".")[0]

    ids, smiles, truth = read_table(args.table, args.rows)
    library = len(ids)
    console.print(f"{library} rows of {args.table} (distinct SMILES); {int(np.isnan(truth).sum())} failed to dock")
    surrogate = SurrogateConfig(
        model=args.model, depth=args.depth, members=args.members, hidden=args.hidden, epochs=args.epochs,
        patience=args.patience, validation=args.validation, fingerprint=args.fingerprint, fingerprint_bits=args.bits,
        score_cap=args.score_cap, uncertainty=args.uncertainty, bootstrap=args.bootstrap,
    )  # fmt: skip
    initial, batch, budget = (max(1, round(value * library)) if value < 1 else int(value) for value in (
        args.initial or protocol.initial, args.batch or protocol.batch, args.budget or protocol.budget))  # fmt: skip
    beta = protocol.beta if args.beta is None else args.beta
    plan = ActiveLearningConfig(initial=initial, batch=batch, budget=budget, beta=beta,
                                explore=protocol.explore if args.explore is None else args.explore,
                                explore_by=args.explore_by)
    rows, valid = fingerprints(smiles, surrogate)
    docked_ok = np.flatnonzero(~np.isnan(truth))
    n_top = args.top or protocol.top or max(1, math.ceil(0.01 * library))
    top = docked_ok[np.argsort(truth[docked_ok], kind="stable")[:n_top]]
    brute = {recall: brute_force_calls(library, n_top, recall) for recall in RECALLS}
    console.print(
        f"protocol {args.protocol}: top {n_top} molecules (scores <= {truth[top].max():.2f}); budget {budget} calls "
        f"({budget / library:.1%}), initial {plan.initial}, batch {plan.batch}, ucb beta {beta}, explore {plan.explore} "
        f"by {plan.explore_by}; brute force needs "
        + ", ".join(f"{brute[recall]:.0f} calls for {recall:.0%}" for recall in RECALLS)
        + f" of them on average; surrogate: {surrogate.members} x {surrogate.model} {surrogate.hidden}"
        + (f" over {surrogate.fingerprint} fingerprints" if surrogate.model == "fingerprint-mlp" else "")
        + f", uncertainty {surrogate.uncertainty}"
    )
    acquisitions = args.acquisitions or list(protocol.acquisitions)
    traces: list[Trace] = []
    with Progress(console=console, transient=True) as progress:
        bar = progress.add_task("campaigns", total=len(args.seeds) * len(acquisitions))
        for seed in args.seeds:
            for strategy in acquisitions:
                trace = replay(ids, rows, valid, truth, top, surrogate,
                               plan.model_copy(update={"acquisition": strategy}), seed, smiles)  # fmt: skip
                traces.append(trace)
                progress.advance(bar)
                console.print(
                    f"  seed {seed} {strategy:8s} found {trace.recall[-1]:.1%} by molecule, "
                    f"{trace.score_recall[-1]:.1%} by score after {trace.calls[-1]} calls; "
                    + (f"{trace.known_docked} known ligands docked, EF1% {trace.enrichment:.1f}; "
                       if trace.enrichment is not None else "")
                    + f"{trace.seconds:.0f} s"
                )
    table = Table(title=f"Effective performance of ML1 on {name} ({library} molecules, protocol {args.protocol}, "
                        f"seeds {args.seeds})")  # fmt: skip
    columns = [f"found by molecule (% of top {n_top})", "found by score value (%)",
               *(f"calls to {recall:.0%} (effective perf.)" for recall in RECALLS),
               "R^2 out of fold", "R^2 library", "rho(std, |error|)", "known ligands' std pct",
               "known docked", "EF1% after S1", "convergence at", "s per campaign"]  # fmt: skip
    table.add_column("acquisition")
    for column in columns:
        table.add_column(column, justify="right")
    for strategy in acquisitions:
        mine = [trace for trace in traces if trace.strategy == strategy]
        converged = [trace.converged_at for trace in mine if trace.converged_at is not None]
        known = [trace.known_std_percentile for trace in mine if trace.known_std_percentile is not None]
        table.add_row(
            f"ours, {strategy}",
            _percent([trace.recall[-1] for trace in mine]),
            _percent([trace.score_recall[-1] for trace in mine]),
            *(calls_needed(mine, recall, brute[recall], budget) for recall in RECALLS),
            f"{_mean([trace.r2_out_of_fold[-1] for trace in mine]):.2f}",
            f"{_mean([trace.r2_library[-1] for trace in mine]):.2f}",
            f"{_mean([trace.uncertainty_rho[-1] for trace in mine]):.2f}",
            f"{np.mean(known):.0f}" if known else "-",
            *((f"{np.mean([t.known_docked for t in mine]):.1f}", _spread([t.enrichment for t in mine]))
              if mine[0].enrichment is not None else ("-", "-")),
            f"{np.mean(converged):.0f} calls ({len(converged)}/{len(mine)})" if converged else "never",
            f"{np.mean([trace.seconds for trace in mine]):.0f}",
        )
    if name == ENAMINE_10K and args.protocol == "molpal":
        for label, (by_molecule, by_score) in MOLPAL_PUBLISHED.items():
            table.add_row(f"MolPAL {label} (published)", f"{by_molecule:.1f}", f"{by_score:.1f}",
                          *["-"] * (len(columns) - 2), style="dim")  # fmt: skip
    console.print(table)
    console.print(
        "effective performance: brute force's expected calls over the campaign's; found by score value: how many of "
        f"the top {n_top} score values the campaign's best {n_top} docked scores hold (MolPAL's 'scores' metric); "
        f"target on PGR's table: {TARGET_RECALL:.0%} of the top 1% within {0.1 * library:.0f} calls (10%)"
    )
    plot(traces, library, budget, name, args.out)
    console.print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
