"""Small functions that the local backend's tests run as Python-callable tasks.

The tests name them ``tasks_for_tests:<function>`` and pass this folder to the
backend's ``python_path`` so that the workers can import this module.
"""

from __future__ import annotations

import os
import time


def add(a: int, b: int) -> int:
    return a + b


def shout(text: str) -> str:
    print(f"printed: {text}")
    return text.upper()


def fail(message: str) -> None:
    raise ValueError(message)


def not_json() -> set[int]:
    return {1, 2, 3}


def die(code: int) -> None:
    os._exit(code)


def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def getenv(name: str) -> str | None:
    return os.environ.get(name)


def pid() -> int:
    return os.getpid()


def touch_after(path: str, seconds: float) -> float:
    """Sleep, then create ``path``: the file tells whether the call ran to its end."""
    time.sleep(seconds)
    with open(path, "w") as handle:
        handle.write(str(os.getpid()))
    return time.time()


def save_and_restore_termination_handlers() -> list[str]:
    """What openmmtools' ``mpiplus.delay_termination`` does around a write: save, replace and restore handlers."""
    import signal

    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGABRT)}
    for signum in saved:
        signal.signal(signum, lambda *_: None)
    for signum, handler in saved.items():
        signal.signal(signum, handler)
    return sorted(signal.Signals(signum).name for signum in saved)
