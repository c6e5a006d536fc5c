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


def _redirect(path: str, fd: int) -> int:
    """Point ``fd`` at ``path`` and return a duplicate of the old target to restore later."""
    saved = os.dup(fd)
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(target, fd)
    os.close(target)
    return saved


def _restore(saved: int, fd: int) -> None:
    os.dup2(saved, fd)
    os.close(saved)


def run_call(request: CallRequest) -> CallReply:
    """Run one call with its directory, output files and environment, and describe the outcome."""
    old_env = {name: os.environ.get(name) for name in request.env}
    os.environ.update(request.env)
    home = os.getcwd()
    os.makedirs(request.cwd, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved_out = _redirect(request.stdout, 1)
    saved_err = _redirect(request.stderr, 2)
    started = time.time()
    try:
        os.chdir(request.cwd)
        value = resolve(request.function)(*request.args, **request.kwargs)
        try:
            value_json = json.dumps(value)
        except (TypeError, ValueError) as error:
            raise TypeError(
                f"{request.function} returned a {type(value).__name__}, which is not JSON-serializable; "
                "return numbers, strings, lists or dicts (write large results to files in the working directory)"
            ) from error
        reply = CallReply(request.job_id, True, value_json, [], "", started, time.time())
    except BaseException as error:  # noqa: BLE001 - a task's failure of any kind is reported, not raised
        traceback.print_exc()
        message = "".join(traceback.format_exception_only(error)).strip()
        reply = CallReply(request.job_id, False, None, _exception_types(error), message, started, time.time())
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        _restore(saved_out, 1)
        _restore(saved_err, 2)
        os.chdir(home)
        for name, value in old_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return reply


def _exit_with_parent(parent_pid: int) -> None:
    """Stop the worker when the coordinator is gone, even in the middle of a long call."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)


def serve(conn: Connection, python_path: list[str], parent_pid: int) -> None:
    """Serve call requests until the pipe closes or a ``None`` request arrives."""
    sys.path[:0] = python_path
    for name in THREAD_VARIABLES:
        os.environ.setdefault(name, "1")
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None:
            return
        conn.send(tuple(run_call(CallRequest(*request))))


if __name__ == "__main__":
    # argv: socket file descriptor, coordinator pid, then folders to put on sys.path.
    serve(Connection(int(sys.argv[1])), sys.argv[3:], int(sys.argv[2]))
