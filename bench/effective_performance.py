"""Effective performance of ML1: how many docking calls active learning saves to find PGR's best binders.

Replays the ``active-docking`` campaign against ``data/pgr_reference_scores.csv.gz`` (written by
``bench/dock_reference.py``): the table is the oracle, so a "docking call" is a look-up, and a whole campaign
takes seconds of surrogate training instead of hours of Vina. The replay uses the scale's own code
(:func:`mummi_scales.drug_discovery.surrogate.learn_round`: the same fingerprints, ensemble, acquisition, held-out split
and stop rules; round 0 drawn by the same seeded :func:`~mummi_scales.drug_discovery.surrogate.random_choice`), once per
acquisition function (greedy, ucb, thompson, and random as the baseline) and seed, side by side.

Figures per acquisition (mean over seeds):

- **recall**: fraction of the true top 1% of the table (by docked score) that the campaign has docked, after
  every round;
- **R^2**: the surrogate's on the held-out labelled molecules (what the campaign itself can measure) and on the
  whole undocked library (what only the oracle knows);
- **effective performance**: the calls brute force (docking in random order) needs on average to find 70% of
  the top 1%, ``m (N + 1) / (n + 1)`` for ``m = ceil(0.7 n)`` of ``n`` top molecules among ``N``, over the calls
  the campaign needed (counted at the end of the round that crossed 70%); the same for 50%, a milestone.

Targets (the issue's): R^2 >= 0.7, and >= 70% of the top 1% found with <= 10% of the calls. Run::

    OMP_NUM_THREADS=1 .venv/bin/python bench/effective_performance.py

``--help`` lists the settings; the plot (recall and R^2 against calls) goes to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from mummi_scales.drug_discovery.surrogate import (
    ActiveLearningConfig,
    SurrogateConfig,
    capped,
    fingerprints,
    learn_round,
    r_squared,
    random_choice,
    round_rng,
    stop_reason,
)

REFERENCE = Path(__file__).resolve().parents[1] / "data" / "pgr_reference_scores.csv.gz"
"""The oracle table."""
FULL_TABLE = 5009
"""Rows of the finished table (5000 MOSES molecules and 9 known ligands): fewer means dock_reference.py is still
running."""
TOP_FRACTION = 0.01
"""The best binders the campaign should find: the top 1% of the table."""
TARGET_RECALL = 0.7
"""The fraction of them it should find."""
RECALLS = (0.5, TARGET_RECALL)
"""Recalls whose calls (and effective performance) the table reports: the target, and a milestone before it."""
STRATEGIES = ("greedy", "ucb", "thompson", "random")
"""Acquisition functions compared, the baseline last."""


@dataclass
class Trace:
    """One replayed campaign: its figures after every round."""

    strategy: str
    seed: int
    calls: list[int] = field(default_factory=list)
    recall: list[float] = field(default_factory=list)
    r2_held_out: list[float] = field(default_factory=list)
    r2_library: list[float] = field(default_factory=list)
    spearman: list[float] = field(default_factory=list)
    converged_at: int | None = None
    """Calls spent when the scale's convergence rule would have stopped the campaign, or None."""
    seconds: float = 0.0

    def calls_to(self, recall: float) -> int | None:
        """Calls spent at the end of the first round that reached ``recall``; None if none did."""
        return next((calls for calls, found in zip(self.calls, self.recall) if found >= recall), None)


def read_reference(path: Path, limit: int | None) -> tuple[list[str], list[str], np.ndarray]:
    """Ids, SMILES and scores (NaN where docking failed) of the first ``limit`` rows of the table (all: None)."""
    with gzip.open(path, "rt", newline="") as handle:
        rows = list(csv.DictReader(handle))[:limit]
    if not rows:
        raise SystemExit(f"{path} holds no rows yet: run bench/dock_reference.py first")
    scores = np.array([float(row["score"]) if row["score"] else np.nan for row in rows])
    return [row["id"] for row in rows], [row["smiles"] for row in rows], scores


def replay(
    ids: Sequence[str],
    rows: np.ndarray,
    valid: np.ndarray,
    truth: np.ndarray,
    top: np.ndarray,
    surrogate: SurrogateConfig,
    plan: ActiveLearningConfig,
    seed: int,
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
    round_index = 0
    while True:
        docked[chosen] = True
        labels[chosen] = truth[chosen]
        found = learn_round(
            ids, rows, valid, labels, docked, surrogate, never, round_index, previous_top, overlaps, seed
        )
        unseen = ~docked & valid & ~np.isnan(truth)
        trace.calls.append(int(docked.sum()))
        trace.recall.append(float(docked[top].mean()))
        trace.r2_held_out.append(np.nan if found.r2 is None else found.r2)
        r2_library = r_squared(truth_capped[unseen], found.mean[unseen])
        trace.r2_library.append(np.nan if r2_library is None else r2_library)
        trace.spearman.append(np.nan if found.spearman is None else found.spearman)
        if found.overlap is not None:
            overlaps.append(found.overlap)
        reason = stop_reason(int(docked.sum()), int(unseen.sum()), overlaps, plan)
        if trace.converged_at is None and reason is not None and reason.startswith("converged"):
            trace.converged_at = int(docked.sum())
        if found.stop is not None:
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


def plot(traces: Sequence[Trace], library: int, budget: int, out: Path) -> None:
    """Recall and R^2 against docking calls, one colour per acquisition, seeds faint, means bold."""
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
        right.plot(calls, [_mean([t.r2_held_out[i] for t in mine]) for i in range(len(calls))],
                   color=colors[strategy], marker="o", markersize=3, label=f"{strategy}: held out")  # fmt: skip
        right.plot(calls, [_mean([t.r2_library[i] for t in mine]) for i in range(len(calls))],
                   color=colors[strategy], linestyle="--", label=f"{strategy}: rest of library")  # fmt: skip
    left.plot([0, budget], [0, budget / library], color="black", linestyle=":", label="brute force (expected)")
    left.axhline(TARGET_RECALL, color="grey", linewidth=0.8)
    left.axvline(0.1 * library, color="grey", linewidth=0.8)
    left.set_xlabel("docking calls")
    left.set_ylabel(f"fraction of the top {TOP_FRACTION:.0%} docked")
    left.set_title(f"Recall of the best binders ({library} molecules)")
    left.legend(fontsize="small")
    right.axhline(0.7, color="grey", linewidth=0.8)
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
    defaults, plan_defaults = SurrogateConfig(), ActiveLearningConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=REFERENCE, help="The oracle (dock_reference.py's table).")
    parser.add_argument("--rows", type=int, default=None, help="Use the first N rows only (a quicker run).")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="Seeds; figures are their means.")
    parser.add_argument("--acquisitions", nargs="+", choices=STRATEGIES, default=list(STRATEGIES))
    parser.add_argument("--initial", type=float, default=0.02, help="Random molecules of round 0: a count, or a "
                        "fraction (< 1) of the library.")  # fmt: skip
    parser.add_argument("--batch", type=float, default=0.01, help="Molecules chosen per round (count or fraction).")
    parser.add_argument("--budget", type=float, default=0.1, help="Docking calls (count or fraction).")
    parser.add_argument("--beta", type=float, default=plan_defaults.beta, help="ucb's weight of the std.")
    parser.add_argument("--members", type=int, default=defaults.members, help="MLPs in the ensemble.")
    parser.add_argument("--hidden", type=int, nargs="+", default=defaults.hidden, help="Hidden layer widths.")
    parser.add_argument("--epochs", type=int, default=defaults.epochs, help="Training passes per member.")
    parser.add_argument("--fingerprint", choices=("count", "bit"), default=defaults.fingerprint)
    parser.add_argument("--bits", type=int, default=defaults.fingerprint_bits, help="Fingerprint length.")
    parser.add_argument("--holdout", type=float, default=defaults.holdout, help="Labelled fraction held out.")
    parser.add_argument("--score-cap", type=float, default=defaults.score_cap, help="Scores above are trained on "
                        "(and R^2 measured) as this (kcal/mol).")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path("runs/bench-effective-performance/recall.png"),
                        help="Where the plot goes.")  # fmt: skip
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    console = Console()

    ids, smiles, truth = read_reference(args.table, args.rows)
    library = len(ids)
    note = "" if library >= FULL_TABLE else f" (the full table has {FULL_TABLE}: dock_reference.py is not done)"
    console.print(f"{library} rows of {args.table}{note}; {int(np.isnan(truth).sum())} failed to dock")
    surrogate = SurrogateConfig(
        members=args.members, hidden=args.hidden, epochs=args.epochs, fingerprint=args.fingerprint,
        fingerprint_bits=args.bits, holdout=args.holdout, score_cap=args.score_cap,
    )  # fmt: skip
    initial, batch, budget = (max(1, round(value * library)) if value < 1 else int(value)
                              for value in (args.initial, args.batch, args.budget))  # fmt: skip
    plan = ActiveLearningConfig(initial=initial, batch=batch, budget=budget, beta=args.beta)
    rows, valid = fingerprints(smiles, surrogate)
    docked_ok = np.flatnonzero(~np.isnan(truth))
    n_top = max(1, math.ceil(TOP_FRACTION * library))
    top = docked_ok[np.argsort(truth[docked_ok], kind="stable")[:n_top]]
    brute = {recall: brute_force_calls(library, n_top, recall) for recall in RECALLS}
    console.print(
        f"top {TOP_FRACTION:.0%}: {n_top} molecules, scores <= {truth[top].max():.2f} kcal/mol; budget {budget} calls "
        f"({budget / library:.1%}), initial {plan.initial}, batch {plan.batch}; brute force needs "
        + ", ".join(f"{brute[recall]:.0f} calls for {recall:.0%}" for recall in RECALLS)
        + " of them on average"
    )
    traces: list[Trace] = []
    for seed in args.seeds:
        for strategy in args.acquisitions:
            campaign = plan.model_copy(update={"acquisition": strategy})
            trace = replay(ids, rows, valid, truth, top, surrogate, campaign, seed)
            traces.append(trace)
            console.print(
                f"  seed {seed} {strategy:8s} recall {trace.recall[-1]:.2f} after {trace.calls[-1]} calls, "
                f"held-out R^2 {trace.r2_held_out[-1]:.2f}, {trace.seconds:.0f} s"
            )
    table = Table(title=f"Effective performance of ML1 on PGR ({library} molecules, seeds {args.seeds})")
    columns = [f"recall of top {TOP_FRACTION:.0%} at budget",
               *(f"calls to {recall:.0%} (effective perf.)" for recall in RECALLS),
               "held-out R^2", "library R^2", "Spearman", "convergence stop at", "s per campaign"]  # fmt: skip
    table.add_column("acquisition")
    for column in columns:
        table.add_column(column, justify="right")
    for strategy in args.acquisitions:
        mine = [trace for trace in traces if trace.strategy == strategy]
        converged = [trace.converged_at for trace in mine if trace.converged_at is not None]
        table.add_row(
            strategy,
            f"{_mean([trace.recall[-1] for trace in mine]):.2f}",
            *(calls_needed(mine, recall, brute[recall], budget) for recall in RECALLS),
            f"{_mean([trace.r2_held_out[-1] for trace in mine]):.2f}",
            f"{_mean([trace.r2_library[-1] for trace in mine]):.2f}",
            f"{_mean([trace.spearman[-1] for trace in mine]):.2f}",
            f"{np.mean(converged):.0f} calls ({len(converged)}/{len(mine)})" if converged else "never",
            f"{np.mean([trace.seconds for trace in mine]):.0f}",
        )
    console.print(table)
    console.print(
        "effective performance: brute force's expected calls over the campaign's; targets: R^2 >= 0.7, "
        f"{TARGET_RECALL:.0%} of the top {TOP_FRACTION:.0%} within {0.1 * library:.0f} calls (10%)"
    )
    plot(traces, library, budget, args.out)
    console.print(f"plot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
