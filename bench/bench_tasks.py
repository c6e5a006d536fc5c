"""Task bodies shared by the benchmarks: as cheap as possible, so that what is timed is the coordination."""

from __future__ import annotations

import os
import subprocess
import time


def noop(**_parameters: object) -> None:
    """Do nothing: the whole cost of the task is the coordinator's (parameters are ignored)."""


def sleep_ms(ms: float, **_parameters: object) -> None:
    """Hold a core for ``ms`` milliseconds (parameters are ignored)."""
    time.sleep(ms / 1000.0)


def worker_pid(ms: float) -> int:
    """Hold a core for ``ms`` milliseconds and say which process did: how a warm-up sees every worker up."""
    time.sleep(ms / 1000.0)
    return os.getpid()


def run_true() -> int:
    """What a pool's worker (ProcessPoolExecutor, Parsl, Dask) does to start one executable."""
    return subprocess.run(["/bin/true"], check=False).returncode
