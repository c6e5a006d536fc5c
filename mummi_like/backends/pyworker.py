"""A long-lived process that runs Python-callable tasks one at a time.

Workers exist so that a task does not pay for a fresh interpreter and a fresh
import of numpy, torch or the user's package: a function's module is imported on
first use and stays in ``sys.modules`` for the next task. Each call runs in the
task's working directory, with its stdout and stderr (file descriptors 1 and 2,
so output of C extensions is captured too) sent to the task's files, and with
the task's environment variables set only for the duration of the call.

Messages are plain tuples over a :class:`~mummi_like.backends.channel.Channel`; return values
cross back as JSON text so that the coordinator never unpickles user objects.
"""

from __future__ import annotations

import faulthandler
import importlib
import json
import os
import select
import signal
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, NamedTuple, cast

from mummi_like.backends.channel import Channel
from mummi_like.backends.environment import THREAD_VARIABLES

#: First item of the message that cancels a call handed over ahead of time.
CANCEL = "cancel"
#: Message of the reply for a call canceled before it started.
SKIPPED = "canceled before it started"


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
    return cast(Callable[..., Any], target)


def _exception_types(error: BaseException) -> list[str]:
    """Qualified names of the exception's classes, most specific first, for retry matching."""
    return [f"{cls.__module__}.{cls.__qualname__}" for cls in type(error).__mro__ if cls is not object]


class Capture:
    """Keeps file descriptors 1 and 2 of the worker on per-worker scratch files.

    Creating two files per call would cost more than a no-op task itself, so the
    worker's own stdout and stderr point at two scratch files for its whole life.
    After a call that wrote to one, that file is moved into the task's working
    directory and a fresh, empty one takes its place; a quiet callable leaves no
    ``stdout.txt`` or ``stderr.txt`` behind and costs two ``fstat`` calls.
    """

    STREAMS = (1, 2)

    def __init__(self, scratch: str) -> None:
        self.paths = tuple(os.path.join(scratch, f"{os.getpid()}.{name}") for name in ("stdout", "stderr"))
        for path, stream in zip(self.paths, self.STREAMS):
            self._attach(path, stream)

    @staticmethod
    def _attach(path: str, stream: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(fd, stream)
        os.close(fd)

    def keep(self, destinations: tuple[str, str]) -> tuple[bool, bool]:
        """Move what the call wrote to ``destinations``; say which streams had output."""
        sys.stdout.flush()
        sys.stderr.flush()
        kept = []
        for path, stream, destination in zip(self.paths, self.STREAMS, destinations):
            wrote = os.fstat(stream).st_size > 0
            if wrote:
                os.replace(path, destination)
                self._attach(path, stream)
            kept.append(wrote)
        return kept[0], kept[1]

    def discard(self) -> None:
        """Drop what the call wrote (its directory could not be made: the reply carries the error)."""
        sys.stdout.flush()
        sys.stderr.flush()
        for stream in self.STREAMS:
            os.ftruncate(stream, 0)
            os.lseek(stream, 0, os.SEEK_SET)

    def close(self) -> None:
        """Remove the scratch files when the worker stops."""
        for path in self.paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


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
    """Run one call in its directory with its environment, and describe the outcome.

    The worker stays in the task's directory afterwards: the next call changes to
    its own, so changing back would be wasted work.
    """
    changed = {name: value for name, value in request.env.items() if os.environ.get(name) != value}
    previous = {name: os.environ.get(name) for name in changed}
    os.environ.update(changed)
    entered = False
    started = time.time()
    try:
        _enter(request.cwd)
        entered = True
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
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if entered:
        wrote = capture.keep((request.stdout, request.stderr))
    else:
        capture.discard()
        wrote = (False, False)
    return CallReply(request.job_id, *outcome, started, ended, *wrote)


def _exit_with_parent(parent_pid: int) -> None:
    """Stop the worker when the coordinator is gone, even in the middle of a long call."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            os._exit(1)


class Inbox:
    """The worker's side of the socket: call requests in order, cancels applied before a call starts.

    The coordinator may hand a busy worker its next call ahead of time; if that
    call is canceled meanwhile, a ``(CANCEL, job_id)`` message follows it. Before
    starting a call the worker reads whatever has already arrived, so a cancel
    sent before the call begins is honoured and the call never runs.
    """

    def __init__(self, conn: Channel) -> None:
        self.conn = conn
        self.queue: deque[Any] = deque()
        self.canceled: set[str] = set()
        self.poller = select.poll()
        self.poller.register(conn.fileno(), select.POLLIN)

    def _take(self, message: Any) -> None:
        if isinstance(message, tuple) and message[0] == CANCEL:
            self.canceled.add(message[1])
        else:
            self.queue.append(message)

    def next(self) -> Any:
        """The next request, ``None`` to stop; raises EOFError when the coordinator is gone."""
        while not self.queue:
            self._take(self.conn.recv())
        while self.poller.poll(0):
            self._take(self.conn.recv())
        return self.queue.popleft()


def _enable_crash_stacks() -> None:
    """Print the Python stack when a call crashes the worker (SIGSEGV, SIGBUS, SIGFPE, SIGILL), into its stderr.

    :mod:`faulthandler` also takes SIGABRT, with a C handler that
    :func:`signal.getsignal` reports as ``None``; libraries that save and restore
    handlers around a critical section (openmmtools' ``mpiplus.delay_termination``
    does, for SIGINT, SIGTERM and SIGABRT) then fail restoring ``None``. SIGABRT
    therefore goes back to its default, which still ends the worker with the signal.
    """
    faulthandler.enable()
    signal.signal(signal.SIGABRT, signal.SIG_DFL)


def serve(conn: Channel, scratch: str, python_path: list[str], parent_pid: int) -> None:
    """Serve call requests until the socket closes or a ``None`` request arrives."""
    _enable_crash_stacks()
    sys.path[:0] = python_path
    for name in THREAD_VARIABLES:  # one thread per pool until a call sets its task's caps
        os.environ.setdefault(name, "1")
    threading.Thread(target=_exit_with_parent, args=(parent_pid,), daemon=True).start()
    capture = Capture(scratch)
    inbox = Inbox(conn)
    try:
        while True:
            try:
                request = inbox.next()
            except (EOFError, OSError):
                return
            if request is None:
                return
            call = CallRequest(*request)
            if call.job_id in inbox.canceled:
                inbox.canceled.discard(call.job_id)
                now = time.time()
                conn.send(tuple(CallReply(call.job_id, False, None, [], SKIPPED, now, now, False, False)))
                continue
            conn.send(tuple(run_call(call, capture)))
    finally:
        capture.close()


if __name__ == "__main__":
    # argv: socket file descriptor, coordinator pid, scratch folder, then folders to put on sys.path.
    serve(Channel(int(sys.argv[1])), sys.argv[3], sys.argv[4:], int(sys.argv[2]))
