"""The interface a selector plugin implements, and the persisted, bounded pool of candidates it scores.

A selector is a learned promotion policy, MuMMI's DynIm or DeepDriveMD's
outlier detector made general: coarse simulations stream frames (ids and
feature arrays) into :meth:`Selector.ingest`, the selector scores them, and when
fine slots are free the coordinator asks :meth:`Selector.select` for the most
informative ones. A selector that learns a model says when it wants retraining
(:meth:`Selector.retrain_due`) and describes the retraining as a Python-callable
task (:meth:`Selector.training_task`) that the coordinator runs on its backend
like any other task; the new model is then hot-swapped with
:meth:`Selector.load_model`.

Like :mod:`mummi_like.scale`, this module knows nothing of chemistry and does not
import torch: selectors live in their own packages (``selectors/`` here, or a
user's) under the ``mummi_like.selectors`` entry-point group.

Persistence is write-through. Every change to the pool (frames added, rescored,
promoted, evicted) and to the selector's state is handed to the campaign
:class:`~mummi_like.store.Store` at once, where it is buffered and committed by
the loop's per-tick :meth:`~mummi_like.store.Store.flush` together with the
tasks: a promotion and the fine task it starts commit in one transaction, and no
separate checkpoint call can be forgotten. A selector built with the store of an
existing campaign restores what that store committed, so a restarted
coordinator continues where it stopped.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from mummi_like.store import CandidateRow, Store
from mummi_like.tasks import CallablePayload, ConfigKey, Resources, StrictModel, declared_resources

VECTOR_DTYPE = np.dtype("<f4")
"""How the pool keeps a frame's vector, in memory and in the store: half the bytes of float64 and ample for scoring."""


class SelectorConfig(StrictModel):
    """Settings every selector has; a plugin's ``config_model`` extends it with its own."""

    pool_size: int = Field(
        1000,
        ge=1,
        description="Most frames waiting for promotion. When more arrive, the lowest-scoring are dropped (the "
        "oldest first among equal scores), so memory and scoring cost stay bounded however long the campaign runs.",
    )


@dataclass(frozen=True)
class SelectorContext:
    """Where a selector is: its name, where it writes, its seed, and the store it persists to."""

    name: str = field(metadata={"doc": "The selector's name in the campaign (its coupling); scopes its stored rows."})
    campaign_dir: Path = field(metadata={"doc": "Root of everything the campaign writes; training data goes below."})
    seed: int = field(default=0, metadata={"doc": "Seed of every random choice, so that a campaign can be replayed."})
    store: Store | None = field(
        default=None, metadata={"doc": "The campaign store the pool is written through to; none keeps it in memory."}
    )

    @property
    def data_dir(self) -> Path:
        """``campaign_dir/selectors/<name>``: where the selector writes training data for its training tasks."""
        return self.campaign_dir / "selectors" / self.name


@dataclass(frozen=True)
class TrainingTask:
    """A selector's retraining, described as a Python-callable task the coordinator runs on its backend.

    The coordinator turns it into a :class:`~mummi_like.tasks.TaskSpec` (with
    :attr:`payload` and :attr:`resources`); a backend worker calls
    ``function(**kwargs)``, which writes the new model to :attr:`model_path` and
    returns JSON-able metadata (e.g. the final loss). When the task is done the
    coordinator hands :attr:`model_path` to :meth:`Selector.load_model`.

    Raises
    ------
    ValueError
        When ``function`` is not of the form ``package.module:function``.
    TypeError
        When ``kwargs`` is not JSON-able, which a task's arguments must be.
    """

    function: str
    """Import path of the training function, ``package.module:function``."""
    kwargs: dict[str, Any]
    """JSON-able keyword arguments: paths of the training data and of the model to write, seed, epochs..."""
    resources: Resources
    """What the training needs while it runs (cores, GPUs, walltime)."""
    model_path: str
    """Where ``function`` writes the model, an absolute path."""

    def __post_init__(self) -> None:
        # Fail where the selector builds the task, not when the loop submits or a worker receives it.
        json.dumps(self.kwargs)
        CallablePayload(function=self.function)

    @property
    def payload(self) -> CallablePayload:
        """The task's payload, as a :class:`~mummi_like.tasks.TaskSpec` takes it."""
        return CallablePayload(function=self.function, kwargs=self.kwargs)


def name_frames(ids: Sequence[str], bad: np.ndarray) -> str:
    """``"2 of 10 frames: 'a:1', 'a:7'"`` for the ``bad`` mask over ``ids``, at most ten named, for error messages."""
    named = [ids[int(i)] for i in np.flatnonzero(bad)]
    shown = ", ".join(repr(i) for i in named[:10]) + (", ..." if len(named) > 10 else "")
    return f"{len(named)} of {len(ids)} frames: {shown}"


class CandidatePool:
    """The frames a selector holds, with their vectors and scores, bounded and written through to the store.

    Frames *waiting* for promotion are at most ``capacity``; :meth:`trim` drops
    the lowest-scoring beyond it, the oldest first among equal scores (a frame
    that scores low is the least worth promoting, and among equals the older one
    has had its chance). Frames *promoted* by :meth:`take` are kept with their
    vectors: a selector may score against them (distance to what was promoted),
    and their ids are never accepted again. Their number is bounded by the fine
    simulations a campaign can afford.

    Parameters
    ----------
    capacity
        Most waiting frames.
    store, selector
        Where every change is written through (buffered until the store's next
        flush), and the name that scopes the rows; no store keeps the pool in
        memory only.
    """

    def __init__(self, capacity: int, store: Store | None = None, selector: str = "") -> None:
        self.capacity = capacity
        self._store = store
        self._selector = selector
        self.ids: list[str] = []
        """Ids of the waiting frames, in pool order (arrival order, less the frames that left)."""
        self.seqs = np.empty(0, dtype=np.int64)
        self.scores = np.empty(0, dtype=np.float64)
        self.vectors = np.empty((0, 0), dtype=VECTOR_DTYPE)
        self.selected_ids: list[str] = []
        """Ids of the promoted frames; :meth:`take` appends to it (a restored pool lists them in arrival order)."""
        self.selected_vectors = np.empty((0, 0), dtype=VECTOR_DTYPE)
        self._known: set[str] = set()

    def __len__(self) -> int:
        return len(self.ids)

    def __contains__(self, frame_id: object) -> bool:
        """Whether the frame is waiting or was promoted."""
        return frame_id in self._known

    @classmethod
    def restore(cls, capacity: int, store: Store, selector: str) -> CandidatePool:
        """The pool as ``store`` committed it for ``selector``, still writing through to ``store``.

        Stored scores are taken as they are, so the restored pool ranks exactly
        as the one that wrote them; with a smaller ``capacity`` than before, the
        excess is trimmed.
        """
        pool = cls(capacity, store, selector)
        rows = store.load_candidates(selector)
        waiting = [row for row in rows if not row.selected]
        promoted = [row for row in rows if row.selected]
        pool.ids = [row.id for row in waiting]
        pool.seqs = np.array([row.seq for row in waiting], dtype=np.int64)
        pool.scores = np.array([row.score for row in waiting], dtype=np.float64)
        pool.vectors = _decode([row.vector for row in waiting])
        pool.selected_ids = [row.id for row in promoted]
        pool.selected_vectors = _decode([row.vector for row in promoted])
        pool._known = {row.id for row in rows}
        pool.trim()
        return pool

    def add(self, ids: Sequence[str], vectors: np.ndarray, seqs: np.ndarray) -> None:
        """Append new waiting frames (unscored: the caller rescores the pool next), which the caller checked are new."""
        vectors = np.ascontiguousarray(vectors, dtype=VECTOR_DTYPE)
        if not self.ids:
            self.vectors = self.vectors.reshape(0, vectors.shape[1])
        self.ids.extend(ids)
        self._known.update(ids)
        self.seqs = np.concatenate([self.seqs, seqs])
        self.scores = np.concatenate([self.scores, np.zeros(len(ids))])
        self.vectors = np.concatenate([self.vectors, vectors])
        if self._store is not None:
            self._store.save_candidates(
                self._selector,
                (CandidateRow(i, int(q), 0.0, False, v.tobytes()) for i, q, v in zip(ids, seqs, vectors)),
            )

    def rescore(self, scores: np.ndarray) -> None:
        """Replace the scores of the waiting frames (pool order); only changed scores are written."""
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != self.scores.shape:
            raise ValueError(f"{scores.shape[0]} scores for a pool of {len(self)} frames")
        changed = np.flatnonzero(scores != self.scores)
        self.scores = scores.copy()
        if self._store is not None:
            self._store.update_candidates(self._selector, ((self.ids[i], float(scores[i]), False) for i in changed))

    def best(self) -> int:
        """Pool index of the highest score, the oldest frame among equal ones; the pool must not be empty."""
        top = np.flatnonzero(self.scores == self.scores.max())
        return int(top[np.argmin(self.seqs[top])])

    def take(self, index: int) -> tuple[str, float]:
        """Promote the frame at ``index``: it leaves the waiting frames, is kept as promoted, and is returned."""
        frame_id, score = self.ids.pop(index), float(self.scores[index])
        vector = self.vectors[index]
        if not self.selected_ids:
            self.selected_vectors = self.selected_vectors.reshape(0, vector.shape[0])
        self.selected_ids.append(frame_id)
        self.selected_vectors = np.concatenate([self.selected_vectors, vector[None]])
        self.seqs = np.delete(self.seqs, index)
        self.scores = np.delete(self.scores, index)
        self.vectors = np.delete(self.vectors, index, axis=0)
        if self._store is not None:
            self._store.update_candidates(self._selector, [(frame_id, score, True)])
        return frame_id, score

    def trim(self) -> list[str]:
        """Drop the waiting frames beyond ``capacity``: lowest scores first, the oldest first among equals."""
        excess = len(self) - self.capacity
        if excess <= 0:
            return []
        drop = np.lexsort((self.seqs, self.scores))[:excess]
        keep = np.setdiff1d(np.arange(len(self)), drop)
        dropped = [self.ids[i] for i in drop]
        self.ids = [self.ids[i] for i in keep]
        self.seqs, self.scores, self.vectors = self.seqs[keep], self.scores[keep], self.vectors[keep]
        self._known.difference_update(dropped)
        if self._store is not None:
            self._store.drop_candidates(self._selector, dropped)
        return dropped


def _decode(blobs: list[bytes]) -> np.ndarray:
    """Stored vectors back to one (n, d) array; all of a pool's vectors have the same length."""
    if not blobs:
        return np.empty((0, 0), dtype=VECTOR_DTYPE)
    return np.frombuffer(b"".join(blobs), dtype=VECTOR_DTYPE).reshape(len(blobs), -1).copy()


class Selector(abc.ABC):
    """A learned promotion policy: scores streamed frames and hands out the most informative.

    The base class owns what every selector must get right the same way: input
    checks, the bounded pool, promotion without repeats, ordering and
    persistence. A plugin sets :attr:`config_model` (a subclass of
    :class:`SelectorConfig`, every field described) and implements
    :meth:`_scores`; it may override :meth:`_check_frames` (its own input
    checks), :meth:`_vectors` (what it keeps of a frame), :meth:`_on_selected`
    (scores that change with each promotion) and, when it learns a model,
    :meth:`retrain_due`, :meth:`training_task` and :meth:`load_model`. Its own
    persistent fields go through :meth:`_state` and :meth:`_load_state`.

    Parameters
    ----------
    config
        The plugin's validated config.
    context
        Name, campaign directory, seed and store. With a store that holds a
        state for this name, the selector restores it: its pool, promoted
        frames and counters, as committed by the store's last flush.
    """

    config_model: ClassVar[type[SelectorConfig]]

    def __init__(self, config: SelectorConfig, context: SelectorContext) -> None:
        self.config = config
        self.context = context
        self.frames_seen = 0
        """New frames ingested over the selector's life, restarts included."""
        self.frame_shape: tuple[int, ...] | None = None
        """Shape of one frame's features, fixed by the first batch."""
        self._next_seq = 0
        store = context.store
        saved = None if store is None else store.load_selector_state(context.name)
        if store is None or saved is None:
            self.pool = CandidatePool(config.pool_size, store, context.name)
        else:
            self.pool = CandidatePool.restore(config.pool_size, store, context.name)
            self._load_state(saved)

    # -- what the coordinator calls ----------------------------------------------

    def ingest(self, ids: Sequence[str], features: np.ndarray) -> None:
        """Add a batch of frames to the pool and rescore it.

        Frames already waiting or promoted are skipped, so a stream that
        re-delivers frames after a restart does no harm; a frame evicted from a
        full pool is accepted again. The whole batch is checked before anything
        changes.

        Parameters
        ----------
        ids
            One id per frame; a coupling gives ``"<stream file>:<frame index>"``, the file relative to the
            campaign directory.
        features
            The frames' features, first axis = frame (a vector or a map per frame).

        Raises
        ------
        ValueError
            When ids and frames disagree in number, an id is not a non-empty
            string, the features are not numeric, a frame's shape differs from
            the first batch's, or features hold NaN or infinite values (the
            message names the frames).
        """
        frames = self._checked(ids, features)
        batch_seen: set[str] = set()
        fresh: list[int] = []
        for index, frame_id in enumerate(ids):
            if frame_id not in self.pool and frame_id not in batch_seen:
                batch_seen.add(frame_id)
                fresh.append(index)
        if fresh:
            if self.frame_shape is None:
                self.frame_shape = frames.shape[1:]
            seqs = np.arange(self._next_seq, self._next_seq + len(fresh), dtype=np.int64)
            self.pool.add([ids[i] for i in fresh], self._vectors(frames[fresh]), seqs)
            self._next_seq += len(fresh)
            self.frames_seen += len(fresh)
            self.pool.rescore(self._scores())
            self.pool.trim()
        self._save_state()

    def select(self, k: int) -> list[tuple[str, float]]:
        """Promote up to ``k`` waiting frames and return ``(id, score)``, highest score first.

        The frames leave the pool for good: no id is returned twice over the
        selector's life. Ties go to the older frame, so the result depends only
        on the frames, their order and the seed.

        Raises
        ------
        ValueError
            When ``k`` is negative.
        """
        if k < 0:
            raise ValueError(f"select(k) needs k >= 0, got {k}")
        chosen = []
        for _ in range(min(k, len(self.pool))):
            chosen.append(self.pool.take(self.pool.best()))
            self._on_selected()
        self._save_state()
        return chosen

    def retrain_due(self) -> bool:
        """Whether the selector wants a new model now; never, for a selector without one."""
        return False

    @classmethod
    def resource_requests(cls, config: SelectorConfig) -> dict[ConfigKey, Resources]:
        """What this selector's training tasks will reserve, by the key of ``config`` that says so.

        ``mummi-like validate`` checks each against what the spec's backend
        declares it has, so a training that could never start is refused at its
        YAML path before the campaign runs, not when the first retraining is
        due. By default every :class:`~mummi_like.tasks.Resources` the config
        holds; a selector that sizes its training otherwise (the CVAE's
        ``train_cores``) overrides this, and one without training has none.
        """
        return declared_resources(config)

    def training_task(self, workdir: str) -> TrainingTask | None:
        """The retraining as a task whose model goes under ``workdir``; ``None`` for a selector without a model.

        ``workdir`` is the task's working directory, relative to the campaign
        directory (or absolute). The coordinator calls this when
        :meth:`retrain_due` says so, runs the task, and passes its
        :attr:`TrainingTask.model_path` to :meth:`load_model` once it is done.
        """
        return None

    def feedback(self, frame_id: str, value: Any) -> None:
        """The result of the fine task that continued ``frame_id``; ignored by default.

        A selector may keep such results as labels for its next training (the
        fine scale telling the selector what its promotions were worth).
        """

    def load_model(self, path: str) -> None:
        """Hot-swap the model written by a training task and rescore the pool.

        Raises
        ------
        TypeError
            For a selector that trains no model (its :meth:`training_task` is ``None``).
        """
        raise TypeError(f"selector {self.context.name!r} ({type(self).__name__}) trains no model to load")

    # -- what a plugin implements ---------------------------------------------------

    @abc.abstractmethod
    def _scores(self) -> np.ndarray:
        """Scores of all waiting frames (``self.pool`` order), higher = more worth promoting.

        Called after every batch the pool took in and after a model swap, with
        the pool's waiting and promoted vectors at hand.
        """

    def _check_frames(self, ids: Sequence[str], frames: np.ndarray) -> None:
        """Refuse frames this selector cannot score with a ValueError naming them; all pass by default.

        Runs after the generic checks of :meth:`ingest` and before anything changes.
        """

    def _vectors(self, frames: np.ndarray) -> np.ndarray:
        """What the pool keeps of each frame, one row per frame; the flattened features by default."""
        return frames.reshape(len(frames), -1)

    def _on_selected(self) -> None:
        """Update scores after a frame was promoted (last of ``pool.selected_ids``); nothing by default."""

    def _state(self) -> dict[str, Any]:
        """The JSON-able fields a restart needs; a plugin extends the dict with its own."""
        return {
            "frames_seen": self.frames_seen,
            "next_seq": self._next_seq,
            "frame_shape": None if self.frame_shape is None else list(self.frame_shape),
        }

    def _load_state(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`_state` saved; a plugin reads its own fields after calling this."""
        self.frames_seen = state["frames_seen"]
        self._next_seq = state["next_seq"]
        self.frame_shape = None if state["frame_shape"] is None else tuple(state["frame_shape"])

    def _save_state(self) -> None:
        """Write the state through to the store (buffered until its next flush)."""
        if self.context.store is not None:
            self.context.store.save_selector_state(self.context.name, self._state())

    # -- helpers ---------------------------------------------------------------------

    def _checked(self, ids: Sequence[str], features: np.ndarray) -> np.ndarray:
        """The features as a float64 array after every check of :meth:`ingest`."""
        name = self.context.name
        try:
            frames = np.asarray(features, dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"selector {name!r}: features must be a numeric array ({error})") from error
        if frames.ndim < 2:
            raise ValueError(
                f"selector {name!r}: features of shape {frames.shape} have no feature axis; pass one row (or map) "
                "per frame, e.g. shape (frames, features)"
            )
        if len(ids) != len(frames):
            raise ValueError(f"selector {name!r}: {len(ids)} ids for {len(frames)} frames of features")
        bad_ids = [i for i in ids if not isinstance(i, str) or not i]
        if bad_ids:
            raise ValueError(f"selector {name!r}: frame ids must be non-empty strings, got {bad_ids[:5]!r}")
        if self.frame_shape is not None and frames.shape[1:] != self.frame_shape:
            raise ValueError(
                f"selector {name!r}: frames of shape {frames.shape[1:]} differ from the {self.frame_shape} of the "
                "frames it already holds; one selector scores one kind of feature"
            )
        finite = np.asarray(np.isfinite(frames.reshape(len(frames), -1)).all(axis=1))
        if not finite.all():
            raise ValueError(
                f"selector {name!r}: features of {name_frames(ids, ~finite)} hold NaN or infinite values; "
                "nothing of this batch was ingested (drop or repair those frames)"
            )
        self._check_frames(ids, frames)
        return frames
