"""The interface a scale plugin implements.

A scale turns its validated config into tasks. It is application code: it lives
in its own package (``scales/`` here, or a user's) and registers itself under the
``mummi_like.scales`` entry-point group. The coordinator calls it only through
this class, so a scale never needs to know which backend runs its tasks or how
they are persisted.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from mummi_like.tasks import StrictModel, TaskResult, TaskSpec


@dataclass(frozen=True)
class ScaleContext:
    """Where a scale is: what it may read and where its tasks run."""

    name: str = field(metadata={"doc": "The scale's name in the spec; also the `scale` label of its tasks."})
    campaign_dir: Path = field(metadata={"doc": "Root of everything the campaign writes."})
    spec_dir: Path = field(metadata={"doc": "Folder of the spec file; relative inputs resolve against it."})
    upstream: dict[str, list[TaskSpec]] = field(
        default_factory=dict, metadata={"doc": "Tasks of the scales this one depends on, by scale name."}
    )


class Scale(abc.ABC):
    """A simulation or compute engine that produces tasks.

    Subclasses set :attr:`config_model` (a :class:`~mummi_like.tasks.StrictModel`
    describing the plugin's own ``config:`` block) and implement :meth:`tasks`.
    """

    config_model: ClassVar[type[StrictModel]]

    def __init__(self, config: StrictModel, context: ScaleContext) -> None:
        self.config = config
        self.context = context

    @abc.abstractmethod
    def tasks(self) -> list[TaskSpec]:
        """The scale's initial tasks, with ids that are stable across runs of the same spec."""

    def on_result(self, task: TaskSpec, result: TaskResult) -> list[TaskSpec]:
        """Follow-up tasks created when one of this scale's tasks is done; none by default."""
        return []

    def workdir(self, task_id: str) -> str:
        """The conventional working directory of a task, relative to the campaign directory."""
        return f"tasks/{self.context.name}/{task_id}"
