"""Couplings: coarse streams -> learned selector -> promoted fine tasks, inside the campaign loop.

A coupling names a *source* scale whose tasks stream H5MD files, a *selector*
plugin that scores the streamed frames, and a *target* scale that continues the
frames it promotes (MuMMI's macro -> micro promotion, DeepDriveMD's outlier
restarts). Every ``interval`` seconds the loop asks each coupling for a round:

1. tail the source's streams for new complete frames (:class:`StreamTailer`),
   drop frames whose feature holds NaN or infinities (logged), and feed the rest
   to the selector;
2. when the selector wants a new model and none is training, add its training
   task (scale ``<coupling>-training``), which runs on the backend like any task;
   when it is done, the model is hot-swapped (:meth:`task_final`);
3. while the promotion budget allows (``max_in_flight`` target tasks running or
   waiting, ``max_total`` over the campaign), take the selector's best frames
   and let the target scale turn each into a task (:meth:`Scale.promote`, the
   coupling's transform). A chosen frame whose stream can no longer be read
   (truncated or replaced since it was scored) is logged as rejected and
   skipped; the coordinator goes on.

A feature is the named observable of each frame, as the selector receives it:
a scalar observable (shape ``()``, e.g. a radius of gyration) becomes a
one-element vector, so that every selector sees one row per frame. A stream
without the feature (its observables are fixed when it is written, so it never
will have it) and a selector that refuses the features (they do not suit it,
or it has a bug) stop the campaign with a :class:`CouplingError` instead of
killing the coordinator or waiting forever: the store is left consistent and
the command-line tools exit as for bad input.

A frame's id is ``<stream file>:<frame index>`` with the file relative to the
campaign directory (``tasks/coarse/coarse.0/trajectory.h5md:12``), and so are
the stream positions the coupling saves: a campaign directory moved or copied
elsewhere resumes there with its pool and promotions, reading its frames where
it now is. A campaign begun before ids were relative has its absolute ids of
streams inside it converted when a coordinator opens it; ids outside it (a
campaign moved before it was resumed with relative ids) stay as they are.

Restart: the selector writes its pool through to the store; the tailer's
position in every stream is saved after the frames it delivered are committed,
so a restarted coordinator re-reads at most a few frames, which the selector's
pool ignores as already seen.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import numpy as np

from mummi_like import events
from mummi_like.campaign.control import CampaignError
from mummi_like.crashpoints import crash_point
from mummi_like.scale import Feedback, PromotedFrame, Scale
from mummi_like.selection import Selector, SelectorContext
from mummi_like.spec import CouplingSpec
from mummi_like.store import Store
from mummi_like.streams.tailer import Frame, StreamError, StreamTailer, UnknownObservable, read_frame
from mummi_like.tasks import TaskResult, TaskSpec

STREAM_STATE = "coupling:{name}:streams"
MODEL_LABEL = "model_path"
COUPLING_LABEL = "coupling"
PROMOTED_LABEL = "promoted_from"


class CouplingError(CampaignError):
    """A coupling cannot go on: its streams lack its feature, or its selector refuses their features.

    Waiting cannot fix it, so the loop stops the campaign cleanly (what runs is
    requeued, the store stays consistent and resumable) and raises this once
    the coordinator is down; ``mummi-like run`` and ``resume`` exit with the
    status of bad input. The message names the coupling, what went wrong and the fix.
    """


@dataclass
class RoundResult:
    """What one round of a coupling produced."""

    frames: int
    rejected: int
    new_tasks: list[TaskSpec]


def relative_to_campaign(directory: Path, name: str) -> str:
    """``name``, a path or a frame id (which begins with its stream's path), relative to the campaign ``directory``
    (absolute, as :func:`os.path.abspath` gives it) when it lies inside, else unchanged.

    How frame ids and saved stream positions name a stream file; also converts
    the absolute ones of campaigns begun before they were relative.
    """
    inside = os.path.join(directory, "")
    return name[len(inside):] if name.startswith(inside) else name


class Coupling:
    """One coupling's state in the loop: its tailer, its selector and its promotion budget."""

    def __init__(self, spec: CouplingSpec, selector: Selector, source: Scale, target: Scale, directory: Path,
                 store: Store) -> None:
        self.spec = spec
        self.name = spec.label
        self.selector = selector
        self.source = source
        self.target = target
        self.directory = Path(os.path.abspath(directory))
        self.store = store
        self.streams = self.directory / "tasks" / spec.source
        self.tailer = StreamTailer(self.streams, pattern=spec.stream, observables=[spec.feature], positions=False)
        saved = store.get_meta(STREAM_STATE.format(name=self.name), {})
        self.tailer.restore({os.path.join(self.directory, name): position for name, position in saved.items()})
        self.promoted = 0
        self.live: set[str] = set()  # promoted tasks not final yet: what max_in_flight counts
        self.trainings = 0
        self.training_in_flight: str | None = None
        self.next_round = 0.0

    @classmethod
    def build(cls, spec: CouplingSpec, selector_class: type[Selector], config: Any, scales: dict[str, Scale],
              directory: Path, store: Store) -> Coupling:
        """A coupling whose selector restores what the store holds for it (with relative frame ids)."""
        _relative_candidate_ids(store, spec.label, Path(os.path.abspath(directory)))
        selector = selector_class(config, SelectorContext(name=spec.label, campaign_dir=directory, seed=spec.seed,
                                                          store=store))
        return cls(spec, selector, scales[spec.source], scales[spec.target], directory, store)

    @property
    def training_scale(self) -> str:
        """The scale name its training tasks are counted under."""
        return f"{self.name}-training"

    def adopt(self, task: TaskSpec, final: bool) -> None:
        """Count a task of this coupling found in the store on resume (a promotion or a training)."""
        if task.scale == self.training_scale:
            self.trainings += 1
            if not final:
                self.training_in_flight = task.id
        elif PROMOTED_LABEL in task.labels:
            self.promoted += 1
            if not final:
                self.live.add(task.id)

    def task_final(self, task: TaskSpec, done: bool, seconds: float) -> None:
        """One of this coupling's tasks will not run again: free its promotion slot, or swap in a trained model."""
        self.live.discard(task.id)
        if task.id != self.training_in_flight:
            return
        self.training_in_flight = None
        if done:  # a failed training leaves the current model in place; a later round may ask again
            self.selector.load_model(task.labels[MODEL_LABEL])
            self.store.log_event(events.SELECTOR_RETRAINED, time.time(), coupling=self.name, task=task.id,
                                 duration=seconds)

    def round(self, final: bool = False) -> RoundResult:
        """Tail, ingest, maybe train, promote: the tasks this round adds (the loop records them).

        ``final`` rounds come when nothing else runs: they search for stream files
        at once rather than at the tailer's pace, so that no frame is left behind.
        """
        self.next_round = time.monotonic() + self.spec.interval
        try:
            frames = self.tailer.poll(max_frames=self.spec.max_frames_per_round, rescan=final)
        except UnknownObservable as error:
            available = ", ".join(map(repr, error.available)) or "none"
            self._fail(
                f"coupling {self.name!r}: its feature {self.spec.feature!r} is not an observable of the stream "
                f"{self.relative(error.path)} (in {self.directory}), which has {available}; a stream's observables "
                "are fixed when it is written, so waiting cannot bring it: change `feature:` in the coupling to "
                "one of them and run the spec again (`resume` continues with the spec the campaign began with)",
                error)
        features = [self.feature(frame) for frame in frames]
        finite = [bool(np.isfinite(feature).all()) for feature in features]
        rejected = [self.frame_id(frame) for frame, ok in zip(frames, finite, strict=True) if not ok]
        if rejected:
            self.store.log_event(events.FRAMES_REJECTED, time.time(), coupling=self.name, frames=rejected[:20],
                                 count=len(rejected), reason=f"non-finite values in {self.spec.feature!r}")
        if any(finite):
            self._ingest([self.frame_id(frame) for frame, ok in zip(frames, finite, strict=True) if ok],
                         np.stack([feature for feature, ok in zip(features, finite, strict=True) if ok]))
        if frames:
            # The tailer's position is saved only once the frames it delivered are committed.
            self.store.flush()
            crash_point("coupling.ingest")
            self.store.set_meta(STREAM_STATE.format(name=self.name),
                                {self.relative(name): position for name, position in self.tailer.state().items()})
        new_tasks = [*self._training(), *self._promotions()]
        return RoundResult(len(frames), len(rejected), new_tasks)

    def relative(self, path: str | os.PathLike[str]) -> str:
        """A stream file as frame ids and saved positions name it: relative to the campaign directory."""
        return relative_to_campaign(self.directory, os.fspath(path))

    def frame_id(self, frame: Frame) -> str:
        """``<stream file relative to the campaign directory>:<frame index>``, the frame's identity."""
        return f"{self.relative(frame.file)}:{frame.index}"

    def locate(self, frame_id: str) -> tuple[Path, str, int]:
        """Where the frame ``frame_id`` is now: its stream file (absolute), the source task that wrote it, its index.

        Raises
        ------
        StreamError
            When the id names a file outside the source scale's task folders (an
            absolute id of a campaign moved before its ids were made relative).
        """
        name, _, index = frame_id.rpartition(":")
        path = self.directory / name
        if not path.is_relative_to(self.streams):
            raise StreamError(path, f"lies outside {self.streams}, where the streams of scale "
                                    f"{self.spec.source!r} are: the campaign was moved since this frame was scored")
        return path, path.relative_to(self.streams).parts[0], int(index)

    def feature(self, frame: Frame) -> np.ndarray:
        """The coupling's feature of ``frame`` as the selector receives it: a scalar as a one-element vector."""
        return np.atleast_1d(frame.observables[self.spec.feature])

    def _ingest(self, ids: list[str], features: np.ndarray) -> None:
        """Feed the selector; a selector that raises stops the campaign with a :class:`CouplingError`.

        The event log keeps the selector's traceback, for its author; the
        message says what to change.
        """
        try:
            self.selector.ingest(ids, features)
        except Exception as error:  # a plugin's bug too must stop the campaign cleanly, not kill the coordinator
            where = (f"coupling {self.name!r}: selector {self.spec.selector!r} refused the frames of feature "
                     f"{self.spec.feature!r} (shape {features.shape[1:]} per frame)")
            if isinstance(error, ValueError):  # what Selector.ingest raises for features it cannot score
                message = (f"{where}: {error}; give the coupling a `feature:` this selector scores, or another "
                           "`selector:`, and run the spec again (`resume` continues with the spec the campaign "
                           "began with)")
            else:
                origin = traceback.extract_tb(error.__traceback__)[-1]
                message = (f"{where} with {type(error).__name__}: {error} (raised at {origin.filename}:"
                           f"{origin.lineno}, in {origin.name}; the traceback is in the store's "
                           f"{events.COUPLING_FAILED!r} event): a bug in the selector plugin; fix it, then "
                           f"`mummi-like resume {self.directory}`")
            self._fail(message, error)

    def _fail(self, message: str, error: Exception) -> NoReturn:
        """Log why the coupling cannot go on, with the traceback of ``error``, and raise :class:`CouplingError`."""
        self.store.log_event(events.COUPLING_FAILED, time.time(), coupling=self.name, error=message,
                             traceback="".join(traceback.format_exception(error)))
        raise CouplingError(message) from error

    def _training(self) -> list[TaskSpec]:
        if self.training_in_flight is not None or not self.selector.retrain_due():
            return []
        task_id = f"{self.training_scale}.{self.trainings:04d}"
        workdir = f"tasks/{self.training_scale}/{task_id}"
        training = self.selector.training_task(workdir)
        if training is None:
            return []
        self.trainings += 1
        self.training_in_flight = task_id
        return [TaskSpec(
            id=task_id, payload=training.payload, resources=training.resources, workdir=workdir,
            labels={"scale": self.training_scale, "stage": "training", COUPLING_LABEL: self.name,
                    MODEL_LABEL: training.model_path},
        )]

    def _promotions(self) -> list[TaskSpec]:
        room = self.spec.max_in_flight - len(self.live)
        if self.spec.max_total is not None:
            room = min(room, self.spec.max_total - self.promoted)
        tasks = []
        for frame_id, score in self.selector.select(max(0, room)):
            try:
                path, source_task, index = self.locate(frame_id)
                frame = read_frame(path, index)
            except (StreamError, IndexError) as error:
                # The file went bad since its frame was scored (truncated, replaced, left behind by a move): that
                # candidate is lost, the campaign is not. The selector has marked it selected, so it is not offered
                # again.
                self.store.log_event(events.FRAMES_REJECTED, time.time(), coupling=self.name, frames=[frame_id],
                                     count=1, reason=f"cannot promote it, its stream is unreadable: {error}")
                continue
            assert frame.positions is not None, "read_frame reads whole frames"
            promoted = PromotedFrame(
                frame_id=frame_id, coupling=self.name, source_task=source_task, file=frame.file,
                index=frame.index, step=frame.step, time=frame.time, score=score,
                positions=frame.positions, box=frame.box, observables=frame.observables,
            )
            task_id = f"{self.spec.target}.{self.name}.{self.promoted:05d}"
            task = self.target.promote(promoted, task_id)
            self.promoted += 1
            self.live.add(task_id)
            tasks.append(task.model_copy(update={"labels": {
                **task.labels, "scale": self.spec.target, COUPLING_LABEL: self.name, PROMOTED_LABEL: frame_id,
            }}))
        return tasks

    def feedback(self, task: TaskSpec, result: TaskResult) -> list[TaskSpec]:
        """A promoted task is done: tell the selector its result, and let the source scale act on it."""
        frame_id = relative_to_campaign(self.directory, task.labels[PROMOTED_LABEL])  # absolute in older campaigns
        self.selector.feedback(frame_id, result.value)
        return self.source.on_feedback(Feedback(self.name, frame_id, task, result, self.directory / task.workdir))

    def close(self) -> None:
        self.tailer.close()


def _relative_candidate_ids(store: Store, selector: str, directory: Path) -> None:
    """Rename the stored candidates of ``selector`` whose ids name a stream inside ``directory`` by an absolute path
    (written before frame ids were relative) to relative ids, keeping their order, scores and vectors.

    Committed at once, so that the selector about to restore its pool reads them renamed.
    """
    renamed = [(row, relative_to_campaign(directory, row.id)) for row in store.load_candidates(selector)]
    renamed = [(row, new) for row, new in renamed if new != row.id]
    if renamed:
        store.drop_candidates(selector, [row.id for row, _ in renamed])
        store.save_candidates(selector, [row._replace(id=new) for row, new in renamed])
        store.flush()
