"""Shared test setup: a real Flux instance for the tests marked ``flux``, or a skip that says how to get one.

Flux is not a Python dependency of the project: it is a resource manager built
from source (or installed by a site). The tests find its ``flux`` command on
``PATH`` and its Python bindings through ``PYTHONPATH``, as a campaign does.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

FLUX_MISSING = (
    "no `flux` command on PATH: build flux-core (https://github.com/flux-framework/flux-core, tag v0.88.0) and put "
    "its bin/ on PATH and its python bindings on PYTHONPATH to run these tests"
)
#: Seconds a test instance may take to come up; two brokers on a busy 2-core machine take about five.
FLUX_START_TIMEOUT = 60.0


def soak_factor() -> int:
    """How many times longer the chaos and fuzz tests run: ``MUMMI_LIKE_SOAK`` (default 1, what CI runs).

    ``MUMMI_LIKE_SOAK=10 make test`` kills the coordinator ten times as often and
    fuzzes ten times as many specs; see bench/README.md's reliability section.
    """
    value = os.environ.get("MUMMI_LIKE_SOAK", "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"MUMMI_LIKE_SOAK={value!r} must be a whole number >= 1 (how many times longer to soak)")
    return int(value)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``flux`` where there is no ``flux`` command, saying how to run them."""
    if shutil.which("flux") is not None:
        return
    skip = pytest.mark.skip(reason=FLUX_MISSING)
    for item in items:
        if "flux" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def flux_instance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A two-broker Flux test instance for the whole session; yields its URI, also set as ``FLUX_URI``."""
    with running_flux_instance(tmp_path_factory.mktemp("flux")) as (_, uri):
        previous = os.environ.get("FLUX_URI")
        os.environ["FLUX_URI"] = uri
        try:
            yield uri
        finally:
            if previous is None:
                del os.environ["FLUX_URI"]
            else:
                os.environ["FLUX_URI"] = previous


@contextlib.contextmanager
def running_flux_instance(folder: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start a two-broker Flux test instance; yield ``flux start``'s process and the instance's URI; stop it after.

    The instance runs a shell that publishes ``$FLUX_URI`` into ``folder`` and
    waits as long as its broker lives; it is started in its own session, so
    that teardown can stop the brokers by signalling that process group (they
    stop what they run). A test may kill the instance itself (an instance
    restart): teardown then finds the group gone, and the shell, which Flux
    runs in a process group of its own, ends within a second of its broker.
    """
    uri_file = folder / "uri"
    publish = ('echo "$FLUX_URI" > "$0.partial" && mv "$0.partial" "$0" && '
               'while kill -0 "$PPID" 2>/dev/null; do sleep 1; done')
    with open(folder / "broker.log", "wb") as log:
        process = subprocess.Popen(["flux", "start", "--test-size=2", "sh", "-c", publish, str(uri_file)],
                                   stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + FLUX_START_TIMEOUT
        while not uri_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"`flux start` did not come up: {(folder / 'broker.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield process, uri_file.read_text().strip()
    finally:
        stop_process_group(process)


def stop_process_group(process: subprocess.Popen[bytes], grace: float = 20.0) -> None:
    """SIGTERM the group led by ``process``, wait until all of it is gone, SIGKILL what outlives ``grace``.

    Brokers shut down after ``flux start`` itself has exited, so waiting for
    that one process is not enough to leave nothing behind.
    """
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        process.poll()
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()
