"""A long-lived process that runs Python-callable tasks one at a time.

Workers exist so that a task does not pay for a fresh interpreter and a fresh
import of numpy, torch or the user's package: a function's module is imported on
first use and stays in ``sys.modules`` for the next task. Each call runs in the
task's working directory, with its stdout and stderr (file descriptors 1 and 2,
so output of C extensions is captured too) sent to the task's files, and with
the task's environment variables set only for the duration of the call.

Messages are plain tuples over a :mod:`multiprocessing` pipe; return values
cross back as JSON text so that the coordinator never unpickles user objects.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, NamedTuple

#: Environment variables that cap library thread pools; workers default them to
#: one thread per reserved core because oversubscribed BLAS/OpenMP pools run many
#: times slower than one thread per process on a shared node.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS")


class CallRequest(NamedTuple):
    """What the coordinator asks a worker to run."""

    job_id: str
    function: str
    args: list[Any]
    kwargs: dict[str, Any]
    env: dict[str, str]
    cwd: str
    stdout: str
    stderr: str


class CallReply(NamedTuple):
    """What a worker answers once the call is over."""

    job_id: str
    ok: bool
    value_json: str | None
    exception_types: list[str]
    message: str
    started: float
    ended: float
    wrote_stdout: bool
    wrote_stderr: bool


def resolve(function: str) -> Callable[..., Any]:
    """Import ``package.module:qualified.name`` and return the object it names."""
    module_name, _, qualname = function.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{function!r} names a {type(target).__name__}, not a callable")
    return target


def _exception_types(error: BaseException) -> list[str]:
    """Qualified names of the exception's classes, most specific first, for retry matching."""
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in type(error).__mro__ if cls is not object]


class Capture:
    """Sends file descriptors 1 and 2 to per-worker scratch files during a call.

    Creating two files per call would cost more than a no-op task itself, so a
    worker reuses its scratch files, truncated before each call, and moves one
    into the task's working directory only when the call wrote to it: a quiet
    callable leaves no ``stdout.txt`` or ``stderr.txt`` behind.
    """

    def __init__(self, scratch: str) -> None:
        self.paths = (os.path.join(scratch, f"{os.getpid()}.stdout"), os.path.join(scratch, f"{os.getpid()}.stderr"))
        self.fds = [self._open(path) for path in self.paths]
        self.saved: list[int] = []

    @staticmethod
    def _open(path: str) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def __enter__(self) -> Capture:
        sys.stdout.flush()
        sys.stderr.flush()
        self.saved = [os.dup(1), os.dup(2)]
        for stream, fd in enumerate(self.fds, start=1):
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.dup2(fd, stream)
        return self

    def __exit__(self, *_exc: object) -> None:
        sys.stdout.flush()
        sys.stderr.flush()
        for stream, saved in enumerate(self.saved, start=1):
            os.dup2(saved, stream)
            os.close(saved)

    def close(self) -> None:
        """Remove the scratch files when the worker stops."""
        for fd, path in zip(self.fds, self.paths):
            os.close(fd)
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

    def keep(self, destinations: tuple[str, str]) -> tuple[bool, bool]:
        """Move what the call wrote to ``destinations``; say which streams had output."""
        kept = []
        for index, destination in enumerate(destinations):
            wrote = os.fstat(self.fds[index]).st_size > 0
            if wrote:
                os.replace(self.paths[index], destination)
                os.close(self.fds[index])
                self.fds[index] = self._open(self.paths[index])
            kept.append(wrote)
        return kept[0], kept[1]


def _enter(directory: str) -> None:
    """Make the task's working directory (its parents usually exist already) and go there."""
    try:
        os.mkdir(directory)
    except FileExistsError:
        pass
    except FileNotFoundError:
        os.makedirs(directory, exist_ok=True)
    os.chdir(directory)


def run_call(request: CallRequest, capture: Capture) -> CallReply:
    """Run one call with its directory, output files and environment, and describe the outcome."""
    old_env = {name: os.environ.get(name) for name in request.env}
    os.environ.update(request.env)
    home = os.getcwd()
    with capture:
        started = time.time()
        try:
            _enter(request.cwd)
            value = resolve(request.function)(*request.args, **request.kwargs)
            try:
                value_json = json.dumps(value)
            except (TypeError, ValueError) as error:
                raise TypeError(
                    f"{request.function} returned a {type(value).__name__}, which is not JSON-serializable; "
                    "return numbers, strings, lists or dicts (write large results to files in the working directory)"
                ) from error
            outcome: tuple[bool, str | None, list[str], str] = (True, value_json, [], "")
        except BaseException as error:  # noqa: BLE001 - a task's failure of any kind is reported, not raised
            traceback.print_exc()
            message = "".join(traceback.format_exception_only(error)).strip()
            outcome = (False, None, _exception_types(error), message)
        ended = time.time()
    os.chdir(home)
    for name, previous in old_env.items():
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous
    wrote = capture.keep((request.stdout, request.stderr)) if os.path.isdir(request.cwd) else (False, False)
    return CallReply(request.job_id, *outcome, started, ended, *wrote)


def _exit_with_parent(parent_pid: int) -> None:
    """Stop the worker when the coordinator is gone, even in the middle of a long call."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)


def serve(conn: Connection, scratch: str, python_path: list[str], parent_pid: int) -> None:
    """Serve call requests until the pipe closes or a ``None`` request arrives."""
    sys.path[:0] = python_path
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    capture = Capture(scratch)
    try:
        while True:
            try:
                request = conn.recv()
            except (EOFError, OSError):
                return
            if request is None:
                return
            conn.send(tuple(run_call(CallRequest(*request), capture)))
    finally:
        capture.close()


if __name__ == "__main__":
    # argv: socket file descriptor, coordinator pid, scratch folder, then folders to put on sys.path.
    serve(Connection(int(sys.argv[1])), sys.argv[3], sys.argv[4:], int(sys.argv[2]))
