"""Coordinator overhead: mummi-like's local backend against concurrent.futures and peer engines, in one run.

Three workloads, each run through the full campaign loop with every task
persisted in the store (spec -> tasks -> SQLite WAL -> local backend), and
through a bare ``ProcessPoolExecutor`` with as many workers as cores (the
reference of the ratio column); (b) also against serial ``Popen``. Where they
are installed (``pip install -e '.[peers]'``), also through the peer engines
Parsl (``HighThroughputExecutor``, one local block of 2 workers) and Dask
distributed (``LocalCluster`` of 2 single-threaded worker processes), both
listening on the loopback interface only:

(a) 2,000 no-op Python tasks, all submitted, then waited for (Dask with
    ``Client.gather``, the others one future after another);
(b) 200 ``/bin/true`` executables (the pool's, Parsl's and Dask's workers run
    ``subprocess.run(["/bin/true"])`` in a Python task);
(c) 100 chains of 3 dependent 20 ms tasks (ideal: 100 * 3 * 20 ms / cores).
    Parsl and Dask are handed the whole graph up front, each task taking its
    predecessor's future as an argument, and resolve the dependencies
    themselves; the pool is handed a chain's next task when its predecessor
    has finished.

Start-up: the ``ProcessPoolExecutor``, Parsl and Dask figures EXCLUDE it. The
pool runs one task before the clock starts; Parsl and Dask are loaded (Parsl's
interchange and worker pool launched, Dask's scheduler and workers started)
and run rounds of 50 ms tasks until each of their 2 worker processes has
answered, then the clock starts. The mummi-like figure INCLUDES its start-up:
it is the whole ``Campaign.run()``, starting its own workers and creating its
store. Every engine is shut down after each run.

Prints tasks/s, ms/task and the ratio to the baseline. Usage::

    .venv/bin/python bench/overhead.py [--cores 2] [--scale 1.0] [--repeat 3] [--no-peers]
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import contextlib
import functools
import importlib
import os
import shlex
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.table import Table

from mummi_like.campaign.loop import Campaign

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import bench_tasks  # noqa: E402  (the same functions the campaign's workers import)

CHAIN_MS = 20.0
PEER_WORKERS = 2
LOOPBACK = "127.0.0.1"
WARM_MS = 50.0
WARM_TIMEOUT_S = 120.0
STRATEGY_PERIOD_S = 0.5


class Pending(Protocol):
    """A submitted task: a ``concurrent.futures.Future``, Parsl's ``AppFuture`` or Dask's ``Future``."""

    def result(self) -> Any: ...


Submit = Callable[..., Pending]
"""``submit(function, *args, **kwargs)`` on a peer engine; futures among the arguments are dependencies."""


@dataclass(frozen=True)
class Peer:
    """A started peer engine: how to submit a call, and its own way to wait for a list of them."""

    submit: Submit
    gather: Callable[[list[Pending]], list[Any]]


Engine = Callable[[], contextlib.AbstractContextManager[Peer]]
Workload = Callable[[Peer, int], float]
Timer = Callable[[int, int], float]
"""``timer(count, cores)``: seconds one engine took for a workload of ``count``."""


def campaign_seconds(spec: str, workdir: Path, loop_stats: bool = True) -> tuple[float, dict[str, dict[str, int]]]:
    """Run a campaign spec to completion and return its wall time and final counts.

    ``loop_stats=False`` switches the loop's own telemetry off, to measure what it costs.
    """
    source = HERE / "overhead-spec.yaml"  # names the spec; python_path resolves against bench/
    campaign = Campaign.from_text(spec, source, workdir)
    if not loop_stats:
        campaign.stats_interval = None
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


def results(futures: list[Pending]) -> list[Any]:
    """Wait for each future in turn, as for the pool: cheap on ``concurrent.futures`` futures, Parsl's included."""
    return [future.result() for future in futures]


@contextlib.contextmanager
def parsl_engine() -> Iterator[Peer]:
    """A Parsl kernel with one local ``HighThroughputExecutor`` block of 2 workers, loopback only.

    Its ``runinfo`` (logs, submit scripts, certificates) goes to a temporary
    directory; its interchange and workers come from this interpreter's
    scripts directory and import ``bench_tasks`` through ``PYTHONPATH``.
    Otherwise Parsl's defaults (encrypted channels, debug log in ``runinfo``),
    but for the strategy period: the block is launched on the strategy's first
    tick, and 0.5 s rather than 5 s only shortens the untimed start-up.
    """
    from parsl.app.app import python_app
    from parsl.config import Config
    from parsl.dataflow.dflow import DataFlowKernel
    from parsl.executors import HighThroughputExecutor
    from parsl.providers import LocalProvider

    scripts = Path(sysconfig.get_path("scripts"))
    worker_init = (f"export PATH={shlex.quote(str(scripts))}:\"$PATH\" "
                   f"PYTHONPATH={shlex.quote(str(HERE))}${{PYTHONPATH:+:$PYTHONPATH}}")
    with tempfile.TemporaryDirectory(prefix="mummi-bench-parsl-") as run_dir:
        executor = HighThroughputExecutor(
            label="htex", address=LOOPBACK, loopback_address=LOOPBACK,
            max_workers_per_node=PEER_WORKERS,
            interchange_launch_cmd=[str(scripts / "interchange.py")],
            provider=LocalProvider(init_blocks=1, min_blocks=1, max_blocks=1, worker_init=worker_init),
        )
        config = Config(executors=[executor], run_dir=run_dir, strategy="none",
                        strategy_period=STRATEGY_PERIOD_S, usage_tracking=0)
        with DataFlowKernel(config) as dfk:
            apps: dict[Callable[..., Any], Submit] = {}

            def submit(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Pending:
                if function not in apps:
                    apps[function] = python_app(function, data_flow_kernel=dfk, executors=["htex"])
                return apps[function](*args, **kwargs)

            yield Peer(submit, results)


@contextlib.contextmanager
def dask_engine() -> Iterator[Peer]:
    """A Dask ``LocalCluster`` of 2 single-threaded worker processes, loopback only, and its client.

    The workers are spawned from this process and so inherit its ``sys.path``,
    ``bench/`` included; tasks are submitted impure, so that identical calls
    are not merged into one, and waited for with ``Client.gather``, which
    measured twice as fast as one ``Future.result()`` after another (each a
    round trip through the client's event loop). No dashboard; the scheduler's
    plain HTTP server takes any free loopback port rather than 8787, which
    another cluster may hold.
    """
    from distributed import Client, LocalCluster

    with (tempfile.TemporaryDirectory(prefix="mummi-bench-dask-") as scratch,
          LocalCluster(n_workers=PEER_WORKERS, threads_per_worker=1, processes=True, host=LOOPBACK,
                       dashboard_address=None, scheduler_kwargs={"dashboard_address": f"{LOOPBACK}:0"},
                       local_directory=scratch) as cluster,
          Client(cluster) as client):
        client.wait_for_workers(PEER_WORKERS)
        yield Peer(functools.partial(client.submit, pure=False), client.gather)


PEERS: list[tuple[str, str, Engine]] = [
    ("Parsl HTEX (2 workers)", "parsl", parsl_engine),
    ("Dask LocalCluster (2 workers)", "distributed", dask_engine),
]


def installed_peers() -> list[tuple[str, Engine]]:
    """The peer engines whose package imports; prints a line for each of the others."""
    found: list[tuple[str, Engine]] = []
    for name, module, engine in PEERS:
        try:
            importlib.import_module(module)
        except ImportError:
            print(f"{name.split()[0]} rows left out: `import {module}` fails; "
                  f"install the peers with pip install -e '.[peers]'")
        else:
            found.append((name, engine))
    return found


def warm(peer: Peer) -> None:
    """Run rounds of concurrent 50 ms tasks until each of the engine's workers has answered one."""
    pids: set[int] = set()
    deadline = time.monotonic() + WARM_TIMEOUT_S
    while len(pids) < PEER_WORKERS:
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(pids)} of {PEER_WORKERS} peer workers answered in {WARM_TIMEOUT_S:.0f} s")
        pids.update(peer.gather([peer.submit(bench_tasks.worker_pid, WARM_MS) for _ in range(PEER_WORKERS)]))


def peer_seconds(engine: Engine, workload: Workload, count: int, _cores: int) -> float:
    """Start a peer engine, wait for all its workers, time ``workload`` alone, and shut the engine down."""
    with engine() as peer:
        warm(peer)
        return workload(peer, count)


def submitted_noop(peer: Peer, count: int) -> float:
    """Submit ``count`` no-op calls, then wait for all."""
    started = time.perf_counter()
    peer.gather([peer.submit(bench_tasks.noop) for _ in range(count)])
    return time.perf_counter() - started


def submitted_true(peer: Peer, count: int) -> float:
    """Submit ``count`` Python calls that each run ``/bin/true``, then wait for all."""
    started = time.perf_counter()
    codes = peer.gather([peer.submit(bench_tasks.run_true) for _ in range(count)])
    elapsed = time.perf_counter() - started
    assert not any(codes)
    return elapsed


def submitted_chains(peer: Peer, chains: int) -> float:
    """The whole graph up front: each task takes its predecessor's future, which the engine resolves."""
    started = time.perf_counter()
    ends: list[Pending] = []
    for _ in range(chains):
        future = peer.submit(bench_tasks.sleep_ms, CHAIN_MS)
        for _ in range(2):
            future = peer.submit(bench_tasks.sleep_ms, CHAIN_MS, after=future)
        ends.append(future)
    peer.gather(ends)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cores", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--scale", type=float, default=1.0, help="multiply task counts (0.1 for a smoke run)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of each engine, interleaved; the fastest counts (a shared machine only adds noise)")
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                        help="also time Parsl and Dask where installed (pip install -e '.[peers]')")
    args = parser.parse_args()
    peers = installed_peers() if args.peers else []
    noops, trues, chains = (max(1, int(n * args.scale)) for n in (2000, 200, 100))
    console = Console(width=120)
    table = Table(title=f"coordinator overhead, {args.cores} cores, every campaign task persisted, "
                        f"best of {args.repeat} interleaved runs")
    for column in ("workload", "engine", "tasks", "seconds", "tasks/s", "ms/task", "vs baseline"):
        table.add_column(column, justify="right" if column not in ("workload", "engine") else "left")
    with tempfile.TemporaryDirectory(prefix="mummi-bench-") as scratch:
        root = Path(scratch)
        cases: list[tuple[str, int, int, str, list[tuple[str, Timer]], Workload]] = [
            ("(a) no-op Python", noops, noops, noop_spec(noops, args.cores),
             [("ProcessPoolExecutor", pool_noop)], submitted_noop),
            ("(b) /bin/true", trues, trues, true_spec(trues, args.cores),
             [("ProcessPoolExecutor", pool_true), ("serial Popen+wait", serial_popen_true)], submitted_true),
            ("(c) 3-task chains", chains * 3, chains, chain_spec(chains, args.cores),
             [("ProcessPoolExecutor", pool_chains)], submitted_chains),
        ]
        for label, tasks, count, spec, baselines, workload in cases:
            # The loop's telemetry is measured on (a), where the coordinator's cost per task is all there is.
            ours = [("mummi-like local, loop telemetry off", False)] if label.startswith("(a)") else []
            ours.append(("mummi-like local", True))
            engines: list[tuple[str, Timer | bool]] = [
                *baselines,
                *((name, functools.partial(peer_seconds, engine, workload)) for name, engine in peers),
                *ours]
            best = {name: float("inf") for name, _ in engines}
            for repeat in range(args.repeat):
                for index, (name, function) in enumerate(engines):
                    if isinstance(function, bool):
                        workdir = root / f"{label.split()[0].strip('()')}-{repeat}-{index}"
                        seconds = campaign_seconds(spec, workdir, loop_stats=function)[0]
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
