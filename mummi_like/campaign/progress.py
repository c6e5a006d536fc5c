"""How a running campaign shows its progress: a live display, JSON lines, or nothing.

The loop calls :meth:`Reporter.update` every tick with its live counts; each
reporter throttles itself, so a campaign running thousands of tasks per second
does not spend its time drawing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from typing import TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from mummi_like.campaign.summary import Summary

Counts = Mapping[str, Mapping[str, int]]
FINAL = ("done", "failed", "canceled")


def finished(states: Mapping[str, int]) -> int:
    """Tasks of a scale that will not run again."""
    return sum(states.get(state, 0) for state in FINAL)


class Reporter:
    """Shows nothing; the base of the others, and what an embedding program uses."""

    interval = 0.0

    def __init__(self) -> None:
        self._last = 0.0

    def update(self, counts: Counts, force: bool = False) -> None:
        """Show ``counts`` (scale -> state -> tasks) unless the last update was too recent."""
        now = time.monotonic()
        if force or now - self._last >= self.interval:
            self._last = now
            self.show(counts)

    def show(self, counts: Counts) -> None:
        """Draw or log the counts."""

    def finish(self, summary: Summary) -> None:
        """Report how the run ended."""


class SummaryReporter(Reporter):
    """Only the summary table at the end (``--quiet``)."""

    def __init__(self, console: Console | None = None) -> None:
        super().__init__()
        self.console = console or Console(stderr=True)

    def finish(self, summary: Summary) -> None:
        print_summary(summary, self.console)


class RichReporter(SummaryReporter):
    """A live progress bar per scale, then the summary table."""

    interval = 0.1

    def __init__(self, console: Console | None = None) -> None:
        super().__init__(console)
        self.progress = Progress(
            TextColumn("[bold]{task.description:<12}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[states]}"),
            TimeElapsedColumn(),
            console=self.console,
            transient=False,
        )
        self._bars: dict[str, TaskID] = {}

    def show(self, counts: Counts) -> None:
        if not self._bars:
            self.progress.start()
        for scale, states in counts.items():
            if scale not in self._bars:
                self._bars[scale] = self.progress.add_task(scale, total=0, states="")
            detail = " ".join(f"{state} {count}" for state, count in sorted(states.items()) if count)
            self.progress.update(self._bars[scale], total=sum(states.values()), completed=finished(states), states=detail)

    def finish(self, summary: Summary) -> None:
        if self._bars:
            self.progress.stop()
        super().finish(summary)


class JsonReporter(Reporter):
    """One JSON object per line: periodic progress, then the summary (for batch logs)."""

    interval = 5.0

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__()
        self.stream = stream or sys.stdout

    def _emit(self, record: dict[str, object]) -> None:
        self.stream.write(json.dumps({"time": time.time(), **record}) + "\n")
        self.stream.flush()

    def show(self, counts: Counts) -> None:
        self._emit({"event": "progress", "counts": {scale: dict(states) for scale, states in counts.items()}})

    def finish(self, summary: Summary) -> None:
        self._emit({
            "event": "finished", "directory": str(summary.directory), "elapsed": summary.elapsed,
            "stopped_because": summary.stopped_because, "counts": summary.counts,
            "failures": [{"task": task, "reason": reason} for task, reason in summary.failures],
        })


def tail_lines(path: str | None, lines: int) -> list[str]:
    """The last ``lines`` lines of a task's output file (read from its last 8 KiB); none if it is missing."""
    if not path or not os.path.isfile(path):
        return []
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, os.path.getsize(path) - 8192))
            return handle.read().decode(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def print_summary(summary: Summary, console: Console) -> None:
    """The table a person reads when a run ends: tasks per scale and state, failures, how to go on."""
    console.print(f"campaign {summary.directory}", highlight=False, soft_wrap=True)
    table = Table()
    states = sorted({state for scale in summary.counts.values() for state in scale})
    table.add_column("scale")
    for state in states:
        table.add_column(state, justify="right")
    for scale, counts in sorted(summary.counts.items()):
        table.add_row(scale, *(str(counts.get(state, 0)) for state in states))
    console.print(table)
    total = sum(sum(counts.values()) for counts in summary.counts.values())
    done = sum(counts.get("done", 0) for counts in summary.counts.values())
    console.print(f"{done}/{total} tasks done in {summary.elapsed:.1f} s")
    for task, reason in summary.failures[:10]:
        console.print(f"[red]failed[/red] {task}: {reason}", soft_wrap=True)
    if len(summary.failures) > 10:
        console.print(f"... and {len(summary.failures) - 10} more failures (`mummi-like status {summary.directory}`)",
                      soft_wrap=True)
    if summary.stopped_because:
        console.print(f"[yellow]stopped:[/yellow] {summary.stopped_because}; "
                      f"continue with `mummi-like resume {summary.directory}`", soft_wrap=True)
