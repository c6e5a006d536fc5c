"""Streams: simulations write H5MD frames while they run; the coordinator tails them.

:class:`H5MDWriter` (and the OpenMM :class:`H5MDReporter` built on it) writes
H5MD files in SWMR mode with a completion counter; :class:`StreamTailer`
follows many such files and yields each complete frame exactly once;
:func:`read_frame` reads one chosen frame whole.
"""

from mummi_like.streams.h5md import H5MDReporter, H5MDWriter
from mummi_like.streams.tailer import Frame, StreamTailer, read_frame

__all__ = ["Frame", "H5MDReporter", "H5MDWriter", "StreamTailer", "read_frame"]
