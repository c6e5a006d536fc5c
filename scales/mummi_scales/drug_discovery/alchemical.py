"""The ``alchemical`` scale: S3-FG of the drug-discovery campaign, absolute binding free energies with openmmtools.

The fine stage refines the few ligands a selector promotes from S3-CG (see
:mod:`mummi_selectors.promotion`): MM/GBSA has no entropy and a crude solvent
end state, an alchemical free energy is a proper free-energy difference in the
same force field and implicit solvent.

Thermodynamic cycle and signs
-----------------------------
The ligand is decoupled from its surroundings twice, and its restraint to the
pocket is released analytically::

                       dG_bind
    R + L (solvated, 1 M)  ------------------->  RL (solvated)
         ^                                           |
         | -dG_solvent (couple L in solvent)         | dG_complex (restrain, then decouple L)
         |                                           v
    R + L* (free, 1 M)  <---------------------  RL* (L* decoupled, restrained to the pocket)
                          dG_restraint (release)

so that, all in kcal/mol and more negative meaning tighter binding::

    dG_bind = dG_solvent - dG_complex - dG_restraint

- ``dG_complex = G(decoupled, restrained) - G(coupled, unrestrained)`` in the
  complex: the harmonic restraint between the ligand's and the pocket's
  centroids is first switched on (``lambda_restraints`` 0 -> 1, fully coupled),
  then electrostatics are turned off (``lambda_electrostatics`` 1 -> 0), then
  sterics (``lambda_sterics`` 1 -> 0, soft-core). Switching the restraint on
  through windows accounts for its cost in the bound state, wherever the
  ligand sits relative to the pocket's centroid (Yank's protocol).
- ``dG_solvent = G(decoupled) - G(coupled)`` for the ligand alone: the same
  electrostatics and sterics windows, no restraint.
- ``dG_restraint = -kT ln(V0 / V_r)`` with ``V_r = (2 pi kT / K)^(3/2)`` and the
  standard volume ``V0`` = 1660.54 A^3 (1 M): the free energy of releasing the
  decoupled ligand from the harmonic restraint (centroid distance, no offset,
  spring constant ``K``) into the standard volume. It is negative (release gains
  entropy), so it makes ``dG_bind`` less negative.

The decoupled ligand keeps its intramolecular sterics and loses its
electrostatics (openmmtools' defaults: decoupled sterics, annihilated
electrostatics) in both legs, so its internal end state cancels; its GB
charges and its surface-area term go with its electrostatics (checked: at
``lambda_electrostatics = 0`` the ligand's energy is that of the same system
with zero charges and no surface term).

Engine
------
OpenMM systems from :func:`mummi_scales.drug_discovery.complexes.build_system` in implicit
solvent **without a cutoff**: with a cutoff, the reaction-field treatment of
the alchemical GB force put the fully coupled state thousands of kcal/mol off.
openmmtools' :class:`~openmmtools.alchemy.AbsoluteAlchemicalFactory` with an
:class:`~openmmtools.alchemy.AlchemicalRegion` of the ligand's atoms makes the
alchemical system; a :class:`~openmmtools.multistate.ReplicaExchangeSampler`
(Hamiltonian replica exchange over the windows) runs each leg with a
:class:`~openmmtools.multistate.MultiStateReporter` writing ``complex.nc`` and
``solvent.nc`` in the task's working directory; MBAR through openmmtools'
:class:`~openmmtools.multistate.MultiStateSamplerAnalyzer` (pymbar; automatic
equilibration detection and decorrelation) gives each leg's free energy and its
error. The backbone restraint of a truncated pocket stays on in every window of
the complex leg: it is part of that model's Hamiltonian, identical in all states.

Runs are not bit-reproducible: OpenMM draws the Langevin noise seeds of the
integrators openmmtools creates.

Tasks
-----
``tasks()`` makes none. The scale is the target of a coupling from the S3-CG
summary's stream (``stream: "**/estimates.h5md"``, ``feature: estimate``):
:meth:`AlchemicalScale.promote` finds the frame's ligand and complex in the
``ligands.json`` next to the stream, writes the frame's complex conformation as
:data:`~mummi_scales.drug_discovery.mmgbsa.START` into the task's working directory and
returns a task (label ``ligand``) that runs :func:`run_alchemical`, whose value
is a :class:`~mummi_scales.drug_discovery.results.FineResult`.
"""

from __future__ import annotations

import functools
import html
import json
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self

import numpy as np
from pydantic import Field, JsonValue, model_validator

from mummi_like import PromotedFrame, Scale, TaskSpec, atomic_write_text
from mummi_scales.drug_discovery.complexes import PreparedComplex, build_system, load_complex, md_platform
from mummi_scales.drug_discovery.mmgbsa import ESTIMATE, LIGANDS_JSON, START, read_start, write_start
from mummi_scales.drug_discovery.results import FineResult, LegResult
from mummi_scales.generic.parameters import ParameterizedConfig, callable_task, campaign_root

if TYPE_CHECKING:
    import openmm
    from openmmtools import states

    from mummi_like import CampaignView, ReportSection

RUN_FUNCTION = "mummi_scales.drug_discovery.alchemical:run_alchemical"
"""What every task of the scale calls."""
RESULTS = "alchemical.json"
"""Everything a run found (legs, schedules, correction), in its working directory."""
METHOD = "ABFE: openmmtools HREX + MBAR, implicit solvent"
"""The ``method`` of every result, so a report can tell estimates of different kinds apart."""
STANDARD_VOLUME = 1660.5392
"""Volume per molecule at the standard concentration of 1 mol/L (angstrom^3)."""
BOLTZMANN = 0.0019872043
"""Boltzmann's constant (kcal/mol/K)."""
KJ_PER_KCAL = 4.184
LAMBDAS = ("lambda_restraints", "lambda_electrostatics", "lambda_sterics")
"""The parameters of a window, as :func:`lambda_schedule` lists them."""


class AlchemicalConfig(ParameterizedConfig):
    """Config of the ``alchemical`` scale: the lambda schedule, the sampling and the restraint.

    Besides the fields below it takes ``resources``, ``retry``, ``env`` and
    ``priority`` of every parameterized scale; ``parameters`` must stay empty,
    because the tasks are the promoted ligands. The defaults are production-like
    (13 + 11 windows of 500 iterations); tests and demos set a few windows
    and iterations.
    """

    restraint_windows: int = Field(
        2, ge=1, description="Steps of lambda_restraints from 0 to 1 (fully coupled) in the complex leg.",
    )
    electrostatics_windows: int = Field(
        4, ge=1, description="Steps of lambda_electrostatics from 1 to 0 (sterics on), evenly spaced, in both legs.",
    )
    sterics_windows: int = Field(
        6, ge=1, description="Steps of lambda_sterics from 1 to 0 (soft-core, charges off), evenly spaced, both legs.",
    )
    iterations: int = Field(
        500, ge=2, description="Replica-exchange iterations per leg (each: MD of every window, then swaps).",
    )
    steps_per_iteration: int = Field(250, ge=1, description="MD steps of each window between exchange attempts.")
    timestep: float = Field(
        0.002, gt=0, le=0.004, description="Integration step (ps); 0.004 needs hydrogen_mass (about 1.5).",
    )
    hydrogen_mass: float | None = Field(
        None, gt=0, description="Hydrogen mass (dalton) after mass repartitioning, for 4 fs steps; null keeps masses.",
    )
    temperature: float = Field(300.0, gt=0, description="Temperature of every window (K).")
    collision_rate: float = Field(1.0, gt=0, description="Langevin collision rate (1/ps).")
    restraint_k: float = Field(
        1.0,
        gt=0,
        description="Spring constant of the ligand-pocket centroid restraint (kcal/mol/A^2): stiff enough to keep the "
        "decoupled ligand in the pocket (rms excursion sqrt(3kT/K), 1.3 A at 1 and 300 K), soft enough to cost "
        "little in the bound state.",
    )
    solvent: Literal["obc2"] = Field(
        "obc2", description="Implicit solvent: 'obc2' (OpenMM's GBSAOBCForce), which openmmtools makes alchemical.",
    )

    @model_validator(mode="after")
    def _ligands_only(self) -> Self:
        problems = self.own_tasks_problems("the alchemical scale makes one task per promoted ligand", "OpenMM")
        if self.timestep > 0.0025 and self.hydrogen_mass is None:
            problems.append(f"timestep {self.timestep} ps needs hydrogen_mass (about 1.5) to be stable")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def run_kwargs(self) -> dict[str, JsonValue]:
        """The keyword arguments of :func:`run_alchemical` that come from the config."""
        return {name: getattr(self, name) for name in (
            "restraint_windows", "electrostatics_windows", "sterics_windows", "iterations", "steps_per_iteration",
            "timestep", "hydrogen_mass", "temperature", "collision_rate", "restraint_k", "solvent")}


# ---------------------------------------------------------------- the engine


def lambda_schedule(restraint: int, electrostatics: int, sterics: int) -> list[dict[str, float]]:
    """The windows of a leg, fully coupled first, fully decoupled last.

    Parameters
    ----------
    restraint
        Steps of ``lambda_restraints`` 0 -> 1 before decoupling; 0 for a leg
        without a restraint (the ligand alone), whose windows then have no
        ``lambda_restraints``.
    electrostatics, sterics
        Steps of ``lambda_electrostatics`` then ``lambda_sterics`` from 1 to 0,
        evenly spaced.

    Returns
    -------
    list of dict
        ``1 + restraint + electrostatics + sterics`` windows, each a mapping of
        the :data:`LAMBDAS` it sets to a value.
    """
    windows = []
    restraints = np.linspace(0.0, 1.0, restraint + 1) if restraint else [None]
    for value in restraints:
        windows.append({"lambda_restraints": value, "lambda_electrostatics": 1.0, "lambda_sterics": 1.0})
    for value in np.linspace(1.0, 0.0, electrostatics + 1)[1:]:
        windows.append({"lambda_restraints": 1.0, "lambda_electrostatics": value, "lambda_sterics": 1.0})
    for value in np.linspace(1.0, 0.0, sterics + 1)[1:]:
        windows.append({"lambda_restraints": 1.0, "lambda_electrostatics": 0.0, "lambda_sterics": value})
    return [{name: float(value) for name, value in window.items() if restraint or name != "lambda_restraints"}
            for window in windows]


def restraint_correction(spring_constant: float, temperature: float) -> float:
    """``dG_restraint`` (kcal/mol): releasing a decoupled ligand from the harmonic centroid restraint to 1 M.

    ``-kT ln(V0 / V_r)`` with ``V_r = (2 pi kT / K)^(3/2)``, the configurational
    volume of a 3D harmonic well with spring constant ``spring_constant``
    (kcal/mol/A^2) at ``temperature`` (K); negative.
    """
    kt = BOLTZMANN * temperature
    volume = (2.0 * math.pi * kt / spring_constant) ** 1.5
    return -kt * math.log(STANDARD_VOLUME / volume)


@functools.cache
def _restraint_state() -> type[states.GlobalParameterState]:
    """The composable state that sets ``lambda_restraints`` in a compound state, made once openmmtools is imported."""
    from openmmtools.states import GlobalParameterState

    class RestraintState(GlobalParameterState):
        """Controls the ``lambda_restraints`` of openmmtools' restraint forces."""

        lambda_restraints = GlobalParameterState.GlobalParameter("lambda_restraints", standard_value=1.0)

    RestraintState.__qualname__ = "RestraintState"
    RestraintState.__module__ = __name__
    return RestraintState


def __getattr__(name: str) -> Any:
    """``RestraintState`` on first use: openmmtools finds it by name when it reads states back from a reporter's
    file, while importing this module (as the coordinator does to load the plugin) must not import openmmtools."""
    if name == "RestraintState":
        return _restraint_state()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_leg(
    system: openmm.System,
    positions: np.ndarray,
    ligand_atoms: Sequence[int],
    schedule: Sequence[dict[str, float]],
    *,
    storage: Path,
    iterations: int,
    steps_per_iteration: int,
    timestep: float,
    temperature: float,
    collision_rate: float = 1.0,
    restraint: tuple[Sequence[int], float] | None = None,
) -> dict[str, Any]:
    """One leg: Hamiltonian replica exchange over the windows of ``schedule``, then MBAR.

    Parameters
    ----------
    system
        The leg's system (complex or ligand alone), without a cutoff.
    positions
        ``(n_atoms, 3)`` start positions (nm), shared by every window.
    ligand_atoms
        The alchemical atoms.
    schedule
        Windows as :func:`lambda_schedule` gives them, coupled first.
    storage
        The reporter's netCDF file (replaced if it exists).
    iterations, steps_per_iteration, timestep, temperature, collision_rate
        Sampling: iterations of ``steps_per_iteration`` Langevin steps per
        window, step (ps), temperature (K), collision rate (1/ps).
    restraint
        ``(pocket atoms, spring constant in kcal/mol/A^2)``: a harmonic
        restraint between the centroids of the pocket atoms and of the ligand,
        scaled by ``lambda_restraints``; None for no restraint.

    Returns
    -------
    dict
        ``dg`` and ``dg_err`` (kcal/mol): the free energy of the last window
        minus the first, and its MBAR error; ``windows``; ``iterations``;
        ``seconds``.

    Raises
    ------
    ValueError
        When the leg's free energy or its error is not finite (no overlap
        between windows, or a blown-up simulation): the message says to add
        windows or iterations.
    """
    import openmm
    from openmm import unit
    from openmmtools import alchemy, cache, forces, mcmc, multistate
    from openmmtools import states as mm_states
    from openmmtools.multistate.utils import SimulationNaNError

    began = time.perf_counter()
    factory = alchemy.AbsoluteAlchemicalFactory(consistent_exceptions=False)
    alchemical_system = factory.create_alchemical_system(
        system, alchemy.AlchemicalRegion(alchemical_atoms=list(ligand_atoms)))
    composable: list[Any] = [alchemy.AlchemicalState.from_system(alchemical_system)]
    if restraint is not None:
        pocket, spring = restraint
        alchemical_system.addForce(forces.HarmonicRestraintForce(
            spring_constant=spring * KJ_PER_KCAL * 100.0 * unit.kilojoule_per_mole / unit.nanometer**2,
            restrained_atom_indices1=list(pocket), restrained_atom_indices2=list(ligand_atoms)))
        composable.append(_restraint_state().from_system(alchemical_system))
    reference = mm_states.ThermodynamicState(alchemical_system, temperature * unit.kelvin)
    windows = []
    for window in schedule:
        state = mm_states.CompoundThermodynamicState(reference, composable)
        for name, value in window.items():
            setattr(state, name, value)
        windows.append(state)

    platform, properties = md_platform()
    # Velocities drawn at the temperature before each iteration (a valid Gibbs step): a start frame has none, and
    # a short run must not spend its first iterations heating up from rest.
    move = mcmc.LangevinSplittingDynamicsMove(
        timestep=timestep * unit.picosecond, n_steps=steps_per_iteration,
        collision_rate=collision_rate / unit.picosecond, reassign_velocities=True)
    sampler = multistate.ReplicaExchangeSampler(mcmc_moves=move, number_of_iterations=iterations,
                                                online_analysis_interval=None)
    for partial in (storage, storage.with_name(f"{storage.stem}_checkpoint.nc")):
        partial.unlink(missing_ok=True)  # a retried task starts its leg again
    reporter = multistate.MultiStateReporter(str(storage), checkpoint_interval=iterations)
    try:
        sampler.create(windows, mm_states.SamplerState(positions * unit.nanometer), reporter)
        # Contexts of this run only, on the task's cores; the global cache would keep them after the task.
        sampler.energy_context_cache = cache.ContextCache(platform=platform, platform_properties=properties)
        sampler.sampler_context_cache = cache.ContextCache(platform=platform, platform_properties=properties)
        try:
            sampler.run()
        except SimulationNaNError as error:
            raise ValueError(
                f"{storage}: a window's dynamics blew up (NaN): {error}; use a smaller timestep (or hydrogen_mass), "
                "and start from an equilibrated MD frame rather than a docked pose"
            ) from error
        analyzer = multistate.MultiStateSamplerAnalyzer(reporter, unbias_restraint=False)
        free_energy, error = analyzer.get_free_energy()
        kt = BOLTZMANN * temperature
        dg, dg_err = float(free_energy[0, -1]) * kt, float(error[0, -1]) * kt
    finally:
        reporter.close()
    if not (math.isfinite(dg) and math.isfinite(dg_err)):
        raise ValueError(
            f"{storage}: the free energy of the leg is {dg} +- {dg_err} kcal/mol over {len(schedule)} windows and "
            f"{iterations} iterations; MBAR needs overlap between neighbouring windows: add windows or iterations"
        )
    return {"dg": dg, "dg_err": dg_err, "windows": len(schedule), "iterations": iterations,
            "seconds": time.perf_counter() - began}


def run_alchemical(
    *,
    ligand: str,
    complex: str,
    start: str,
    coarse: dict[str, float] | None,
    restraint_windows: int,
    electrostatics_windows: int,
    sterics_windows: int,
    iterations: int,
    steps_per_iteration: int,
    timestep: float,
    hydrogen_mass: float | None,
    temperature: float,
    collision_rate: float,
    restraint_k: float,
    solvent: Literal["obc2"],
) -> dict[str, JsonValue]:
    """The absolute binding free energy of ``ligand`` from the complex conformation in ``start``.

    Runs in the task's working directory: the complex leg (``complex.nc``),
    then the solvent leg (``solvent.nc``), then writes :data:`RESULTS`. See the
    module docstring for the cycle and its signs.

    Parameters
    ----------
    ligand
        The ligand's id.
    complex
        Its prepared complex folder, relative to the working directory.
    start
        The start file (complex positions), relative to the working directory.
    coarse
        The S3-CG estimate the task was promoted with (``dg_mean``, ``dg_sem``,
        ``ci_low``, ``ci_high``), returned alongside for comparison; or None.
    restraint_windows, electrostatics_windows, sterics_windows, iterations, steps_per_iteration, timestep,
    hydrogen_mass, temperature, collision_rate, restraint_k, solvent
        As in :class:`AlchemicalConfig`.

    Returns
    -------
    dict
        A dumped :class:`~mummi_scales.drug_discovery.results.FineResult`:
        ``ligand``, ``dg`` and ``dg_err`` (kcal/mol), ``method``, ``windows``
        (both legs together), ``seconds``, ``coarse``, ``legs`` (each leg's
        ``dg``, ``dg_err``, ``windows``, ``iterations``, ``seconds``) and
        ``restraint_correction`` (kcal/mol).

    Raises
    ------
    ValueError
        When the start does not fit the complex, or a leg gives no finite free
        energy (see :func:`run_leg`).
    mummi_scales.drug_discovery.complexes.ComplexError
        When the folder holds no prepared complex.
    """
    began = time.perf_counter()
    prepared = load_complex(Path(complex))
    positions = read_start(Path(start), prepared)
    ligand_atoms = list(prepared.ligand_atoms)
    sampling = {"iterations": iterations, "steps_per_iteration": steps_per_iteration, "timestep": timestep,
                "temperature": temperature, "collision_rate": collision_rate}
    complex_system, _ = build_system(prepared, "complex", solvent=solvent, cutoff=None, restrain=True,
                                     hydrogen_mass=hydrogen_mass)
    ligand_system, _ = build_system(prepared, "ligand", solvent=solvent, cutoff=None, restrain=False,
                                    hydrogen_mass=hydrogen_mass)
    complex_schedule = lambda_schedule(restraint_windows, electrostatics_windows, sterics_windows)
    solvent_schedule = lambda_schedule(0, electrostatics_windows, sterics_windows)
    runs = {
        "complex": (complex_system, positions, ligand_atoms, complex_schedule, (_pocket(prepared), restraint_k)),
        "solvent": (ligand_system, positions[ligand_atoms], range(len(ligand_atoms)), solvent_schedule, None),
    }
    legs: dict[str, LegResult] = {}
    for leg, (system, start_positions, alchemical, schedule, restraint) in runs.items():
        try:
            legs[leg] = LegResult.model_validate(run_leg(system, start_positions, alchemical, schedule,
                                                         storage=Path(f"{leg}.nc"), restraint=restraint, **sampling))
        except ValueError as error:
            raise ValueError(f"ligand {ligand}, {leg} leg: {error}") from error
    correction = restraint_correction(restraint_k, temperature)
    value = FineResult(
        ligand=ligand, dg=legs["solvent"].dg - legs["complex"].dg - correction,
        dg_err=math.hypot(legs["complex"].dg_err, legs["solvent"].dg_err), method=METHOD,
        windows=len(complex_schedule) + len(solvent_schedule), seconds=time.perf_counter() - began,
        coarse=coarse, legs=legs, restraint_correction=correction,
    ).model_dump(mode="json")
    document = {**value, "schedules": {"complex": complex_schedule, "solvent": solvent_schedule},
                "units": "kcal/mol", "restraint_k": restraint_k, "pocket_atoms": _pocket(prepared)}
    atomic_write_text(RESULTS, json.dumps(document, indent=1))
    return value


def _pocket(prepared: PreparedComplex) -> list[int]:
    """The receptor atoms whose centroid the ligand is restrained to: the per-target pocket's C-alphas."""
    if len(prepared.pocket_ca) < 3:
        raise ValueError(
            f"complex {prepared.folder} has {len(prepared.pocket_ca)} pocket C-alphas; the restraint needs at least 3 "
            "to define a pocket centroid (prepare the complex with a larger feature_radius)"
        )
    return list(prepared.pocket_ca)


# ---------------------------------------------------------------- the scale


class AlchemicalScale(Scale):
    """Absolute binding free energies of the ligands a coupling promotes from the S3-CG estimates stream.

    No task at the start; :meth:`promote` makes one per promoted ligand, labelled ``ligand``.
    """

    config_model: ClassVar[type[AlchemicalConfig]] = AlchemicalConfig
    config: AlchemicalConfig

    def tasks(self) -> list[TaskSpec]:
        """None: the scale runs only what a coupling promotes to it."""
        return []

    def promote(self, frame: PromotedFrame, task_id: str) -> TaskSpec:
        """The alchemical run of the ligand of ``frame``, a frame of the S3-CG summary's estimates stream.

        The stream holds one frame per ligand, in the order of the
        :data:`~mummi_scales.drug_discovery.mmgbsa.LIGANDS_JSON` next to it, which names the
        ligand, its complex folder and how many atoms of the (zero-padded)
        frame are real. Those positions go to :data:`~mummi_scales.drug_discovery.mmgbsa.START`
        in the task's working directory, with where they came from.

        Raises
        ------
        ValueError
            When the frame is not from an S3-CG estimates stream (no ligand list
            next to it, or no entry for its index), or its positions do not fit
            the ligand's complex.
        """
        listing = Path(frame.file).parent / LIGANDS_JSON
        if not listing.is_file():
            raise ValueError(
                f"frame {frame.frame_id} of coupling {frame.coupling!r}: no {LIGANDS_JSON} next to {frame.file}; the "
                f"alchemical scale starts from the mmgbsa summary's stream (coupling stream: '**/estimates.h5md', "
                f"feature: {ESTIMATE})"
            )
        entries = json.loads(listing.read_text())
        if not 0 <= frame.index < len(entries) or entries[frame.index]["frame"] != frame.index:
            raise ValueError(f"frame {frame.frame_id}: {listing} has no ligand for frame {frame.index}")
        entry = entries[frame.index]
        root = self.context.campaign_dir
        prepared = load_complex(root / entry["complex"])
        n_atoms = len(prepared.receptor_atoms) + len(prepared.ligand_atoms)
        positions = np.asarray(frame.positions, dtype=np.float64)[: int(entry["atoms"])]
        if positions.shape != (n_atoms, 3) or not np.isfinite(positions).all():
            raise ValueError(
                f"frame {frame.frame_id}: {entry['atoms']} positions of ligand {entry['ligand']} do not fit the "
                f"{n_atoms} atoms of its complex {entry['complex']}; the summary and the complex disagree"
            )
        estimate = np.asarray(frame.observables.get(ESTIMATE, []), dtype=np.float64)
        coarse = dict(zip(("dg_mean", "dg_sem", "ci_low", "ci_high"), map(float, estimate), strict=False)) or None
        workdir = self.workdir(task_id)
        write_start(root / workdir, positions, {"frame_id": frame.frame_id, "source_task": frame.source_task,
                                                "coupling": frame.coupling, "score": frame.score})
        ligand = str(entry["ligand"])
        return callable_task(
            self, self.config, task_id, RUN_FUNCTION,
            {"ligand": ligand, "complex": f"{campaign_root(workdir)}/{entry['complex']}", "start": START,
             "coarse": coarse, **self.config.run_kwargs()},
            {"stage": self.context.name, "ligand": ligand, "source_task": frame.source_task},
        )

    @classmethod
    def report_sections(cls, view: CampaignView, scale_name: str) -> list[ReportSection]:
        """Coarse (S3-CG MM/GBSA) against fine (alchemical) estimates of the promoted ligands."""
        from matplotlib.figure import Figure

        from mummi_like import ReportSection

        results = sorted((FineResult.model_validate(task.value) for task in view.done(scale_name)),
                         key=lambda value: value.dg)
        if not results:
            return [ReportSection("Alchemical estimates (S3-FG)", text="No alchemical run has finished yet.")]
        cells = []
        for value in results:
            coarse = value.coarse
            cells.append((value.ligand, f"{value.dg:.2f} ± {value.dg_err:.2f}",
                          f"{coarse.dg_mean:.2f} [{coarse.ci_low:.2f}, {coarse.ci_high:.2f}]"
                          if coarse else "", str(value.windows), f"{value.seconds:.0f}"))
        header = "".join(f"<th>{name}</th>" for name in (
            "ligand", "alchemical dG (kcal/mol)", "MM/GBSA dG [CI] (kcal/mol)", "windows", "seconds"))
        rows = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in cells)
        text = (f"{len(results)} ligand(s) refined by {METHOD}. MM/GBSA has no entropy term, so its values sit tens "
                "of kcal/mol below the free energies: compare the orders, not the numbers.")
        sections = [ReportSection("Alchemical estimates (S3-FG)", text=text,
                                  html=f"<table><tr>{header}</tr>{rows}</table>")]
        paired = [(value, value.coarse) for value in results if value.coarse is not None]
        if paired:
            figure = Figure(figsize=(5, 4.5))
            axes = figure.add_subplot()
            coarse = np.array([[estimate.dg_mean, estimate.ci_low, estimate.ci_high] for _, estimate in paired])
            axes.errorbar(coarse[:, 0], [value.dg for value, _ in paired],
                          xerr=np.clip([coarse[:, 0] - coarse[:, 1], coarse[:, 2] - coarse[:, 0]], 0, None),
                          yerr=[value.dg_err for value, _ in paired], fmt="o", capsize=3)
            for value, estimate in paired:
                axes.annotate(value.ligand, (estimate.dg_mean, value.dg), fontsize="small",
                              xytext=(4, 4), textcoords="offset points")
            axes.set_xlabel("S3-CG MM/GBSA dG (kcal/mol)")
            axes.set_ylabel("S3-FG alchemical dG (kcal/mol)")
            figure.tight_layout()
            sections.append(ReportSection("Coarse against fine estimates", figure=figure))
        return sections
