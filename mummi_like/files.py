"""Atomic writes of campaign files: a reader, or a resume after a crash, finds the old content or the new, never a mix.

A campaign is read while it runs (``status``, ``report``, a dashboard, a task
reading what an earlier one wrote) and may be killed at any instant (``kill -9``,
an allocation's end, a power loss). A file written in place is, for a while,
empty or half written, and stays so if the writer dies. :func:`atomic_write`
instead writes a hidden temporary sibling in the same directory (so the rename
stays within one file system), flushes and ``fsync``\\ s it, renames it onto the
target with :func:`os.replace` (atomic on POSIX), and ``fsync``\\ s the directory
so that the rename itself survives a power loss. A body that raises leaves the
target as it was and removes the temporary file.

The file gets the permission bits a plain ``open(path, "w")`` would give it: those
of the file it replaces, or ``0o666`` less the process's umask for a new file
(the temporary file is created with ``os.open(..., 0o666)``, so the kernel applies
the umask, race-free, unlike reading it with :func:`os.umask`).

Not for files appended in place by design (H5MD streams, which SWMR readers
follow while they grow) nor for the SQLite store, which has its own journal.
Plugins use these helpers for their campaign files as the core does.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, Any, Literal

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_text"]


def _fsync_directory(directory: Path) -> None:
    """Make a rename in ``directory`` durable: on Linux the new entry is on disk only once the directory is synced."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: Literal["w", "wb"] = "w",
    *,
    encoding: str | None = "utf-8",
    newline: str | None = None,
    permissions: int | None = None,
    keep_existing: bool = False,
) -> Iterator[IO[Any]]:
    """Yield a file to write ``path``'s new content into; it replaces ``path`` only when the body succeeds.

    Parameters
    ----------
    path
        The file to write. Its directory must exist.
    mode
        ``"w"`` for text, ``"wb"`` for bytes (:func:`numpy.savez`, :func:`torch.save`).
    encoding, newline
        As for :func:`open`, text mode only. UTF-8 by default rather than the
        locale's, so that a file reads the same on every node of a cluster.
    permissions
        Permission bits to give the file (e.g. ``0o755`` for a script), instead of
        those a plain :func:`open` would give.
    keep_existing
        Keep ``path`` as it is when it exists by the time the new content is
        complete, and drop the new content: the first of several writers racing
        to fill a shared cache wins (the file is hard-linked into place, which
        fails when the name is taken), so every reader sees the same file.

    Yields
    ------
    IO
        An open file on a hidden temporary sibling of ``path``; do not close it.

    Raises
    ------
    OSError
        When the directory is missing or not writable, or the disk is full; the
        target then keeps its old content.
    """
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        if permissions is not None:
            os.fchmod(fd, permissions)
        else:
            with suppress(FileNotFoundError):  # keep the mode of the file replaced, as writing in place would
                os.fchmod(fd, stat.S_IMODE(os.stat(target).st_mode))
        binary = mode == "wb"
        with open(fd, mode, encoding=None if binary else encoding, newline=None if binary else newline,
                  closefd=False) as handle:
            yield handle
            handle.flush()
            os.fsync(fd)
    except BaseException:
        os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    os.close(fd)
    try:
        if keep_existing:
            with suppress(FileExistsError):
                os.link(temporary, target)
            temporary.unlink()
        else:
            os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_directory(target.parent)


def atomic_write_text(path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8",
                      permissions: int | None = None, keep_existing: bool = False) -> None:
    """Replace ``path``'s content with ``text`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "w", encoding=encoding, permissions=permissions, keep_existing=keep_existing) as handle:
        handle.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, permissions: int | None = None) -> None:
    """Replace ``path``'s content with ``data`` atomically (see :func:`atomic_write`)."""
    with atomic_write(path, "wb", permissions=permissions) as handle:
        handle.write(data)
