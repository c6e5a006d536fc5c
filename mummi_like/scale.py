"""The interface a scale plugin implements.

A scale turns its validated config into tasks. It is application code: it lives
in its own package (``scales/`` here, or a user's) and registers itself under the
``mummi_like.scales`` entry-point group. The coordinator calls it only through
this class, so a scale never needs to know which backend runs its tasks or how
they are persisted.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from pydantic import JsonValue

from mummi_like.tasks import ConfigKey, Resources, StrictModel, TaskResult, TaskSpec, declared_resources

if TYPE_CHECKING:
    import numpy as np

    from mummi_like.report import ReportSection
    from mummi_like.view import CampaignView


@dataclass(frozen=True)
class ScaleContext:
    """Where a scale is: what it may read and where its tasks run."""

    name: str = field(metadata={"doc": "The scale's name in the spec; also the `scale` label of its tasks."})
    campaign_dir: Path = field(metadata={"doc": "Root of everything the campaign writes."})
    spec_dir: Path = field(metadata={"doc": "Folder of the spec file; relative inputs resolve against it."})
    upstream: dict[str, list[TaskSpec]] = field(
        default_factory=dict, metadata={"doc": "Tasks of the scales this one depends on, by scale name."}
    )


@dataclass(frozen=True)
class PromotedFrame:
    """A streamed frame that a coupling's selector chose for the finer scale."""

    frame_id: str = field(metadata={
        "doc": "`<stream file>:<frame index>`, the frame's identity; the file relative to the campaign directory."})
    coupling: str = field(metadata={"doc": "The coupling that promoted it."})
    source_task: str = field(metadata={"doc": "Id of the task that wrote the stream."})
    file: Path = field(metadata={"doc": "The H5MD stream, absolute: where the campaign directory is now."})
    index: int = field(metadata={"doc": "Frame number within the stream."})
    step: int = field(metadata={"doc": "Integration step of the frame."})
    time: float = field(metadata={"doc": "Simulation time of the frame (ps)."})
    score: float = field(metadata={"doc": "The selector's score when it was chosen."})
    positions: np.ndarray = field(repr=False, metadata={"doc": "(n_atoms, 3) in nm."})
    box: np.ndarray | None = field(repr=False, metadata={"doc": "(3, 3) box vectors in nm, or None."})
    observables: dict[str, np.ndarray] = field(repr=False, metadata={"doc": "The frame's observables."})


@dataclass(frozen=True)
class Feedback:
    """A finished task of a coupling's target scale, handed back to the source scale (fine -> coarse)."""

    coupling: str = field(metadata={"doc": "The coupling that promoted the frame."})
    frame_id: str = field(metadata={"doc": "The promoted frame the task started from."})
    task: TaskSpec = field(metadata={"doc": "The finished target task."})
    result: TaskResult = field(metadata={"doc": "Its result (value, times, output paths)."})
    workdir: Path = field(metadata={"doc": "Its working directory (absolute), with whatever it wrote."})


@dataclass(frozen=True)
class DoneTask:
    """A finished task: of an upstream scale, handed to :meth:`Scale.on_upstream_done`, or of any scale, as
    :meth:`CampaignView.done <mummi_like.view.CampaignView.done>` lists them for report hooks."""

    spec: TaskSpec = field(metadata={"doc": "The task as it was recorded."})
    value: JsonValue = field(metadata={"doc": "What its callable returned (``None`` for an executable)."})
    workdir: Path = field(metadata={"doc": "Its working directory (absolute), with whatever it wrote."})


class Scale(abc.ABC):
    """A simulation or compute engine that produces tasks.

    Subclasses set :attr:`config_model` (a :class:`~mummi_like.tasks.StrictModel`
    describing the plugin's own ``config:`` block) and implement :meth:`tasks`.
    """

    config_model: ClassVar[type[StrictModel]]

    def __init__(self, config: StrictModel, context: ScaleContext) -> None:
        self.config = config
        self.context = context

    @classmethod
    def resource_requests(cls, config: StrictModel) -> dict[ConfigKey, Resources]:
        """What this scale's tasks will reserve, by the key of ``config`` that says so.

        ``mummi-like validate`` (and every run, before it makes a task) checks
        each request against what the spec's backend declares it has, so a task
        that could never start is refused at its YAML path instead of failing
        at run time. Read from the config alone, since making the tasks may
        write files or read a large input. By default every
        :class:`~mummi_like.tasks.Resources` the config holds (its
        ``resources``, say); a scale that sizes its tasks otherwise (from a
        ``cores_per_replica`` number) overrides this.
        """
        return declared_resources(config)

    def check_inputs(self) -> None:
        """Refuse inputs the config names that cannot be used, with a ValueError that says which and the fix.

        The config model checks the config's shape; what it cannot see (a file
        outside the spec's folder, missing or unreadable, a symlink loop) would
        otherwise stop the campaign only when :meth:`tasks` runs. So that
        whatever ``mummi-like run`` refuses before the first task
        ``mummi-like validate`` refuses too, both call this first and report
        the error as a problem located at the scale's ``config:``. It runs on a
        scale made for the check, before any campaign directory exists and
        with no ``upstream`` tasks in its context, on every validation (resume
        included): it must be quick and write nothing (open a file, do not
        parse a whole library). Nothing to check by default.
        """

    @abc.abstractmethod
    def tasks(self) -> list[TaskSpec]:
        """The scale's initial tasks, with ids that are stable across runs of the same spec."""

    def on_result(self, task: TaskSpec, result: TaskResult) -> list[TaskSpec]:
        """Follow-up tasks created when one of this scale's tasks is done; none by default."""
        return []

    def promote(self, frame: PromotedFrame, task_id: str) -> TaskSpec:
        """The task that continues ``frame`` at this scale: the coupling's *transform*.

        A scale that can be the target of a coupling writes what its task needs
        (the frame as a structure, say) into ``self.workdir(task_id)`` under the
        campaign directory and returns the task, with id ``task_id``.
        """
        raise NotImplementedError(
            f"scale {self.context.name!r} ({type(self).__name__}) cannot start from promoted frames; "
            "make a scale whose plugin implements `promote` the target of the coupling"
        )

    def on_feedback(self, feedback: Feedback) -> list[TaskSpec]:
        """Tasks this (source) scale starts from a finished fine task; none by default.

        MuMMI's fine-to-coarse feedback: the coarse scale may, say, restart a
        replica from where the fine simulation ended, or with parameters it
        learned. Returned tasks are recorded like any follow-up.
        """
        return []

    def on_upstream_done(self, upstream: Mapping[str, list[DoneTask]]) -> list[TaskSpec]:
        """Tasks this scale can make only once the scales it ``depends_on`` have finished for good; none by default.

        A stage barrier for work whose inputs are not known when the campaign
        starts: the finalists of an active-learning loop, say, exist only once
        its last round is done. The loop calls this once per scale with
        ``depends_on``, when the campaign has run dry (nothing queued or running,
        and every coupling has promoted all it will) and each upstream scale has
        itself had its call, so stages open in dependency order and a stage
        sees every task its upstream stages will ever make. ``upstream`` maps
        each ``depends_on`` scale to its tasks that ended done, in creation
        order. The call is recorded with the tasks it returns, so a resumed
        campaign neither repeats nor loses it. Task ids must be stable: the same
        inputs must give the same ids.
        """
        return []

    @classmethod
    def report_sections(cls, view: CampaignView, scale_name: str) -> list[ReportSection]:
        """The scale's science for the campaign report (``mummi-like report``); none by default.

        A report draws what every campaign shares (utilization, the Gantt,
        throughput, failures); what the scale computed (a distribution of
        scores, a learning curve, a table of estimates) only the plugin knows
        how to show, so the report asks it, under "Science". Called once per
        scale of the spec that uses this plugin (``scale_name`` is its name,
        since one plugin may serve several scales), whenever a report is
        written: while the campaign runs too, so the hook must cope with a
        stage half done or not started (a section saying so is better than
        none). It gets a read-only :class:`~mummi_like.view.CampaignView`, not
        the store: a report must never change the campaign. A classmethod,
        since no scale object exists when a report reads a campaign; a hook
        that raises or returns something else than a list of
        :class:`~mummi_like.report.ReportSection` has its error shown in the
        report instead of stopping it, and an empty list adds nothing.
        """
        return []

    def workdir(self, task_id: str) -> str:
        """The conventional working directory of a task, relative to the campaign directory."""
        return f"tasks/{self.context.name}/{task_id}"
