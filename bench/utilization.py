"""Steady-state utilization of a heterogeneous campaign on the local backend.

A synthetic MuMMI-like mix, run through the full campaign loop:

* many short **coarse** tasks (Python callables of random length, 1 core),
* few long **fine** tasks that need several cores at once (executables),
* periodic **training** tasks (2 cores), each waiting for one block of coarse tasks.

All tasks sleep rather than compute, so the figure measures how well the
coordinator keeps the node's *reserved* resources busy (as MuMMI's GPU
occupancy does), not CPU speed; a node of ``--cores`` slots (default 8) is
therefore simulated faithfully on a smaller machine. Steady state is the time,
between the first and the last start, during which some task was waiting in
the backend's queue: idle slots then are the scheduler's loss, not a lack of
work. Usage::

    .venv/bin/python bench/utilization.py [--cores 8] [--scale 1.0] [--seed 7] [--report DIR]
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mummi_like.campaign.loop import Campaign
from mummi_like.report import write_report
from mummi_like.store import Store
from mummi_like.telemetry import overall_utilization, read_telemetry, steady_state_utilization

HERE = Path(__file__).resolve().parent
TARGET = 0.98


def campaign_spec(cores: int, scale: float, seed: int) -> tuple[str, float]:
    """The campaign's spec and its total work in core-seconds."""
    generator = random.Random(seed)
    blocks = max(1, round(6 * scale))
    per_block = max(5, round(100 * scale))
    coarse_ms = [generator.randint(50, 400) for _ in range(blocks * per_block)]
    fine_count, fine_cores, fine_seconds = max(1, round(12 * scale)), max(2, cores // 2), 3
    training_cores, training_seconds = 2, 1
    work = (sum(coarse_ms) / 1000 + fine_count * fine_cores * fine_seconds
            + blocks * training_cores * training_seconds)
    spec = f"""
name: utilization
python_path: ["."]
backend: {{plugin: local, config: {{cores: {cores}}}}}
scales:
  - name: coarse
    plugin: function
    config:
      function: "bench_tasks:sleep_ms"
      combine: zip
      parameters:
        block: {[index // per_block for index in range(len(coarse_ms))]}
        ms: {coarse_ms}
  - name: fine
    plugin: command
    config:
      argv: ["sleep", "{fine_seconds}"]
      parameters: {{replica: {list(range(fine_count))}}}
      resources: {{cores: {fine_cores}}}
  - name: training
    plugin: command
    depends_on: [coarse]      # shares `block`: each training task waits for its block of coarse tasks
    config:
      argv: ["sleep", "{training_seconds}"]
      parameters: {{block: {list(range(blocks))}}}
      resources: {{cores: {training_cores}}}
"""
    return spec, work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=8, help="slots of the simulated node")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply task counts (0.1 for a smoke run)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--report", type=Path, help="also write the campaign's HTML report into this folder")
    args = parser.parse_args()
    spec, work = campaign_spec(args.cores, args.scale, args.seed)
    with tempfile.TemporaryDirectory(prefix="mummi-utilization-") as scratch:
        directory = Path(scratch) / "campaign"
        campaign = Campaign.from_text(spec, HERE / "utilization-spec.yaml", directory)
        started = time.perf_counter()
        summary = campaign.run()
        elapsed = time.perf_counter() - started
        if not summary.complete:
            raise SystemExit(f"the benchmark campaign did not complete: {summary.counts} {summary.failures[:3]}")
        with Store.open(directory, readonly=True) as store:
            telemetry = read_telemetry(store)
        if args.report:
            print(f"report: {write_report(directory, args.report)}")
    steady = steady_state_utilization(telemetry)
    overall = overall_utilization(telemetry)
    ideal = work / args.cores
    table = Table(title=f"utilization of a heterogeneous campaign, {args.cores}-slot node, seed {args.seed}")
    for column in ("tasks", "work (core-s)", "ideal (s)", "elapsed (s)", "overall", "steady state", "target"):
        table.add_column(column, justify="right")
    tasks = sum(sum(states.values()) for states in summary.counts.values())
    table.add_row(str(tasks), f"{work:.1f}", f"{ideal:.1f}", f"{elapsed:.1f}",
                  f"{overall:.1%}" if overall is not None else "-",
                  f"{steady:.1%}" if steady is not None else "-", f">= {TARGET:.0%}")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
