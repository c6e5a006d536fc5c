"""Control of a campaign directory from outside its coordinator: the lock, the saved spec's key, cancel requests.

Kept apart from :mod:`mummi_like.campaign.loop` so that commands which only read
or signal a campaign (``status``, ``cancel`` through a live coordinator,
``report``) import neither the loop nor the backends, selectors and streams it
pulls in: a ``status`` on a login node must answer in well under a second.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mummi_like.files import atomic_write_text

LOCK_FILE = "coordinator.lock"
CONTROL_DIR = "control"
CANCEL_PATTERN = "cancel-*.json"
SPEC_META = "spec"


class CampaignError(RuntimeError):
    """A campaign cannot start or continue; the message says what to do."""


@contextmanager
def coordinator_lock(directory: Path) -> Iterator[None]:
    """Hold the campaign's coordinator lock; refuse if another coordinator holds it.

    The lock is an ``flock`` on a file, released by the kernel when the holder
    dies, so a ``kill -9`` never leaves a stale lock behind.
    """
    path = directory / LOCK_FILE
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().strip() or "unknown"
        handle.close()
        raise CampaignError(
            f"another coordinator (pid {holder}) is running the campaign in {directory}; "
            f"follow it with `mummi-like status {directory}` or stop it with `mummi-like cancel {directory}`"
        ) from None
    try:
        handle.truncate(0)
        handle.write(str(os.getpid()))
        handle.flush()
        yield
    finally:
        handle.close()


def coordinator_running(directory: Path) -> bool:
    """Whether some coordinator holds the campaign's lock now."""
    path = directory / LOCK_FILE
    if not path.exists():
        return False
    with open(path) as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False


def request_cancel(directory: Path, tasks: list[str] | None = None, scales: list[str] | None = None) -> Path:
    """Ask the running coordinator to cancel tasks (all when both filters are empty).

    Each request is a file of its own, named by time and process, so that two
    requests made between two looks of the coordinator are both honoured.
    """
    folder = directory / CONTROL_DIR
    folder.mkdir(exist_ok=True)
    path = folder / f"cancel-{time.time_ns()}-{os.getpid()}.json"
    atomic_write_text(path, json.dumps({"tasks": tasks or None, "scales": scales or None}))
    return path


def pending_cancels(directory: Path) -> list[Path]:
    """The cancel requests waiting for the coordinator, oldest first."""
    return sorted((directory / CONTROL_DIR).glob(CANCEL_PATTERN))
