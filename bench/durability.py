"""Durability: what SQLite's ``synchronous=FULL`` costs the coordinator against ``NORMAL``, in one run.

With the store in WAL mode, ``NORMAL`` syncs the log only at checkpoints: a
commit survives a crash of the coordinator, but a power loss or an OS crash may
roll back the last commits. ``FULL`` syncs the log at every commit, so nothing
committed is ever lost; it costs one ``fsync`` per commit, and the loop commits
at most every ``Campaign.commit_interval`` (20 ms), whatever the task rate.

Two measures, each side by side, interleaved, best of ``--repeat``:

* the full campaign loop (spec, scale plugin, local backend, every task and
  state change persisted) on (a) 2,000 no-op Python tasks and (b) 200
  ``/bin/true`` executables, the workloads of ``overhead.py``, whose spec
  differs only by ``store: {synchronous: ...}``;
* one store commit of a tick's worth of changes (10 tasks moved one state),
  what the loop pays per commit, in milliseconds.

Prints seconds, tasks/s and the speed of FULL relative to NORMAL (1.00x: FULL costs nothing).
Usage::

    .venv/bin/python bench/durability.py [--cores 2] [--scale 1.0] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import get_args

from rich.console import Console
from rich.table import Table

from mummi_like.store import Store, Synchronous
from mummi_like.tasks import TaskSpec, TaskState

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from overhead import campaign_seconds, noop_spec, true_spec  # noqa: E402  (the same workloads, the same timing)

MODES: tuple[Synchronous, ...] = get_args(Synchronous)
COMMITS = 200
TASKS_PER_COMMIT = 10


def with_store(spec: str, synchronous: Synchronous) -> str:
    """``spec`` with the store's synchronous setting (a top-level key appended to the YAML)."""
    return f"{spec}store: {{synchronous: {synchronous}}}\n"


def commit_ms(folder: Path, synchronous: Synchronous) -> float:
    """Milliseconds per commit of :data:`TASKS_PER_COMMIT` state changes, over :data:`COMMITS` commits."""
    tasks = [TaskSpec(id=f"t{i}", payload={"kind": "callable", "function": "bench_tasks:noop"}, workdir=f"t/{i}")
             for i in range(TASKS_PER_COMMIT)]
    with Store.open(folder, synchronous=synchronous) as store:
        store.add_tasks(tasks, time.time())
        store.flush()
        started = time.perf_counter()
        for commit in range(COMMITS):
            state = TaskState.QUEUED if commit % 2 == 0 else TaskState.RUNNING
            for task in tasks:
                store.transition(task.id, state, time.time())
            store.flush()
        return 1000 * (time.perf_counter() - started) / COMMITS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply task counts (0.1 for a smoke run)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each setting, interleaved; the fastest counts (a shared machine only adds noise)")
    args = parser.parse_args()
    noops, trues = (max(1, int(n * args.scale)) for n in (2000, 200))
    console = Console(width=120)
    table = Table(title=f"store synchronous setting, {args.cores} cores, every campaign task persisted, "
                        f"best of {args.repeat} interleaved runs")
    for column in ("workload", "synchronous", "tasks", "seconds", "tasks/s", "ms/commit", "FULL speed / NORMAL"):
        table.add_column(column, justify="left" if column in ("workload", "synchronous") else "right")
    with tempfile.TemporaryDirectory(prefix="mummi-bench-", dir=HERE.parent) as scratch:
        # On the project's own file system, where a campaign directory would be: /tmp may be a tmpfs, whose
        # fsync costs nothing and would hide the difference.
        root = Path(scratch)
        cases = [("(a) no-op Python", noops, noop_spec(noops, args.cores)),
                 ("(b) /bin/true", trues, true_spec(trues, args.cores))]
        for label, tasks, spec in cases:
            best = {mode: float("inf") for mode in MODES}
            for repeat in range(args.repeat):
                for mode in MODES:
                    workdir = root / f"{label[1]}-{mode}-{repeat}"
                    best[mode] = min(best[mode], campaign_seconds(with_store(spec, mode), workdir)[0])
            for mode in MODES:
                table.add_row(label, mode.upper(), str(tasks), f"{best[mode]:.2f}", f"{tasks / best[mode]:,.0f}", "",
                              f"{best['normal'] / best[mode]:.2f}x" if mode == "full" else "")
        per_commit = {mode: float("inf") for mode in MODES}
        for repeat in range(args.repeat):
            for mode in MODES:
                per_commit[mode] = min(per_commit[mode], commit_ms(root / f"commit-{mode}-{repeat}", mode))
        for mode in MODES:
            table.add_row(f"one commit of {TASKS_PER_COMMIT} changes", mode.upper(), "", "", "",
                          f"{per_commit[mode]:.2f}",
                          f"{per_commit['normal'] / per_commit[mode]:.2f}x" if mode == "full" else "")
    console.print(table)
    console.print(f"The loop commits at most every 20 ms, so FULL adds at most one sync per 20 ms "
                  f"({per_commit['full'] - per_commit['normal']:.2f} ms measured per commit here).", highlight=False)


if __name__ == "__main__":
    main()
