"""The ``active-docking`` scale: ML1 + S1, a surrogate that learns from docking which molecules to dock next.

Docking a whole library costs a Vina run per molecule; IMPECCABLE's ML1
instead docks a random sample, trains a surrogate on the scores, and lets an
acquisition function pick the next molecules from its predictions over the
whole library, round after round, until a budget of docking calls is spent or
the predicted best molecules stop changing. This scale runs that loop as tasks:

- round 0: ``initial`` molecules drawn at random (seeded) in dock tasks
  ``<scale>.r000.b000``, ``<scale>.r000.b001``, ... (``ligands_per_task`` each,
  labels ``stage: dock`` and ``round: 0``), and the training task
  ``<scale>.r000.train`` (``stage: train``) that depends on them;
- when a training task is done, :meth:`ActiveDockingScale.on_result` makes the
  next round from the ``next`` molecules it chose, unless it set ``stop``
  (budget spent, library exhausted, or top-k converged).

Dock tasks run :func:`dock_and_record`: :func:`~mummi_scales.drug_discovery.docking.dock_batch`
with the same settings as the ``docking`` scale (so their values have its
schema, which S2 reads to pick finalists), plus a ``scores.json`` copy of the
result in the task folder for training tasks to read. Training tasks run
:func:`mummi_scales.drug_discovery.surrogate.train_and_acquire` on every dock folder so far.
The library is written once, by :meth:`ActiveDockingScale.tasks`, to
``tasks/<scale>/library.csv``; fingerprints are cached beside it by the first
training task. Nothing else is kept in the scale: a resumed coordinator needs
only the config and the task specs, which carry every input of the next round.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from pydantic import Field, JsonValue

from mummi_like import (
    CallablePayload,
    ReportSection,
    Resources,
    Scale,
    TaskResult,
    TaskSpec,
    atomic_write_text,
    resolved,
)
from mummi_scales.drug_discovery import data
from mummi_scales.drug_discovery.docking import DockingSettings, dock_batch, dock_payload
from mummi_scales.drug_discovery.results import DockingBatch, SurrogateRound
from mummi_scales.drug_discovery.surrogate import (
    BATCH,
    PREDICTIONS,
    SCORES,
    ActiveLearningConfig,
    SurrogateConfig,
    load_predictions,
    random_choice,
    round_rng,
)
from mummi_scales.generic.parameters import builtin_values, configured_env

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from mummi_like import CampaignView

RECORD_FUNCTION = "mummi_scales.drug_discovery.active_docking:dock_and_record"
"""What the dock tasks call."""
TRAIN_FUNCTION = "mummi_scales.drug_discovery.surrogate:train_and_acquire"
"""What the training tasks call."""
LIBRARY = "library.csv"
"""The library table (``id,smiles``) in the scale's folder, written by :meth:`ActiveDockingScale.tasks`."""
FINGERPRINTS = "fingerprints.npz"
"""The fingerprint cache in the scale's folder, written by the first training task."""
DOCK, TRAIN = "dock", "train"
"""Values of the ``stage`` label of the two kinds of task."""
SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")
"""What a molecule id may hold: it names a pose file."""


class ActiveDockingConfig(DockingSettings, ActiveLearningConfig):
    """Config of the ``active-docking`` scale: the docking settings, the active-learning plan and the surrogate.

    From the docking settings: ``target``, ``library_size``, ``library_seed`` and ``seed`` (the
    MOSES draw, unless ``library_file`` is given), ``include_known_ligands``,
    ``exhaustiveness``, ``box_size``, ``max_evals``, ``poses``,
    ``ligands_per_task``, and ``resources`` (of each dock task), ``retry``,
    ``env``, ``priority``. From the plan: ``initial``, ``batch``, ``budget``,
    ``acquisition``, ``beta``, ``explore``, ``top_k``, ``converged_overlap``, ``patience``.
    ``seed`` also seeds the random round 0, the surrogate and acquisition.
    """

    library_file: str | None = Field(
        None,
        description="A SMILES (.smi/.txt), CSV or SD file of molecules to screen instead of the MOSES draw (gzip "
        "allowed), relative to the spec's folder and inside it; library_size is then ignored.",
    )
    surrogate: SurrogateConfig = Field(
        default_factory=SurrogateConfig, description="The fingerprint-MLP ensemble that predicts docking scores."
    )
    train_resources: Resources = Field(
        default_factory=Resources,
        description="What each training task reserves; its cores become torch's threads.",
    )


class ActiveDockingScale(Scale):
    """Dock what a surrogate chooses, round after round, from a library drawn once (see the module's docstring).

    Dock task values are :class:`~mummi_scales.drug_discovery.results.DockingBatch`
    (the ``docking`` scale's schema), training task values
    :class:`~mummi_scales.drug_discovery.results.SurrogateRound`.
    """

    config_model: ClassVar[type[ActiveDockingConfig]] = ActiveDockingConfig
    config: ActiveDockingConfig

    @property
    def folder(self) -> Path:
        """The scale's folder under the campaign directory (``tasks/<scale>``), holding the library and the tasks."""
        return self.context.campaign_dir / "tasks" / self.context.name

    @cached_property
    def library_path(self) -> Path | None:
        """``library_file`` resolved (symlinks too) against the spec's folder; ``None`` for the MOSES draw.

        Raises
        ------
        ValueError
            When it lies outside the spec's folder or cannot be resolved (a
            symlink loop, a NUL character).
        """
        if self.config.library_file is None:
            return None
        spec_dir = self.context.spec_dir.resolve()
        try:
            path = resolved(spec_dir / self.config.library_file)
        except ValueError as error:
            raise ValueError(f"library_file {self.config.library_file!r}: {error}") from None
        if not path.is_relative_to(spec_dir):
            raise ValueError(
                f"library_file {self.config.library_file!r} resolves to {path}, outside the spec's folder "
                f"{spec_dir}; copy the library next to the spec (inputs stay with the spec that uses them)"
            )
        return path

    def check_inputs(self) -> None:
        """Refuse a ``library_file`` outside the spec's folder, unresolvable or unreadable (see
        :meth:`~mummi_like.Scale.check_inputs`); its molecules are read, and checked, when the tasks are made."""
        path = self.library_path
        if path is None:
            return
        try:
            with path.open("rb"):
                pass
        except OSError as error:
            raise ValueError(
                f"library_file {self.config.library_file!r}: cannot read the library {path}: "
                f"{error.strerror or error}; give a readable file inside the spec's folder"
            ) from None

    @cached_property
    def ligands(self) -> list[tuple[str, str]]:
        """``(id, smiles)`` of the library: known ligands first (when asked), then the file or the MOSES draw.

        Raises
        ------
        ValueError
            When ``library_file`` lies outside the spec's folder (symlinks
            resolved), cannot be resolved or read, or an id is not file-name
            safe or repeats.
        """
        known = data.known_ligands() if self.config.include_known_ligands else []
        path = self.library_path
        drawn = self.config.library() if path is None else data.read_library(path)
        ligands = [*known, *drawn]
        bad = [ligand_id for ligand_id, _ in ligands if not SAFE_ID.fullmatch(ligand_id)]
        counts = Counter(ligand_id for ligand_id, _ in ligands)
        repeated = [ligand_id for ligand_id, count in counts.items() if count > 1]
        if bad or repeated:
            raise ValueError(
                f"library ids must be unique and hold only letters, digits, '.', '_' and '-' (they name pose files); "
                f"unsafe: {bad[:5]}, repeated: {repeated[:5]}"
            )
        return ligands

    def tasks(self) -> list[TaskSpec]:
        """Write the library table, then round 0: ``initial`` random molecules and the first training task.

        Raises
        ------
        ValueError
            When the library is smaller than ``initial``.
        """
        ligands = self.ligands
        if len(ligands) < self.config.initial:
            raise ValueError(
                f"initial ({self.config.initial}) asks for more molecules than the library has ({len(ligands)}); "
                "lower initial or enlarge the library"
            )
        self.folder.mkdir(parents=True, exist_ok=True)
        text = io.StringIO()
        writer = csv.writer(text, lineterminator="\n")
        writer.writerow(["id", "smiles"])
        writer.writerows(ligands)
        atomic_write_text(self.folder / LIBRARY, text.getvalue())
        chosen = random_choice(np.arange(len(ligands)), self.config.initial, round_rng(self.config.seed, 0))
        return self.round_tasks(0, [list(ligands[index]) for index in chosen], [], [])

    def on_result(self, task: TaskSpec, result: TaskResult) -> list[TaskSpec]:
        """After a training task: the next round from the molecules it chose, unless it said stop."""
        if task.labels.get("stage") != TRAIN:
            return []
        trained = SurrogateRound.model_validate(result.value)
        if trained.stop or not trained.next:
            return []
        assert isinstance(task.payload, CallablePayload)
        earlier = task.payload.kwargs
        overlap = trained.topk_overlap
        overlaps = [*earlier["overlaps"], *([] if overlap is None else [overlap])]  # type: ignore[misc]
        docks = earlier["dock_dirs"]
        chosen: list[JsonValue] = [list(pair) for pair in trained.next]
        return self.round_tasks(trained.round + 1, chosen, docks, overlaps)  # type: ignore[arg-type]

    def round_tasks(
        self, round_index: int, ligands: list[JsonValue], earlier_docks: list[JsonValue], overlaps: list[JsonValue]
    ) -> list[TaskSpec]:
        """The dock tasks of one round over ``ligands`` (``[id, smiles]`` pairs) and its training task.

        Parameters
        ----------
        round_index:
            The round's number, in its task ids and ``round`` label.
        ligands:
            What the round docks.
        earlier_docks:
            Folders (relative to a training task's) of the dock tasks of every
            earlier round, which the training task reads too.
        overlaps:
            Top-k overlaps of the earlier rounds, for the convergence test.
        """
        name = self.context.name
        size = self.config.ligands_per_task
        batches = [ligands[start : start + size] for start in range(0, len(ligands), size)]
        width = max(3, len(str(len(batches) - 1)))
        docks = []
        for number, batch in enumerate(batches):
            task_id = f"{name}.r{round_index:03d}.b{number:0{width}d}"
            payload = dock_payload(self.config, batch, self._env(task_id), self.context.campaign_dir,
                                   function=RECORD_FUNCTION)
            docks.append(self._spec(task_id, payload, self.config.resources, DOCK, round_index))
        train_id = f"{name}.r{round_index:03d}.train"
        previous = f"../{name}.r{round_index - 1:03d}.{TRAIN}/{PREDICTIONS}" if round_index else None
        kwargs: dict[str, JsonValue] = {
            "library": f"../{LIBRARY}",
            "cache": f"../{FINGERPRINTS}",
            "dock_dirs": [*earlier_docks, *(f"../{task.id}" for task in docks)],
            "round_index": round_index,
            "previous": previous,
            "overlaps": overlaps,
            "surrogate": self.config.surrogate.model_dump(mode="json"),
            "learning": self.config.model_dump(mode="json", include=set(ActiveLearningConfig.model_fields)),
            "seed": self.config.seed,
            "threads": self.config.train_resources.cores,
        }
        payload = CallablePayload(function=TRAIN_FUNCTION, kwargs=kwargs, env=self._env(train_id))
        # after, not depends_on: a dock task that fails outright (Vina crashed, the walltime ran out) must not fail
        # the round's training and with it the rest of the campaign; the training reads the folders that have scores.
        train = self._spec(train_id, payload, self.config.train_resources, TRAIN, round_index)
        train = train.model_copy(update={"after": [task.id for task in docks]})
        return [*docks, train]

    def _env(self, task_id: str) -> dict[str, str]:
        """The config's ``env`` with the built-in placeholders of ``task_id`` filled in."""
        return configured_env(self.config, builtin_values(self, task_id))

    def _spec(
        self,
        task_id: str,
        payload: CallablePayload,
        resources: Resources,
        stage: str,
        round_index: int,
    ) -> TaskSpec:
        return TaskSpec(
            id=task_id,
            payload=payload,
            resources=resources,
            retry=self.config.retry,
            labels={"scale": self.context.name, "stage": stage, "round": str(round_index)},
            workdir=self.workdir(task_id),
            priority=self.config.priority,
        )

    @classmethod
    def report_sections(cls, view: CampaignView, scale_name: str) -> list[ReportSection]:
        """Docking score histogram, surrogate parity on the last round's out-of-fold predictions, and learning curve."""
        docks = [DockingBatch.model_validate(task.value) for task in view.done(scale_name, stage=DOCK)]
        rounds = sorted(((SurrogateRound.model_validate(task.value), task.workdir)
                         for task in view.done(scale_name, stage=TRAIN)), key=lambda pair: pair[0].round)
        sections = [_histogram(docks)]
        if rounds:
            last, workdir = rounds[-1]
            if (workdir / PREDICTIONS).is_file():
                sections.append(_parity(load_predictions(workdir / PREDICTIONS), last))
            sections.append(_learning_curve([trained for trained, _ in rounds]))
        return sections


def dock_and_record(**kwargs: JsonValue) -> dict[str, JsonValue]:
    """:func:`~mummi_scales.drug_discovery.docking.dock_batch` (same arguments and value), plus a :data:`SCORES`
    copy of the value.

    The copy lets training tasks read every docking result from the task
    folders alone; it is written atomically, so a training task never reads
    half a file. The batch itself (:data:`BATCH`) is written first: a training
    task runs ``after`` its dock tasks however they ended, and a folder with a
    batch but no scores names the ligands of a dock task that crashed, was
    killed or ran out of time, which the round then counts as failed instead
    of choosing them again.
    """
    atomic_write_text(BATCH, json.dumps(kwargs["ligands"]))
    results = dock_batch(**kwargs)  # type: ignore[arg-type]
    atomic_write_text(SCORES, json.dumps(results))
    return results


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _histogram(docks: Sequence[DockingBatch]) -> ReportSection:
    scores = {ligand_id: result.score for batch in docks for ligand_id, result in batch.docked().items()}
    failed = sum(len(batch.failed()) for batch in docks)
    figure = _figure(7, 3.4)
    ax = figure.subplots()
    if scores:
        ax.hist(list(scores.values()), bins=40, color="#457b9d")
        for ligand_id, score in scores.items():
            if ligand_id.startswith(data.KNOWN_PREFIX):
                ax.axvline(score, color="#e63946", linewidth=1, alpha=0.8)
    ax.set_xlabel("Vina score (kcal/mol; lower binds better)")
    ax.set_ylabel("molecules")
    ax.set_title("Docking scores (red lines: known ligands)")
    best = min(scores.items(), key=lambda item: item[1]) if scores else None
    text = f"{len(scores)} molecules docked, {failed} failed."
    if best is not None:
        text += f" Best: {best[0]} at {best[1]:.2f} kcal/mol."
    return ReportSection("Docking score distribution", figure=figure, text=text)


def _parity(predictions: Mapping[str, np.ndarray], trained: SurrogateRound) -> ReportSection:
    out = ~np.isnan(predictions["out_of_fold"])
    truth, predicted, spread = predictions["score"][out], predictions["out_of_fold"][out], predictions["std"][out]
    figure = _figure(4.6, 4.2)
    ax = figure.subplots()
    if out.any():
        ax.errorbar(truth, predicted, yerr=spread, fmt="o", markersize=3, alpha=0.7, color="#1d3557", elinewidth=0.6)
        low, high = float(min(truth.min(), predicted.min())), float(max(truth.max(), predicted.max()))
        ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("docked score (kcal/mol)")
    ax.set_ylabel("surrogate mean ± std (kcal/mol)")
    r2, rho = trained.r2, trained.spearman
    ax.set_title(f"Out-of-fold predictions, round {trained.round}")
    text = (
        f"{int(out.sum())} docked molecules of round {trained.round}, each predicted by the members that held it "
        "out of their training: "
        f"R^2 = {'n/a' if r2 is None else f'{r2:.2f}'}, Spearman = {'n/a' if rho is None else f'{rho:.2f}'}."
    )
    return ReportSection("Surrogate parity", figure=figure, text=text)


def _learning_curve(trains: Sequence[SurrogateRound]) -> ReportSection:
    calls = [trained.docked for trained in trains]
    r2 = [np.nan if trained.r2 is None else trained.r2 for trained in trains]
    best = [np.nan if trained.best_score is None else trained.best_score for trained in trains]
    figure = _figure(7, 3.4)
    left, right = figure.subplots(1, 2)
    left.plot(calls, r2, marker="o", color="#2a9d8f")
    left.set_xlabel("docking calls")
    left.set_ylabel("out-of-fold R^2")
    left.set_title("Surrogate accuracy")
    right.plot(calls, best, marker="o", color="#e76f51")
    right.set_xlabel("docking calls")
    right.set_ylabel("best score found (kcal/mol)")
    right.set_title("Best molecule so far")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    stop = trains[-1].stop
    text = f"{len(trains)} round(s); {'stopped: ' + stop if stop else 'not stopped yet'}."
    return ReportSection("Active-learning curve", figure=figure, text=text)
