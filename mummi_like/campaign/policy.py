"""Policies decide which ready tasks the campaign submits now.

The loop owns readiness (dependencies met, retries due); a policy only chooses,
among ready tasks, what to hand to the backend this tick. Pipelines register
their own policy class under the ``mummi_like.pipelines`` entry-point group (a
learned resource split between coarse and fine scales, say); the default,
``dag``, runs every ready task subject to each scale's ``max_in_flight`` and
to fixed shares of the backend's cores.
"""

from __future__ import annotations

import abc
import math
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, NamedTuple

from pydantic import Field, field_validator

from mummi_like.backends.base import Capacity
from mummi_like.tasks import StrictModel, TaskSpec

if TYPE_CHECKING:
    from mummi_like.report import ReportSection
    from mummi_like.view import CampaignView


class Load(NamedTuple):
    """What one scale holds on the backend now (queued or running)."""

    tasks: int = 0
    cores: int = 0


class NoConfig(StrictModel):
    """A policy that takes no settings."""


class Policy(abc.ABC):
    """Chooses which ready tasks to submit."""

    config_model: ClassVar[type[StrictModel]] = NoConfig

    def __init__(self, config: StrictModel, max_in_flight: Mapping[str, int | None]) -> None:
        self.config = config
        self.max_in_flight = dict(max_in_flight)
        self.capacity: Capacity | None = None

    def bind(self, capacity: Capacity) -> None:
        """Learn the backend's capacity once it has started (before the first :meth:`admit`)."""
        self.capacity = capacity

    @abc.abstractmethod
    def admit(self, ready: Mapping[str, deque[TaskSpec]], in_flight: Mapping[str, Load], limit: int) -> list[TaskSpec]:
        """Pop and return at most ``limit`` tasks from the per-scale ``ready`` queues.

        ``in_flight`` says, per scale, what the backend holds now.
        """

    @classmethod
    def report_sections(cls, view: CampaignView) -> list[ReportSection]:
        """The campaign-wide science for the report (``mummi-like report``); none by default.

        Each scale's hook (:meth:`Scale.report_sections <mummi_like.scale.Scale.report_sections>`)
        shows its own stage; what spans stages (a funnel from the library to
        the finalists, the final ranking) belongs to the pipeline, whose policy
        is the one plugin of a campaign that knows them all. Called once, after
        the scales' hooks, whenever a report is written, while the campaign
        runs too, with a read-only :class:`~mummi_like.view.CampaignView`; a
        classmethod, since no policy object exists when a report reads a
        campaign. A hook that raises has its error shown in the report
        instead of stopping it; an empty list adds nothing.
        """
        return []


class DagConfig(StrictModel):
    """Settings of the ``dag`` policy."""

    shares: dict[str, float] = Field(
        default_factory=dict,
        description="Fraction of the backend's cores each named scale may hold at once (queued or running), "
        "e.g. {coarse: 0.75, fine: 0.25}; scales not named are not capped. A scale whose single task needs "
        "more than its share still runs that task alone.",
    )

    @field_validator("shares")
    @classmethod
    def _fractions(cls, shares: dict[str, float]) -> dict[str, float]:
        bad = {scale: share for scale, share in shares.items() if not 0 < share <= 1}
        if bad:
            raise ValueError(f"shares must lie in (0, 1]: {bad}")
        return shares


class DependencyPolicy(Policy):
    """Run every task once its dependencies are done, within each scale's max_in_flight and core share."""

    config_model: ClassVar[type[StrictModel]] = DagConfig
    config: DagConfig

    def __init__(self, config: StrictModel, max_in_flight: Mapping[str, int | None]) -> None:
        super().__init__(config, max_in_flight)
        self.shares = dict(self.config.shares)

    def set_shares(self, shares: Mapping[str, float]) -> None:
        """Reallocate the cores between scales while the campaign runs (an ML-out controller's lever)."""
        self.shares = dict(DagConfig(shares=dict(shares)).shares)

    def _core_cap(self, scale: str) -> int | None:
        share = self.shares.get(scale)
        if share is None or self.capacity is None:
            return None
        return math.floor(share * self.capacity.nodes * self.capacity.cores_per_node)

    def admit(self, ready: Mapping[str, deque[TaskSpec]], in_flight: Mapping[str, Load], limit: int) -> list[TaskSpec]:
        """Take tasks from the scales in turn, so one large scale cannot starve a small one."""
        admitted: list[TaskSpec] = []
        load = {scale: in_flight.get(scale, Load()) for scale in ready}
        while len(admitted) < limit:
            progressed = False
            for scale, queue in ready.items():
                taken = 0
                while queue and len(admitted) < limit and taken < 256 and self._fits(scale, queue[0], load[scale]):
                    task = queue.popleft()
                    admitted.append(task)
                    load[scale] = Load(load[scale].tasks + 1, load[scale].cores + task.resources.cores)
                    taken += 1
                progressed = progressed or taken > 0
            if not progressed:
                break
        return admitted

    def _fits(self, scale: str, task: TaskSpec, load: Load) -> bool:
        cap = self.max_in_flight.get(scale)
        if cap is not None and load.tasks >= cap:
            return False
        cores = self._core_cap(scale)
        return cores is None or load.cores + task.resources.cores <= cores or load.tasks == 0
