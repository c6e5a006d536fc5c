"""Policies decide which ready tasks the campaign submits now.

The loop owns readiness (dependencies met, retries due); a policy only chooses,
among ready tasks, what to hand to the backend this tick. Pipelines register
their own policy class under the ``mummi_like.pipelines`` entry-point group (a
learned resource split between coarse and fine scales, say); the default,
``dag``, runs every ready task subject to each scale's ``max_in_flight``.
"""

from __future__ import annotations

import abc
from collections import deque
from collections.abc import Mapping
from typing import ClassVar

from mummi_like.tasks import StrictModel, TaskSpec


class NoConfig(StrictModel):
    """A policy that takes no settings."""


class Policy(abc.ABC):
    """Chooses which ready tasks to submit."""

    config_model: ClassVar[type[StrictModel]] = NoConfig

    def __init__(self, config: StrictModel, max_in_flight: Mapping[str, int | None]) -> None:
        self.config = config
        self.max_in_flight = dict(max_in_flight)

    @abc.abstractmethod
    def admit(self, ready: Mapping[str, deque[TaskSpec]], in_flight: Mapping[str, int], limit: int) -> list[TaskSpec]:
        """Pop and return at most ``limit`` tasks from the per-scale ``ready`` queues.

        ``in_flight`` counts, per scale, the tasks a backend holds now.
        """


class DependencyPolicy(Policy):
    """Run every task once its dependencies are done, within each scale's max_in_flight (Maestro-like DAG)."""

    def admit(self, ready: Mapping[str, deque[TaskSpec]], in_flight: Mapping[str, int], limit: int) -> list[TaskSpec]:
        """Take tasks from the scales in turn, so one large scale cannot starve a small one."""
        admitted: list[TaskSpec] = []
        room = {
            scale: (limit if cap is None else max(0, cap - in_flight.get(scale, 0)))
            for scale, cap in ((scale, self.max_in_flight.get(scale)) for scale in ready)
        }
        while len(admitted) < limit:
            progressed = False
            for scale, queue in ready.items():
                if queue and room[scale] > 0 and len(admitted) < limit:
                    take = min(len(queue), room[scale], limit - len(admitted), 256)
                    admitted.extend(queue.popleft() for _ in range(take))
                    room[scale] -= take
                    progressed = True
            if not progressed:
                break
        return admitted
