"""The ``mmgbsa`` scale: S3-CG of the drug-discovery campaign, ESMACS-like ensembles of MM/GBSA binding energies.

ESMACS (enhanced sampling of molecular dynamics with approximation of
continuum solvent) estimates a ligand's binding energy from an *ensemble* of
short, independent replicas rather than one long run: a single trajectory's
MM/GBSA mean is not reproducible (it depends on the starting velocities far
more than its frame-to-frame error says), while the spread over replicas is an
honest error bar. Here each ligand that S2 simulated gets ``replicas`` runs,
each from a conformation of its S2 trajectories with fresh, seeded velocities,
and one summary task pools them into a mean with a bootstrap confidence
interval.

Binding energy (single-trajectory MM/GBSA), per frame of a replica::

    dG = E(complex) - E(receptor) - E(ligand)

each ``E`` the potential energy of its own OpenMM system (the three prmtops
:mod:`mummi_scales.drug_discovery.complexes` writes) in the same implicit solvent, with the
receptor's and the ligand's positions cut out of the complex frame, so
intramolecular terms cancel exactly and only the interaction and the change of
solvation remain. The solvation part is the generalized Born force with its
ACE non-polar surface-area term (OpenMM's default for Amber GB models). The
energies are computed **without a cutoff** (the MD may use one for speed):
the interaction of the ligand with distant charges and the many-body GB term
are then exact sums. Restraints (the backbone restraint of a truncated pocket)
are left out: they are not part of the physics being estimated. There is **no
entropy term** (normal modes or interaction entropy would cost more than the
MD): values are effective binding energies, typically tens of kcal/mol more
negative than experimental free energies, good for ranking similar ligands,
not as absolute affinities. Energies are in kcal/mol throughout.

Tasks
-----
``tasks()`` makes none: the ligands are known only once S2 is done, so the
scale acts in :meth:`MMGBSAScale.on_upstream_done`, which gets the finished S2
segments (tasks labelled ``stage: md``) and makes, per ligand,
``<scale>.<ligand>.r00`` ... replica tasks (:func:`run_replica`, which writes
:data:`RESULTS` and returns a
:class:`~mummi_scales.drug_discovery.results.ReplicaResult`), and one
``<scale>.summary`` task (:func:`summarize`, a
:class:`~mummi_scales.drug_discovery.results.CoarseSummary`) that depends on
all of them. The summary writes :data:`ESTIMATES_CSV`,
:data:`LIGANDS_JSON` and the stream :data:`ESTIMATES_STREAM`: one frame per
ligand with a representative complex conformation as positions and the
observable :data:`ESTIMATE` = ``[dg_mean, dg_sem, ci_low, ci_high]`` (float32),
which an S3-CG -> S3-FG coupling tails (``stream: "**/estimates.h5md"``,
``feature: estimate``) and the ``alchemical`` scale's ``promote`` reads.

A replica whose dynamics or energies fail (NaN, a blown-up structure) is a
*recorded* failure, not a failed task: its value carries ``error`` and the
summary leaves it out and reports it, so one bad replica never blocks the
estimates of every other ligand.
"""

from __future__ import annotations

import csv
import html
import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
from pydantic import Field, JsonValue, ValidationError, model_validator

from mummi_like import DoneTask, Scale, TaskSpec, atomic_write, atomic_write_text, task_seed
from mummi_scales.drug_discovery.complexes import (
    ComplexError,
    Part,
    PreparedComplex,
    Solvent,
    build_system,
    load_complex,
    md_platform,
    simulate,
)
from mummi_scales.drug_discovery.results import CoarseEstimate, CoarseSummary, ReplicaResult, Segment, problem
from mummi_scales.generic.parameters import ParameterizedConfig, callable_task, campaign_root

if TYPE_CHECKING:
    import openmm

    from mummi_like import CampaignView, ReportSection

REPLICA_FUNCTION = "mummi_scales.drug_discovery.mmgbsa:run_replica"
"""What every replica task calls."""
SUMMARY_FUNCTION = "mummi_scales.drug_discovery.mmgbsa:summarize"
"""What the summary task calls."""
MD_STAGE = "md"
"""The ``stage`` label of the S2 segments this scale starts from."""
START = "start.npz"
"""The starting conformation :meth:`MMGBSAScale.on_upstream_done` writes into a replica's working directory."""
TRAJECTORY = "trajectory.h5md"
"""The replica's MD stream, in its working directory."""
RESULTS = "mmgbsa.json"
"""A replica's per-frame energies (kcal/mol), in its working directory."""
ESTIMATES_CSV = "estimates.csv"
"""The summary's table, one row per ligand."""
LIGANDS_JSON = "ligands.json"
"""The ligands of :data:`ESTIMATES_STREAM` in frame order, with their complex folders and atom counts."""
ESTIMATES_STREAM = "estimates.h5md"
"""The summary's stream, one frame per ligand with an estimate; what the S3-CG -> S3-FG coupling tails."""
ESTIMATE = "estimate"
"""The observable of :data:`ESTIMATES_STREAM`: ``[dg_mean, dg_sem, ci_low, ci_high]`` in kcal/mol."""
SUMMARY = "summary"
"""Suffix of the summary task's id and its ``stage`` label."""
REPLICA_STAGE = "replica"
"""The ``stage`` label of replica tasks."""
CSV_COLUMNS = ("ligand", "smiles", "docking_score", "left_pocket", "n_replicas", "n_frames", "dg_mean", "dg_sem",
               "ci_low", "ci_high", "failed_replicas", "error")
"""Columns of :data:`ESTIMATES_CSV`; energies in kcal/mol, empty for a ligand without an estimate."""
PARTS: tuple[Part, ...] = ("complex", "receptor", "ligand")
SOLVATION_GROUP = 1
"""Force group given to the implicit-solvent forces, so energies split into gas phase and solvation."""
GAS_GROUP = 0


class MMGBSAConfig(ParameterizedConfig):
    """Config of the ``mmgbsa`` scale: replicas per ligand, their dynamics, and the statistics of the summary.

    Besides the fields below it takes ``resources`` (``cores`` become OpenMM's
    threads: the backend sets ``OMP_NUM_THREADS``), ``retry``, ``env`` and
    ``priority`` of every parameterized scale; ``parameters`` must stay empty,
    because the tasks are the ligands' replicas.
    """

    replicas: int = Field(
        5, ge=1, description="Independent replicas per ligand (ESMACS uses 25; 5 gives a usable error bar).",
    )
    steps: int = Field(5000, ge=1, description="MD steps of each replica.")
    report_interval: int = Field(
        500, ge=1, description="Steps between the frames MM/GBSA is computed on; steps // report_interval frames each.",
    )
    temperature: float = Field(300.0, gt=0, description="Heat-bath temperature (K).")
    timestep: float = Field(
        0.002, gt=0, le=0.004, description="Integration step (ps); 0.004 needs hydrogen_mass (about 1.5)."
    )
    hydrogen_mass: float | None = Field(
        None, gt=0, description="Hydrogen mass (dalton) after mass repartitioning, for 4 fs steps; null keeps masses.",
    )
    solvent: Solvent = Field(
        "obc2", description="Implicit solvent of the MD and of the energies: 'obc2' (fast) or 'gbn2' (more accurate).",
    )
    seed: int = Field(0, ge=0, description="Campaign seed; replica velocities and the bootstrap derive from it.")
    bootstrap: int = Field(
        1000, ge=10, description="Bootstrap samples of the confidence interval (replicas resampled, then frames).",
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="Confidence level of the interval, e.g. 0.95.")

    @model_validator(mode="after")
    def _replicas_only(self) -> Self:
        problems = self.own_tasks_problems("the mmgbsa scale makes one task per ligand replica", "OpenMM")
        if self.report_interval > self.steps:
            problems.append(
                f"report_interval ({self.report_interval}) is larger than steps ({self.steps}), so a replica would "
                "have no frame to compute energies on; lower report_interval or raise steps"
            )
        if self.timestep > 0.0025 and self.hydrogen_mass is None:
            problems.append(f"timestep {self.timestep} ps needs hydrogen_mass (about 1.5) to be stable")
        if problems:
            raise ValueError("; ".join(problems))
        return self


# ---------------------------------------------------------------- the engine


@dataclass(frozen=True)
class FrameEnergy:
    """The MM/GBSA terms of one frame (kcal/mol).

    ``dg = complex - receptor - ligand``; ``dg_gas`` and ``dg_solvation`` split
    the same difference into the force field's gas-phase terms and the implicit
    solvent (GB plus surface area), so ``dg = dg_gas + dg_solvation``.
    """

    complex: float
    receptor: float
    ligand: float
    dg: float
    dg_gas: float
    dg_solvation: float


class BindingEnergy:
    """Single-trajectory MM/GBSA of one prepared complex: three OpenMM contexts that score frames.

    The systems are built once (no cutoff, no restraint) and reused for every
    frame, which then costs three energy evaluations.

    Parameters
    ----------
    complex
        The complex; the receptor's atoms come first, then the ligand's.
    solvent
        The implicit-solvent model, as in :func:`~mummi_scales.drug_discovery.complexes.build_system`.
    """

    def __init__(self, complex: PreparedComplex, solvent: Solvent = "obc2") -> None:
        import openmm

        self.complex = complex
        self._atoms = {"complex": None, "receptor": np.asarray(complex.receptor_atoms),
                       "ligand": np.asarray(complex.ligand_atoms)}
        self.n_atoms = len(complex.receptor_atoms) + len(complex.ligand_atoms)
        platform, properties = md_platform()
        self._contexts: dict[str, openmm.Context] = {}
        for part in PARTS:
            system, _ = build_system(complex, part, solvent=solvent, cutoff=None, restrain=False)
            for force in system.getForces():
                solvation = isinstance(force, (openmm.GBSAOBCForce, openmm.CustomGBForce))
                force.setForceGroup(SOLVATION_GROUP if solvation else GAS_GROUP)
            self._contexts[part] = openmm.Context(system, openmm.VerletIntegrator(0.001), platform, properties)

    def __call__(self, positions: np.ndarray, frame: str) -> FrameEnergy:
        """The terms of the complex at ``positions`` (``(n_atoms, 3)`` nm).

        Raises
        ------
        ValueError
            When the positions do not fit the complex or are not finite, or an
            energy is NaN or infinite; the message names ``frame`` (e.g.
            ``trajectory.h5md:7``) and the part.
        """
        from openmm import unit

        positions = np.asarray(positions, dtype=np.float64)
        if positions.shape != (self.n_atoms, 3) or not np.isfinite(positions).all():
            raise ValueError(
                f"frame {frame} of complex {self.complex.folder}: positions must be ({self.n_atoms}, 3) finite "
                f"numbers in nm, got shape {positions.shape}"
            )
        terms: dict[str, tuple[float, float]] = {}
        for part, context in self._contexts.items():
            atoms = self._atoms[part]
            context.setPositions(positions if atoms is None else positions[atoms])
            gas, solvation = (
                context.getState(getEnergy=True, groups={group}).getPotentialEnergy()
                .value_in_unit(unit.kilocalorie_per_mole) for group in (GAS_GROUP, SOLVATION_GROUP)
            )
            if not (math.isfinite(gas) and math.isfinite(solvation)):
                raise ValueError(
                    f"frame {frame} of complex {self.complex.folder}: the {part} energy is not finite (gas phase "
                    f"{gas}, solvation {solvation} kcal/mol): the structure is broken (atoms on top of each other); "
                    "check the MD of this replica, e.g. with a smaller timestep"
                )
            terms[part] = (gas, solvation)
        total = {part: gas + solvation for part, (gas, solvation) in terms.items()}
        return FrameEnergy(
            complex=total["complex"], receptor=total["receptor"], ligand=total["ligand"],
            dg=total["complex"] - total["receptor"] - total["ligand"],
            dg_gas=terms["complex"][0] - terms["receptor"][0] - terms["ligand"][0],
            dg_solvation=terms["complex"][1] - terms["receptor"][1] - terms["ligand"][1],
        )


def read_start(path: Path, complex: PreparedComplex) -> np.ndarray:
    """The ``positions`` (nm) of a start file, checked against the complex.

    Raises
    ------
    ValueError
        Naming the file, when it lacks positions or they do not fit the complex or are not finite.
    """
    with np.load(path) as data:
        if "positions" not in data:
            raise ValueError(f"{path.absolute()} has no 'positions' array (it holds {sorted(data)})")
        positions = np.asarray(data["positions"], dtype=np.float64)
    n_atoms = len(complex.receptor_atoms) + len(complex.ligand_atoms)
    if positions.shape != (n_atoms, 3) or not np.isfinite(positions).all():
        raise ValueError(
            f"{path.absolute()}: positions must be ({n_atoms}, 3) finite numbers in nm for complex {complex.folder}, "
            f"got shape {positions.shape}"
        )
    return positions


def write_start(folder: Path, positions: np.ndarray, provenance: Mapping[str, Any]) -> None:
    """Write :data:`START` (positions and where they came from) into ``folder`` atomically.

    A coordinator that dies meanwhile leaves no torn start file for a resumed one to trust.
    """
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_write(folder / START, "wb") as handle:
        np.savez(handle, positions=np.asarray(positions, dtype=np.float64), **provenance)


def run_replica(
    *,
    ligand: str,
    complex: str,
    start: str,
    replica: int,
    steps: int,
    report_interval: int,
    temperature: float,
    timestep: float,
    hydrogen_mass: float | None,
    solvent: Solvent,
    seed: int,
) -> dict[str, JsonValue]:
    """One ESMACS replica: short MD from ``start`` with fresh velocities, then MM/GBSA on every streamed frame.

    Runs in the task's working directory: streams :data:`TRAJECTORY` (through
    :func:`~mummi_scales.drug_discovery.complexes.simulate`, no minimization, so the replica
    starts from the S2 conformation as it was sampled) and writes
    :data:`RESULTS`: ``ligand``, ``replica``, ``seed``, ``units``, ``frames``
    (each ``index``, ``step``, ``time`` and the :class:`FrameEnergy` terms) and
    ``error`` (None, or why the replica failed).

    Parameters
    ----------
    ligand
        The ligand's id.
    complex
        The prepared complex folder, relative to the working directory.
    start
        The start file (:data:`START`), relative to the working directory.
    replica
        The replica's number, recorded.
    steps, report_interval, temperature, timestep, hydrogen_mass, solvent
        As in :class:`MMGBSAConfig`.
    seed
        Seed of the velocities and the Langevin noise (>= 1).

    Returns
    -------
    dict
        A dumped :class:`~mummi_scales.drug_discovery.results.ReplicaResult`:
        ``ligand``, ``replica``, ``dg_mean`` (kcal/mol, mean over frames; None
        when the replica failed), ``frames`` (frames with energies),
        ``seconds``, and ``error`` (None, or why the dynamics or an energy
        failed: a recorded failure that the summary leaves out).

    Raises
    ------
    ValueError, mummi_scales.drug_discovery.complexes.ComplexError
        For inputs that are wrong rather than physics that failed: no complex
        in the folder, a start file that does not fit it.
    """
    import openmm

    from mummi_like import read_frame

    began = time.perf_counter()
    prepared = load_complex(Path(complex))
    positions = read_start(Path(start), prepared)
    frames: list[dict[str, float | int]] = []
    error: str | None = None
    try:
        run = simulate(prepared, positions, steps=steps, report_interval=report_interval, temperature=temperature,
                       timestep=timestep, seed=seed, stream=Path(TRAJECTORY), minimize=False, solvent=solvent,
                       hydrogen_mass=hydrogen_mass)
        energy = BindingEnergy(prepared, solvent)
        for index in range(int(run["frames"])):
            frame = read_frame(TRAJECTORY, index)
            terms = energy(frame.positions, f"{TRAJECTORY}:{index}")
            frames.append({"index": index, "step": frame.step, "time": frame.time, **terms.__dict__})
    except (ValueError, openmm.OpenMMException) as failure:
        error = f"ligand {ligand} replica {replica}: {failure}"
    document = {"ligand": ligand, "replica": replica, "seed": seed, "units": "kcal/mol", "frames": frames,
                "error": error}
    atomic_write_text(RESULTS, json.dumps(document, indent=1))
    return ReplicaResult(
        ligand=ligand, replica=replica,
        dg_mean=None if error or not frames else float(np.mean([frame["dg"] for frame in frames])),
        frames=len(frames), seconds=time.perf_counter() - began, error=error,
    ).model_dump(mode="json")


def bootstrap(replicas: Sequence[np.ndarray], samples: int, confidence: float,
              rng: np.random.Generator) -> tuple[float, float, float, float]:
    """Mean, standard error and confidence interval of the pooled mean of per-frame energies.

    Two-level bootstrap: each sample draws the replicas with replacement, then
    the frames within each drawn replica, and takes the mean of all drawn
    frames. Resampling replicas first is what makes the interval honest:
    frames of one replica are correlated, replicas are independent.

    Parameters
    ----------
    replicas
        Per-frame ``dg`` of each replica (at least one, each non-empty).
    samples
        Bootstrap samples.
    confidence
        Level of the percentile interval.
    rng
        The generator (seeded by the caller, so an estimate can be repeated).

    Returns
    -------
    tuple
        ``(mean, sem, ci_low, ci_high)``: the mean of all frames, the standard
        deviation of the bootstrap means (the bootstrap standard error), and
        the percentile interval. With one replica, only frames are resampled,
        which understates the error: run several.
    """
    pooled = np.concatenate(replicas)
    means = np.empty(samples)
    for sample in range(samples):
        drawn = [replicas[r][rng.integers(len(replicas[r]), size=len(replicas[r]))]
                 for r in rng.integers(len(replicas), size=len(replicas))]
        means[sample] = np.concatenate(drawn).mean()
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(means, [tail, 1.0 - tail])
    return float(pooled.mean()), float(means.std(ddof=1)), float(low), float(high)


def summarize(
    *,
    root: str,
    ligands: list[dict[str, Any]],
    bootstrap_samples: int,
    confidence: float,
    seed: int,
) -> dict[str, JsonValue]:
    """Pool every ligand's replicas into an estimate; write the table, the ligand list and the estimates stream.

    Runs in the summary task's working directory, once every replica is done.
    A replica whose value carried an ``error`` (see :func:`run_replica`) is
    left out; a ligand with no usable replica gets no estimate and no frame,
    and is listed under ``failed``.

    Parameters
    ----------
    root
        The campaign directory, relative to the working directory.
    ligands
        One entry per ligand: ``ligand``, ``smiles``, ``docking_score``,
        ``left_pocket``, ``replicas`` (each ``workdir`` and ``complex``
        folder, relative to the campaign directory) and, for a ligand whose
        replicas could not start, ``error``.
    bootstrap_samples, confidence
        As :func:`bootstrap` takes them.
    seed
        Campaign seed; each ligand's bootstrap is seeded by it and the ligand id.

    Returns
    -------
    dict
        A dumped :class:`~mummi_scales.drug_discovery.results.CoarseSummary`:
        ``ligands``: id -> ``dg_mean``, ``dg_sem``, ``ci_low``, ``ci_high``,
        ``n_replicas``, ``n_frames``, ``failed_replicas``, ``smiles``,
        ``docking_score``, ``left_pocket``, ``complex`` (of the representative
        conformation), ``frame`` (its frame in :data:`ESTIMATES_STREAM`);
        ``failed``: id -> why it has no estimate; ``confidence``; ``seconds``.
    """
    from mummi_like import H5MDWriter, read_frame

    began = time.perf_counter()
    base = Path(root)
    estimates: dict[str, CoarseEstimate] = {}
    failed: dict[str, str] = {}
    representatives: list[np.ndarray] = []
    listed: list[dict[str, JsonValue]] = []
    rows: list[dict[str, Any]] = []
    for entry in ligands:
        ligand = entry["ligand"]
        usable: list[tuple[dict[str, str], np.ndarray]] = []
        errors: list[str] = [entry["error"]] if entry.get("error") else []
        for replica in entry["replicas"]:
            document = json.loads((base / replica["workdir"] / RESULTS).read_text())
            dg = np.array([frame["dg"] for frame in document["frames"]], dtype=np.float64)
            if document["error"] or not len(dg):
                errors.append(document["error"] or f"{replica['workdir']}: no frame")
            else:
                usable.append((replica, dg))
        row = {"ligand": ligand, "smiles": entry["smiles"], "docking_score": entry["docking_score"],
               "left_pocket": entry["left_pocket"], "n_replicas": len(usable),
               "n_frames": sum(len(dg) for _, dg in usable), "failed_replicas": len(entry["replicas"]) - len(usable),
               "error": ""}
        if not usable:
            failed[ligand] = "; ".join(errors)
            rows.append({**row, "error": failed[ligand]})
            continue
        rng = np.random.default_rng(task_seed(seed, ligand))
        mean, sem, low, high = bootstrap([dg for _, dg in usable], bootstrap_samples, confidence, rng)
        # The representative conformation: the last frame of the replica with the lowest mean.
        best, best_dg = min(usable, key=lambda item: float(item[1].mean()))
        last = read_frame(base / best["workdir"] / TRAJECTORY, len(best_dg) - 1)
        representatives.append(np.asarray(last.positions, dtype=np.float32))
        frame_index = len(listed)
        listed.append({"ligand": ligand, "complex": best["complex"], "frame": frame_index,
                       "atoms": int(len(last.positions)), "smiles": entry["smiles"],
                       "representative": f"{best['workdir']}/{TRAJECTORY}:{len(best_dg) - 1}"})
        estimates[ligand] = CoarseEstimate(
            dg_mean=mean, dg_sem=sem, ci_low=low, ci_high=high, complex=best["complex"], frame=frame_index, **{
                key: row[key] for key in ("n_replicas", "n_frames", "failed_replicas", "smiles", "docking_score",
                                          "left_pocket")})
        rows.append({**row, "dg_mean": mean, "dg_sem": sem, "ci_low": low, "ci_high": high})

    with atomic_write(ESTIMATES_CSV, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=CSV_COLUMNS, restval="")
        writer.writeheader()
        writer.writerows(rows)
    atomic_write_text(LIGANDS_JSON, json.dumps(listed, indent=1))
    if representatives:
        # One frame per ligand; complexes differ in size, so positions are padded with zeros to the largest and
        # LIGANDS_JSON says how many atoms of each frame are real.
        width = max(len(positions) for positions in representatives)
        with H5MDWriter(ESTIMATES_STREAM, width, observables={ESTIMATE: ((4,), np.float32)},
                        author=SUMMARY_FUNCTION) as stream:
            for index, (entry, positions) in enumerate(zip(listed, representatives, strict=True)):
                padded = np.zeros((width, 3), dtype=np.float32)
                padded[: len(positions)] = positions
                values = estimates[str(entry["ligand"])]
                stream.write_frame(padded, step=index, time=float(index), observables={ESTIMATE: np.array(
                    [values.dg_mean, values.dg_sem, values.ci_low, values.ci_high], dtype=np.float32)})
    return CoarseSummary(ligands=estimates, failed=failed, confidence=confidence,
                         seconds=time.perf_counter() - began).model_dump(mode="json")


# ---------------------------------------------------------------- the scale


def frame_count(path: Path) -> int:
    """Complete frames of a stream, read through the tailer (the one safe way to open a stream in this process)."""
    from mummi_like import StreamTailer

    with StreamTailer(path.parent, pattern=path.name, observables=[], positions=False) as tailer:
        return len(tailer.poll(rescan=True))


def spread(counts: Sequence[int], replicas: int) -> list[tuple[int, int]]:
    """``replicas`` (segment, frame) starting points spread over segments with ``counts`` frames each.

    The last frame of each segment first, latest segments first (the most
    evolved conformations, each from another trajectory), then frames evenly
    spaced over all the others; when there are fewer frames than replicas,
    frames are reused, which ESMACS does by design: replicas differ by their
    velocities.

    Raises
    ------
    ValueError
        When no segment has a frame.
    """
    ends = [(segment, count - 1) for segment, count in reversed(list(enumerate(counts))) if count > 0]
    if not ends:
        raise ValueError("no S2 segment has a complete frame to start a replica from")
    if replicas <= len(ends):
        return ends[:replicas]
    others = [(segment, index) for segment, count in enumerate(counts) for index in range(count - 1)]
    need = min(replicas - len(ends), len(others))
    chosen = ends + [others[int(k)] for k in np.linspace(0, len(others) - 1, need).round()] if need else ends
    return [chosen[k % len(chosen)] for k in range(replicas)]


def _segment_value(task: DoneTask) -> Segment:
    """The value of an S2 segment.

    Raises
    ------
    ValueError
        Naming the task and what is wrong, when the value is not a complex-md segment's.
    """
    try:
        return Segment.model_validate(task.value)
    except ValidationError as error:
        raise ValueError(
            f"S2 task {task.spec.id} (stage: {MD_STAGE}) did not return a complex-md segment ({problem(error)}); "
            "the mmgbsa scale starts from complex-md segments, whose results carry the ligand, its complex folder "
            "and its trajectory"
        ) from None


class MMGBSAScale(Scale):
    """ESMACS-like MM/GBSA ensembles of the ligands S2 simulated; see the module docstring.

    No task at the start; :meth:`on_upstream_done` makes the replicas
    (``<scale>.<ligand>.r<k>``, labels ``stage: replica``, ``ligand``,
    ``replica``) and the summary (``<scale>.summary``, label ``stage:
    summary``) once S2 is done.
    """

    config_model: ClassVar[type[MMGBSAConfig]] = MMGBSAConfig
    config: MMGBSAConfig

    def tasks(self) -> list[TaskSpec]:
        """None: the ligands are known only when S2 is done (:meth:`on_upstream_done`)."""
        return []

    def on_upstream_done(self, upstream: Mapping[str, list[DoneTask]]) -> list[TaskSpec]:
        """Replicas for every ligand S2 simulated, started from its S2 conformations, and the summary over them.

        Starting conformations are spread over each ligand's S2 segments
        (:func:`spread`) and written as :data:`START` into each replica's
        working directory, with where they came from. Task ids, seeds and
        starts depend only on the upstream results, so a repeated call gives
        the same tasks.

        A ligand whose replicas cannot start (no readable frame, a missing
        complex) is passed to the summary with the reason, which lists it
        among the ligands without an estimate; the other ligands go on.

        Raises
        ------
        ValueError
            When the upstream scales finished tasks but none is an S2 segment
            (``depends_on`` names the wrong scale), or a segment's result lacks
            what is read.
        """
        done = [task for tasks in upstream.values() for task in tasks]
        segments = [task for task in done if task.spec.labels.get("stage") == MD_STAGE]
        if done and not segments:
            raise ValueError(
                f"scale {self.context.name!r} found no S2 segment (a task labelled stage: {MD_STAGE}) among the "
                f"{len(done)} finished tasks of {', '.join(upstream)}; make it depend on the complex-md scale"
            )
        by_ligand: dict[str, list[DoneTask]] = {}
        for task in segments:
            by_ligand.setdefault(_segment_value(task).ligand, []).append(task)

        replicas: list[TaskSpec] = []
        entries: list[dict[str, JsonValue]] = []
        for ligand, ligand_segments in by_ligand.items():
            values = [_segment_value(task) for task in ligand_segments]
            entry: dict[str, JsonValue] = {
                "ligand": ligand, "smiles": values[0].smiles, "docking_score": values[0].docking_score,
                "left_pocket": any(value.left_pocket for value in values), "replicas": [],
            }
            try:
                made = self._replicas(ligand, ligand_segments, values)
            except (ValueError, OSError, ComplexError) as error:
                # Recorded, not raised: the other ligands' estimates must not wait for this one's broken S2 output.
                entry["error"] = f"no replica could start: {error}"
            else:
                replicas.extend(made)
                entry["replicas"] = [{"workdir": task.workdir, "complex": task.labels["complex"]} for task in made]
            entries.append(entry)
        if not entries:
            return []
        summary_id = f"{self.context.name}.{SUMMARY}"
        summary = callable_task(self, self.config, summary_id, SUMMARY_FUNCTION, {
            "root": campaign_root(self.workdir(summary_id)), "ligands": entries,
            "bootstrap_samples": self.config.bootstrap, "confidence": self.config.confidence, "seed": self.config.seed,
        }, {"stage": SUMMARY}, depends_on=[task.id for task in replicas])
        return [*replicas, summary]

    def _replicas(self, ligand: str, segments: list[DoneTask], values: list[Segment]) -> list[TaskSpec]:
        """The replica tasks of one ligand, each with its start file written, from its S2 ``segments``.

        Raises
        ------
        ValueError, OSError, mummi_scales.drug_discovery.complexes.ComplexError
            When no segment has a readable frame, a frame does not fit its
            complex, or a complex folder is missing.
        """
        from mummi_like import read_frame

        root = self.context.campaign_dir
        paths = [root / value.trajectory for value in values]
        starts = spread([frame_count(path) for path in paths], self.config.replicas)
        replicas = []
        for number, (segment, index) in enumerate(starts):
            task_id = f"{self.context.name}.{ligand}.r{number:02d}"
            complex_folder = values[segment].complex
            frame = read_frame(paths[segment], index)
            prepared = load_complex(root / complex_folder)
            n_atoms = len(prepared.receptor_atoms) + len(prepared.ligand_atoms)
            if frame.positions is None or frame.positions.shape != (n_atoms, 3):
                raise ValueError(
                    f"frame {index} of {paths[segment]} (S2 task {segments[segment].spec.id}) does not hold the "
                    f"{n_atoms} atoms of complex {complex_folder}; the segment and its complex disagree"
                )
            workdir = self.workdir(task_id)
            write_start(root / workdir, frame.positions, {
                "trajectory": values[segment].trajectory, "frame": index, "step": frame.step,
                "time": frame.time, "source_task": segments[segment].spec.id})
            replicas.append(callable_task(self, self.config, task_id, REPLICA_FUNCTION, {
                "ligand": ligand, "complex": f"{campaign_root(workdir)}/{complex_folder}", "start": START,
                "replica": number, "steps": self.config.steps, "report_interval": self.config.report_interval,
                "temperature": self.config.temperature, "timestep": self.config.timestep,
                "hydrogen_mass": self.config.hydrogen_mass, "solvent": self.config.solvent,
                "seed": task_seed(self.config.seed, task_id),
            }, {"stage": REPLICA_STAGE, "ligand": ligand, "replica": str(number), "complex": complex_folder}))
        return replicas

    @classmethod
    def report_sections(cls, view: CampaignView, scale_name: str) -> list[ReportSection]:
        """Each ligand's MM/GBSA estimate with its confidence interval, best first, as a figure and a table."""
        from matplotlib.figure import Figure

        from mummi_like import ReportSection

        summaries = view.done(scale_name, stage=SUMMARY)
        if not summaries:
            return [ReportSection("MM/GBSA estimates (S3-CG)", text="No summary yet: the replicas are still running, "
                                  "or S2 has not finished.")]
        value = CoarseSummary.model_validate(summaries[-1].value)
        ligands = sorted(value.ligands.items(), key=lambda item: item[1].dg_mean)
        level = f"{100 * value.confidence:g}%"
        text = (f"{len(ligands)} ligand(s) with an estimate, {len(value.failed)} without; dG = E(complex) - "
                f"E(receptor) - E(ligand) in kcal/mol, no entropy term, {level} bootstrap interval over replicas "
                f"and frames; table in {summaries[-1].spec.workdir}/{ESTIMATES_CSV}.")
        rows = "".join(
            "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in (
                ligand, f"{est.dg_mean:.2f}", f"{est.dg_sem:.2f}", f"[{est.ci_low:.2f}, {est.ci_high:.2f}]",
                est.n_replicas, est.n_frames, "yes" if est.left_pocket else "no")) + "</tr>"
            for ligand, est in ligands)
        header = "".join(f"<th>{name}</th>" for name in (
            "ligand", "dG (kcal/mol)", "SEM", f"{level} CI", "replicas", "frames", "left pocket in S2"))
        failed = "".join(f"<tr><td>{html.escape(ligand)}</td><td colspan='6'>{html.escape(reason)}</td></tr>"
                         for ligand, reason in value.failed.items())
        sections = [ReportSection("MM/GBSA estimates (S3-CG)", text=text,
                                  html=f"<table><tr>{header}</tr>{rows}{failed}</table>")]
        if ligands:
            figure = Figure(figsize=(7, 0.35 * len(ligands) + 1.4))
            axes = figure.add_subplot()
            means = np.array([est.dg_mean for _, est in ligands])
            errors = np.array([[est.dg_mean - est.ci_low for _, est in ligands],
                               [est.ci_high - est.dg_mean for _, est in ligands]])
            names = [ligand for ligand, _ in ligands]
            axes.errorbar(means, names, xerr=np.clip(errors, 0, None), fmt="o", capsize=3)
            axes.invert_yaxis()
            axes.set_xlabel(f"MM/GBSA dG (kcal/mol), {level} CI")
            figure.tight_layout()
            sections.append(ReportSection("MM/GBSA dG per ligand", figure=figure))
        return sections


