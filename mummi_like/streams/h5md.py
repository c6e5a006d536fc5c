"""Streaming H5MD writer: frames that readers see while the simulation still runs.

A coarse simulation writes its trajectory and per-frame observables (contact
maps, RMSD, collective variables) to an `H5MD 1.1 <https://www.nongnu.org/h5md/h5md.html>`_
file that MDAnalysis reads, and the coordinator tails the same file while it
grows (:mod:`mummi_like.streams.tailer`). Both need HDF5's single-writer /
multiple-reader (SWMR) mode: a SWMR reader never locks the file, so it cannot
stop the simulation, and the file on disk is always a consistent HDF5 file,
even after the writer is killed.

Layout
------
::

    /h5md                        version = [1, 1]; author/name; creator/name, version
    /particles/trajectory
        box                      dimension = 3; boundary = 3 * ["periodic"] or 3 * ["none"]
            edges/value          (frames, 3, 3) float32, unit "nm"   (only when periodic)
            edges/step, time     hard links to position/step and position/time
        position/value           (frames, n_atoms, 3) float32, unit "nm", one frame per chunk
        position/step            (frames,) int64
        position/time            (frames,) float64, unit "ps"
    /observables/<name>
        value                    (frames, *shape) of the declared dtype
        step, time               hard links to position/step and position/time
    /mummi_like                  protocol_version = 1
        complete                 (1,) int64: the number of complete frames

Every time-dependent group shares one ``step`` and one ``time`` dataset through
hard links, as H5MD allows, so a frame writes them once. The frame axis of every
dataset is unlimited and chunked; positions hold one frame per chunk (the unit a
reader asks for), small per-frame data as many frames as fit in 4 KiB.

Frame-completion protocol
-------------------------
SWMR lets a reader see a dataset grow, but gives no transaction spanning several
datasets: a reader may see ``position/value`` resized for frame *i* before the
observables of frame *i* are written, and a writer killed in between leaves a
*torn* frame behind for good. So the writer keeps a counter that is advanced
last:

1. validate the whole frame first (shapes, dtypes, finite values, monotonic
   step), so that a rejected frame leaves no trace in the file;
2. resize every dataset of the frame to ``i + 1`` and write its slot;
3. every ``flush_every`` frames (and on :meth:`H5MDWriter.close`), flush the
   file, so that all data of the pending frames is on disk, and only then
   write ``/mummi_like/complete[0] = i + 1`` and flush that dataset.

A reader trusts only frames ``< complete``: it reads the counter first, then
refreshes each dataset and reads the slices it needs, which are at least that
long. Rows at or past the counter are a frame in progress, or the remains of a
writer that died, and are never yielded. MDAnalysis, which knows nothing of the
counter, counts frames by the datasets' length; a file closed normally has no
rows past the counter.

A file is created under a hidden temporary name (``.<name>.creating``) and
renamed into place once its layout exists and SWMR mode is on, so a tailer
never finds a half-created file under a stream name. Since SWMR forbids new
datasets once it is on, the layout (atom count, whether there is a box, the
observables with their shapes and dtypes) is fixed at construction;
:class:`H5MDReporter` takes it from the first frame it reports.

Reading a live or crashed file with plain ``h5py.File(path, "r")`` fails
("file is already open for write"): open it with
``handle = h5py.File(path, "r", swmr=True, locking=False)``, which MDAnalysis
also reads: ``MDAnalysis.Universe(topology, handle, format=H5MDReader)`` (the
Reader class from ``MDAnalysis.coordinates.H5MD``; with ``format="H5MD"`` it
mistakes the iterable handle for a list of files).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py
import numpy as np
import numpy.typing as npt
from h5py import h5s

H5MD_VERSION = (1, 1)
PARTICLE_GROUP = "trajectory"
"""The particle group name: MDAnalysis derives a minimal topology only from this one."""
PROTOCOL_GROUP = "mummi_like"
COMPLETE_DATASET = f"{PROTOCOL_GROUP}/complete"
PROTOCOL_VERSION = 1
"""Stored as ``/mummi_like`` attribute ``protocol_version``; a reader refuses other versions rather than misread."""
SMALL_CHUNK_BYTES = 4096
"""Target chunk size for small per-frame data, so that a scalar per frame does not cost a chunk per frame."""

ObservableSpec = tuple[int | Sequence[int], npt.DTypeLike]
"""The shape of one frame's value and its dtype, e.g. ``((32, 32), np.uint8)`` or ``((), np.float32)``."""


def _creator_version() -> str:
    try:
        return version("mummi-like")
    except PackageNotFoundError:
        return "unknown"


def _chunk_frames(frame_nbytes: int) -> int:
    """Frames per chunk for small data: as many as fit in :data:`SMALL_CHUNK_BYTES`, at least one."""
    return max(1, SMALL_CHUNK_BYTES // max(1, frame_nbytes))


class H5MDWriter:
    """Write an H5MD trajectory with per-frame observables that readers can tail while it grows.

    Parameters
    ----------
    path
        The file to write; replaced if it exists. Its folder must exist.
    n_atoms
        Atoms per frame.
    observables
        Name -> ``(shape, dtype)`` of each per-frame observable. Every frame must
        give every one of them: a frame is complete or absent, never partial.
    periodic
        Whether frames carry a periodic box (H5MD boundary ``periodic``) or not
        (``none``). Fixed here because SWMR forbids adding datasets later.
    flush_every
        Frames between flushes. A frame becomes visible to readers (complete)
        only at a flush: 1 gives the lowest latency and loses nothing in a crash;
        larger values trade latency for fewer flushes.
    author
        Recorded in ``/h5md/author``.

    Raises
    ------
    ValueError
        If a size, an interval or an observable name is invalid.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        n_atoms: int,
        *,
        observables: Mapping[str, ObservableSpec] | None = None,
        periodic: bool = False,
        flush_every: int = 1,
        author: str = "mummi-like",
    ) -> None:
        self.path = Path(path)
        if n_atoms < 1:
            raise ValueError(f"{self.path}: n_atoms must be at least 1, got {n_atoms}")
        if flush_every < 1:
            raise ValueError(f"{self.path}: flush_every must be at least 1, got {flush_every}")
        specs: dict[str, tuple[tuple[int, ...], np.dtype[Any]]] = {}
        for name, (shape, dtype) in (observables or {}).items():
            if not name or "/" in name or name.startswith("."):
                raise ValueError(
                    f"{self.path}: observable name {name!r} must be non-empty, without '/' or a leading '.'"
                )
            specs[name] = ((shape,) if isinstance(shape, int) else tuple(shape), np.dtype(dtype))
        self.n_atoms = n_atoms
        self.periodic = periodic
        self.flush_every = flush_every
        self._specs = specs
        self._frames = 0
        self._complete = 0
        self._last_step: int | None = None

        # Nobody else knows the temporary name, and SWMR needs no lock; without one, a
        # tailer in this same process can open the file (HDF5 refuses mixed locking flags).
        temporary = self.path.with_name(f".{self.path.name}.creating")
        self._file = h5py.File(temporary, "w", libver="latest", locking=False)
        try:
            self._create_layout(author)
            self._file.swmr_mode = True
            os.replace(temporary, self.path)
        except BaseException:
            self._file.close()
            temporary.unlink(missing_ok=True)
            raise

    def _create_layout(self, author: str) -> None:
        """Create every group and dataset up front: SWMR mode forbids creating any later."""
        f = self._file
        meta = f.create_group("h5md")
        meta.attrs["version"] = np.array(H5MD_VERSION, dtype=np.int32)
        meta.create_group("author").attrs["name"] = author
        creator = meta.create_group("creator")
        creator.attrs["name"] = "mummi-like"
        creator.attrs["version"] = _creator_version()

        trajectory = f.create_group(f"particles/{PARTICLE_GROUP}")
        position = trajectory.create_group("position")
        self._step = position.create_dataset(
            "step", shape=(0,), maxshape=(None,), dtype=np.int64, chunks=(_chunk_frames(8),)
        )
        self._time = position.create_dataset(
            "time", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(_chunk_frames(8),)
        )
        self._time.attrs["unit"] = "ps"
        self._position = position.create_dataset(
            "value", shape=(0, self.n_atoms, 3), maxshape=(None, self.n_atoms, 3), dtype=np.float32,
            chunks=(1, self.n_atoms, 3),
        )
        self._position.attrs["unit"] = "nm"

        box = trajectory.create_group("box")
        box.attrs["dimension"] = 3
        box.attrs["boundary"] = 3 * ["periodic" if self.periodic else "none"]
        self._edges: h5py.Dataset | None = None
        if self.periodic:
            edges = box.create_group("edges")
            self._edges = edges.create_dataset(
                "value", shape=(0, 3, 3), maxshape=(None, 3, 3), dtype=np.float32, chunks=(_chunk_frames(36), 3, 3)
            )
            self._edges.attrs["unit"] = "nm"
            edges["step"], edges["time"] = self._step, self._time

        self._observables: dict[str, h5py.Dataset] = {}
        for name, (shape, dtype) in self._specs.items():
            group = f.create_group(f"observables/{name}")
            frame_nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
            self._observables[name] = group.create_dataset(
                "value", shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
                chunks=(_chunk_frames(frame_nbytes), *shape),
            )
            group["step"], group["time"] = self._step, self._time

        protocol = f.create_group(PROTOCOL_GROUP)
        protocol.attrs["protocol_version"] = PROTOCOL_VERSION
        self._complete_counter = protocol.create_dataset("complete", data=np.zeros(1, dtype=np.int64))

    @property
    def frames_written(self) -> int:
        """Frames written so far, complete or still waiting for the next flush."""
        return self._frames

    @property
    def frames_complete(self) -> int:
        """Frames published to readers through the completion counter."""
        return self._complete

    def write_frame(
        self,
        positions: npt.ArrayLike,
        *,
        step: int,
        time: float,
        box: npt.ArrayLike | None = None,
        observables: Mapping[str, npt.ArrayLike] | None = None,
    ) -> int:
        """Validate one frame, then append it; returns its index in the file.

        Parameters
        ----------
        positions
            ``(n_atoms, 3)`` in nm.
        step
            Integration step; never smaller than the previous frame's (H5MD).
        time
            Simulation time in ps.
        box
            Periodic box in nm: three edge lengths (a rectangular box) or a 3x3
            matrix whose rows are the box vectors. Required exactly when the
            writer is ``periodic``.
        observables
            A value for every declared observable, of its declared shape.

        Raises
        ------
        ValueError
            If anything is missing, misshapen, of an incompatible dtype, NaN or
            infinite. The message names the file, the frame and the field, and
            nothing of the frame was written, so the simulation can stop with
            every earlier frame intact.
        """
        if not self._file:
            raise ValueError(f"{self.path}: the writer is closed")
        index = self._frames
        where = f"{self.path}: frame {index} (step {step})"
        values = self._validate(where, positions, step, time, box, observables or {})

        for dataset, value in values:
            _write_row(dataset, index, value)
        self._frames = index + 1
        self._last_step = int(step)
        if self._frames - self._complete >= self.flush_every:
            self.flush()
        return index

    def _validate(
        self,
        where: str,
        positions: npt.ArrayLike,
        step: int,
        time: float,
        box: npt.ArrayLike | None,
        observables: Mapping[str, npt.ArrayLike],
    ) -> list[tuple[h5py.Dataset, np.ndarray]]:
        """Check a whole frame before any of it is written; return each dataset with its value, cast."""
        if self._last_step is not None and step < self._last_step:
            raise ValueError(f"{where}: step {step} is smaller than the previous frame's {self._last_step}")
        if not np.isfinite(time):
            raise ValueError(f"{where}: time is {time}, not a finite number; the frame was not written")
        values = [
            (self._step, np.asarray(step, dtype=np.int64)),
            (self._time, np.asarray(time, dtype=np.float64)),
            (self._position, _finite(where, "positions", positions, (self.n_atoms, 3), np.dtype(np.float32))),
        ]
        if self._edges is not None:
            if box is None:
                raise ValueError(f"{where}: the writer is periodic, so every frame needs a box")
            matrix = np.asarray(box, dtype=np.float64)
            if matrix.shape == (3,):
                matrix = np.diag(matrix)
            values.append((self._edges, _finite(where, "box", matrix, (3, 3), np.dtype(np.float32))))
        elif box is not None:
            raise ValueError(f"{where}: a box was given but the writer was created with periodic=False")

        missing = sorted(set(self._specs) - set(observables))
        unknown = sorted(set(observables) - set(self._specs))
        if missing or unknown:
            raise ValueError(
                f"{where}: observables must be exactly the declared {sorted(self._specs)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; not declared {unknown}" if unknown else "")
            )
        for name, dataset in self._observables.items():
            shape, dtype = self._specs[name]
            values.append((dataset, _finite(where, f"observable {name!r}", observables[name], shape, dtype)))
        return values

    def flush(self) -> None:
        """Publish every frame written so far: flush their data, then advance the completion counter."""
        if self._frames == self._complete:
            return
        self._file.flush()
        self._complete_counter.id.write(h5s.ALL, h5s.ALL, np.array([self._frames], dtype=np.int64))
        self._complete_counter.flush()
        self._complete = self._frames

    def close(self) -> None:
        """Publish the pending frames and close the file; closing twice is harmless."""
        if self._file:
            try:
                self.flush()
            finally:
                self._file.close()

    def __enter__(self) -> H5MDWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _write_row(dataset: h5py.Dataset, index: int, value: np.ndarray) -> None:
    """Grow ``dataset`` to ``index + 1`` frames and write ``value`` (of its dtype) as row ``index``.

    h5py's low-level calls, because ``dataset.resize`` and ``dataset[index] = value``
    cost about four times as much in selection bookkeeping as the write itself.
    """
    row = np.ascontiguousarray(value).reshape((1, *value.shape))
    dataset.id.set_extent((index + 1, *value.shape))
    space = dataset.id.get_space()
    space.select_hyperslab((index, *(0 for _ in value.shape)), row.shape)
    dataset.id.write(h5s.create_simple(row.shape), space, row)


def _finite(
    where: str, field: str, value: npt.ArrayLike, shape: tuple[int, ...], dtype: np.dtype[Any]
) -> np.ndarray:
    """``value`` as an array of ``dtype`` after checking its shape, the cast and that it is finite."""
    array = np.asarray(value)
    if array.shape != shape:
        raise ValueError(f"{where}: {field} has shape {array.shape}, expected {shape}; the frame was not written")
    if not np.can_cast(array.dtype, dtype, casting="same_kind"):
        raise ValueError(
            f"{where}: {field} has dtype {array.dtype}, which does not cast to the declared {dtype}; "
            "the frame was not written"
        )
    cast = array.astype(dtype, copy=False)
    if np.issubdtype(dtype, np.inexact):
        bad = ~np.isfinite(cast)
        if bad.any():
            first = np.argwhere(bad)[:5].tolist()
            raise ValueError(
                f"{where}: {field} contains {int(bad.sum())} NaN or infinite value(s) (first at {first}); "
                "the frame was not written"
            )
    return cast


StateFunction = Callable[[Any, Any], npt.ArrayLike]
"""An observable for :class:`H5MDReporter`: ``f(simulation, state) -> array``."""


class H5MDReporter:
    """An OpenMM reporter that streams positions, box and observables to an :class:`H5MDWriter`.

    OpenMM is imported only when a report is written, so that the framework
    imports without it. The file's layout is taken from the first report: the
    atom count (of the selection), whether the topology has a periodic box, and
    each observable's shape and dtype as its function first returns it.

    Parameters
    ----------
    path
        The H5MD file to write.
    report_interval
        Steps between frames.
    observables
        Name -> ``f(simulation, state)`` returning that frame's value, e.g. a
        contact map or an RMSD. A value with NaN or infinities raises
        :class:`ValueError` from :meth:`report`, which stops the simulation.
    selection
        Indices of the atoms to write (e.g. the protein only); all atoms when None.
    include
        Further :class:`openmm.State` data the observables need (``"velocities"``,
        ``"forces"``, ``"energy"``); positions are always included.
    enforce_periodic_box
        Whether OpenMM wraps molecules into the box; None follows the system's
        periodicity, as OpenMM's own reporters do.
    flush_every, author
        As for :class:`H5MDWriter`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        report_interval: int,
        observables: Mapping[str, StateFunction] | None = None,
        selection: Sequence[int] | None = None,
        *,
        include: Sequence[str] = (),
        enforce_periodic_box: bool | None = None,
        flush_every: int = 1,
        author: str = "mummi-like",
    ) -> None:
        if report_interval < 1:
            raise ValueError(f"{path}: report_interval must be at least 1, got {report_interval}")
        self.path = Path(path)
        self.report_interval = report_interval
        self._functions = dict(observables or {})
        self._selection = None if selection is None else np.asarray(selection, dtype=np.intp)
        self._include = ["positions", *(name for name in include if name != "positions")]
        self._enforce_periodic_box = enforce_periodic_box
        self._flush_every = flush_every
        self._author = author
        self._writer: H5MDWriter | None = None

    def describeNextReport(self, simulation: Any) -> dict[str, Any]:  # noqa: N802 (OpenMM's protocol)
        """Steps to the next report and the state data it needs, in OpenMM 8's dict form."""
        steps = self.report_interval - simulation.currentStep % self.report_interval
        return {"steps": steps, "periodic": self._enforce_periodic_box, "include": list(self._include)}

    def report(self, simulation: Any, state: Any) -> None:
        """Write the frame of ``state``; raises :class:`ValueError` on NaN (see :meth:`H5MDWriter.write_frame`)."""
        from openmm import unit

        positions = state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)
        if self._selection is not None:
            positions = positions[self._selection]
        periodic = simulation.topology.getPeriodicBoxVectors() is not None
        box = state.getPeriodicBoxVectors(asNumpy=True).value_in_unit(unit.nanometer) if periodic else None
        values = {name: np.asarray(function(simulation, state)) for name, function in self._functions.items()}
        if self._writer is None:
            self._writer = H5MDWriter(
                self.path, len(positions), periodic=periodic, flush_every=self._flush_every, author=self._author,
                observables={name: (value.shape, value.dtype) for name, value in values.items()},
            )
        self._writer.write_frame(
            positions, step=simulation.currentStep, time=state.getTime().value_in_unit(unit.picosecond),
            box=box, observables=values,
        )

    def close(self) -> None:
        """Publish pending frames and close the file (frames are already complete when ``flush_every`` is 1)."""
        if self._writer is not None:
            self._writer.close()

    def __enter__(self) -> H5MDReporter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()
