"""The loop's own telemetry: how fast it reacts to what the backend reports.

Every tick that handled backend events records its *reaction time* (from the
backend's answer to the end of that tick's submissions: the coordinator latency
between "a task ended" and "the next task was handed over"). Every
``interval`` seconds one ``loop-stats`` event summarises the window in the
store's event log, so the cost is a clock read per tick and one small row every
few seconds, cheap enough to stay on in production.
"""

from __future__ import annotations

import statistics
import time

from mummi_like import events
from mummi_like.store import Store


class LoopStats:
    """Collects reaction times and writes a summary event per window."""

    def __init__(self, store: Store, interval: float | None = 5.0) -> None:
        self.store = store
        self.interval = interval
        self._window_start = time.monotonic()
        self._reactions: list[float] = []
        self._events = 0
        self._submitted = 0
        self._ticks = 0

    def record(self, events: int, submitted: int, reaction: float) -> None:
        """One tick: ``events`` handled, ``submitted`` tasks handed over, ``reaction`` seconds spent."""
        if self.interval is None:  # switched off (the overhead benchmark measures what it costs)
            return
        self._ticks += 1
        self._events += events
        self._submitted += submitted
        if events:
            self._reactions.append(reaction)
        if time.monotonic() - self._window_start >= self.interval:
            self.write()

    def write(self) -> None:
        """Log the window's summary (if anything happened in it) and start a new window."""
        now = time.monotonic()
        if self._ticks:
            reactions = sorted(self._reactions)
            self.store.log_event(
                events.LOOP_STATS, time.time(),
                window=now - self._window_start, ticks=self._ticks, events=self._events, submitted=self._submitted,
                reaction_ms_p50=1000 * statistics.median(reactions) if reactions else None,
                reaction_ms_p95=1000 * reactions[int(0.95 * (len(reactions) - 1))] if reactions else None,
                reaction_ms_max=1000 * reactions[-1] if reactions else None,
            )
        self._window_start = now
        self._reactions.clear()
        self._events = self._submitted = self._ticks = 0
