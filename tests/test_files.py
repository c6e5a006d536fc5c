"""Tests of the atomic writes of campaign files: old content or new, never a mix, and the permissions of open()."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mummi_like.files import atomic_write, atomic_write_bytes, atomic_write_text

OLD = b"old content\n"
CHUNK = 64 * 1024
CHUNKS = 64  # a 4 MiB file, written a chunk at a time


@contextmanager
def umask(mask: int) -> Iterator[None]:
    previous = os.umask(mask)
    try:
        yield
    finally:
        os.umask(previous)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_completed_write_replaces_the_content_and_leaves_only_the_target(tmp_path: Path) -> None:
    target = tmp_path / "table.csv"
    target.write_bytes(OLD)
    with atomic_write(target, newline="") as handle:
        handle.write("a,b\r\n1,2\r\n")
    atomic_write_bytes(tmp_path / "blob.bin", b"\x00\x01")
    assert target.read_bytes() == b"a,b\r\n1,2\r\n"
    assert (tmp_path / "blob.bin").read_bytes() == b"\x00\x01"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blob.bin", "table.csv"]


def test_a_body_that_raises_leaves_the_old_content_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "ligands.json"
    target.write_bytes(OLD)
    with pytest.raises(ZeroDivisionError), atomic_write(target, "wb") as handle:
        handle.write(b"half of the new")
        1 / 0
    assert target.read_bytes() == OLD
    assert [p.name for p in tmp_path.iterdir()] == ["ligands.json"]


def test_a_write_into_a_missing_directory_fails_and_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write_text(tmp_path / "missing" / "x.json", "{}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("mask", [0o022, 0o077, 0o002])
def test_a_new_file_gets_the_mode_a_plain_open_gives_under_the_umask(tmp_path: Path, mask: int) -> None:
    with umask(mask):
        atomic_write_text(tmp_path / "atomic.txt", "x")
        with open(tmp_path / "plain.txt", "w") as handle:
            handle.write("x")
    assert mode_of(tmp_path / "atomic.txt") == mode_of(tmp_path / "plain.txt") == 0o666 & ~mask


def test_a_replaced_file_keeps_its_mode_and_explicit_permissions_win(tmp_path: Path) -> None:
    kept = tmp_path / "private.json"
    kept.write_text("{}")
    kept.chmod(0o600)
    atomic_write_text(kept, '{"a": 1}')
    script = tmp_path / "run.sh"
    with umask(0o077):
        atomic_write_text(script, "#!/bin/sh\n", permissions=0o755)
    assert (mode_of(kept), kept.read_text()) == (0o600, '{"a": 1}')
    assert mode_of(script) == 0o755


def test_keep_existing_lets_the_first_writer_win_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    cached = tmp_path / "receptor.pdb"
    atomic_write_text(cached, "first", keep_existing=True)
    atomic_write_text(cached, "second", keep_existing=True)
    assert cached.read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["receptor.pdb"]


WRITER = textwrap.dedent("""
    import sys, time
    from mummi_like.files import atomic_write
    target, how, chunk, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    writing = atomic_write(target, "wb") if how == "atomic" else open(target, "wb")
    handle = writing.__enter__()
    for index in range(chunks):
        handle.write(bytes([65 + index % 26]) * chunk)
        handle.flush()
        print(index, flush=True)  # one line per chunk on disk (or in the temporary file)
        time.sleep(0.005)
    time.sleep(60)  # killed before it finishes
""")


def kill_writer_midway(target: Path, how: str, after_chunks: int) -> None:
    """Start a process writing ``target`` slowly, SIGKILL it once ``after_chunks`` chunks are written."""
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(target), how, str(CHUNK), str(CHUNKS)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert writer.stdout is not None
        for _ in range(after_chunks):
            assert writer.stdout.readline(), "the writer died before it was killed"
        writer.send_signal(signal.SIGKILL)
    finally:
        writer.kill()
        writer.wait(timeout=30)
    assert writer.returncode == -signal.SIGKILL


@pytest.mark.parametrize("after_chunks", [1, CHUNKS // 2, CHUNKS])
def test_a_writer_killed_midway_leaves_the_old_content_never_a_mix(tmp_path: Path, after_chunks: int) -> None:
    atomic, in_place = tmp_path / "atomic.bin", tmp_path / "in_place.bin"
    for target in (atomic, in_place):
        target.write_bytes(OLD)
        kill_writer_midway(target, "atomic" if target is atomic else "in_place", after_chunks)
    assert atomic.read_bytes() == OLD
    # The same kill leaves a file written in place torn: the harness does catch a mix.
    assert in_place.read_bytes() != OLD and len(in_place.read_bytes()) == after_chunks * CHUNK
    # The killed writer could not clean up: its hidden temporary file is all that is left besides the targets.
    leftovers = [p.name for p in tmp_path.iterdir() if p not in (atomic, in_place)]
    assert len(leftovers) == 1 and leftovers[0].startswith(".atomic.bin.") and leftovers[0].endswith(".tmp")


def test_a_writer_that_finishes_leaves_exactly_the_new_content(tmp_path: Path) -> None:
    target = tmp_path / "model.pt"
    target.write_bytes(OLD)
    code = ("import sys; from mummi_like.files import atomic_write\n"
            "with atomic_write(sys.argv[1], 'wb') as handle:\n"
            "    for index in range(64): handle.write(bytes([65 + index % 26]) * 65536)\n")
    subprocess.run([sys.executable, "-c", code, str(target)], check=True, timeout=60)
    assert target.read_bytes() == b"".join(bytes([65 + i % 26]) * CHUNK for i in range(CHUNKS))
    assert [p.name for p in tmp_path.iterdir()] == ["model.pt"]
