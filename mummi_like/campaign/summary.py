"""What a run of the campaign loop achieved, in a module of its own.

The loop produces a :class:`Summary` and the progress reporters show it; kept
apart from both, neither module needs to import the other to name it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mummi_like.tasks import TaskState


@dataclass
class Summary:
    """What a run of the loop achieved."""

    directory: Path
    counts: dict[str, dict[str, int]]
    elapsed: float
    stopped_because: str | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Every task is done."""
        return self.stopped_because is None and all(
            set(states) <= {TaskState.DONE.value} for states in self.counts.values()
        )
