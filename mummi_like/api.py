"""Run and read campaigns from Python: scripts, notebooks, threads.

``mummi-like run`` and ``mummi-like resume`` are :func:`run` and :func:`resume`
with a progress display and an exit code added, so a script meets the same
checks, the same behaviour and the same messages as the command line. Errors
are exceptions: :class:`~mummi_like.spec.SpecError` for a spec that cannot run
(every problem, located), :class:`~mummi_like.campaign.control.CampaignError`
for a campaign that cannot start or continue, :class:`~mummi_like.store.StoreError`
for a directory without a readable store; the command prints their messages.

Running again is safe, as a notebook cell is rerun: :func:`run` on a directory
that holds the same campaign continues it, or, when it has finished, returns
its summary without running anything (see :func:`run`).

:func:`open_campaign` reads a campaign directory, running or not, as typed
records and as pandas DataFrames.

This module imports neither the campaign loop nor the spec machinery until a
function needs them: the command line imports it for its exit codes, and
``status`` on a login node must stay fast.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from pathlib import Path, PurePath
from types import ModuleType
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import yaml

from mummi_like import events
from mummi_like.campaign.control import CampaignError, coordinator_running
from mummi_like.store import Store, TaskRecord
from mummi_like.tasks import TaskState

if TYPE_CHECKING:
    import pandas

    from mummi_like.campaign.progress import Reporter
    from mummi_like.campaign.summary import Summary
    from mummi_like.spec import ResolvedCampaign

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT, EXIT_STOPPED = 0, 1, 2, 3
"""The exit codes of ``mummi-like``: every task done (or the command did what it was asked); some tasks failed or
were canceled; bad input (a spec error, a missing campaign); stopped early (a signal, a budget), resumable."""

Outcome = Literal["complete", "failed", "stopped"]
"""How a campaign stands after a run: every task done; every task final, some failed or canceled; stopped early
(a signal, a budget, a stage that could not open) with tasks left, which :func:`resume` continues."""

_EXIT_CODES: dict[Outcome, int] = {"complete": EXIT_OK, "failed": EXIT_FAILED, "stopped": EXIT_STOPPED}

SpecSource = str | os.PathLike[str] | Mapping[str, Any]
"""What :func:`run` accepts as a spec: a path, YAML text, or the spec as a dict."""

TEXT_SOURCE, DICT_SOURCE = "<spec text>", "<spec dict>"
"""How a spec given as text or as a dict is named in messages (with its line, for a dict the line of its YAML)."""


class TaskFailure(NamedTuple):
    """A task that failed for good, and why."""

    task: str
    reason: str


@dataclass(frozen=True)
class RunSummary:
    """What a call of :func:`run` or :func:`resume` left: where the campaign stands and how it got there."""

    directory: Path
    """The campaign directory."""
    outcome: Outcome
    """``complete``, ``failed`` or ``stopped``; :attr:`exit_code` is what ``mummi-like run`` exits with."""
    counts: dict[str, dict[str, int]]
    """Tasks per scale and state (states without tasks left out), as the store holds them."""
    failures: tuple[TaskFailure, ...]
    """Every task that failed for good, in the order the campaign made them."""
    elapsed: float
    """Seconds this call ran the campaign; 0 when it had finished before."""
    stopped_because: str | None = None
    """Why the campaign stopped early (``outcome == "stopped"``); ``None`` otherwise."""
    ran: bool = True
    """False when the campaign had finished before this call and nothing ran (a rerun notebook cell)."""

    @property
    def exit_code(self) -> int:
        """The exit code of ``mummi-like run`` for this outcome (0, 1 or 3; see :data:`EXIT_OK`)."""
        return _EXIT_CODES[self.outcome]

    @property
    def tasks(self) -> int:
        """How many tasks the campaign holds."""
        return sum(sum(states.values()) for states in self.counts.values())

    @property
    def done(self) -> int:
        """How many of them are done."""
        return sum(states.get(TaskState.DONE.value, 0) for states in self.counts.values())

    def records(self) -> CampaignRecords:
        """The campaign's tasks, results, promotions and events (see :func:`open_campaign`)."""
        return open_campaign(self.directory)

    @classmethod
    def of(cls, summary: Summary, ran: bool = True) -> RunSummary:
        """The public form of the loop's summary."""
        if summary.stopped_because is not None:
            outcome: Outcome = "stopped"
        else:
            outcome = "complete" if summary.complete else "failed"
        return cls(
            directory=summary.directory, outcome=outcome, counts=summary.counts,
            failures=tuple(TaskFailure(task, reason) for task, reason in summary.failures),
            elapsed=summary.elapsed, stopped_because=summary.stopped_because, ran=ran,
        )


def run(spec: SpecSource, directory: str | os.PathLike[str] | None = None, *, reporter: Reporter | None = None,
        spec_dir: str | os.PathLike[str] | None = None) -> RunSummary:
    """Validate a campaign spec and run its campaign to the end; what ``mummi-like run`` does.

    Parameters
    ----------
    spec
        A path to a YAML spec (a :class:`~pathlib.Path`, or a ``str`` holding no
        line break and no ``": "``), the spec's YAML text (a ``str`` with a line
        break or a ``key: value``), or the spec as a dict (paths and tuples in it
        are written as strings and lists). A spec given as text or as a dict is
        named ``<spec text>`` or ``<spec dict>`` in messages.
    directory
        The campaign directory, overriding the spec's ``directory`` (the CLI's
        ``--dir``); relative to the current directory.
    reporter
        Shows the progress (the CLI passes its live display or JSON lines);
        default: nothing is shown, the returned summary says how it went.
    spec_dir
        For a spec given as text or as a dict, the folder its relative paths
        (``python_path``, ``directory``, plugins' files) resolve against, as a
        spec file's folder does; default: the current directory. Ignored for a
        path, whose own folder is used.

    Returns
    -------
    RunSummary
        Where the campaign stands: ``outcome`` complete, failed or stopped.

    Running again on a directory that holds a campaign made from the same spec
    (equal once validated: comments and layout aside) never starts a second
    campaign: when that campaign had finished (its coordinator stopped with
    nothing left to run) the summary of what is there is returned, with
    ``ran=False``, and nothing runs; when it had not (a crash, a signal, a
    budget, a kernel restarted mid-run), it is resumed, as :func:`resume` does.
    A directory holding a campaign of another spec is refused.

    Signals: in the main thread of the main interpreter, SIGINT (Ctrl-C, or
    interrupting a Jupyter kernel, whose cells run in the main thread) and
    SIGTERM stop the campaign cleanly and resumably (``outcome == "stopped"``)
    and the previous handlers are put back when the call returns. Called from
    any other thread, Python allows no signal handler, and the campaign runs
    without them; a process killed meanwhile leaves a campaign that
    :func:`resume` continues as after a crash.

    Raises
    ------
    SpecError
        The spec cannot run; the message lists every problem with its line.
    CampaignError
        The campaign cannot start: its scales cannot make their tasks, another
        coordinator runs it, the directory holds a campaign of another spec.
    StoreError
        The directory's store cannot be opened (a newer mummi-like made it, ...).
    """
    from mummi_like.campaign.loop import Campaign

    text, resolved = _load(spec, directory, spec_dir)
    if (resolved.directory / Store.FILENAME).exists():
        return _again(resolved, reporter)
    return RunSummary.of(Campaign.create(resolved, text, reporter).run())


def resume(directory: str | os.PathLike[str], *, reporter: Reporter | None = None) -> RunSummary:
    """Continue the campaign in ``directory`` after its coordinator stopped or died; what ``mummi-like resume`` does.

    Finished tasks never run again; tasks that were running are taken back from
    the backend or run again (see :mod:`mummi_like.campaign.loop`). Signals as
    in :func:`run`.

    Raises
    ------
    CampaignError
        Another coordinator runs the campaign, or the directory's store holds no spec.
    StoreError
        ``directory`` holds no campaign store (the message says how to start one).
    SpecError
        The saved spec no longer validates (a plugin changed or was uninstalled).
    """
    from mummi_like.campaign.loop import Campaign

    return RunSummary.of(Campaign.resume(Path(directory).resolve(), reporter).run())


def _load(spec: SpecSource, directory: str | os.PathLike[str] | None,
          spec_dir: str | os.PathLike[str] | None) -> tuple[str, ResolvedCampaign]:
    """The spec's text (what is saved for resume) and the campaign it resolves to."""
    from mummi_like.spec import load_spec, load_spec_text

    override = None if directory is None else Path(directory)
    if isinstance(spec, Mapping):
        source = _named(DICT_SOURCE, spec_dir)
        text = _yaml_of(spec, source)
    elif isinstance(spec, str) and ("\n" in spec or ": " in spec):
        source, text = _named(TEXT_SOURCE, spec_dir), spec
    elif isinstance(spec, str | os.PathLike):
        path = Path(spec)
        resolved = load_spec(path, directory=override)  # an unreadable file is a located SpecError
        return path.read_text(encoding="utf-8"), resolved
    else:
        raise TypeError(f"spec must be a path, YAML text or a dict, not {type(spec).__name__}")
    return text, load_spec_text(text, source, directory=override)


def _named(name: str, spec_dir: str | os.PathLike[str] | None) -> Path:
    """The source a text or dict spec is named by: a file ``name`` in the folder its relative paths resolve against."""
    return Path(name) if spec_dir is None else Path(spec_dir) / name


def _plain(value: Any) -> Any:
    """``value`` with the paths and tuples a script builds specs from made the strings and lists YAML writes."""
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


def _yaml_of(spec: Mapping[str, Any], source: Path) -> str:
    """The YAML text of a dict spec, validated and saved like a file's text; a value YAML cannot hold is a SpecError."""
    from mummi_like.spec import SpecError, SpecIssue

    try:
        text: str = yaml.safe_dump(_plain(spec), sort_keys=False, allow_unicode=True)
    except yaml.representer.RepresenterError as error:
        value = error.args[1] if len(error.args) > 1 else None
        message = f"cannot write the spec as YAML: it holds {type(value).__name__} value {value!r}"
        hint = "use strings, numbers, booleans, None, lists and dicts (paths and tuples are converted)"
        raise SpecError(source, [SpecIssue("<root>", None, message, hint, source)]) from error
    return text


def _again(resolved: ResolvedCampaign, reporter: Reporter | None) -> RunSummary:
    """``run`` on a directory that holds a campaign already: its summary when finished, else resume it.

    The saved spec is what a resume runs, so a different one is refused rather
    than silently ignored.
    """
    from mummi_like.campaign.loop import saved_spec

    directory = resolved.directory
    saved = saved_spec(directory).spec
    changed = [name for name in type(saved).model_fields if getattr(saved, name) != getattr(resolved.spec, name)]
    if changed:
        raise CampaignError(
            f"{directory} already holds a campaign made from another spec (its {', '.join(changed)} differ); "
            f"continue that one with `mummi-like resume {directory}`, or choose another directory"
        )
    if coordinator_running(directory) or not _finished(directory):
        return resume(directory, reporter=reporter)  # a running coordinator is refused there, with what to do
    summary = _stored_summary(directory)
    if reporter is not None:
        reporter.update(summary.counts, force=True)
        reporter.finish(summary)
    return RunSummary.of(summary, ran=False)


def _finished(directory: Path) -> bool:
    """Whether the last coordinator of the campaign stopped because nothing was left to run.

    A coordinator that stopped early says why in its stop event; one that
    crashed left no stop event after its start.
    """
    with Store.open(directory, readonly=True) as store:
        started = store.events(kind=events.COORDINATOR_STARTED)
        stopped = store.events(kind=events.COORDINATOR_STOPPED)
    if not stopped or (started and started[-1][0] > stopped[-1][0]):
        return False
    return stopped[-1][3].get("reason") is None


def _stored_summary(directory: Path) -> Summary:
    """The loop's summary of a finished campaign, read from its store (nothing ran, so no time elapsed)."""
    from mummi_like.campaign.summary import Summary

    with Store.open(directory, readonly=True) as store:
        failures = [(record.id, record.reason or "failed") for record in store.tasks(states=[TaskState.FAILED])]
        return Summary(directory, store.counts(), 0.0, None, failures)


# -- reading a campaign ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TaskRow:
    """One task as :meth:`CampaignRecords.tasks` lists it: where it stands, its last attempt, its files."""

    id: str
    scale: str
    state: str
    """``created``, ``queued``, ``running``, ``retrying``, ``done``, ``failed`` or ``canceled``."""
    attempt: int
    """Number of the current or last attempt; 0 before the first submission."""
    failures: int
    """Failed attempts so far."""
    job_id: str | None
    created: float
    """When the task was recorded (seconds since the epoch, as every time here)."""
    updated: float
    started: float | None
    """When its last attempt that reported a result started."""
    ended: float | None
    seconds: float | None
    """``ended - started``: how long that attempt ran."""
    exit_code: int | None
    signal: int | None
    reason: str | None
    """Why its last attempt failed, or ``None``."""
    depends_on: tuple[str, ...]
    labels: dict[str, str]
    workdir: Path
    """The task's working directory (absolute)."""
    stdout: str | None
    stderr: str | None

    @classmethod
    def of(cls, record: TaskRecord, directory: Path) -> TaskRow:
        seconds = None if record.started is None or record.ended is None else record.ended - record.started
        return cls(
            id=record.id, scale=record.spec.scale, state=record.state.value, attempt=record.attempt,
            failures=record.failures, job_id=record.job_id, created=record.created, updated=record.updated,
            started=record.started, ended=record.ended, seconds=seconds, exit_code=record.exit_code,
            signal=record.signal, reason=record.reason, depends_on=tuple(record.spec.depends_on),
            labels=dict(record.spec.labels), workdir=directory / record.spec.workdir, stdout=record.stdout,
            stderr=record.stderr,
        )


@dataclass(frozen=True)
class ResultRow:
    """The value a done task returned (a Python callable's JSON result; ``None`` for an executable)."""

    task: str
    scale: str
    value: Any
    started: float | None
    ended: float | None
    seconds: float | None
    workdir: Path
    """Where its output files are."""


@dataclass(frozen=True)
class PromotionRow:
    """A fine task a coupling's selector promoted from a streamed frame."""

    task: str
    """The promoted task's id."""
    coupling: str
    frame: str
    """The frame's id, as the selector named it (its stream file and frame index)."""
    score: float | None
    """The selector's last score of the frame; ``None`` where its pool no longer holds it."""
    state: str
    """Where the promoted task stands."""
    value: Any
    """Its result once done; ``None`` before."""


@dataclass(frozen=True)
class EventRow:
    """An entry of the campaign's event log (see :mod:`mummi_like.events` for the kinds)."""

    seq: int
    time: float
    kind: str
    data: dict[str, Any]


def _pandas() -> ModuleType:
    """pandas, or an ImportError that says how to get it."""
    try:
        import pandas
    except ImportError as error:
        raise ImportError(
            "CampaignRecords' DataFrames need pandas, which is not installed: `pip install pandas` (the records "
            "themselves, .tasks() and the like, need nothing more)"
        ) from error
    module: ModuleType = pandas
    return module


def _frame(rows: list[Any], row_type: type) -> pandas.DataFrame:
    """A DataFrame with one column per field of ``row_type`` (so an empty one has its columns too)."""
    columns = [f.name for f in fields(row_type)]
    return _pandas().DataFrame([asdict(row) for row in rows], columns=columns)


class CampaignRecords:
    """A read-only look at a campaign directory's store: tasks, results, promotions and events.

    Every method reads what the store holds at that moment and closes it again,
    so a campaign that runs meanwhile (in another process or thread) is neither
    blocked nor disturbed, and a later call sees its progress. The ``*_frame``
    methods give the same rows as pandas DataFrames, one column per field.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory).resolve()
        self._open().close()  # a directory without a store is refused now, with what to do

    def __repr__(self) -> str:
        return f"CampaignRecords({str(self.directory)!r})"

    def _open(self) -> Store:
        return Store.open(self.directory, readonly=True)

    def counts(self) -> dict[str, dict[str, int]]:
        """Tasks per scale and state (states without tasks left out)."""
        with self._open() as store:
            return store.counts()

    def tasks(self, scale: str | None = None, state: TaskState | str | None = None) -> list[TaskRow]:
        """The tasks in the order the campaign made them, optionally of one scale and in one state."""
        states = None if state is None else [TaskState(state)]
        with self._open() as store:
            return [TaskRow.of(record, self.directory) for record in store.tasks(states=states, scale=scale)]

    def results(self, scale: str | None = None) -> list[ResultRow]:
        """What the done tasks returned, optionally of one scale."""
        with self._open() as store:
            records = store.tasks(states=[TaskState.DONE], scale=scale)
        rows = []
        for record in records:
            task = TaskRow.of(record, self.directory)
            rows.append(ResultRow(task=task.id, scale=task.scale, value=record.value, started=task.started,
                                  ended=task.ended, seconds=task.seconds, workdir=task.workdir))
        return rows

    def promotions(self, coupling: str | None = None) -> list[PromotionRow]:
        """The tasks couplings promoted, with the frame each came from and its score; optionally of one coupling."""
        # Imported here: the coupling module loads numpy and h5py, which reading records otherwise never needs.
        from mummi_like.campaign.coupling import COUPLING_LABEL, PROMOTED_LABEL

        with self._open() as store:
            promoted = [record for record in store.tasks() if PROMOTED_LABEL in record.spec.labels
                        and coupling in (None, record.spec.labels.get(COUPLING_LABEL))]
            scores: dict[str, dict[str, float]] = {}
            for name in {record.spec.labels.get(COUPLING_LABEL, "") for record in promoted}:
                scores[name] = {row.id: row.score for row in store.load_candidates(name)}
        rows = []
        for record in promoted:
            name, frame = record.spec.labels.get(COUPLING_LABEL, ""), record.spec.labels[PROMOTED_LABEL]
            rows.append(PromotionRow(task=record.id, coupling=name, frame=frame, score=scores[name].get(frame),
                                     state=record.state.value, value=record.value))
        return rows

    def events(self, kind: str | None = None) -> list[EventRow]:
        """The event log, oldest first, optionally of one kind."""
        with self._open() as store:
            return [EventRow(seq, time, event_kind, data) for seq, time, event_kind, data in store.events(kind=kind)]

    def tasks_frame(self, scale: str | None = None, state: TaskState | str | None = None) -> pandas.DataFrame:
        """:meth:`tasks` as a DataFrame (needs pandas)."""
        return _frame(self.tasks(scale, state), TaskRow)

    def results_frame(self, scale: str | None = None) -> pandas.DataFrame:
        """:meth:`results` as a DataFrame (needs pandas)."""
        return _frame(self.results(scale), ResultRow)

    def promotions_frame(self, coupling: str | None = None) -> pandas.DataFrame:
        """:meth:`promotions` as a DataFrame (needs pandas)."""
        return _frame(self.promotions(coupling), PromotionRow)

    def events_frame(self, kind: str | None = None) -> pandas.DataFrame:
        """:meth:`events` as a DataFrame (needs pandas)."""
        return _frame(self.events(kind), EventRow)


def open_campaign(directory: str | os.PathLike[str]) -> CampaignRecords:
    """Read the campaign in ``directory``, running or not, as records and DataFrames (see :class:`CampaignRecords`).

    Raises
    ------
    StoreError
        ``directory`` holds no campaign store, or one that cannot be read (the message says what to do).
    """
    return CampaignRecords(directory)
