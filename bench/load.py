"""Load: a campaign of 100,000 queued tasks -- the coordinator's peak memory, and `status` while it runs.

A production campaign queues far more work than a node runs at once. This
benchmark runs campaigns of no-op Python tasks of growing size (default 10,000,
30,000 and 100,000) through ``mummi-like run`` in a subprocess and measures,
side by side:

* the coordinator's peak resident memory (``VmHWM`` of its process, sampled
  until it exits) and what that makes per task: memory grows with the tasks
  the campaign knows, and must not grow faster;
* how long ``mummi-like status --json`` takes while the campaign runs (a fresh
  interpreter each time, as a user on a login node would run it; target: under
  a second), and how long the in-process :func:`~mummi_like.cli.status_report`
  takes (what the command costs beyond starting Python).

Usage::

    .venv/bin/python bench/load.py [--sizes 10000 30000 100000] [--status-every 2.0]
"""

from __future__ import annotations

import argparse
import math
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mummi_like.cli import status_report
from mummi_like.store import Store, StoreError

HERE = Path(__file__).resolve().parent
CLI = [sys.executable, "-m", "mummi_like.cli"]
STATUS_TARGET = 1.0
"""Seconds `status` may take at most, from the issue."""


def spec_text(size: int) -> str:
    """A campaign of ``size`` no-op tasks, written as the product of two short parameter lists."""
    rows = math.ceil(size / 100)
    return f"""
name: load
python_path: ["{HERE}"]
allow_outside_paths: true
backend: {{plugin: local, config: {{cores: 2}}}}
scales:
  - name: noop
    plugin: function
    config:
      function: "bench_tasks:noop"
      parameters: {{row: {list(range(rows))}, column: {list(range(100))}}}
"""


def peak_rss_mb(pid: int) -> float | None:
    """The process's peak resident set so far (MB), or ``None`` once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


def measure(size: int, status_every: float, folder: Path) -> dict[str, float]:
    """Run one campaign of ``size`` tasks; peak RSS, status timings and throughput."""
    spec = folder / f"load-{size}.yaml"
    spec.write_text(spec_text(size))
    directory = folder / f"run-{size}"
    started = time.perf_counter()
    coordinator = subprocess.Popen([*CLI, "run", str(spec), "--dir", str(directory), "--quiet"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak, cli_times, report_times, queued_seen = 0.0, [], [], 0
    next_status = time.monotonic() + status_every
    while coordinator.poll() is None:
        peak = max(peak, peak_rss_mb(coordinator.pid) or 0.0)
        if time.monotonic() >= next_status:
            next_status = time.monotonic() + status_every
            try:
                t0 = time.perf_counter()
                report = status_report(directory)
                report_times.append(time.perf_counter() - t0)
            except StoreError:  # the store is not created yet
                continue
            counts = report["counts"].get("noop", {})  # type: ignore[union-attr]
            queued_seen = max(queued_seen, counts.get("created", 0) + counts.get("queued", 0))
            t0 = time.perf_counter()
            subprocess.run([*CLI, "status", str(directory), "--json"], capture_output=True, check=True)
            cli_times.append(time.perf_counter() - t0)
        time.sleep(0.05)
    elapsed = time.perf_counter() - started
    _, stderr = coordinator.communicate()
    if coordinator.returncode != 0:
        raise SystemExit(f"the campaign of {size} tasks failed ({coordinator.returncode}): {stderr}")
    with Store.open(directory, readonly=True) as store:
        done = store.counts()["noop"].get("done", 0)
    return {
        "tasks": size, "done": done, "peak_mb": peak, "kb_per_task": peak * 1024 / size,
        "waiting_max": queued_seen, "seconds": elapsed,
        "status_cli_max": max(cli_times, default=math.nan),
        "status_cli_median": statistics.median(cli_times) if cli_times else math.nan,
        "status_report_max": max(report_times, default=math.nan), "status_samples": len(cli_times),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
    parser.add_argument("--status-every", type=float, default=2.0, help="seconds between status calls")
    args = parser.parse_args()
    console = Console(width=150)  # the table is wide; keep it readable when the output is piped to a file
    rows = []
    with tempfile.TemporaryDirectory(prefix="mummi-load-") as folder:
        for size in args.sizes:
            console.print(f"running a campaign of {size:,} no-op tasks ...")
            rows.append(measure(size, args.status_every, Path(folder)))
    table = Table(title="Coordinator memory and status under load (no-op tasks, local backend, 2 cores)")
    for column in ("tasks", "done", "waiting (max seen)", "peak RSS (MB)", "KB/task", "run (s)",
                   "status CLI median / max (s)", "status_report max (s)", "samples"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(f"{row['tasks']:,}", f"{row['done']:,}", f"{row['waiting_max']:,}", f"{row['peak_mb']:.0f}",
                      f"{row['kb_per_task']:.1f}", f"{row['seconds']:.0f}",
                      f"{row['status_cli_median']:.2f} / {row['status_cli_max']:.2f}",
                      f"{row['status_report_max']:.2f}", str(row["status_samples"]))
    console.print(table)
    worst = max(row["status_cli_max"] for row in rows)
    verdict = "met" if worst < STATUS_TARGET else "NOT met"
    console.print(f"status under {STATUS_TARGET:g} s at every size: {verdict} (worst {worst:.2f} s)")


if __name__ == "__main__":
    main()
