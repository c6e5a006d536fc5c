"""Run one Python-callable task as a Flux job: ``python -m mummi_like.backends.flux_runner REQUEST.json``.

A Flux job is a process, so the ``flux`` backend cannot hand a call to a
long-lived worker as the ``local`` backend does; this module is the process. It
reads the request the backend wrote into the task's folder (``function``,
``args``, ``kwargs``, ``python_path``, ``task``), runs the call exactly as a
local worker does (:func:`mummi_like.backends.pyworker.run_call`: same import
rule, same JSON check of the value, same exception-type names for retry rules),
and writes the outcome to ``result.json`` in its working directory (the job's
``cwd``, the task's folder): ``ok``, ``value``, ``exception_types``,
``message``, and ``started``/``ended``, the wall-clock times of the call alone.

It exits 0 whenever ``result.json`` was written, also when the function raised:
the failure is in the file. A non-zero exit means the runner itself broke (an
unreadable request, an unwritable folder) or the call never returned (it called
``os._exit``, or was killed); the backend then reports the exit status and the
end of ``stderr.txt``.

The job's environment (thread caps, ``MUMMI_LIKE_TASK``, the payload's ``env``)
is set by the backend in the jobspec, and the job shell already points file
descriptors 1 and 2 at the task's ``stdout.txt`` and ``stderr.txt``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from mummi_like.backends import pyworker
from mummi_like.files import atomic_write_text

RESULT_FILE = "result.json"


class ShellOutput(pyworker.Capture):
    """The task's output files as the job shell opened them, in the role of a worker's :class:`~.pyworker.Capture`.

    A worker moves per-call scratch files into the task's folder; here file
    descriptors 1 and 2 already are the task's files, so nothing moves and
    :meth:`__init__` deliberately does not redirect them to scratch files.
    """

    def __init__(self) -> None:
        """Take fds 1 and 2 as they are (no scratch files)."""

    def keep(self, destinations: tuple[str, str]) -> tuple[bool, bool]:
        """Flush Python's buffers; say which stream has output (``destinations`` are the files already)."""
        sys.stdout.flush()
        sys.stderr.flush()
        return os.fstat(1).st_size > 0, os.fstat(2).st_size > 0

    def discard(self) -> None:
        """Keep what was written: in a job's own files it may explain why its folder could not be entered."""
        sys.stdout.flush()
        sys.stderr.flush()


def main(request_path: str) -> int:
    """Run the call described in ``request_path`` and write ``result.json`` into the working directory."""
    request = json.loads(Path(request_path).read_text())
    sys.path[:0] = request["python_path"]
    folder = os.getcwd()
    call = pyworker.CallRequest(request["task"], request["function"], request["args"], request["kwargs"],
                                env={}, cwd=folder, stdout="", stderr="")
    reply = pyworker.run_call(call, ShellOutput())
    outcome = {"ok": reply.ok, "value": json.loads(reply.value_json or "null"),
               "exception_types": reply.exception_types, "message": reply.message,
               "started": reply.started, "ended": reply.ended}
    atomic_write_text(os.path.join(folder, RESULT_FILE), json.dumps(outcome))  # the backend never reads half a file
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.executable} -m mummi_like.backends.flux_runner REQUEST.json")
    sys.exit(main(sys.argv[1]))
