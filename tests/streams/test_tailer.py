"""The stream tailer: complete frames only, each once, across many files, crashing writers and restarts."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest

from mummi_like.streams import Frame, H5MDWriter, StreamTailer, read_frame
from mummi_like.streams import tailer as tailer_module
from mummi_like.streams.tailer import UnknownObservable

N_ATOMS = 4
OBSERVABLES = {"contacts": ((3, 3), np.uint8), "rmsd": ((), np.float64)}
REPOSITORY = Path(__file__).parents[2]

# A writer process for the tests below: frame i of stream `seed` carries values that a reader can check.
WRITER = """
import os, sys, time
import numpy as np
from mummi_like.streams import H5MDWriter

path, seed, frames, pause, crash = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
writer = H5MDWriter(path, {atoms}, observables={{"contacts": ((3, 3), np.uint8), "rmsd": ((), np.float64)}})
for i in range(frames):
    writer.write_frame(np.full(({atoms}, 3), seed + i / 1000), step=10 * i, time=0.5 * i,
                       observables={{"contacts": np.full((3, 3), i % 256, np.uint8), "rmsd": seed + i}})
    time.sleep(pause)
if crash == "torn":
    # Frame `frames` half written: every dataset resized, positions written and flushed,
    # observables left empty, the completion counter never advanced.
    f = writer._file
    for name in ("particles/trajectory/position/value", "particles/trajectory/position/step",
                 "particles/trajectory/position/time", "observables/contacts/value", "observables/rmsd/value"):
        f[name].resize(frames + 1, axis=0)
    f["particles/trajectory/position/value"][frames] = 99.0
    f.flush()
    os._exit(1)
writer.close()
""".format(atoms=N_ATOMS)


def expected_positions(seed: int, index: int) -> np.ndarray:
    return np.full((N_ATOMS, 3), seed + index / 1000, dtype=np.float32)


def check(frame: Frame, seed: int) -> None:
    """A yielded frame holds exactly what its writer wrote as that frame: no torn or shifted reads."""
    i = frame.index
    assert (frame.step, frame.time) == (10 * i, 0.5 * i)
    np.testing.assert_array_equal(frame.positions, expected_positions(seed, i))
    np.testing.assert_array_equal(frame.observables["contacts"], np.full((3, 3), i % 256, np.uint8))
    assert float(frame.observables["rmsd"]) == seed + i


def spawn(path: Path, seed: int, frames: int, pause: float = 0.0, crash: str = "no") -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(path), str(seed), str(frames), str(pause), crash],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPOSITORY,
    )


def write(path: Path, seed: int, frames: range, writer: H5MDWriter | None = None) -> H5MDWriter:
    """Write the same frames as the WRITER process, in this process."""
    writer = writer or H5MDWriter(path, N_ATOMS, observables=OBSERVABLES)
    for i in frames:
        writer.write_frame(expected_positions(seed, i), step=10 * i, time=0.5 * i,
                           observables={"contacts": np.full((3, 3), i % 256, np.uint8), "rmsd": seed + i})
    return writer


@pytest.fixture
def tailer(tmp_path: Path) -> Iterator[StreamTailer]:
    with StreamTailer(tmp_path, rescan_interval=0.0) as tailer:
        yield tailer


def by_file(frames: list[Frame]) -> dict[str, list[int]]:
    indices: dict[str, list[int]] = {}
    for frame in frames:
        indices.setdefault(frame.file.name, []).append(frame.index)
    return indices


def test_frames_of_several_files_are_yielded_once_in_order_and_only_when_complete(
    tmp_path: Path, tailer: StreamTailer
) -> None:
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    a = write(tmp_path / "a.h5md", 1, range(3))
    b = write(tmp_path / "nested" / "deeper" / "b.h5md", 2, range(2))
    c = H5MDWriter(tmp_path / "c.h5md", N_ATOMS, observables=OBSERVABLES, flush_every=2)
    write(tmp_path / "c.h5md", 3, range(1), c)
    (tmp_path / "notes.txt").write_text("not a stream")

    first = tailer.poll()
    assert by_file(first) == {"a.h5md": [0, 1, 2], "b.h5md": [0, 1]}, "c's frame 0 waits for its flush"
    assert all(frame.file.is_absolute() for frame in first)
    for frame in first:
        check(frame, 1 if frame.file.name == "a.h5md" else 2)
        assert frame.box is None
    assert tailer.poll() == []

    write(tmp_path / "a.h5md", 1, range(3, 5), a)
    write(tmp_path / "c.h5md", 3, range(1, 2), c)
    second = tailer.poll()
    assert by_file(second) == {"a.h5md": [3, 4], "c.h5md": [0, 1]}
    for frame in second:
        check(frame, 1 if frame.file.name == "a.h5md" else 3)
    for writer in (a, b, c):
        writer.close()
    assert tailer.poll() == []
    assert {Path(name).name: position for name, position in tailer.state().items()} == {
        "a.h5md": 5, "b.h5md": 2, "c.h5md": 2
    }


def test_a_new_file_is_picked_up_at_the_next_rescan(tmp_path: Path) -> None:
    with StreamTailer(str(tmp_path / "*" / "*.h5md"), rescan_interval=0.3) as tailer:
        assert tailer.poll() == []
        (tmp_path / "run1").mkdir()
        write(tmp_path / "run1" / "traj.h5md", 5, range(2)).close()
        assert tailer.poll() == [], "no rescan before rescan_interval has passed"
        time.sleep(0.35)
        frames = tailer.poll()
        assert [(frame.file, frame.index) for frame in frames] == [(tmp_path / "run1" / "traj.h5md", i) for i in (0, 1)]
        assert tailer.files == [tmp_path / "run1" / "traj.h5md"]


def test_max_frames_serves_files_round_robin(tmp_path: Path, tailer: StreamTailer) -> None:
    for seed, name in enumerate(("a", "b", "c")):
        write(tmp_path / f"{name}.h5md", seed, range(4)).close()
    polls = [by_file(tailer.poll(max_frames=3)) for _ in range(5)]
    assert polls[0] == {"a.h5md": [0, 1, 2]}
    assert polls[1] == {"b.h5md": [0, 1, 2]}, "the next poll starts after the file that used the budget"
    assert polls[2] == {"c.h5md": [0, 1, 2]}
    assert polls[3] == {"a.h5md": [3], "b.h5md": [3], "c.h5md": [3]}
    assert polls[4] == {}


def test_state_and_restore_continue_without_duplicates_or_gaps(tmp_path: Path) -> None:
    writer = write(tmp_path / "a.h5md", 7, range(3))
    with StreamTailer(tmp_path) as tailer:
        assert [frame.index for frame in tailer.poll()] == [0, 1, 2]
        saved = tailer.state()
    write(tmp_path / "a.h5md", 7, range(3, 6), writer).close()
    with StreamTailer(tmp_path) as restarted:
        restarted.restore(saved)
        frames = restarted.poll()
    assert [frame.index for frame in frames] == [3, 4, 5]
    for frame in frames:
        check(frame, 7)


def test_a_writer_killed_mid_frame_leaves_exactly_its_complete_frames(
    tmp_path: Path, tailer: StreamTailer, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "crashed.h5md"
    process = spawn(path, 4, 5, crash="torn")
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 1, stderr
    with h5py.File(path, "r", swmr=True, locking=False) as f:
        assert f["particles/trajectory/position/value"].shape[0] == 6, "the torn frame is in the file"
        assert f["particles/trajectory/position/value"][5].max() == 99.0
    with caplog.at_level(logging.WARNING, logger="mummi_like.streams.tailer"):
        frames = tailer.poll()
        assert [frame.index for frame in frames] == [0, 1, 2, 3, 4]
        for frame in frames:
            check(frame, 4)
        assert tailer.poll() == []
    assert caplog.records == [], "a crashed writer's file stays readable"


def test_concurrent_writers_are_never_blocked_and_every_frame_arrives_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    writers, frames_each = 20, 15
    processes = {seed: spawn(tmp_path / f"w{seed:02d}.h5md", seed, frames_each, pause=0.01) for seed in range(writers)}
    victim = spawn(tmp_path / "victim.h5md", 100, 100_000, pause=0.002)  # killed once it has been seen streaming
    seen: dict[tuple[str, int], Frame] = {}
    tailer = StreamTailer(tmp_path, rescan_interval=0.05)
    deadline = time.monotonic() + 90
    restarted = killed = False
    with caplog.at_level(logging.WARNING, logger="mummi_like.streams.tailer"):
        while time.monotonic() < deadline:
            for frame in tailer.poll():
                key = (frame.file.name, frame.index)
                assert key not in seen, f"{key} yielded twice"
                seen[key] = frame
            victim_frames = sum(1 for name, _ in seen if name == "victim.h5md")
            if not killed and victim_frames >= 3:
                victim.send_signal(signal.SIGKILL)
                killed = True
            if not restarted and len(seen) >= writers * frames_each // 2:
                state = tailer.state()
                tailer.close()  # a coordinator restart: a new tailer continues from the saved state
                tailer = StreamTailer(tmp_path, rescan_interval=0.05)
                tailer.restore(state)
                restarted = True
            writers_done = all(process.poll() is not None for process in processes.values())
            if writers_done and killed and victim.poll() is not None and len(seen) >= writers * frames_each:
                break
            time.sleep(0.005)
        final = tailer.poll()
        tailer.close()
    for frame in final:
        assert (frame.file.name, frame.index) not in seen
        seen[(frame.file.name, frame.index)] = frame

    for seed, process in processes.items():
        _, stderr = process.communicate(timeout=30)
        assert process.returncode == 0, f"writer {seed} failed: {stderr}"
        assert [index for name, index in sorted(seen) if name == f"w{seed:02d}.h5md"] == list(range(frames_each))
    victim.communicate(timeout=30)
    assert killed and restarted and victim.returncode == -signal.SIGKILL
    with h5py.File(tmp_path / "victim.h5md", "r", swmr=True, locking=False) as f:
        victim_complete = int(f["mummi_like/complete"][0])
    assert sorted(index for name, index in seen if name == "victim.h5md") == list(range(victim_complete))
    for (name, _), frame in seen.items():
        check(frame, 100 if name == "victim.h5md" else int(name[1:3]))
    assert caplog.records == []


def test_half_created_and_corrupt_files_are_skipped_with_one_warning_and_retried(
    tmp_path: Path, tailer: StreamTailer, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "empty.h5md").write_bytes(b"")
    (tmp_path / "junk.h5md").write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    with h5py.File(tmp_path / "foreign.h5md", "w") as f:  # valid HDF5, but no completion counter
        f["particles/trajectory/position/value"] = np.zeros((2, N_ATOMS, 3))
    write(tmp_path / "good.h5md", 1, range(2)).close()
    with caplog.at_level(logging.WARNING, logger="mummi_like.streams.tailer"):
        assert by_file(tailer.poll()) == {"good.h5md": [0, 1]}
        assert tailer.poll() == []
    warned = sorted(Path(record.args[0]).name for record in caplog.records)
    assert warned == ["empty.h5md", "foreign.h5md", "junk.h5md"], "one warning per bad file, not one per poll"

    write(tmp_path / "empty.h5md", 2, range(3)).close()  # the file finally becomes a stream
    frames = tailer.poll()
    assert by_file(frames) == {"empty.h5md": [0, 1, 2]}
    for frame in frames:
        check(frame, 2)


def test_a_stream_without_a_requested_observable_raises_at_once_and_that_poll_yields_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A stream's layout is fixed once written: waiting cannot bring the observable, so there is no retry warning."""
    write(tmp_path / "full.h5md", 1, range(2)).close()
    bare_path = tmp_path / "z-bare.h5md"  # read after full.h5md, whose frames the failed poll had read already
    with H5MDWriter(bare_path, N_ATOMS, observables={"energy": ((), np.float64)}) as bare:
        bare.write_frame(np.zeros((N_ATOMS, 3)), step=0, time=0.0, observables={"energy": 1.0})
    with StreamTailer(tmp_path, observables=["rmsd", "contacts"], positions=False) as tailer, \
            caplog.at_level(logging.WARNING):
        for _ in range(2):
            with pytest.raises(UnknownObservable) as raised:
                tailer.poll()
            assert (raised.value.path, raised.value.missing, raised.value.available) == (
                bare_path, ["contacts", "rmsd"], ["energy"])
            assert str(raised.value) == f"{bare_path}: the stream has no observable 'contacts', 'rmsd'; it has 'energy'"
        bare_path.unlink()
        frames = tailer.poll(rescan=True)
    assert not caplog.records
    assert by_file(frames) == {"full.h5md": [0, 1]}, "the frames of the polls that raised come again"
    assert all(frame.positions is None and set(frame.observables) == {"rmsd", "contacts"} for frame in frames)
    assert frames[1].observables["rmsd"].shape == () and float(frames[1].observables["rmsd"]) == 2.0


def test_idle_files_are_not_reread_until_the_rescan_interval(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(tmp_path / "a.h5md", 1, range(2)).close()
    old = time.time() - 10
    os.utime(tmp_path / "a.h5md", (old, old))  # settled: no longer within a timestamp tick of its last write
    checks: list[int] = []
    read_counter = tailer_module._Handle.complete
    monkeypatch.setattr(tailer_module._Handle, "complete", lambda self: checks.append(1) or read_counter(self))
    with StreamTailer(tmp_path, rescan_interval=0.3) as tailer:
        assert len(tailer.poll()) == 2 and len(checks) == 1
        assert tailer.poll() == [] and len(checks) == 1, "unchanged since everything was read: not even refreshed"
        time.sleep(0.35)
        assert tailer.poll() == [] and len(checks) == 2, "checked again once the interval has passed"


def test_read_frame_reads_one_complete_frame_whole_and_refuses_others(tmp_path: Path) -> None:
    process = spawn(tmp_path / "torn.h5md", 6, 3, crash="torn")
    process.communicate(timeout=60)
    frame = read_frame(str(tmp_path / "torn.h5md"), 2)
    assert (frame.file, frame.index) == (tmp_path / "torn.h5md", 2)
    check(frame, 6)
    assert frame.box is None
    with pytest.raises(IndexError, match="frame 3 is not complete; the file has 3 complete frames"):
        read_frame(tmp_path / "torn.h5md", 3)
    with pytest.raises(IndexError):
        read_frame(tmp_path / "torn.h5md", -1)


def test_read_frame_beside_a_tailer_holding_the_file_open_breaks_neither(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The coupling's pattern: the tailer reads only what the selector scores, then the chosen frame is read whole."""
    process = spawn(tmp_path / "live.h5md", 9, 40, pause=0.005)
    indices: list[int] = []
    deadline = time.monotonic() + 60
    with StreamTailer(tmp_path, observables=["rmsd"], positions=False, rescan_interval=0.0) as tailer, \
            caplog.at_level(logging.WARNING, logger="mummi_like.streams.tailer"):
        while len(indices) < 40 and time.monotonic() < deadline:
            frames = tailer.poll()
            indices.extend(frame.index for frame in frames)
            assert all(frame.positions is None for frame in frames)
            for frame in frames[-1:]:
                check(read_frame(frame.file, frame.index), 9)
            time.sleep(0.005)
        assert process.wait(timeout=30) == 0
        check(read_frame(tmp_path / "live.h5md", 39), 9)
    assert indices == list(range(40))
    assert caplog.records == []


def test_two_tailers_of_one_process_share_its_file_handles(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """HDF5 allows one open file per process: two handles refreshing the same dataset would break each other."""
    write(tmp_path / "done.h5md", 1, range(3)).close()
    growing = write(tmp_path / "growing.h5md", 2, range(2))
    with StreamTailer(tmp_path) as first, StreamTailer(tmp_path, observables=["rmsd"]) as second, \
            caplog.at_level(logging.WARNING, logger="mummi_like.streams.tailer"):
        everything = {"done.h5md": [0, 1, 2], "growing.h5md": [0, 1]}
        assert by_file(first.poll()) == everything
        assert by_file(second.poll()) == everything
        assert first.poll() == []
        write(tmp_path / "growing.h5md", 2, range(2, 4), growing).close()
        assert [float(frame.observables["rmsd"]) for frame in second.poll()] == [4.0, 5.0]
        frames = first.poll()
        assert by_file(frames) == {"growing.h5md": [2, 3]}
        for frame in frames:
            check(frame, 2)
    assert caplog.records == []


def test_the_streaming_benchmark_runs_at_a_tiny_scale() -> None:
    result = subprocess.run(
        [sys.executable, str(REPOSITORY / "bench" / "streaming.py"), "--writers", "2", "--frames", "5", "--atoms", "9"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    figures = ("written   10 frames", "ingested  10 frames", "x written", "p50", "p95", "max", "replay    10 frames")
    for figure in figures:
        assert figure in result.stdout


# --- corrupt and truncated files: a StreamError that names the file, never a hang or a bare h5py error ----------


@pytest.fixture(scope="module")
def whole_stream(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """The bytes of a closed stream of five frames."""
    path = tmp_path_factory.mktemp("whole") / "whole.h5md"
    write(path, 3, range(5)).close()
    return path.read_bytes()


@pytest.mark.parametrize("keep", [0, 8, 47, 100, 2048, 0.5, 0.99, -1])
def test_read_frame_of_a_file_cut_short_raises_a_stream_error_naming_it(
    tmp_path: Path, whole_stream: bytes, keep: float
) -> None:
    """Cut inside the signature, inside the superblock, in the metadata, in the data, one byte short: HDF5 in SWMR
    mode does not check the end of the file, and reading the file cut at 100 bytes did not return in 10 minutes."""
    cut = int(len(whole_stream) * keep) if isinstance(keep, float) else keep % len(whole_stream)
    path = tmp_path / "cut.h5md"
    path.write_bytes(whole_stream[:cut])
    with pytest.raises(tailer_module.StreamError) as caught:
        read_frame(path, 1)
    assert str(caught.value).startswith(f"{path}: ") and caught.value.path == path
    if cut >= 48:  # a whole superblock: the size it records is there to compare with
        assert caught.value.reason == (
            f"it is truncated: {cut} bytes, where its HDF5 superblock records {len(whole_stream)}; it was cut short "
            "(a full disk, an interrupted copy) or is corrupt")


@pytest.mark.parametrize(("make", "reason"), [
    (lambda path: path.write_bytes(np.random.default_rng(0).bytes(4096)),
     "HDF5 cannot open it: Unable to synchronously open file (file signature not found)"),
    (lambda path: h5py.File(path, "w").close(),
     "not a mummi-like stream: Unable to synchronously open object (object 'mummi_like' doesn't exist)"),
    (lambda path: path.mkdir(), "is not a regular file"),
    (lambda path: None, "cannot be read: No such file or directory"),
])
def test_read_frame_of_what_is_not_a_stream_names_the_file_and_what_is_wrong(
    tmp_path: Path, make: Callable[[Path], object], reason: str
) -> None:
    path = tmp_path / "stream.h5"
    make(path)
    with pytest.raises(tailer_module.StreamError) as caught:
        read_frame(path, 0)
    assert (caught.value.path, caught.value.reason) == (path, reason)
    assert isinstance(caught.value, ValueError), "callers that catch ValueError keep working"


def test_a_stream_with_a_dataset_of_the_wrong_shape_is_refused_naming_the_dataset(
    tmp_path: Path, whole_stream: bytes
) -> None:
    scalar, short = tmp_path / "scalar.h5md", tmp_path / "short.h5md"
    for path in (scalar, short):
        path.write_bytes(whole_stream)
    with h5py.File(scalar, "r+") as f:  # one value where one row per frame belongs
        del f["observables/rmsd/value"]
        f["observables/rmsd/value"] = 1.0
    with h5py.File(short, "r+") as f:  # fewer rows than the completion counter promises
        del f["particles/trajectory/position/value"]
        f["particles/trajectory/position/value"] = np.zeros((2, N_ATOMS, 3))
    with pytest.raises(tailer_module.StreamError, match=r"observables/rmsd/value is a single value, not one row"):
        read_frame(scalar, 0)
    with pytest.raises(tailer_module.StreamError,
                       match=rf"^{short}: particles/trajectory/position/value has 2 frames, fewer than the 4"):
        read_frame(short, 3)


def test_the_tailer_skips_cut_and_misshapen_streams_with_one_warning_each_and_reads_the_rest(
    tmp_path: Path, whole_stream: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a-good.h5md").write_bytes(whole_stream)
    (tmp_path / "cut.h5md").write_bytes(whole_stream[: len(whole_stream) // 3])
    with H5MDWriter(tmp_path / "wide.h5md", N_ATOMS, observables={"contacts": ((4, 4), np.uint8)}) as wide:
        wide.write_frame(np.zeros((N_ATOMS, 3)), step=0, time=0.0, observables={"contacts": np.zeros((4, 4), np.uint8)})
    with StreamTailer(tmp_path, observables=["contacts"]) as tailer, \
            caplog.at_level(logging.WARNING, logger="mummi_like.streams.tailer"):
        assert by_file(tailer.poll()) == {"a-good.h5md": [0, 1, 2, 3, 4]}
        assert tailer.poll(rescan=True) == []
    warnings = {Path(record.args[0]).name: record.args[1] for record in caplog.records}
    assert len(caplog.records) == 2, "one warning per bad file, not one per poll"
    assert warnings["cut.h5md"].startswith("it is truncated: ")
    assert warnings["wide.h5md"] == ("observable 'contacts' has frames of shape (4, 4), where the streams read "
                                     "before have (3, 3): a stream of another system, or a corrupt one")


def test_a_corrupt_metadata_block_fails_in_milliseconds_not_hours(tmp_path: Path, whole_stream: bytes) -> None:
    """A SWMR reader retries a block whose checksum fails, sleeping twice as long each time: with HDF5's default of
    100 attempts, one zeroed block kept read_frame (and a coordinator promoting from the file) waiting for hours."""
    reasons = []
    started = time.monotonic()
    for offset in range(1500, len(whole_stream), 1500):
        damaged = bytearray(whole_stream)
        damaged[offset:offset + 64] = bytes(64)
        path = tmp_path / f"damaged-at-{offset}.h5md"
        path.write_bytes(bytes(damaged))
        try:
            read_frame(path, 2)
        except tailer_module.StreamError as error:
            reasons.append(error.reason)
    assert time.monotonic() - started < 30
    assert any("incorrect metadata checksum after all read attempts" in reason for reason in reasons), reasons
