"""A read-only view of a campaign: what a plugin's report hook reads.

:meth:`Scale.report_sections <mummi_like.scale.Scale.report_sections>` and
:meth:`Policy.report_sections <mummi_like.campaign.policy.Policy.report_sections>`
get a :class:`CampaignView` rather than the store: a hook may run while a
coordinator writes (``mummi-like report`` on a live campaign), so it must not
be able to write, and it should not depend on how the store keeps its rows. The
view gives what a hook needs to draw a stage's science: the values of the done
tasks of a scale or stage with their working directories, a coupling's
candidate frames, the event log, and the campaign directory.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import NamedTuple

from mummi_like.api import EventRow
from mummi_like.scale import DoneTask
from mummi_like.store import Store
from mummi_like.tasks import TaskState

STAGE_LABEL = "stage"
"""The task label that names a task's stage within its scale (``dock``, ``train``, ``md``, ...)."""


class Candidate(NamedTuple):
    """A frame a coupling's selector holds: waiting in its pool, or promoted already."""

    frame_id: str
    """The frame's id (its stream file and frame index)."""
    score: float
    """The selector's last score of the frame; higher is more worth promoting."""
    promoted: bool
    """Whether the frame was promoted to the coupling's target scale."""


class CampaignView:
    """What a campaign's store holds, read-only, as report hooks read it.

    Build one over a store opened read-only (``mummi-like report`` does), or
    open one on a campaign directory with :meth:`open`, e.g. in a plugin's
    test of its hook. Reads see what the coordinator had committed when the
    store was opened or last read.

    Raises
    ------
    ValueError
        When ``store`` is writable: a view must not be able to change the campaign.
    """

    def __init__(self, store: Store) -> None:
        if not store.readonly:
            raise ValueError(
                f"a CampaignView needs a store opened read-only; {store.path} is writable "
                "(use CampaignView.open(directory), or Store.open(directory, readonly=True))"
            )
        self._store = store
        self.directory = store.path.parent.resolve()
        """The campaign directory (absolute); task working directories are below it."""

    @classmethod
    @contextmanager
    def open(cls, directory: str | os.PathLike[str]) -> Iterator[CampaignView]:
        """A view of the campaign in ``directory``, its store open read-only until the block ends.

        Raises
        ------
        StoreError
            When ``directory`` holds no campaign store, or one that cannot be read.
        """
        with Store.open(Path(directory), readonly=True) as store:
            yield cls(store)

    def done(self, scale: str | None = None, stage: str | None = None) -> list[DoneTask]:
        """The tasks that ended done, in the order the campaign made them, with their values and working directories.

        Parameters
        ----------
        scale
            Only this scale's tasks (its name in the spec); all scales when ``None``.
        stage
            Only tasks whose ``stage`` label (:data:`STAGE_LABEL`) is this; any when ``None``.
        """
        records = self._store.tasks(states=[TaskState.DONE], scale=scale)
        return [DoneTask(record.spec, record.value, self.directory / record.spec.workdir) for record in records
                if stage is None or record.spec.labels.get(STAGE_LABEL) == stage]

    def candidates(self, coupling: str) -> list[Candidate]:
        """The frames the selector of ``coupling`` holds, waiting and promoted, in the order they arrived."""
        return [Candidate(row.id, row.score, row.selected) for row in self._store.load_candidates(coupling)]

    def events(self, kind: str | None = None) -> list[EventRow]:
        """The campaign's event log, oldest first, optionally of one kind (see :mod:`mummi_like.events`)."""
        return [EventRow(seq, time, event_kind, data) for seq, time, event_kind, data in self._store.events(kind=kind)]
