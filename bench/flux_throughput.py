"""Throughput of the flux backend against Flux's own command line, in one Flux instance.

Both run ``--count`` trivial executables (``true``) to completion in the same
instance, one after the other:

* ``flux submit --cc=1-N --wait true``: Flux's own bulk submission, the floor
  of what any layer on top of Flux can do;
* a mummi-like campaign of N ``true`` tasks on ``backend: flux``: spec, store
  (every task persisted), loop, and the backend's jobspecs and journal.

The ratio says how much our layer costs on top of Flux; the target is at least
90% of Flux's own throughput. Run it inside an instance (``flux start``,
``flux alloc``) or let it start a one-broker test instance itself::

    .venv/bin/python bench/flux_throughput.py [--count 1000]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from mummi_like.campaign.loop import Campaign

HERE = Path(__file__).resolve().parent
TARGET = 0.9


def flux_cli_seconds(count: int) -> float:
    started = time.perf_counter()
    subprocess.run(["flux", "submit", f"--cc=1-{count}", "--quiet", "--wait", "true"], check=True)
    return time.perf_counter() - started


def campaign_seconds(count: int, directory: Path) -> float:
    spec = f"""
name: flux-throughput
backend: {{plugin: flux}}
scales:
  - name: trivial
    plugin: command
    config:
      argv: ["true"]
      parameters: {{i: {list(range(count))}}}
"""
    campaign = Campaign.from_text(spec, HERE / "flux-throughput.yaml", directory)
    started = time.perf_counter()
    summary = campaign.run()
    elapsed = time.perf_counter() - started
    if not summary.complete:
        raise SystemExit(f"the benchmark campaign did not complete: {summary.counts} {summary.failures[:3]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    args = parser.parse_args()
    if "FLUX_URI" not in os.environ:
        if shutil.which("flux") is None:
            raise SystemExit("no `flux` on PATH: build flux-core (tag v0.88.0), put its bin/ on PATH and its "
                             "python bindings on PYTHONPATH, then run this again")
        os.execvp("flux", ["flux", "start", "--test-size=1", sys.executable, *sys.argv])
    flux_s = flux_cli_seconds(args.count)
    with tempfile.TemporaryDirectory(prefix="mummi-flux-bench-") as scratch:
        ours_s = campaign_seconds(args.count, Path(scratch) / "campaign")
    cores = subprocess.run(["flux", "resource", "list", "-no", "{ncores}"], capture_output=True, text=True,
                           check=True).stdout.split()
    table = Table(title=f"{args.count} trivial jobs in one Flux instance ({' + '.join(cores)} cores)")
    for column in ("engine", "seconds", "jobs/s", "vs flux CLI"):
        table.add_column(column, justify="left" if column == "engine" else "right")
    table.add_row("flux submit --cc --wait", f"{flux_s:.2f}", f"{args.count / flux_s:.1f}", "1.00x")
    table.add_row("mummi-like flux backend", f"{ours_s:.2f}", f"{args.count / ours_s:.1f}",
                  f"{flux_s / ours_s:.2f}x (target >= {TARGET:.2f}x)")
    Console(width=120).print(table)


if __name__ == "__main__":
    main()
