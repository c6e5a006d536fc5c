"""The ``complex-md`` scale: S2 of the drug-discovery campaign, DeepDriveMD-style adaptive MD of docked complexes.

The finalists of docking are known only when docking is over, so the scale has
no task at the start: :meth:`ComplexMDScale.on_upstream_done` reads the
finished dock tasks upstream (their values are
:class:`~mummi_scales.drug_discovery.results.DockingBatch`), keeps the
``top_k`` best scores and, per finalist, makes

- ``<scale>.<ligand>.prep`` (label ``stage: prep``): :func:`prepare`, which
  builds the Amber complex with :func:`mummi_scales.drug_discovery.complexes.prepare_complex`
  in its working directory (receptor and ligand parameters cached under
  :data:`CACHE` of the campaign);
- ``<scale>.<ligand>.md000`` (``stage: md``), depending on it: one segment of
  Langevin MD in implicit solvent (:func:`run_segment`), streaming
  ``trajectory.h5md`` with the per-frame ``ligand_rmsd``, ``contacts`` and
  ``ca_contact_map``.

The adaptive part is a coupling of the scale to itself: a selector (the CVAE +
local-outlier-factor one, DeepDriveMD's choice) learns the streamed C-alpha
contact maps and promotes outlying frames; :meth:`ComplexMDScale.promote`
restarts a segment of the same ligand from each, with fresh velocities. Every
md task's folder holds :data:`SEGMENT` (ligand, complex), written when the task
is made, so a frame's task says which complex it belongs to without state in
the scale.

A ligand whose RMSD from its docked pose (pocket C-alphas superposed) exceeds
``leave_pocket_rmsd`` is flagged ``left_pocket``: the docked pose was not
stable, which S3 reports next to the binding energy.
"""

from __future__ import annotations

import html
import json
import math
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
from pydantic import Field, JsonValue, model_validator

from mummi_like import DoneTask, PromotedFrame, Scale, TaskSpec, atomic_write, atomic_write_text, task_seed
from mummi_scales.drug_discovery import data
from mummi_scales.drug_discovery.complexes import (
    COMPLEX_JSON,
    Solvent,
    initial_positions,
    load_complex,
    prepare_complex,
    simulate,
)
from mummi_scales.drug_discovery.results import ComplexPrep, DockingBatch, Segment, parse_as
from mummi_scales.generic.parameters import ParameterizedConfig, callable_task, campaign_root

if TYPE_CHECKING:
    from mummi_like import CampaignView, ReportSection

PREPARE_FUNCTION = "mummi_scales.drug_discovery.complex_md:prepare"
SEGMENT_FUNCTION = "mummi_scales.drug_discovery.complex_md:run_segment"
PREP, MD = "prep", "md"
"""Values of the ``stage`` label."""
TRAJECTORY = "trajectory.h5md"
"""The stream of each md task, in its working directory; the self-coupling tails these."""
SEGMENT = "segment.json"
"""Written into each md task's folder when the task is made: ``ligand``, ``smiles``, ``docking_score``, ``complex``."""
START = "start.npz"
"""The frame a promoted segment starts from (``positions`` in nm, and where the frame came from)."""
CACHE = "cache/complexes"
"""Receptors per target and ligand parameters per ligand, below the campaign directory."""
SAFE_ID = re.compile(r"[A-Za-z0-9._-]+")
"""What a ligand id may hold: it names tasks and folders."""


class ComplexMDConfig(ParameterizedConfig):
    """Config of the ``complex-md`` scale: how many finalists, how the complexes are built, and the dynamics.

    Takes ``resources``, ``retry``, ``env`` and ``priority`` of every
    parameterized scale; ``parameters`` must stay empty (the tasks are the
    finalists and the promoted restarts).
    """

    top_k: int = Field(3, ge=1, description="Finalists: the ligands with the best (lowest) docking scores upstream.")
    target: str = Field("PGR", description="The dockstring target the ligands were docked into.")
    receptor: data.ReceptorSource = Field(
        "crystal", description="The receptor the ligands were docked into (the docking scale's receptor: the poses "
        "are in its frame): dockstring's, or the target's crystal structure prepared here.",
    )
    solvent: Solvent = Field(
        "obc2", description="Implicit solvent: 'obc2' (built-in force, fast) or 'gbn2' (custom GB, more accurate)."
    )
    cutoff: float | None = Field(
        2.0, gt=0, description="Non-bonded cutoff (nm) for CutoffNonPeriodic; null for none (slower, exact)."
    )
    pocket_radius: float | None = Field(
        None, gt=0,
        description="Keep only residues within this many angstrom of the docked ligand, backbone restrained (demo "
        "speed); null simulates the whole protein (accurate).",
    )
    feature_radius: float = Field(
        10.0, gt=0,
        description="Pocket C-alphas within this many angstrom of the docking box center make the contact map the "
        "selector learns (22 residues for PGR at 10); the same for every ligand of the target.",
    )
    restraint_k: float = Field(
        2000.0, ge=0, description="Backbone restraint under truncation (kJ/mol/nm^2; 2000 is ~4.8 kcal/mol/A^2)."
    )
    hydrogen_mass: float | None = Field(
        1.5, gt=0, description="Hydrogen mass (dalton) after repartitioning; 1.5 allows 4 fs steps. null: no HMR."
    )
    temperature: float = Field(300.0, gt=0, description="Heat bath (K).")
    timestep: float = Field(0.004, gt=0, le=0.005, description="Integration step (ps); above 0.0025 needs HMR.")
    friction: float = Field(1.0, gt=0, description="Langevin friction (1/ps).")
    steps: int = Field(25000, ge=1, description="Steps of each segment (25000 x 4 fs = 100 ps).")
    report_interval: int = Field(500, ge=1, description="Steps between streamed frames.")
    minimize_iterations: int = Field(
        100, ge=1, description="Most minimizer iterations before a segment from a docked pose (restarts skip it)."
    )
    leave_pocket_rmsd: float = Field(
        5.0, gt=0, description="Ligand RMSD (angstrom) above which a complex is flagged as having left the pocket."
    )
    seed: int = Field(0, ge=0, description="Campaign seed; each segment's seed comes from it and the task id.")

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        problems = self.own_tasks_problems("complex-md makes one task per finalist and restart", "OpenMM")
        if self.report_interval > self.steps:
            problems.append(f"report_interval ({self.report_interval}) exceeds steps ({self.steps}): no frame")
        if self.timestep > 0.0025 and self.hydrogen_mass is None:
            problems.append(f"timestep {self.timestep} ps needs hydrogen_mass (e.g. 1.5), or use 0.002")
        try:
            data.check_receptor(self.target, self.receptor)
        except (ValueError, ModuleNotFoundError) as error:
            problems.append(str(error))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def physics(self) -> dict[str, JsonValue]:
        """The keyword arguments of :func:`run_segment` that come from the config."""
        names = ("steps", "report_interval", "temperature", "timestep", "friction", "solvent", "cutoff",
                 "hydrogen_mass", "restraint_k", "minimize_iterations", "leave_pocket_rmsd")
        return {name: getattr(self, name) for name in names}


class ComplexMDScale(Scale):
    """Adaptive MD of the best docked complexes; restarts come from frames a selector promotes."""

    config_model: ClassVar[type[ComplexMDConfig]] = ComplexMDConfig
    config: ComplexMDConfig

    def tasks(self) -> list[TaskSpec]:
        """None: the finalists are known only when docking is done (:meth:`on_upstream_done`)."""
        return []

    def on_upstream_done(self, upstream: Mapping[str, list[DoneTask]]) -> list[TaskSpec]:
        """A prep task and a first segment for each of the ``top_k`` best-scored docked ligands.

        Dock tasks are recognised by their values (a
        :class:`~mummi_scales.drug_discovery.results.DockingBatch`); other
        upstream tasks (surrogate trainings) and ligands that failed to dock
        are skipped. A ligand docked more than once keeps its
        best score. Ties break by ligand id, so the choice is reproducible.

        Raises
        ------
        ValueError
            When upstream tasks finished but none is a dock task (a wrong
            ``depends_on``), or a finalist's id is not file-name safe.
        """
        best: dict[str, tuple[float, str, str]] = {}
        dock_tasks = 0
        receptor = data.docking_receptor(self.config.target, self.config.receptor, self.context.campaign_dir)
        for done in (task for tasks in upstream.values() for task in tasks):
            batch = parse_as(DockingBatch, done.value)
            if batch is None or not batch.root:  # a dock task docks one ligand or more
                continue
            docked_into = getattr(done.spec.payload, "kwargs", {}).get("receptor")
            if docked_into is not None and Path(str(docked_into)) != receptor.pdbqt:
                raise ValueError(
                    f"scale {self.context.name!r} builds complexes on receptor {self.config.receptor!r} "
                    f"({receptor.pdbqt}) but {done.spec.id} docked into {docked_into}: the poses are in that "
                    "receptor's frame; give both scales the same target and receptor"
                )
            dock_tasks += 1
            for ligand, entry in batch.docked().items():
                if not math.isfinite(entry.score):
                    continue
                candidate = (entry.score, f"{done.spec.workdir}/{entry.poses}", entry.smiles)
                if ligand not in best or candidate[0] < best[ligand][0]:
                    best[ligand] = candidate
        if not dock_tasks and any(upstream.values()):
            raise ValueError(
                f"scale {self.context.name!r}: none of the finished tasks of {', '.join(upstream)} is a dock task "
                "(a value mapping ligand ids to score and poses); make it depend on a docking or active-docking scale"
            )
        finalists = sorted(best.items(), key=lambda item: (item[1][0], item[0]))[: self.config.top_k]
        tasks = []
        for ligand, (score, pose, smiles) in finalists:
            if not SAFE_ID.fullmatch(ligand):
                raise ValueError(f"ligand id {ligand!r} may hold only letters, digits, '.', '_', '-'")
            prep_id = f"{self.context.name}.{ligand}.{PREP}"
            complex_folder = self.workdir(prep_id)
            tasks.append(callable_task(self, self.config, prep_id, PREPARE_FUNCTION, {
                "root": campaign_root(complex_folder), "ligand": ligand, "smiles": smiles, "docking_score": score,
                "pose": pose, "target": self.config.target, "receptor": self.config.receptor,
                "pocket_radius": self.config.pocket_radius,
                "feature_radius": self.config.feature_radius, "cache": CACHE, "complex": complex_folder,
            }, {"stage": PREP, "ligand": ligand}))
            segment = {"ligand": ligand, "smiles": smiles, "docking_score": score, "complex": complex_folder}
            tasks.append(self._segment(f"{self.context.name}.{ligand}.md000", segment, None, {})
                         .model_copy(update={"depends_on": [prep_id]}))
        return tasks

    def promote(self, frame: PromotedFrame, task_id: str) -> TaskSpec:
        """A segment of the frame's ligand that starts from the frame, with fresh velocities (DeepDriveMD's restart).

        The frame's source task (one of this scale's segments) names the
        complex in its :data:`SEGMENT` file; the frame goes to :data:`START`
        in the new task's folder, with where it came from.

        Raises
        ------
        ValueError
            When the source task is not a segment of this scale, or the frame
            does not hold one position per atom of its complex.
        """
        source = self.context.campaign_dir / self.workdir(frame.source_task) / SEGMENT
        if not source.is_file():
            raise ValueError(
                f"frame {frame.frame_id} of coupling {frame.coupling!r} comes from task {frame.source_task}, which is "
                f"not a segment of scale {self.context.name!r} (no {source}); couple complex-md to itself"
            )
        segment = json.loads(source.read_text())
        prepared = load_complex(self.context.campaign_dir / segment["complex"])
        atoms = len(prepared.ligand_atoms) + len(prepared.receptor_atoms)
        positions = np.asarray(frame.positions, dtype=np.float64)
        if positions.shape != (atoms, 3):
            raise ValueError(
                f"frame {frame.frame_id} has positions of shape {positions.shape}, but the complex of ligand "
                f"{segment['ligand']} has {atoms} atoms"
            )
        folder = self.context.campaign_dir / self.workdir(task_id)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / START, "wb") as handle:
            np.savez(handle, positions=positions, frame_id=frame.frame_id, source_task=frame.source_task,
                     coupling=frame.coupling, step=frame.step, time=frame.time, score=frame.score)
        return self._segment(task_id, segment, frame.frame_id, {"source_task": frame.source_task})

    def _segment(self, task_id: str, segment: dict[str, Any], frame_id: str | None,
                 labels: dict[str, str]) -> TaskSpec:
        """An md task of ``segment``'s ligand, from the docked pose or from :data:`START`, with its :data:`SEGMENT`."""
        workdir = self.workdir(task_id)
        folder = self.context.campaign_dir / workdir
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / SEGMENT, json.dumps(segment))
        return callable_task(self, self.config, task_id, SEGMENT_FUNCTION, {
            "root": campaign_root(workdir), "workdir": workdir, **segment, "start": None if frame_id is None else START,
            "start_frame": frame_id, "seed": task_seed(self.config.seed, task_id), **self.config.physics(),
        }, {"stage": MD, "ligand": segment["ligand"], **labels})

    @classmethod
    def report_sections(cls, view: CampaignView, scale_name: str) -> list[ReportSection]:
        """Ligand RMSD and contacts over time per segment, coloured by ligand, and a table of who left the pocket."""
        from matplotlib.figure import Figure

        from mummi_like import ReportSection

        done = view.done(scale_name, stage=MD)
        if not done:
            return [ReportSection("Adaptive MD of the finalists (S2)",
                                  text="No segment has finished yet (or docking is still running).")]
        segments = [Segment.model_validate(task.value) for task in done]
        ligands = sorted({segment.ligand for segment in segments})
        colours = {ligand: f"C{index % 10}" for index, ligand in enumerate(ligands)}
        figure = Figure(figsize=(8, 5.5))
        rmsd_axes, contact_axes = figure.subplots(2, 1, sharex=True)
        for task, segment in zip(done, segments, strict=True):
            label = segment.ligand if task.spec.id.endswith(".md000") else None
            style = "-" if segment.start_frame is None else ":"
            rmsd_axes.plot(segment.times, segment.ligand_rmsd, style, color=colours[segment.ligand], label=label)
            contact_axes.plot(segment.times, segment.contacts, style, color=colours[segment.ligand])
        threshold = segments[0].leave_pocket_rmsd
        rmsd_axes.axhline(threshold, color="grey", linestyle="--", linewidth=0.8)
        rmsd_axes.set_ylabel("ligand RMSD (A)")
        contact_axes.set_ylabel("protein atoms < 4 A")
        contact_axes.set_xlabel("time in segment (ps); dotted: restarts from promoted frames")
        rmsd_axes.legend(fontsize="small")
        figure.tight_layout()

        rows, left = [], 0
        for ligand in ligands:
            mine = [segment for segment in segments if segment.ligand == ligand]
            left += any(segment.left_pocket for segment in mine)
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (
                ligand, f"{mine[0].docking_score:.2f}", len(mine),
                f"{max(segment.ligand_rmsd_max for segment in mine):.2f}",
                f"{np.mean([segment.ligand_rmsd_final for segment in mine]):.2f}",
                "yes" if any(segment.left_pocket for segment in mine) else "no",
                f"{np.mean([segment.ns_per_day for segment in mine]):.2f}", mine[0].atoms)) + "</tr>")
        header = "".join(f"<th>{name}</th>" for name in (
            "ligand", "docking score", "segments", "max RMSD (A)", "mean final RMSD (A)", "left pocket",
            "ns/day", "atoms"))
        text = (f"{len(segments)} segment(s) of {len(ligands)} ligand(s); {left} left the pocket (ligand RMSD above "
                f"{threshold:g} A after superposing the pocket C-alphas).")
        return [ReportSection("Adaptive MD of the finalists (S2)", figure=figure, text=text,
                              html=f"<table><tr>{header}</tr>{''.join(rows)}</table>")]


def prepare(
    *,
    root: str,
    ligand: str,
    smiles: str,
    docking_score: float,
    pose: str,
    target: str,
    receptor: data.ReceptorSource,
    pocket_radius: float | None,
    feature_radius: float,
    cache: str,
    complex: str,
) -> dict[str, JsonValue]:
    """Build the complex of ``ligand``; the task function of ``<scale>.<ligand>.prep``.

    Parameters
    ----------
    root
        The campaign directory relative to the working directory; ``pose``,
        ``cache`` and ``complex`` are relative to it.
    ligand, smiles, docking_score
        The finalist, recorded in the result.
    target, receptor
        The receptor docked into (:func:`mummi_scales.drug_discovery.data.docking_receptor`).
    pose, pocket_radius, feature_radius, cache, complex
        As in :func:`mummi_scales.drug_discovery.complexes.prepare_complex` (``complex`` is
        its ``folder``).

    Returns
    -------
    dict
        A dumped :class:`~mummi_scales.drug_discovery.results.ComplexPrep`:
        ``ligand``, ``smiles``, ``docking_score``, ``complex`` (folder relative
        to the campaign directory), ``net_charge``, ``atoms``,
        ``parameterization_seconds`` (antechamber and parmchk2 when the ligand
        was first parameterized) and ``seconds`` (this task).

    Raises
    ------
    mummi_scales.drug_discovery.complexes.ComplexError
        When the ligand cannot be parameterized or the complex built (the task
        fails; other finalists go on).
    """
    began = time.perf_counter()
    base = Path(root)
    docked_into = data.docking_receptor(target, receptor, base)
    prepared = prepare_complex(ligand, smiles, base / pose, docked_into, base / complex, pocket_radius=pocket_radius,
                               cache=base / cache, feature_radius=feature_radius)
    details = json.loads((prepared.folder / COMPLEX_JSON).read_text())
    return ComplexPrep(
        ligand=ligand, smiles=smiles, docking_score=docking_score, complex=complex, net_charge=prepared.net_charge,
        atoms=details["atoms"], parameterization_seconds=details["parameterization_seconds"],
        seconds=time.perf_counter() - began,
    ).model_dump(mode="json")


def run_segment(
    *,
    root: str,
    workdir: str,
    ligand: str,
    smiles: str,
    docking_score: float,
    complex: str,
    start: str | None,
    start_frame: str | None,
    seed: int,
    steps: int,
    report_interval: int,
    temperature: float,
    timestep: float,
    friction: float,
    solvent: Solvent,
    cutoff: float | None,
    hydrogen_mass: float | None,
    restraint_k: float,
    minimize_iterations: int,
    leave_pocket_rmsd: float,
) -> dict[str, JsonValue]:
    """One MD segment of a prepared complex, streaming :data:`TRAJECTORY`; the task function of the md tasks.

    A segment from the docked pose (``start`` None) is minimized first; one
    from a promoted frame (``start``: an ``.npz`` with ``positions``) is not, the
    frame being already relaxed in the same force field. Both draw fresh
    velocities from ``seed``.

    Parameters
    ----------
    root
        The campaign directory relative to the working directory.
    workdir
        This task's folder relative to the campaign directory (for the result).
    ligand, smiles, docking_score, complex
        The finalist and its complex folder (relative to the campaign directory).
    start, start_frame
        The start file in the working directory and the frame id it holds, or None.
    seed, steps, report_interval, temperature, timestep, friction, solvent, cutoff, hydrogen_mass, restraint_k,
    minimize_iterations, leave_pocket_rmsd
        As in :class:`ComplexMDConfig`.

    Returns
    -------
    dict
        A dumped :class:`~mummi_scales.drug_discovery.results.Segment`:
        ``ligand``, ``smiles``, ``docking_score``, ``complex``, ``trajectory``
        (relative to the campaign directory), ``start_frame``, ``frames``,
        ``times`` (ps in the segment), ``ligand_rmsd`` (angstrom) and
        ``contacts`` per frame, ``ligand_rmsd_max``, ``ligand_rmsd_final``,
        ``left_pocket``, ``leave_pocket_rmsd``, ``ns_per_day``, ``atoms``.

    Raises
    ------
    ValueError
        When the start file does not fit the complex, or the dynamics blows up
        (frames written before stay readable).
    """
    prepared = load_complex(Path(root) / complex)
    if start is None:
        positions = initial_positions(prepared)
    else:
        with np.load(start) as data:
            positions = np.asarray(data["positions"], dtype=np.float64)
    run = simulate(prepared, positions, steps=steps, report_interval=report_interval, temperature=temperature,
                   timestep=timestep, seed=seed, stream=Path(TRAJECTORY), minimize=start is None, solvent=solvent,
                   cutoff=cutoff, hydrogen_mass=hydrogen_mass, friction=friction, restraint_k=restraint_k,
                   minimize_iterations=minimize_iterations)
    rmsd = run["ligand_rmsd"]
    return Segment(
        ligand=ligand, smiles=smiles, docking_score=docking_score, complex=complex,
        trajectory=f"{workdir}/{TRAJECTORY}", start_frame=start_frame, frames=run["frames"],
        times=[(index + 1) * report_interval * timestep for index in range(run["frames"])],
        ligand_rmsd=rmsd, contacts=run["contacts"], ligand_rmsd_max=max(rmsd), ligand_rmsd_final=rmsd[-1],
        left_pocket=max(rmsd) > leave_pocket_rmsd, leave_pocket_rmsd=leave_pocket_rmsd,
        ns_per_day=run["ns_per_day"], atoms=run["atoms"],
    ).model_dump(mode="json")
