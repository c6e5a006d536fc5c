"""Plugins of a fake installed distribution, so that spec and plugin tests go through real entry points.

The tests put this folder on ``sys.path``; ``importlib.metadata`` then finds
``mummi_spec_fixtures-0.1.dist-info`` like any installed package. Most classes are
only loaded and validated against; :class:`GatherScale` also runs in the loop's
stage tests.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from mummi_like.backends.base import Backend, BackendConfig
from collections.abc import Mapping

from mummi_like.scale import DoneTask, Scale
from mummi_like.tasks import CallablePayload
from mummi_like.selection import Selector, SelectorConfig
from mummi_like.tasks import Resources, StrictModel, TaskSpec


class TinyConfig(StrictModel):
    """Config of :class:`TinyScale`."""

    argv: list[str] = Field(description="Program and arguments.")
    cores: int = Field(1, description="Cores per task.")
    resources: Resources = Field(default_factory=Resources, description="Nested model, for nested key errors.")


class TinyScale(Scale):
    """A scale that makes no tasks."""

    config_model = TinyConfig

    def tasks(self) -> list[TaskSpec]:
        """No tasks."""
        return []


class NoConfigScale(Scale):
    """A scale whose author forgot `config_model`."""

    def tasks(self) -> list[TaskSpec]:
        """No tasks."""
        return []


class GatherConfig(StrictModel):
    """Config of :class:`GatherScale`."""

    fail: bool = Field(False, description="Raise in on_upstream_done, as a broken stage plugin would.")


class GatherScale(Scale):
    """A stage: once its upstream scales are done, one task adds up their results (``campaign_tasks:total``)."""

    config_model = GatherConfig
    config: GatherConfig

    def tasks(self) -> list[TaskSpec]:
        """Nothing is known before the upstream scales finish."""
        return []

    def on_upstream_done(self, upstream: Mapping[str, list[DoneTask]]) -> list[TaskSpec]:
        """One task over every upstream value, in upstream order."""
        if self.config.fail:
            raise ValueError("the upstream results are not what this stage expects")
        values = [done.value for tasks in upstream.values() for done in tasks]
        name = self.context.name
        return [TaskSpec(id=f"{name}.total", workdir=self.workdir(f"{name}.total"),
                         payload=CallablePayload(function="campaign_tasks:total", kwargs={"values": values}))]


class FanInConfig(StrictModel):
    """Config of :class:`FanInScale`."""

    failing: list[int] = Field(default_factory=list, description="Parts that raise (campaign_tasks:part).")
    parts: int = Field(3, ge=1, description="Parts before the collecting task.")


class FanInScale(Scale):
    """Parts, then one task that runs ``after`` them however they ended and counts the ones that wrote a file."""

    config_model = FanInConfig
    config: FanInConfig

    def tasks(self) -> list[TaskSpec]:
        """The parts and the collecting task."""
        name = self.context.name
        parts = [
            TaskSpec(id=f"{name}.part{i}", workdir=self.workdir(f"{name}.part{i}"),
                     payload=CallablePayload(function="campaign_tasks:part", kwargs={"fail": i in self.config.failing}))
            for i in range(self.config.parts)
        ]
        collect = TaskSpec(id=f"{name}.collect", workdir=self.workdir(f"{name}.collect"),
                           payload=CallablePayload(function="campaign_tasks:count_parts",
                                                   kwargs={"folders": [f"../{part.id}" for part in parts]}),
                           after=[part.id for part in parts])
        return [*parts, collect]


class NotAScale:
    """Registered as a scale but not a Scale subclass."""


NOT_A_CLASS = 42


class TinyBackendConfig(BackendConfig):
    """Config of :class:`TinyBackend`."""

    workers: int = Field(2, ge=1, description="Worker processes.")


class TinyBackend(Backend):  # abstract: loaded and validated against, never started
    """A backend that is only validated against."""

    name = "tiny-backend"
    config_model = TinyBackendConfig


class PolicyConfig(StrictModel):
    """Config of :class:`TinyPolicy`."""

    ratio: float = Field(1.0, gt=0, description="Fine tasks per coarse task.")


class TinyPolicy:
    """A policy with a config model."""

    config_model = PolicyConfig


class BarePolicy:
    """A policy without a config model."""


class TinySelector(Selector):
    """A selector whose config is validated; it scores every frame alike."""

    config_model = SelectorConfig

    def _scores(self) -> np.ndarray:
        return np.zeros(len(self.pool))
