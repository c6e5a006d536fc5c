"""The benchmarks still run (at a tiny scale); their figures are read by people, not asserted."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).parents[1] / "bench"


def test_overhead_benchmark_prints_every_engine_and_ratio() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "overhead.py"), "--scale", "0.02", "--repeat", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for row in ("(a) no-op Python", "(b) /bin/true", "(c) 3-task chains", "mummi-like local",
                "ProcessPoolExecutor", "serial Popen+wait", "x ideal"):
        assert row in result.stdout


def test_utilization_benchmark_prints_the_steady_state_figure_and_writes_a_report(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "utilization.py"), "--scale", "0.05", "--cores", "4",
         "--report", str(tmp_path / "report")],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "steady state" in result.stdout and ">= 98%" in result.stdout
    assert (tmp_path / "report" / "index.html").exists()


def test_durability_benchmark_prints_both_synchronous_settings_and_their_ratio() -> None:
    result = subprocess.run(
        [sys.executable, str(BENCH / "durability.py"), "--scale", "0.02", "--repeat", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    for row in ("(a) no-op Python", "(b) /bin/true", "one commit of 10 changes"):
        assert re.search(rf"{re.escape(row)} +│ NORMAL .*\n.*{re.escape(row)} +│ FULL .*│ +\d+\.\d\dx │", result.stdout)
