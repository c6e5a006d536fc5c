"""Python-callable task bodies that fail the way real tasks do, for the campaign-level fault tests.

Each body runs in a worker of the local backend, in its task's working
directory, and first appends a line to :data:`ATTEMPTS` there: the line count
says how often the body really ran, independently of what the store recorded.
"""

from __future__ import annotations

import ctypes
import os
import signal
import time
from pathlib import Path

import numpy as np

from mummi_like.files import atomic_write_text
from mummi_like.streams import H5MDWriter

ATTEMPTS = "attempts"
"""File in the task's working directory that gets one line per run of the body."""
PID_FILE = "worker.pid"
"""Where :func:`wait_to_be_killed` publishes its worker's pid for the test that kills it."""
CRASHED_PIDS = "crashed.pids"
"""Pids of the workers :func:`crash_worker` crashed, one a line."""
BEADS = 12
"""Chain length of :func:`torn_stream`'s frames: what the ``chain-md`` target of the coupling test simulates."""
TORN_MARK = 99.0
"""Position value of the frame :func:`torn_stream` leaves half written; no complete frame holds it."""


def count_attempt() -> int:
    """Record one more run of the calling body in :data:`ATTEMPTS` and return how many runs there were."""
    with open(ATTEMPTS, "a") as handle:
        handle.write(f"{os.getpid()}\n")
    return len(Path(ATTEMPTS).read_text().splitlines())


def healthy(**_parameters: object) -> int:
    """A task that works: record the run and return the run count (1 unless something re-ran it)."""
    return count_attempt()


def segfault() -> None:
    """Read address 0 through ctypes: a real segmentation fault of this process, not a signal sent to it."""
    ctypes.string_at(0)


def crash_worker(crashes: int, **_parameters: object) -> dict[str, int]:
    """Segfault the worker running this call on its first ``crashes`` runs, then return the run count and pid."""
    runs = count_attempt()
    if runs <= crashes:
        with open(CRASHED_PIDS, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        segfault()
    return {"runs": runs, "pid": os.getpid()}


def wait_to_be_killed(timeout: float) -> int:
    """On the first run, publish this worker's pid and wait to be killed from outside; later runs return the count.

    A first run that nobody kills fails after ``timeout`` seconds rather than
    holding the campaign forever.
    """
    runs = count_attempt()
    if runs == 1:
        atomic_write_text(Path(PID_FILE), str(os.getpid()))
        time.sleep(timeout)
        raise TimeoutError(f"nobody killed worker {os.getpid()} within {timeout} s")
    return runs


def fill_disk(device: str = "/dev/full") -> None:
    """Write results to ``device``; ``/dev/full`` refuses every write with ENOSPC, exactly as a full disk does."""
    count_attempt()
    with open(device, "w") as handle:
        handle.write("results\n")
        handle.flush()


def torn_stream(frames: int, attempt_frames: int, **_parameters: object) -> int:
    """Stream a bead chain's frames to ``attempt-<run>.h5md``; the first run dies while writing a frame.

    The first run writes ``attempt_frames`` complete frames, then the next one
    half (every dataset grown, positions written and flushed, observables left
    empty, the completion counter never advanced), and SIGKILLs its own
    worker: a coarse simulation killed mid-frame. Later runs write all
    ``frames`` to a new file. Frame ``i`` holds the straight chain shifted by
    ``i / 100`` nm along y, and its contact map.
    """
    runs = count_attempt()
    chain = np.zeros((BEADS, 3))
    chain[:, 0] = 0.38 * np.arange(BEADS)
    contacts = (np.linalg.norm(chain[:, None] - chain[None, :], axis=-1) < 0.6).astype(np.uint8)
    count = attempt_frames if runs == 1 else frames
    writer = H5MDWriter(f"attempt-{runs}.h5md", BEADS, observables={"contact_map": ((BEADS, BEADS), np.uint8)})
    for index in range(count):
        writer.write_frame(chain + [0.0, index / 100, 0.0], step=10 * index, time=0.1 * index,
                           observables={"contact_map": contacts})
    if runs == 1:
        handle = writer._file  # the half-written frame needs the datasets the public API only fills whole
        for name in ("particles/trajectory/position/value", "particles/trajectory/position/step",
                     "particles/trajectory/position/time", "observables/contact_map/value"):
            handle[name].resize(count + 1, axis=0)
        handle["particles/trajectory/position/value"][count] = TORN_MARK
        handle.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    writer.close()
    return count
