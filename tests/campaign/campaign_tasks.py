"""Python-callable task bodies used by the campaign tests (imported by the workers via python_path)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def flaky(counter: str, failures: int, error: str = "OSError", **_parameters: object) -> int:
    """Raise ``error`` the first ``failures`` times it is called for ``counter``, then return the call count."""
    path = Path(counter)
    calls = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(calls))
    if calls <= failures:
        raise {"OSError": OSError, "ValueError": ValueError}[error](f"planned failure {calls} of {failures}")
    return calls


def interval(ms: float, **parameters: object) -> dict[str, float]:
    """Sleep and report when this call ran, for overlap checks."""
    start = time.time()
    time.sleep(ms / 1000)
    return {"start": start, "end": time.time(), "pid": os.getpid()}


def square(x: int, **_parameters: object) -> int:
    """``x`` squared: an upstream result for the stage tests."""
    return x * x


def total(values: list[float]) -> float:
    """The sum of ``values``: what a stage makes of its upstream results."""
    return sum(values)


def part(fail: bool) -> str:
    """Write ``part.txt`` in the task folder, or raise before writing it."""
    if fail:
        raise RuntimeError("this part fails, as a docking task whose engine crashed would")
    Path("part.txt").write_text("done")
    return "done"


def count_parts(folders: list[str]) -> int:
    """How many of ``folders`` hold a ``part.txt``: a task that uses what its inputs produced."""
    return sum((Path(folder) / "part.txt").is_file() for folder in folders)
