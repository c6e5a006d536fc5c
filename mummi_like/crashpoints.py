"""Named crash points: a test can kill the coordinator at an exact instant, such as mid-commit.

A ``kill -9`` sent from outside at a random time almost never lands inside the
few hundred microseconds of a commit, or between handing jobs to the backend
and recording that it holds them, yet those are the instants where a careless
design loses or duplicates work. Each such instant in the coordinator calls
:func:`crash_point` with a site name. When the environment variable
:data:`CRASH_VARIABLE` is ``"<site>:<n>"``, the coordinator sends itself
``SIGKILL`` the ``n``-th time it reaches ``<site>``, exactly as a node failure
would stop it there: no handler, no cleanup. Several sites may be armed at once,
separated by commas; the first to reach its count kills. When the variable is
unset (every real run) a crash point costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal

CRASH_VARIABLE = "MUMMI_LIKE_CRASH_AT"

SITES = {
    "store.commit": "inside a store flush: every row written, the transaction not yet committed",
    "loop.submit": "jobs handed to the backend, their submission not yet recorded",
    "coupling.ingest": "frames fed to a selector and its pool committed, the stream positions not yet saved",
    "stage.open": "a stage's tasks made and buffered with its stage-opened event, not yet committed",
}
"""Every crash point of the coordinator, and the instant it stands for."""


def _parse(value: str | None) -> dict[str, int]:
    """The hit count of each site a :data:`CRASH_VARIABLE` value arms (``"<site>:<n>[,<site>:<n>...]"``).

    Raises
    ------
    ValueError
        For an item that is not ``<site>:<n>`` with a known site and ``n >= 1``,
        so that a mistyped test setting fails loudly instead of never crashing.
    """
    targets = {}
    for item in (value or "").split(","):
        if not item:
            continue
        site, _, count = item.rpartition(":")
        if site not in SITES or not count.isdigit() or int(count) < 1:
            raise ValueError(
                f"{CRASH_VARIABLE}={value!r}: {item!r} is not '<site>:<n>' with n >= 1 and a site among "
                f"{', '.join(sorted(SITES))}"
            )
        targets[site] = int(count)
    return targets


_targets = _parse(os.environ.get(CRASH_VARIABLE))
_hits: dict[str, int] = dict.fromkeys(_targets, 0)


def crash_point(site: str) -> None:
    """Kill this process with ``SIGKILL`` if this is the hit of ``site`` that :data:`CRASH_VARIABLE` names."""
    if site not in _targets:
        return
    _hits[site] += 1
    if _hits[site] == _targets[site]:
        os.write(2, f"{CRASH_VARIABLE}: crash point {site} reached {_hits[site]} times, killing this process\n".encode())
        os.kill(os.getpid(), signal.SIGKILL)
