"""The ``chain-md`` scale: a coarse-grained polymer that folds, simulated with OpenMM at any resolution.

A toy protein in the spirit of DeepDriveMD's folding demos, small enough to run
in seconds on one core and real enough to exercise a multiscale loop: ``beads``
beads in implicit solvent, consecutive beads bonded by harmonic springs, every
other pair attracting each other through a Lennard-Jones potential, so that an
extended chain collapses into compact, folded states. Langevin dynamics
(:class:`openmm.LangevinMiddleIntegrator`) couples it to a heat bath; there is
no periodic box.

There is no ``resolution`` switch: the config sets temperature, timestep,
friction and length, so the same plugin is the *coarse* scale (hot, large
timestep, high friction, short runs reported often: it explores) and the *fine*
scale (cooler, small timestep, longer: it refines). A coarse scale creates
``replicas`` seeded runs from the extended chain; a fine scale usually has none
of its own and runs only the frames a coupling promotes to it (:meth:`ChainMDScale.promote`).

Every task runs :func:`run_chain`, which streams ``trajectory.h5md`` (positions
plus the per-frame observables ``contact_map``, ``radius_of_gyration`` and
``end_to_end``) through :class:`~mummi_like.streams.h5md.H5MDReporter` while it
runs, so the coordinator's selector sees frames before the run ends.

Units are OpenMM's: nm, ps, K, kJ/mol, dalton. The bead is a residue's
C-alpha: :data:`SIGMA` is the C-alpha spacing of a protein chain.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Self

import numpy as np
from pydantic import Field, TypeAdapter, ValidationError, model_validator

from mummi_like import CallablePayload, Feedback, PromotedFrame, TaskSpec, atomic_write, task_seed
from mummi_scales.generic.parameters import (
    ParameterizedConfig,
    ParameterizedScale,
    ParameterSpace,
    Scalar,
    check_zip,
    substitute,
)

if TYPE_CHECKING:
    import openmm

RUN_FUNCTION = "mummi_scales.generic.chain_md:run_chain"
"""What every task of the scale calls."""
TRAJECTORY = "trajectory.h5md"
"""The stream each task writes in its working directory; a coupling tails these."""
TOPOLOGY = "topology.pdb"
"""The chain's topology and first positions, to read the stream with: ``MDAnalysis.Universe(TOPOLOGY, TRAJECTORY)``."""
START = "start.npz"
"""What :meth:`ChainMDScale.promote` writes into a promoted task's working directory and the task starts from."""

SIGMA = 0.38
"""Bead diameter and bond length (nm): the C-alpha spacing of a protein chain."""
EPSILON = 2.5
"""Depth of the Lennard-Jones well (kJ/mol), about kT at 300 K: the chain is compact at 300 K and still
collapses, more loosely and with larger fluctuations, at 450 K."""
BOND_K = 20000.0
"""Harmonic bond constant (kJ/mol/nm^2): stiff enough to keep bonds within a few percent of :data:`SIGMA`,
soft enough for 30 fs steps with :data:`BEAD_MASS`."""
BEAD_MASS = 110.0
"""Mass of a bead (dalton): an average amino-acid residue."""
LJ_CUTOFF = 2.5 * SIGMA
"""Pairs farther apart than this (nm) do not interact; the usual cut of a Lennard-Jones tail."""
LJ_SWITCH = 2.0 * SIGMA
"""Where the potential starts switching smoothly to zero (nm), so that energy has no jump at the cutoff."""

REPLICA = "replica"
"""The parameter that numbers a coarse scale's seeded runs; its ``param.replica`` label says which run a task is."""
SWEEPABLE = ("temperature", "timestep", "friction", "steps", "report_interval", "contact_cutoff")
"""Config fields a ``parameters:`` block may vary per task. Not ``beads``: promoted frames and the contact maps a
selector compares need one chain size per campaign."""


class SimulationDiverged(ValueError):
    """The dynamics blew up: positions turned NaN or infinite.

    A class of its own, so that a retry policy can name it (``retry: {exceptions:
    [SimulationDiverged]}``) without also retrying bad arguments, which raise a
    plain :class:`ValueError`; still a ValueError, as a diverged run was before.
    """


class ChainMDConfig(ParameterizedConfig):
    """Config of the ``chain-md`` scale: the chain, the dynamics, and how many seeded runs to start.

    Besides the fields below it takes those of every parameterized scale
    (:class:`~mummi_scales.generic.parameters.ParameterizedConfig`): ``resources``,
    ``retry``, ``env``, ``priority``, and ``parameters``/``combine``, which vary
    the fields in :data:`SWEEPABLE` over the replicas (``combine: zip`` with one
    value per replica gives, say, a temperature ladder).
    """

    beads: int = Field(24, ge=3, description="Beads of the chain (residues of the toy protein).")
    temperature: float = Field(300.0, gt=0, description="Heat-bath temperature (K); high explores, low refines.")
    timestep: float = Field(
        0.01, gt=0, le=0.04, description="Integration step (ps); up to 0.04 is stable for this chain, 0.01 is accurate."
    )
    friction: float = Field(
        1.0, gt=0, description="Langevin friction (1/ps); high values make a rough, fast-decorrelating exploration."
    )
    steps: int = Field(50000, ge=1, description="Integration steps of each task.")
    report_interval: int = Field(
        500, ge=1, description="Steps between streamed frames; a task writes steps // report_interval frames."
    )
    contact_cutoff: float = Field(
        0.6,
        gt=0,
        description="Distance (nm) under which two beads are in contact in the streamed contact map; 0.6 nm is "
        "1.6 bead diameters, past the Lennard-Jones minimum (0.43 nm), so touching beads count.",
    )
    restart_from_fine: bool = Field(
        False,
        description="Start a new replica of this (coarse) scale from the last frame of every fine run that a "
        "coupling from this scale promoted (MuMMI's fine-to-coarse feedback).",
    )
    replicas: int = Field(
        0,
        ge=0,
        description="Independent seeded runs from the extended chain that the scale starts (a coarse scale); 0 for a "
        "scale that runs only the frames a coupling promotes to it (a fine scale).",
    )
    seed: int = Field(
        0, ge=0, description="Campaign seed; each task's OpenMM seed is derived from it and the task id."
    )
    platform: Literal["CPU", "Reference"] = Field(
        "CPU",
        description="OpenMM platform: 'CPU' (neighbour lists; as many threads as the task has cores, from "
        "OMP_NUM_THREADS) is the faster from about 50 beads; 'Reference' is faster for shorter chains and gives the "
        "same trajectory for a seed on any machine.",
    )

    @model_validator(mode="after")
    def _sweep_and_frames(self) -> Self:
        problems = []
        if self.resources.ranks > 1:
            problems.append(
                f"resources.ranks is {self.resources.ranks}, but OpenMM runs in one process; use ranks: 1 and give it "
                "threads with cores"
            )
        if self.report_interval > self.steps:
            problems.append(
                f"report_interval ({self.report_interval}) is larger than steps ({self.steps}), so a task would "
                "stream no frame; lower report_interval or raise steps"
            )
        for name, values in self.parameters.items():
            if name not in SWEEPABLE:
                problems.append(f"parameter {name!r} cannot be varied; parameters may vary {', '.join(SWEEPABLE)}")
                continue
            field = type(self).model_fields[name]
            adapter: TypeAdapter[Any] = TypeAdapter(Annotated[field.annotation, *field.metadata])
            for value in values:
                try:
                    adapter.validate_python(value)
                except ValidationError as error:
                    problems.append(f"parameters.{name}: {value!r}: {error.errors()[0]['msg']}")
        if self.parameters and not self.replicas:
            problems.append("parameters vary the seeded replicas, but replicas is 0; set replicas or drop parameters")
        if self.parameters and self.replicas and self.combine == "zip":
            try:
                check_zip({**self.parameters, REPLICA: list(range(self.replicas))}, "zip")
            except ValueError as error:
                problems.append(f"{error} (with combine: zip, give each parameter one value per replica)")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def space(self) -> ParameterSpace:
        """The parameters with :data:`REPLICA` added last (so it varies fastest): one point per task."""
        return ParameterSpace(values={**self.parameters, REPLICA: list(range(self.replicas))}, combine=self.combine)

    def run_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of :func:`run_chain` that come from the config (all but ``seed`` and ``start``)."""
        return {name: getattr(self, name) for name in ("beads", *SWEEPABLE, "platform")}


class ChainMDScale(ParameterizedScale):
    """Langevin dynamics of a folding bead-spring chain; coarse or fine by its config alone.

    :meth:`tasks` starts ``replicas`` seeded runs from the extended chain (ids
    ``<scale>.<i>``, label ``param.replica``); :meth:`promote` starts a run from a
    frame that a coupling's selector picked from another scale's stream.
    """

    config_model: ClassVar[type[ChainMDConfig]] = ChainMDConfig
    config: ChainMDConfig

    def tasks(self) -> list[TaskSpec]:
        """One task per replica (and parameter point); none for a scale that only runs promoted frames."""
        return super().tasks() if self.config.replicas else []

    def payload(self, point: Mapping[str, Scalar], values: Mapping[str, str], env: dict[str, str]) -> CallablePayload:
        """:func:`run_chain` from the extended chain, the point's values over the config's, seeded by the task id."""
        physics = {**self.config.run_kwargs(), **{k: v for k, v in point.items() if k != REPLICA}}
        seed = task_seed(self.config.seed, values["task_id"])
        return CallablePayload(function=RUN_FUNCTION, kwargs={**physics, "seed": seed, "start": None}, env=env)

    def promote(self, frame: PromotedFrame, task_id: str) -> TaskSpec:
        """Write ``frame`` as :data:`START` into the task's working directory and return the run that starts there.

        The file also records where the frame came from (``frame_id``,
        ``source_task``, ``coupling``, ``step``, ``time``, ``score``), so a fine
        trajectory can be traced back without the campaign store.

        Raises
        ------
        ValueError
            When the frame does not hold one position per bead (a coupling from a
            scale with another chain size).
        """
        positions = np.asarray(frame.positions, dtype=np.float64)
        if positions.shape != (self.config.beads, 3):
            raise ValueError(
                f"frame {frame.frame_id} of coupling {frame.coupling!r} has positions of shape {positions.shape}, but "
                f"scale {self.context.name!r} simulates {self.config.beads} beads; give both scales the same `beads`"
            )
        provenance = {"frame_id": frame.frame_id, "source_task": frame.source_task, "coupling": frame.coupling,
                      "step": frame.step, "time": frame.time, "score": frame.score}
        labels = {"promoted_from": frame.frame_id, "coupling": frame.coupling, "source_task": frame.source_task}
        return self._start_from(task_id, positions, provenance, labels)

    def on_feedback(self, feedback: Feedback) -> list[TaskSpec]:
        """With ``restart_from_fine``, start a new replica here from the last frame of each finished fine run.

        MuMMI's fine-to-coarse feedback: what the fine scale found (a refined,
        more compact fold) seeds further exploration at this scale.
        """
        if not self.config.restart_from_fine:
            return []
        frames = int((feedback.result.value or {}).get("frames", 0))
        if frames < 1:
            return []
        from mummi_like import read_frame  # h5py only when feedback is used

        last = read_frame(feedback.workdir / TRAJECTORY, frames - 1)
        task_id = f"{self.context.name}.from-{feedback.task.id}"
        provenance = {"frame_id": f"{last.file}:{last.index}", "source_task": feedback.task.id,
                      "coupling": feedback.coupling, "step": last.step, "time": last.time, "score": 0.0}
        return [self._start_from(task_id, np.asarray(last.positions, dtype=np.float64), provenance,
                                 {"restarted_from": feedback.task.id})]

    def _start_from(self, task_id: str, positions: np.ndarray, provenance: dict[str, Any],
                    labels: dict[str, str]) -> TaskSpec:
        """Write the start file (positions and where they came from) and return the run that starts from it.

        The file is written atomically, so a coordinator that dies meanwhile
        leaves no torn start file for a resumed one to trust.
        """
        workdir = self.workdir(task_id)
        folder = self.context.campaign_dir / workdir
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / START, "wb") as handle:
            np.savez(handle, positions=positions, **provenance)

        name = self.context.name
        campaign_dir = self.context.campaign_dir.absolute()
        # The config's env placeholders: the built-ins, and any swept parameter at the config's own value.
        values = {
            **{key: str(getattr(self.config, key)) for key in self.config.parameters},
            "task_id": task_id,
            "scale": name,
            "workdir": str(campaign_dir / workdir),
            "campaign_dir": str(campaign_dir),
        }
        return TaskSpec(
            id=task_id,
            payload=CallablePayload(
                function=RUN_FUNCTION,
                kwargs={**self.config.run_kwargs(), "seed": task_seed(self.config.seed, task_id), "start": START},
                env={key: substitute(value, values) for key, value in self.config.env.items()},
            ),
            resources=self.config.resources,
            retry=self.config.retry,
            labels={"scale": name, "stage": name, **labels},
            workdir=workdir,
            priority=self.config.priority,
        )


def run_chain(
    *,
    beads: int,
    temperature: float,
    timestep: float,
    friction: float,
    steps: int,
    report_interval: int,
    contact_cutoff: float,
    seed: int,
    start: str | None = None,
    platform: str = "CPU",
) -> dict[str, float | int]:
    """Simulate the chain in the current directory, streaming :data:`TRAJECTORY`; the task function of the scale.

    Parameters
    ----------
    beads, temperature, timestep, friction, steps, report_interval, contact_cutoff, platform
        As in :class:`ChainMDConfig` (K, ps, 1/ps, nm).
    seed
        Seed of the Langevin noise and of the initial velocities (Maxwell-Boltzmann
        at ``temperature``); at least 1, since OpenMM reads 0 as "random". On the
        Reference platform a seed gives the same trajectory on every machine.
    start
        An ``.npz`` file (relative to the current directory) whose ``positions``
        are the ``(beads, 3)`` positions (nm) to start from, as
        :meth:`ChainMDScale.promote` writes it; None starts from the extended
        chain, a straight line of beads :data:`SIGMA` apart.

    Returns
    -------
    dict
        JSON-able summary of the final frame and the run: ``radius_of_gyration``
        and ``end_to_end`` (nm), ``contacts`` (bead pairs at least two apart in
        sequence within ``contact_cutoff``), ``frames`` written, ``steps``,
        ``wall_seconds`` of the dynamics, and ``steps_per_second``.

    Raises
    ------
    ValueError
        For arguments that could not make a run that streams a frame, for a
        ``start`` file without ``positions`` of shape ``(beads, 3)`` or with
        non-finite ones.
    SimulationDiverged
        When the dynamics blows up and positions turn NaN (too large a
        timestep or temperature); every frame written before stays readable.
    """
    import openmm
    from openmm import app, unit

    from mummi_like import H5MDReporter

    if beads < 3 or steps < 1 or not 1 <= report_interval <= steps:
        raise ValueError(
            f"need beads >= 3 and 1 <= report_interval <= steps to stream a frame; got beads={beads}, steps={steps}, "
            f"report_interval={report_interval}"
        )
    if seed < 1:
        raise ValueError(f"seed must be at least 1 (OpenMM reads 0 as 'pick a random seed'); got {seed}")
    positions = _start_positions(start, beads)

    topology = _topology(beads)
    integrator = openmm.LangevinMiddleIntegrator(temperature, friction, timestep)
    integrator.setRandomNumberSeed(seed)
    properties = {"Threads": os.environ.get("OMP_NUM_THREADS", "1")} if platform == "CPU" else {}
    simulation = app.Simulation(
        topology, _system(beads), integrator, openmm.Platform.getPlatformByName(platform), properties
    )
    simulation.context.setPositions(positions)
    simulation.context.setVelocitiesToTemperature(temperature, seed)
    with atomic_write(TOPOLOGY) as handle:
        app.PDBFile.writeFile(topology, positions * unit.nanometer, handle)

    def contact_map(_: app.Simulation, state: openmm.State) -> np.ndarray:
        return _contact_map(_nanometers(state), contact_cutoff)

    def radius_of_gyration(_: app.Simulation, state: openmm.State) -> np.float64:
        return _radius_of_gyration(_nanometers(state))

    def end_to_end(_: app.Simulation, state: openmm.State) -> np.float64:
        return _end_to_end(_nanometers(state))

    observables = {"contact_map": contact_map, "radius_of_gyration": radius_of_gyration, "end_to_end": end_to_end}
    with H5MDReporter(TRAJECTORY, report_interval, observables, author=RUN_FUNCTION) as reporter:
        simulation.reporters.append(reporter)
        began = time.perf_counter()
        try:
            simulation.step(steps)
        except (ValueError, openmm.OpenMMException) as error:
            # The reporter refuses a NaN frame (ValueError); the CPU platform may stop at the NaN first
            # ("Particle coordinate is NaN"), after which not even the state can be read: the message tells.
            if "NaN" not in str(error):
                raise
            raise SimulationDiverged(
                f"the chain diverged (NaN positions) at step {simulation.context.getStepCount()} of {steps}, with "
                f"timestep {timestep:g} ps at {temperature:g} K; the frames before it stay in {TRAJECTORY}. "
                "Lower the timestep (0.04 ps is stable for this chain) or the temperature"
            ) from error
        wall = time.perf_counter() - began

    final = _nanometers(simulation.context.getState(getPositions=True))
    return {
        "radius_of_gyration": float(_radius_of_gyration(final)),
        "end_to_end": float(_end_to_end(final)),
        "contacts": int(np.triu(_contact_map(final, contact_cutoff), 2).sum()),
        "frames": steps // report_interval,
        "steps": steps,
        "wall_seconds": wall,
        "steps_per_second": steps / wall,
    }


def _start_positions(start: str | None, beads: int) -> np.ndarray:
    """``(beads, 3)`` positions (nm): those in the ``start`` file, or the extended chain along x.

    Raises
    ------
    ValueError
        Naming the file, when it has no ``positions`` of that shape or they are not finite.
    """
    if start is None:
        positions = np.zeros((beads, 3))
        positions[:, 0] = SIGMA * np.arange(beads)
        return positions
    with np.load(Path(start)) as data:
        if "positions" not in data:
            raise ValueError(f"{Path(start).absolute()} has no 'positions' array (it holds {sorted(data)})")
        positions = np.asarray(data["positions"], dtype=np.float64)
    if positions.shape != (beads, 3) or not np.isfinite(positions).all():
        raise ValueError(
            f"{Path(start).absolute()}: positions must be ({beads}, 3) finite numbers in nm, one per bead; "
            f"got shape {positions.shape}"
        )
    return positions


def _topology(beads: int) -> openmm.app.Topology:
    """One chain, one residue ``BEA`` per bead holding one carbon ``CA``, consecutive beads bonded."""
    from openmm import app

    topology = app.Topology()
    chain = topology.addChain("A")
    atoms = [topology.addAtom("CA", app.element.carbon, topology.addResidue("BEA", chain)) for _ in range(beads)]
    for first, second in zip(atoms, atoms[1:], strict=False):
        topology.addBond(first, second)
    return topology


def _system(beads: int) -> openmm.System:
    """Harmonic bonds between consecutive beads and a switched Lennard-Jones potential between all other pairs."""
    import openmm

    system = openmm.System()
    for _ in range(beads):
        system.addParticle(BEAD_MASS)
    bonded = [(i, i + 1) for i in range(beads - 1)]
    bonds = openmm.HarmonicBondForce()
    for i, j in bonded:
        bonds.addBond(i, j, SIGMA, BOND_K)
    system.addForce(bonds)
    pairs = openmm.CustomNonbondedForce("4*epsilon*((sigma/r)^12 - (sigma/r)^6)")
    pairs.addGlobalParameter("epsilon", EPSILON)
    pairs.addGlobalParameter("sigma", SIGMA)
    for _ in range(beads):
        pairs.addParticle([])
    pairs.createExclusionsFromBonds(bonded, 1)
    pairs.setNonbondedMethod(openmm.CustomNonbondedForce.CutoffNonPeriodic)
    pairs.setCutoffDistance(LJ_CUTOFF)
    pairs.setUseSwitchingFunction(True)
    pairs.setSwitchingDistance(LJ_SWITCH)
    system.addForce(pairs)
    return system


def _nanometers(state: openmm.State) -> np.ndarray:
    """The state's positions as an ``(n, 3)`` array in nm."""
    from openmm import unit

    return state.getPositions(asNumpy=True).value_in_unit(unit.nanometer)


def _contact_map(positions: np.ndarray, cutoff: float) -> np.ndarray:
    """``(n, n)`` uint8: 1 where two beads are closer than ``cutoff`` (the diagonal and bonded pairs included)."""
    distances = np.linalg.norm(positions[:, None, :] - positions[None, :, :], axis=-1)
    return (distances < cutoff).astype(np.uint8)


def _radius_of_gyration(positions: np.ndarray) -> np.float64:
    """Root mean square distance of the beads from their centre (all beads weigh the same)."""
    return np.sqrt(((positions - positions.mean(axis=0)) ** 2).sum(axis=1).mean())


def _end_to_end(positions: np.ndarray) -> np.float64:
    """Distance between the first and the last bead."""
    return np.linalg.norm(positions[-1] - positions[0])
