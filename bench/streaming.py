"""Streaming throughput and latency: many H5MD writers, one tailer.

``--writers`` processes (default 16) each write ``--frames`` frames (default
200) of an ``--atoms`` system (default 1,000) with a 32x32 uint8 contact map and
the wall-clock time of the write as observables, through
:class:`~mummi_like.streams.H5MDWriter` (SWMR, a completion counter flushed after
every frame). One :class:`~mummi_like.streams.StreamTailer` in this process
polls their folder meanwhile, reading positions and observables, as the
coordinator does. Printed:

* **written**: frames/s from the first write to the last writer's close, the
  rate the writers reach while being tailed;
* **ingested**: frames/s from the first write to the last frame yielded, and its
  ratio to the written rate (1.0 means the tailer keeps up);
* **latency** from a writer calling ``write_frame`` to the tailer yielding that
  frame: p50, p95, max;
* the tailer's poll count and mean cost per poll;
* **replay**: frames/s of a fresh tailer reading the finished files at once,
  the tailer's own capacity when no writer competes for the cores.

``--period`` makes each writer sleep between frames, as a simulation computing
between reports does; 0 writes as fast as possible. Usage::

    .venv/bin/python bench/streaming.py [--writers 16] [--frames 200] [--atoms 1000] [--period 0]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import tempfile
import time
from multiprocessing.synchronize import Barrier
from pathlib import Path

import numpy as np

from mummi_like.streams import H5MDWriter, StreamTailer

CONTACT_MAP = (32, 32)
POLL_SLEEP_S = 0.002
"""Pause after a poll that found nothing, so that the tailer does not take a core from the writers it waits for."""


def write_stream(path: str, seed: int, frames: int, atoms: int, period: float, start: Barrier, times: mp.Queue) -> None:
    """One writer: create the file, wait for the others, write ``frames`` frames, report its start and end."""
    rng = np.random.default_rng(seed)
    positions = rng.uniform(0.0, 5.0, size=(atoms, 3)).astype(np.float32)
    observables = {"contacts": (CONTACT_MAP, np.uint8), "wall_time": ((), np.float64)}
    with H5MDWriter(path, atoms, observables=observables) as writer:
        start.wait()
        began = time.time()
        for i in range(frames):
            positions += rng.normal(0.0, 0.01, size=positions.shape).astype(np.float32)
            contacts = (rng.random(CONTACT_MAP) < 0.1).astype(np.uint8)
            writer.write_frame(
                positions, step=i, time=0.002 * i, observables={"contacts": contacts, "wall_time": time.time()}
            )
            if period:
                time.sleep(period)
    times.put((began, time.time()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--frames", type=int, default=200, help="frames per writer")
    parser.add_argument("--atoms", type=int, default=1000)
    parser.add_argument("--period", type=float, default=0.0, help="seconds each writer sleeps between frames")
    args = parser.parse_args()

    context = mp.get_context("spawn")
    start = context.Barrier(args.writers + 1)
    times: mp.Queue = context.Queue()
    total = args.writers * args.frames
    with tempfile.TemporaryDirectory(prefix="mummi-streaming-") as folder:
        writers = [
            context.Process(
                target=write_stream,
                args=(str(Path(folder) / f"sim{k:03d}.h5md"), k, args.frames, args.atoms, args.period, start, times),
            )
            for k in range(args.writers)
        ]
        for writer in writers:
            writer.start()
        tailer = StreamTailer(folder)
        start.wait()
        latencies: list[float] = []
        polls, polling = 0, 0.0
        last_yield = time.time()
        while len(latencies) < total:
            began = time.perf_counter()
            frames = tailer.poll()
            polling += time.perf_counter() - began
            polls += 1
            now = time.time()
            latencies.extend(now - float(frame.observables["wall_time"]) for frame in frames)
            if frames:
                last_yield = now
            elif not any(writer.is_alive() for writer in writers) and times.qsize() < args.writers:
                raise SystemExit("a writer died: see its traceback above")
            else:
                time.sleep(POLL_SLEEP_S)
        spans = [times.get() for _ in writers]
        for writer in writers:
            writer.join()
        tailer.close()
        began = time.perf_counter()
        with StreamTailer(folder) as replay:
            replayed = len(replay.poll())
        replay_s = time.perf_counter() - began

    first_write = min(began for began, _ in spans)
    written_s = max(ended for _, ended in spans) - first_write
    ingested_s = last_yield - first_write
    written_rate, ingested_rate = total / written_s, total / ingested_s
    p50, p95 = np.percentile(latencies, [50, 95]) * 1000
    print(f"streaming: {args.writers} writers x {args.frames} frames, {args.atoms} atoms, "
          f"{CONTACT_MAP[0]}x{CONTACT_MAP[1]} contact map, period {args.period} s")
    print(f"written   {total} frames in {written_s:.2f} s: {written_rate:,.0f} frames/s")
    print(f"ingested  {total} frames in {ingested_s:.2f} s: {ingested_rate:,.0f} frames/s "
          f"({ingested_rate / written_rate:.2f}x written)")
    print(f"latency   write -> yield: p50 {p50:.1f} ms, p95 {p95:.1f} ms, max {max(latencies) * 1000:.1f} ms")
    print(f"tailer    {polls} polls, {polling / polls * 1000:.2f} ms per poll, {total / polls:.1f} frames per poll")
    print(f"replay    {replayed} frames in {replay_s:.2f} s: {replayed / replay_s:,.0f} frames/s "
          "(a fresh tailer reading the finished files, no writer competing for the cores)")


if __name__ == "__main__":
    main()
