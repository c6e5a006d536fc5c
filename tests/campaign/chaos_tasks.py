"""Task bodies of the chaos tests: each records that it completed, so re-executions can be counted apart from the store."""

from __future__ import annotations

import os
import time
from pathlib import Path


def logged_square(x: int, log: str, seconds: float) -> int:
    """Take ``seconds``, append the task's id (variable ``CHAOS_TASK``) to ``log`` as it completes, return ``x**2``."""
    time.sleep(seconds)
    with Path(log).open("a") as handle:
        handle.write(os.environ["CHAOS_TASK"] + "\n")
    return x * x
