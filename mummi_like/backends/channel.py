"""Length-prefixed pickled messages over one end of a socket pair.

What :mod:`multiprocessing.connection` does, minus its import cost (about 20 ms
of every worker's start-up) and its per-message machinery: a 4-byte big-endian
length, then the pickle. Only plain tuples, strings, numbers, lists and dicts
cross it, never user objects: a callable's return value crosses as JSON text.
"""

from __future__ import annotations

import os
import pickle
import struct
from typing import Any

_HEADER = struct.Struct("!I")


class Channel:
    """A blocking message pipe on a socket's file descriptor, which it owns."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.closed = False

    def fileno(self) -> int:
        return self.fd

    @staticmethod
    def encode(message: Any) -> bytes:
        """The bytes :meth:`send_encoded` writes for ``message``."""
        data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
        return _HEADER.pack(len(data)) + data

    def send(self, message: Any) -> None:
        self.send_encoded(self.encode(message))

    def send_encoded(self, frame: bytes) -> None:
        view = memoryview(frame)
        while view:
            view = view[os.write(self.fd, view):]

    def recv(self) -> Any:
        """The next message; ``EOFError`` when the other end has closed."""
        (size,) = _HEADER.unpack(self._read(_HEADER.size))
        return pickle.loads(self._read(size))

    def _read(self, size: int) -> bytes:
        chunks = []
        while size:
            chunk = os.read(self.fd, size)
            if not chunk:
                raise EOFError("the other end of the channel closed")
            chunks.append(chunk)
            size -= len(chunk)
        return b"".join(chunks)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)
