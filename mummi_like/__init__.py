"""mummi-like: coordination of ML-coupled multiscale simulation campaigns.

This module is the public API, everything a plugin package, a script or a
notebook needs, and the only module application code imports (a test enforces
it for our own ``scales/``, ``selectors/`` and ``pipelines/``). Names load on
first use, so ``import mummi_like`` stays cheap for the CLI and for ``status``
on a login node: torch, h5py and the campaign loop are imported only by what
uses them.

Plugin base classes and their context types
    :class:`Scale` (:class:`ScaleContext`, :class:`PromotedFrame`,
    :class:`Feedback`, :class:`DoneTask`), :class:`Selector`
    (:class:`SelectorConfig`, :class:`SelectorContext`, :class:`TrainingTask`),
    :class:`Policy` and the reference :class:`DependencyPolicy`,
    :class:`Backend` (:class:`BackendConfig`, :class:`Capacity`, the
    :class:`BackendEvent` it reports, :class:`UnsatisfiableRequest` and
    :class:`BackendUnavailable`, the errors it raises).
Tasks
    :class:`TaskSpec`, :class:`Resources`, :class:`RetryPolicy`,
    :class:`CallablePayload`, :class:`ExecutablePayload`, :class:`TaskResult`
    and its :class:`Failure`, :class:`TaskState`, and :class:`StrictModel`, the base of every config model.
Streams
    :class:`H5MDWriter`, the OpenMM :class:`H5MDReporter`, :class:`StreamTailer`,
    :func:`read_frame` and its :class:`Frame`, :class:`StreamError`.
Reports and files
    :class:`ReportSection`, :class:`CampaignView` (what report hooks read),
    :func:`atomic_write`, :func:`atomic_write_text`; :func:`resolved` and
    :func:`inside`, for a path from a config (resolved with a reason instead
    of a traceback; kept inside a folder, say the spec's).
Seeds
    :func:`task_seed`, :func:`seeded_uniform` (one hash of a seed and an id).
Running campaigns
    :func:`run`, :func:`resume`, :func:`open_campaign`, :class:`RunSummary`,
    :class:`CampaignRecords`, :class:`SpecError`, :class:`CampaignError`, and
    :func:`write_report`, a campaign's figures and HTML page (``mummi-like report``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mummi_like.api import CampaignRecords, RunSummary, open_campaign, resume, run
    from mummi_like.backends.base import (
        Backend,
        BackendConfig,
        BackendEvent,
        BackendUnavailable,
        Capacity,
        UnsatisfiableRequest,
    )
    from mummi_like.campaign.control import CampaignError
    from mummi_like.campaign.policy import DependencyPolicy, Policy
    from mummi_like.files import atomic_write, atomic_write_text
    from mummi_like.report import ReportSection, write_report
    from mummi_like.scale import DoneTask, Feedback, PromotedFrame, Scale, ScaleContext
    from mummi_like.seeding import seeded_uniform, task_seed
    from mummi_like.spec.paths import inside, resolved
    from mummi_like.selection import Selector, SelectorConfig, SelectorContext, TrainingTask, name_frames
    from mummi_like.spec import SpecError
    from mummi_like.streams.h5md import H5MDReporter, H5MDWriter
    from mummi_like.streams.tailer import Frame, StreamError, StreamTailer, read_frame
    from mummi_like.tasks import (
        CallablePayload,
        EnvName,
        ExecutablePayload,
        Failure,
        Resources,
        RetryPolicy,
        StrictModel,
        TaskResult,
        TaskSpec,
        TaskState,
    )
    from mummi_like.view import CampaignView

_EXPORTS: dict[str, str] = {
    # plugin base classes and their context types
    "Scale": "mummi_like.scale",
    "ScaleContext": "mummi_like.scale",
    "PromotedFrame": "mummi_like.scale",
    "Feedback": "mummi_like.scale",
    "DoneTask": "mummi_like.scale",
    "Selector": "mummi_like.selection",
    "SelectorConfig": "mummi_like.selection",
    "SelectorContext": "mummi_like.selection",
    "TrainingTask": "mummi_like.selection",
    "name_frames": "mummi_like.selection",
    "Policy": "mummi_like.campaign.policy",
    "DependencyPolicy": "mummi_like.campaign.policy",
    "Backend": "mummi_like.backends.base",
    "BackendConfig": "mummi_like.backends.base",
    "Capacity": "mummi_like.backends.base",
    "BackendEvent": "mummi_like.backends.base",
    "UnsatisfiableRequest": "mummi_like.backends.base",
    "BackendUnavailable": "mummi_like.backends.base",
    # tasks
    "TaskSpec": "mummi_like.tasks",
    "Resources": "mummi_like.tasks",
    "RetryPolicy": "mummi_like.tasks",
    "CallablePayload": "mummi_like.tasks",
    "ExecutablePayload": "mummi_like.tasks",
    "TaskResult": "mummi_like.tasks",
    "Failure": "mummi_like.tasks",
    "TaskState": "mummi_like.tasks",
    "StrictModel": "mummi_like.tasks",
    "EnvName": "mummi_like.tasks",
    # streams
    "H5MDWriter": "mummi_like.streams.h5md",
    "H5MDReporter": "mummi_like.streams.h5md",
    "StreamTailer": "mummi_like.streams.tailer",
    "read_frame": "mummi_like.streams.tailer",
    "Frame": "mummi_like.streams.tailer",
    "StreamError": "mummi_like.streams.tailer",
    # reports, files, seeds
    "ReportSection": "mummi_like.report",
    "CampaignView": "mummi_like.view",
    "atomic_write": "mummi_like.files",
    "atomic_write_text": "mummi_like.files",
    "resolved": "mummi_like.spec.paths",
    "inside": "mummi_like.spec.paths",
    "task_seed": "mummi_like.seeding",
    "seeded_uniform": "mummi_like.seeding",
    # running campaigns
    "run": "mummi_like.api",
    "resume": "mummi_like.api",
    "open_campaign": "mummi_like.api",
    "RunSummary": "mummi_like.api",
    "CampaignRecords": "mummi_like.api",
    "write_report": "mummi_like.report",
    "SpecError": "mummi_like.spec",
    "CampaignError": "mummi_like.campaign.control",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    """Import a public name's module on first use (PEP 562) and cache the name here."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mummi_like' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
