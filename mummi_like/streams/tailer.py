"""Follow many growing H5MD streams and yield each complete frame exactly once.

The coordinator tails the files of hundreds of running simulations, written by
:class:`~mummi_like.streams.h5md.H5MDWriter`, and feeds their frames to a
selector. Three properties matter more than speed:

* **It never blocks a writer.** Files are opened read-only in SWMR mode with
  HDF5 file locking off: a SWMR reader takes no lock and writes nothing, so
  there is nothing a writer could wait on, however long a handle stays open.
* **It trusts only complete frames.** A frame is yielded only below the file's
  completion counter (``/mummi_like/complete``, advanced by the writer after the
  frame's data is flushed; see :mod:`mummi_like.streams.h5md`), so a frame in
  progress, or the torn frame of a writer that crashed, is never seen. The
  counter is read first; every dataset is refreshed after it, so it is at
  least as long as the counter says.
* **Bad files do not stop it.** A file that cannot be opened or read (still
  being created by another program, truncated, corrupt, not a mummi-like
  stream, an observable whose frames have another shape than in the streams
  read before) is skipped with one logged warning per distinct problem and
  retried at the next poll. The one exception is a stream without an
  observable the tailer was asked for (:class:`UnknownObservable`): a
  stream's layout is fixed when it is written, so retrying could never help,
  and :meth:`StreamTailer.poll` raises it at once. Every such problem is a :class:`StreamError` that
  names the file and what is wrong, whatever h5py raised underneath. A file
  shorter than its HDF5 superblock says is refused before HDF5 opens it: in
  SWMR mode HDF5 does not check the end of the file, and reading a file cut at
  100 bytes did not return in 10 minutes. The same wait came from a file with a
  corrupt metadata block: a SWMR reader retries a block whose checksum fails
  (to outwait a writer in the middle of writing it), 100 times by default,
  sleeping twice as long before each retry. Streams are opened with
  :data:`METADATA_READ_ATTEMPTS` instead, so such a file fails in milliseconds.

A frame's identity is ``(file, index)``. The tailer keeps the next index per
file; :meth:`StreamTailer.state` and :meth:`StreamTailer.restore` carry it
across a restart of the coordinator so that nothing is yielded twice. Only the
new frames' slices are read, never whole datasets. :func:`read_frame` reads one
chosen frame whole, e.g. to promote it to a finer scale.

Cost per file is what limits how many streams one coordinator follows, so:

* handles stay open between polls (up to ``max_open``, least recently active
  closed first): reading a file's new frames costs about half as much through
  refreshed datasets as through a freshly opened file, and under SWMR the
  layout cannot change, so the datasets are looked up once per handle; a file
  replaced under the same name (another inode) gets a new handle;
* a file whose inode, size and modification time did not change since a poll
  that read everything is not even refreshed, except once per
  ``rescan_interval``: that keeps idle streams at the cost of a ``stat``, and the
  periodic check covers file systems whose timestamps are coarse or cached (NFS).
"""

from __future__ import annotations

import ctypes
import functools
import glob
import logging
import os
import struct
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISREG
from types import TracebackType

import h5py
import numpy as np

from mummi_like.streams.h5md import COMPLETE_DATASET, PARTICLE_GROUP, PROTOCOL_GROUP, PROTOCOL_VERSION

logger = logging.getLogger(__name__)

_TRAJECTORY = f"particles/{PARTICLE_GROUP}"

READ_ERRORS = (OSError, RuntimeError, KeyError, ValueError, IndexError)
"""What h5py raises for a file that is not (yet) a readable stream; anything else is a bug and propagates."""
METADATA_READ_ATTEMPTS = 24
"""Reads of a metadata block whose checksum fails before a SWMR reader gives up on it. HDF5 sleeps twice as long
before each retry: 24 attempts wait about 17 ms in all, far longer than a writer takes to write a block, where HDF5's
default of 100 made a file with one corrupt block take hours (30 attempts took 1 s, 50 more than 2 minutes)."""
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
"""The first bytes of an HDF5 file (without a user block, as the stream writer makes them)."""
MTIME_SETTLE_S = 0.1
"""A file modified this recently may change again within the same timestamp tick: its signature is not trusted."""


@dataclass(frozen=True)
class Frame:
    """One complete frame of one stream.

    Attributes
    ----------
    file
        Absolute path of the stream; with ``index``, the frame's identity.
    index
        Frame number within the file, from 0.
    step, time
        Integration step and simulation time (ps).
    positions
        ``(n_atoms, 3)`` in nm, or None when the tailer was told not to read them.
    box
        ``(3, 3)`` box vectors in nm (rows), or None for a non-periodic stream.
    observables
        Name -> this frame's value (an array, 0-d for a scalar), for the observables the tailer reads.

    The arrays are views of one read per dataset and poll: keeping a few frames
    of a large batch keeps the batch; copy them to keep less.
    """

    file: Path
    index: int
    step: int
    time: float
    positions: np.ndarray | None = field(repr=False)
    box: np.ndarray | None = field(repr=False)
    observables: dict[str, np.ndarray] = field(repr=False)


class StreamError(ValueError):
    """A stream file that cannot be read: missing, truncated, corrupt, or not a mummi-like stream.

    Attributes
    ----------
    path
        The file.
    reason
        What is wrong with it, in words; the message is ``"<path>: <reason>"``.
    """

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class UnknownObservable(StreamError):
    """A stream lacks an observable it was asked for: its layout is fixed once written, so it never will have it.

    Attributes
    ----------
    missing
        The observables asked for that the stream does not have.
    available
        The observables it has, sorted.
    """

    def __init__(self, path: Path, missing: list[str], available: list[str]) -> None:
        super().__init__(path, f"the stream has no observable {', '.join(map(repr, missing))}; it has "
                               f"{', '.join(map(repr, available)) or 'none'}")
        self.missing = missing
        self.available = available


def _h5py_reason(error: BaseException) -> str:
    """What h5py said, as one sentence (a KeyError's message is its only argument, not its quoted repr)."""
    text = str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)
    return " ".join(text.split()) or type(error).__name__


def _truncation(path: Path) -> str | None:
    """Why ``path`` is shorter than its HDF5 superblock says it is, or ``None`` when it is not.

    The superblock of version 2 or 3 (what ``libver="latest"`` writes) records
    the end-of-file address; a writer in SWMR mode keeps it at the file's size
    as the file grows, and a file only grows. So a file shorter than that was
    cut (a full disk, a copy interrupted). The superblock is read before the
    size, so that a writer extending the file meanwhile cannot make a whole
    file look cut. Anything else (no signature, another superblock version) is
    left to HDF5 to judge.
    """
    with open(path, "rb") as handle:
        head = handle.read(48)
    if not head.startswith(HDF5_SIGNATURE) or len(head) < 12 or head[8] not in (2, 3):
        return None
    width = head[9]
    if width not in (2, 4, 8):
        return f"its HDF5 superblock is corrupt (addresses of {width} bytes)"
    needed = 12 + 4 * width + 4
    if len(head) < needed:
        return (f"it ends inside its HDF5 superblock ({len(head)} of {needed} bytes): it was cut short or is still "
                "being created")
    code = {2: "<H", 4: "<I", 8: "<Q"}[width]
    base, end = (struct.unpack_from(code, head, 12 + width * slot)[0] for slot in (0, 2))
    size = os.stat(path).st_size
    if size < base + end:
        return (f"it is truncated: {size} bytes, where its HDF5 superblock records {base + end}; it was cut short "
                "(a full disk, an interrupted copy) or is corrupt")
    return None


@functools.cache
def _read_attempts_setter() -> Callable[[int, int], int] | None:
    """HDF5's ``H5Pset_metadata_read_attempts`` in the library h5py runs on (h5py does not wrap it), or ``None``.

    The library is found among the files this process has mapped, so that a
    property list of h5py's HDF5 is set with that same HDF5. Where it cannot be
    found (not Linux, HDF5 linked into h5py itself), streams open with HDF5's
    default and a corrupt metadata block costs its long retries.
    """
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = sorted({line.split()[-1] for line in maps if "/libhdf5-" in line or "/libhdf5.so" in line})
    except OSError:
        return None
    for path in paths:
        try:
            setter = ctypes.CDLL(path).H5Pset_metadata_read_attempts
        except (OSError, AttributeError):
            continue
        setter.argtypes, setter.restype = [ctypes.c_int64, ctypes.c_uint], ctypes.c_int
        return setter
    return None


def _open_for_swmr_reading(path: Path) -> h5py.File:
    """``path`` opened as ``h5py.File(path, "r", libver="latest", swmr=True, locking=False)`` would open it, with at
    most :data:`METADATA_READ_ATTEMPTS` reads of a metadata block whose checksum fails."""
    access = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    access.set_libver_bounds(h5py.h5f.LIBVER_LATEST, h5py.h5f.LIBVER_LATEST)
    access.set_file_locking(False, True)
    setter = _read_attempts_setter()
    if setter is not None and setter(access.id, METADATA_READ_ATTEMPTS) < 0:
        raise RuntimeError(f"HDF5 refused {METADATA_READ_ATTEMPTS} metadata read attempts")
    return h5py.File(h5py.h5f.open(os.fsencode(path), h5py.h5f.ACC_RDONLY | h5py.h5f.ACC_SWMR_READ, fapl=access))


class _Handle:
    """The one open SWMR read handle of this process on one stream file.

    HDF5 keeps a single open file per process, shared by every handle on it, and
    refreshing a dataset that is open twice in the process fails ("can't insert
    duplicate key"), while a dataset opened again without a refresh may show
    metadata cached before it was closed. So every read of a stream in this
    process, by any tailer or :func:`read_frame`, goes through one shared handle
    (:func:`_acquire`), which opens each dataset once and refreshes it before
    each read. The layout cannot change under SWMR, so it is looked up once.
    """

    def __init__(self, path: Path, inode: int) -> None:
        """Open ``path``; a :class:`StreamError` says why it is not a readable stream."""
        self.path = path
        self.inode = inode
        self.users = 0
        try:
            truncated = _truncation(path)
        except OSError as error:
            raise StreamError(path, f"cannot be read: {error.strerror}") from error
        if truncated is not None:
            raise StreamError(path, truncated)
        try:
            self.file = _open_for_swmr_reading(path)
        except READ_ERRORS as error:
            raise StreamError(path, f"HDF5 cannot open it: {_h5py_reason(error)}") from error
        self._datasets: dict[str, h5py.Dataset] = {}
        try:
            version = self.file[PROTOCOL_GROUP].attrs.get("protocol_version")
            if version != PROTOCOL_VERSION:
                raise StreamError(path, f"stream protocol version {version!r}, this tailer reads {PROTOCOL_VERSION}")
            self.has_box = "edges" in self.file[f"{_TRAJECTORY}/box"]
            self.observables = sorted(self.file.get("observables") or ())
        except StreamError:
            self.file.close()
            raise
        except READ_ERRORS as error:
            self.file.close()
            raise StreamError(path, f"not a mummi-like stream: {_h5py_reason(error)}") from error
        except BaseException:
            self.file.close()
            raise

    def _read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Rows ``start`` to ``stop`` of dataset ``name``, refreshed; a :class:`StreamError` for a dataset that is
        missing, unreadable, a single value rather than one row per frame, or shorter than ``stop``."""
        try:
            dataset = self._datasets.get(name)
            if dataset is None:
                dataset = self._datasets[name] = self.file[name]
            dataset.refresh()
            if not dataset.shape:
                raise StreamError(self.path, f"{name} is a single value, not one row per frame")
            if dataset.shape[0] < stop:
                raise StreamError(
                    self.path, f"{name} has {dataset.shape[0]} frames, fewer than the {stop} complete ones"
                )
            return np.asarray(dataset[start:stop])
        except StreamError:
            raise
        except READ_ERRORS as error:
            raise StreamError(self.path, f"cannot read {name}: {_h5py_reason(error)}") from error

    def complete(self) -> int:
        """The writer's completion counter, as of now."""
        return int(self._read(COMPLETE_DATASET, 0, 1)[0])

    def require(self, observables: list[str] | None) -> list[str]:
        """The observables to read: ``observables``, or all the stream has for None.

        Raises
        ------
        UnknownObservable
            For a name the stream lacks.
        """
        if observables is None:
            return self.observables
        missing = sorted(set(observables) - set(self.observables))
        if missing:
            raise UnknownObservable(self.path, missing, self.observables)
        return observables

    def frames(self, start: int, stop: int, observables: list[str] | None, positions: bool) -> list[Frame]:
        """Frames ``start`` to ``stop`` (all complete), one slice read per dataset.

        ``observables`` None reads all the stream has; a name it lacks raises :class:`UnknownObservable`.
        """
        names = self.require(observables)
        steps = self._read(f"{_TRAJECTORY}/position/step", start, stop)
        times = self._read(f"{_TRAJECTORY}/position/time", start, stop)
        coordinates = self._read(f"{_TRAJECTORY}/position/value", start, stop) if positions else None
        boxes = self._read(f"{_TRAJECTORY}/box/edges/value", start, stop) if self.has_box else None
        values = {name: self._read(f"observables/{name}/value", start, stop) for name in names}
        return [
            Frame(
                file=self.path,
                index=start + k,
                step=int(steps[k]),
                time=float(times[k]),
                positions=None if coordinates is None else coordinates[k],
                box=None if boxes is None else boxes[k],
                observables={name: value[k, ...] for name, value in values.items()},
            )
            for k in range(stop - start)
        ]


_HANDLES: dict[Path, _Handle] = {}
"""This process's open handle on each stream file, shared by its tailers and :func:`read_frame`."""


def _acquire(path: Path, inode: int) -> _Handle:
    """A use of the process's handle on ``path``, opened if there is none on this inode (a replaced file)."""
    handle = _HANDLES.get(path)
    if handle is None or handle.inode != inode:
        handle = _HANDLES[path] = _Handle(path, inode)
    handle.users += 1
    return handle


def _release(handle: _Handle) -> None:
    """End a use of ``handle``, closing it after the last."""
    handle.users -= 1
    if handle.users == 0:
        handle.file.close()
        if _HANDLES.get(handle.path) is handle:
            del _HANDLES[handle.path]


@dataclass
class _Stream:
    """What the tailer remembers of one file."""

    position: int = 0
    signature: tuple[int, int, int] | None = None
    checked_at: float = float("-inf")
    warning: str | None = None
    handle: _Handle | None = None


class StreamTailer:
    """Poll a set of H5MD stream files for new complete frames.

    Parameters
    ----------
    source
        A folder, searched with ``pattern``, or a glob pattern (``runs/*/traj*.h5md``;
        ``**`` spans folders). Files that appear later are picked up.
    pattern
        The glob, relative to ``source``, when ``source`` is a folder.
    observables
        Names of the observables to read; every stream must have them: a stream
        without one makes :meth:`poll` raise :class:`UnknownObservable`. None
        reads all a stream has.
    positions
        Whether to read positions; a selector that needs only observables (contact
        maps) saves the largest read by passing False.
    rescan_interval
        Seconds between searches for new files, and between checks of files that
        look unchanged.
    max_open
        Most file handles kept open between polls; more streams than this cost
        a reopen each when they next have frames.

    Notes
    -----
    Tailers and :func:`read_frame` in one process share one handle per file, as
    HDF5 requires (see :class:`_Handle`); a writer in the same process is fine.
    """

    def __init__(
        self,
        source: str | os.PathLike[str],
        *,
        pattern: str = "**/*.h5md",
        observables: Iterable[str] | None = None,
        positions: bool = True,
        rescan_interval: float = 1.0,
        max_open: int = 256,
    ) -> None:
        if max_open < 1:
            raise ValueError(f"max_open must be at least 1, got {max_open}")
        text = os.fspath(source)
        self._glob = text if glob.has_magic(text) else os.path.join(text, pattern)
        self._observables = None if observables is None else list(observables)
        self._read_positions = positions
        self.rescan_interval = rescan_interval
        self.max_open = max_open
        self._streams: dict[Path, _Stream] = {}
        self._files: list[Path] = []
        self._open: OrderedDict[Path, None] = OrderedDict()  # least recently read first
        self._next_scan = float("-inf")
        self._cursor = 0
        self._shapes: dict[str, tuple[int, ...]] = {}  # per-frame shape of each observable, from the first stream

    @property
    def files(self) -> list[Path]:
        """The stream files found by the last search, in path order."""
        return list(self._files)

    def poll(self, max_frames: int | None = None, rescan: bool = False) -> list[Frame]:
        """Return the complete frames not yielded before, in order within each file.

        Parameters
        ----------
        max_frames
            At most this many frames; files are served round-robin across polls,
            so that a busy stream cannot starve the others.
        rescan
            Search for new files now, whenever the last search was (for a last
            poll once every writer has finished).

        Raises
        ------
        UnknownObservable
            When a stream lacks an observable the tailer reads, as soon as the
            stream is opened. Nothing of this poll counts as yielded then: its
            frames come again from the next poll.
        """
        now = time.monotonic()
        if rescan or now >= self._next_scan:
            self._scan()
            self._next_scan = now + self.rescan_interval
        frames: list[Frame] = []
        count, first = len(self._files), self._cursor
        for offset in range(count):
            budget = None if max_frames is None else max_frames - len(frames)
            if budget is not None and budget <= 0:
                break
            at = (first + offset) % count
            try:
                new = self._read_new(self._files[at], budget)
            except UnknownObservable:
                self._take_back(frames)
                raise
            if new:
                frames.extend(new)
                self._cursor = (at + 1) % count
        return frames

    def _take_back(self, frames: list[Frame]) -> None:
        """Make ``frames`` (in order within each file) not yielded yet, so that the next poll returns them again."""
        for frame in reversed(frames):
            stream = self._streams[frame.file]
            stream.position, stream.signature = frame.index, None

    def state(self) -> dict[str, int]:
        """The next frame index of every known file, to persist with the coordinator's state."""
        return {str(path): stream.position for path, stream in self._streams.items()}

    def restore(self, state: Mapping[str, int]) -> None:
        """Continue from a :meth:`state`: frames below each file's index are not yielded again."""
        for name, position in state.items():
            stream = self._streams.setdefault(Path(os.path.abspath(name)), _Stream())
            stream.position = int(position)
            stream.signature = None

    def close(self) -> None:
        """Close every open file handle; a later :meth:`poll` reopens what it needs."""
        for path in list(self._open):
            self._close(path)

    def __enter__(self) -> StreamTailer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    def _scan(self) -> None:
        self._files = sorted(
            Path(os.path.abspath(name)) for name in glob.glob(self._glob, recursive=True) if os.path.isfile(name)
        )
        for path in self._files:
            self._streams.setdefault(path, _Stream())
        for path in set(self._open) - set(self._files):
            self._close(path)
        if self._files:
            self._cursor %= len(self._files)

    def _read_new(self, path: Path, budget: int | None) -> list[Frame]:
        """Read the new complete frames of one file, or none if it is unchanged or unreadable."""
        stream = self._streams[path]
        try:
            stat = os.stat(path)
        except FileNotFoundError:
            return []
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        now = time.monotonic()
        if signature == stream.signature and now - stream.checked_at < self.rescan_interval:
            return []
        try:
            handle = self._handle(path, stream, stat.st_ino)
            handle.require(self._observables)
            complete = handle.complete()
            if complete < stream.position:
                raise StreamError(
                    path,
                    f"{complete} complete frames but {stream.position} were already yielded: was the file rewritten?",
                )
            stop = complete if budget is None else min(complete, stream.position + budget)
            frames = (
                handle.frames(stream.position, stop, self._observables, self._read_positions)
                if stop > stream.position else []
            )
            self._check_shapes(path, frames)
        except UnknownObservable:
            self._close(path)
            raise
        except READ_ERRORS as exc:
            self._close(path)
            message = exc.reason if isinstance(exc, StreamError) else f"{type(exc).__name__}: {exc}"
            if message != stream.warning:
                logger.warning("stream %s is not readable yet, retrying at a later poll (%s)", path, message)
                stream.warning = message
            stream.signature = None
            return []
        stream.warning = None
        stream.checked_at = now
        stream.position += len(frames)
        settled = time.time() - stat.st_mtime_ns / 1e9 > MTIME_SETTLE_S
        stream.signature = signature if settled and stream.position == complete else None
        return frames

    def _check_shapes(self, path: Path, frames: list[Frame]) -> None:
        """Refuse a file whose observables have frames of another shape than in the streams read before.

        A selector stacks the frames of all streams, so one stream of another
        system, or a corrupt one, would otherwise stop the coordinator there.
        """
        for name, value in (frames[0].observables.items() if frames else ()):
            known = self._shapes.setdefault(name, value.shape)
            if value.shape != known:
                raise StreamError(
                    path,
                    f"observable {name!r} has frames of shape {value.shape}, where the streams read before have "
                    f"{known}: a stream of another system, or a corrupt one",
                )

    def _handle(self, path: Path, stream: _Stream, inode: int) -> _Handle:
        """The handle on ``path``, (re)acquired if there is none or the file was replaced."""
        if stream.handle is not None and stream.handle.inode != inode:
            self._close(path)
        if stream.handle is None:
            while len(self._open) >= self.max_open:
                self._close(next(iter(self._open)))
            stream.handle = _acquire(path, inode)
        self._open[path] = None
        self._open.move_to_end(path)
        return stream.handle

    def _close(self, path: Path) -> None:
        stream = self._streams[path]
        if stream.handle is not None:
            _release(stream.handle)
            stream.handle = None
        self._open.pop(path, None)


def read_frame(path: str | os.PathLike[str], index: int) -> Frame:
    """Read one complete frame of a stream whole: positions, box and every observable.

    A coordinator's tailer often reads only what its selector scores (a contact
    map, no positions); the frame it promotes to a finer scale is then read
    again, whole, from its ``(file, index)``. Where a tailer of this process
    follows the file, the read goes through the tailer's handle (HDF5 allows
    only one per process, see :class:`_Handle`).

    Raises
    ------
    IndexError
        If ``index`` is not a complete frame (yet).
    StreamError
        If the file is missing or not a readable mummi-like stream (truncated,
        corrupt, another layout); the message names it and what is wrong.
    """
    path = Path(os.path.abspath(path))
    try:
        status = os.stat(path)
    except OSError as error:
        raise StreamError(path, f"cannot be read: {error.strerror}") from error
    if not S_ISREG(status.st_mode):
        raise StreamError(path, "is not a regular file")  # a folder, or a pipe that would block the reader
    handle = _acquire(path, status.st_ino)
    try:
        complete = handle.complete()
        if not 0 <= index < complete:
            raise IndexError(f"{path}: frame {index} is not complete; the file has {complete} complete frames")
        return handle.frames(index, index + 1, observables=None, positions=True)[0]
    finally:
        _release(handle)
