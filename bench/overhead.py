"""Coordinator overhead: mummi-like's local backend against concurrent.futures, in one run.

Three workloads, each run through the full campaign loop with every task
persisted in the store (spec -> tasks -> SQLite WAL -> local backend), and
through a bare ``ProcessPoolExecutor`` with as many workers as cores (the
reference of the ratio column); (b) also against serial ``Popen``:

(a) 2,000 no-op Python tasks;
(b) 200 ``/bin/true`` executables;
(c) 100 chains of 3 dependent 20 ms tasks (ideal: 100 * 3 * 20 ms / cores).

Prints tasks/s, ms/task and the ratio to the baseline. Usage::

    .venv/bin/python bench/overhead.py [--cores 2] [--scale 1.0]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mummi_like.campaign.loop import Campaign
from mummi_like.campaign.reporting import Reporter
from mummi_like.spec import load_spec_text

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_tasks  # noqa: E402  (the same functions the campaign's workers import)

CHAIN_MS = 20.0


def campaign_seconds(spec: str, workdir: Path) -> tuple[float, dict[str, dict[str, int]]]:
    """Run a campaign spec to completion and return its wall time and final counts."""
    source = HERE / "overhead-spec.yaml"  # names the spec; python_path resolves against bench/
    resolved = load_spec_text(spec, source, directory=workdir)
    campaign = Campaign.create(resolved, spec, Reporter())
    started = time.perf_counter()
    summary = campaign.run()
    elapsed = time.perf_counter() - started
    if summary.failures:
        raise SystemExit(f"benchmark tasks failed: {summary.failures[:3]}")
    return elapsed, summary.counts


def spec_header(name: str, cores: int) -> str:
    return f"""
name: {name}
python_path: ["."]
backend: {{plugin: local, config: {{cores: {cores}}}}}
scales:
"""


def noop_spec(count: int, cores: int) -> str:
    return spec_header("noop", cores) + f"""
  - name: noop
    plugin: function
    config:
      function: "bench_tasks:noop"
      parameters: {{i: {list(range(count))}}}
"""


def true_spec(count: int, cores: int) -> str:
    return spec_header("executables", cores) + f"""
  - name: executables
    plugin: command
    config:
      argv: ["/bin/true"]
      parameters: {{i: {list(range(count))}}}
"""


def chain_spec(chains: int, cores: int) -> str:
    stages = ""
    previous = None
    for stage in ("first", "second", "third"):
        stages += f"""
  - name: {stage}
    plugin: function
    {"depends_on: [" + previous + "]" if previous else ""}
    config:
      function: "bench_tasks:sleep_ms"
      kwargs: {{ms: {CHAIN_MS}}}
      parameters: {{chain: {list(range(chains))}}}
"""
        previous = stage
    return spec_header("chains", cores) + stages


def pool_noop(count: int, cores: int) -> float:
    with cf.ProcessPoolExecutor(cores) as pool:
        pool.submit(bench_tasks.noop).result()  # workers up before timing, as the campaign's are
        started = time.perf_counter()
        for future in [pool.submit(bench_tasks.noop) for _ in range(count)]:
            future.result()
        return time.perf_counter() - started


def pool_true(count: int, cores: int) -> float:
    with cf.ProcessPoolExecutor(cores) as pool:
        pool.submit(bench_tasks.noop).result()
        started = time.perf_counter()
        codes = [future.result() for future in [pool.submit(bench_tasks.run_true) for _ in range(count)]]
        assert not any(codes)
        return time.perf_counter() - started


def serial_popen_true(count: int, cores: int) -> float:
    """One ``Popen`` and ``wait`` after another: the figure the issue's reference quotes."""
    started = time.perf_counter()
    for _ in range(count):
        assert subprocess.Popen(["/bin/true"]).wait() == 0
    return time.perf_counter() - started


def pool_chains(chains: int, cores: int) -> float:
    with cf.ProcessPoolExecutor(cores) as pool:
        pool.submit(bench_tasks.noop).result()
        started = time.perf_counter()
        remaining = {pool.submit(bench_tasks.sleep_ms, CHAIN_MS): 2 for _ in range(chains)}
        while remaining:
            done, _ = cf.wait(remaining, return_when=cf.FIRST_COMPLETED)
            for future in done:
                left = remaining.pop(future)
                future.result()
                if left:
                    remaining[pool.submit(bench_tasks.sleep_ms, CHAIN_MS)] = left - 1
        return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply task counts (0.1 for a smoke run)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each engine, interleaved; the fastest counts (a shared machine only adds noise)")
    args = parser.parse_args()
    noops, trues, chains = (max(1, int(n * args.scale)) for n in (2000, 200, 100))
    console = Console(width=120)
    table = Table(title=f"coordinator overhead, {args.cores} cores, every campaign task persisted, "
                        f"best of {args.repeat} interleaved runs")
    for column in ("workload", "engine", "tasks", "seconds", "tasks/s", "ms/task", "vs baseline"):
        table.add_column(column, justify="right" if column not in ("workload", "engine") else "left")
    with tempfile.TemporaryDirectory(prefix="mummi-bench-") as scratch:
        root = Path(scratch)
        cases = [
            ("(a) no-op Python", noops, noops, noop_spec(noops, args.cores), [("ProcessPoolExecutor", pool_noop)]),
            ("(b) /bin/true", trues, trues, true_spec(trues, args.cores),
             [("ProcessPoolExecutor", pool_true), ("serial Popen+wait", serial_popen_true)]),
            ("(c) 3-task chains", chains * 3, chains, chain_spec(chains, args.cores),
             [("ProcessPoolExecutor", pool_chains)]),
        ]
        for label, tasks, count, spec, baselines in cases:
            engines = [*baselines, ("mummi-like local", None)]
            best = {name: float("inf") for name, _ in engines}
            for repeat in range(args.repeat):
                for name, function in engines:
                    if function is None:
                        workdir = root / f"{label.split()[0].strip('()')}-{repeat}"
                        seconds = campaign_seconds(spec, workdir)[0]
                    else:
                        seconds = function(count, args.cores)
                    best[name] = min(best[name], seconds)
            timings = list(best.items())
            reference = timings[0][1]
            for engine, seconds in timings:
                table.add_row(label, engine, str(tasks), f"{seconds:.2f}", f"{tasks / seconds:,.0f}",
                              f"{1000 * seconds / tasks:.2f}", f"{reference / seconds:.2f}x")
            if label.startswith("(c)"):
                ideal = chains * 3 * CHAIN_MS / 1000 / args.cores
                table.add_row(label, "ideal (work / cores)", str(tasks), f"{ideal:.2f}", "", "",
                              f"ours {timings[-1][1] / ideal:.2f}x ideal")
    console.print(table)


if __name__ == "__main__":
    main()
