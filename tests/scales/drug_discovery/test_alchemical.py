"""S3-FG: alchemical windows with openmmtools, the restraint's standard-state correction, and the S3-CG -> S3-FG
promotion through a real coupling (summary stream -> uncertain-competitive selector -> ``promote`` -> a run).

The complex is the one of test_mmgbsa: progesterone docked into a 4 A PGR pocket (about 520 atoms).
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from test_mmgbsa import LIGAND, dock_and_prepare, s2_segment

from mummi_like.campaign.coupling import Coupling
from mummi_like.scale import DoneTask, PromotedFrame, ScaleContext
from mummi_like.spec import CouplingSpec
from mummi_like.store import Store
from mummi_like.streams.tailer import read_frame
from mummi_like.tasks import TaskResult, TaskState
from mummi_like.view import CampaignView
from mummi_scales.drug_discovery import complexes
from mummi_scales.drug_discovery.alchemical import (
    RESULTS,
    AlchemicalConfig,
    AlchemicalScale,
    lambda_schedule,
    restraint_correction,
    run_alchemical,
    run_leg,
)
from mummi_scales.drug_discovery.mmgbsa import (
    ESTIMATE,
    ESTIMATES_STREAM,
    START,
    MMGBSAConfig,
    MMGBSAScale,
    run_replica,
    summarize,
)
from mummi_selectors.promotion import UncertainCompetitiveConfig, UncertainCompetitiveSelector

if TYPE_CHECKING:
    import openmm

TINY = {"restraint_windows": 1, "electrostatics_windows": 1, "sterics_windows": 1, "iterations": 3,
        "steps_per_iteration": 5}


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, complexes.PreparedComplex, DoneTask]:
    """The complex, and one S2 segment of it: MD frames are where S3 starts (a docked pose is strained)."""
    folder = tmp_path_factory.mktemp("campaign")
    prepared = dock_and_prepare(folder)
    return folder, prepared, s2_segment(folder, prepared, 0, 21)


def test_windows_restrain_then_decouple_electrostatics_then_sterics() -> None:
    complex_leg = lambda_schedule(2, 2, 2)
    assert [tuple(window.values()) for window in complex_leg] == [
        (0.0, 1.0, 1.0), (0.5, 1.0, 1.0), (1.0, 1.0, 1.0), (1.0, 0.5, 1.0), (1.0, 0.0, 1.0), (1.0, 0.0, 0.5),
        (1.0, 0.0, 0.0)]
    solvent_leg = lambda_schedule(0, 1, 3)
    assert solvent_leg[0] == {"lambda_electrostatics": 1.0, "lambda_sterics": 1.0} and len(solvent_leg) == 5
    assert solvent_leg[-1] == {"lambda_electrostatics": 0.0, "lambda_sterics": 0.0}


def test_restraint_correction_matches_openmmtools_integral_of_the_same_restraint() -> None:
    from openmm import unit
    from openmmtools import forces, states, testsystems

    system = testsystems.HostGuestVacuum().system
    restraint = forces.HarmonicRestraintForce(
        spring_constant=2.0 * 418.4 * unit.kilojoule_per_mole / unit.nanometer**2,
        restrained_atom_indices1=list(range(126)), restrained_atom_indices2=list(range(126, 156)))
    numerical = restraint.compute_standard_state_correction(states.ThermodynamicState(system, 300 * unit.kelvin))
    kt = 0.0019872043 * 300.0
    assert restraint_correction(2.0, 300.0) == pytest.approx(numerical * kt, rel=1e-4)
    assert restraint_correction(2.0, 300.0) < restraint_correction(0.5, 300.0) < 0  # stiffer: more to release


def test_config_keeps_windows_and_timesteps_sane() -> None:
    with pytest.raises(ValueError, match="needs hydrogen_mass"):
        AlchemicalConfig(timestep=0.004)
    with pytest.raises(ValueError, match="takes no parameters"):
        AlchemicalConfig(parameters={"x": [1]})
    assert AlchemicalConfig(timestep=0.004, hydrogen_mass=1.5).run_kwargs()["hydrogen_mass"] == 1.5


def uncharged(system: openmm.System) -> openmm.System:
    """A copy of a ligand's system without its charges and its GB surface term: the decoupled end of electrostatics."""
    import openmm

    copy = openmm.XmlSerializer.deserialize(openmm.XmlSerializer.serialize(system))
    for force in copy.getForces():
        if isinstance(force, openmm.NonbondedForce):
            for index in range(force.getNumParticles()):
                force.setParticleParameters(index, 0.0, *force.getParticleParameters(index)[1:])
            for index in range(force.getNumExceptions()):
                i, j, _, sigma, epsilon = force.getExceptionParameters(index)
                force.setExceptionParameters(index, i, j, 0.0, sigma, epsilon)
        if isinstance(force, openmm.GBSAOBCForce):
            force.setSurfaceAreaEnergy(0.0)
            for index in range(force.getNumParticles()):
                force.setParticleParameters(index, 0.0, *force.getParticleParameters(index)[1:])
    return copy


def potential(system: openmm.System, positions: np.ndarray) -> float:
    import openmm
    from openmm import unit

    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(positions.astype(np.float64))
    return context.getState(getEnergy=True).getPotentialEnergy().value_in_unit(unit.kilocalorie_per_mole)


@pytest.mark.slow
def test_two_windows_turning_off_the_ligands_charges_give_its_energy_change(campaign: tuple, tmp_path: Path) -> None:
    _, prepared, segment = campaign
    system, _ = complexes.build_system(prepared, "ligand", cutoff=None, restrain=False)
    positions = read_frame(segment.workdir / "trajectory.h5md", 1).positions[prepared.ligand_atoms]
    two_states = [{"lambda_electrostatics": 1.0, "lambda_sterics": 1.0},
                  {"lambda_electrostatics": 0.0, "lambda_sterics": 1.0}]
    leg = run_leg(system, positions, range(len(positions)), two_states, storage=tmp_path / "solvent.nc",
                  iterations=20, steps_per_iteration=25, timestep=0.002, temperature=300.0)
    print(f"ligand alone, 2 windows x 20 iterations x 25 steps: {leg['seconds']:.1f} s")
    assert math.isfinite(leg["dg"]) and math.isfinite(leg["dg_err"]) and leg["dg_err"] > 0
    assert (tmp_path / "solvent.nc").is_file()
    # A near-rigid ligand: the free energy of removing its charges (intramolecular and solvation, with its surface
    # term, as openmmtools decouples them) is close to the energy it takes at one conformation, from plain OpenMM.
    change = potential(uncharged(system), positions) - potential(system, positions)
    assert abs(leg["dg"] - change) < 5.0, (leg["dg"], change)


@pytest.mark.slow
def test_a_coarse_estimate_is_promoted_and_refined_by_a_tiny_alchemical_run(campaign: tuple) -> None:
    folder, prepared, segment = campaign
    segments = [segment]
    coarse = MMGBSAScale(MMGBSAConfig(replicas=1, steps=50, report_interval=25, bootstrap=100),
                         ScaleContext("mmgbsa", folder, folder))
    tasks = coarse.on_upstream_done({"md": segments})
    for task in tasks[:-1]:
        with contextlib.chdir(folder / task.workdir):
            run_replica(**task.payload.kwargs)
    summary_dir = folder / tasks[-1].workdir
    summary_dir.mkdir(parents=True)
    with contextlib.chdir(summary_dir):
        estimates = summarize(**tasks[-1].payload.kwargs)["ligands"]

    fine = AlchemicalScale(AlchemicalConfig(**TINY), ScaleContext("alchemical", folder, folder))
    spec = CouplingSpec(source="mmgbsa", target="alchemical", selector="uncertain-competitive",
                        config={"min_score": 0.0}, feature=ESTIMATE, stream=f"**/{ESTIMATES_STREAM}")
    with Store.open(folder) as store:
        coupling = Coupling.build(spec, UncertainCompetitiveSelector, UncertainCompetitiveConfig(min_score=0.0),
                                  {"mmgbsa": coarse, "alchemical": fine}, folder, store)
        try:
            promoted = coupling.round(final=True).new_tasks
        finally:
            coupling.close()
    assert len(promoted) == 1
    task = promoted[0]
    assert task.labels["ligand"] == LIGAND and task.labels["source_task"] == tasks[-1].id
    assert task.payload.kwargs["coarse"] == pytest.approx(
        {key: estimates[LIGAND][key] for key in ("dg_mean", "dg_sem", "ci_low", "ci_high")}, rel=1e-6)
    stream_frame = read_frame(summary_dir / ESTIMATES_STREAM, 0)
    with np.load(folder / task.workdir / START) as start:
        np.testing.assert_array_equal(start["positions"], stream_frame.positions[: start["positions"].shape[0]])
        assert start["positions"].shape[0] == len(prepared.receptor_atoms) + len(prepared.ligand_atoms)

    with contextlib.chdir(folder / task.workdir):
        began = time.perf_counter()
        value = run_alchemical(**task.payload.kwargs)
        print(f"tiny ABFE ({value['windows']} windows x 3 iterations x 5 steps): {time.perf_counter() - began:.1f} s;"
              f" complex leg {value['legs']['complex']['seconds']:.1f} s")
    assert value["ligand"] == LIGAND and math.isfinite(value["dg"]) and value["dg_err"] > 0
    assert value["windows"] == 4 + 3 and value["coarse"] == task.payload.kwargs["coarse"]
    legs = value["legs"]
    assert value["dg"] == pytest.approx(legs["solvent"]["dg"] - legs["complex"]["dg"] - value["restraint_correction"])
    assert legs["complex"]["dg"] > 0  # pulling a ligand out of its pocket costs free energy, even when barely sampled
    written = json.loads((folder / task.workdir / RESULTS).read_text())
    assert written["dg"] == value["dg"] and len(written["schedules"]["complex"]) == 4

    with Store.open(folder) as store:
        store.add_tasks([task], 0.0)
        store.transition(task.id, TaskState.DONE, 1.0, result=TaskResult(job_id="1", ok=True, value=value))
        store.flush()
    with CampaignView.open(folder) as view:
        sections = AlchemicalScale.report_sections(view, "alchemical")
    assert LIGAND in (sections[0].html or "") and sections[1].figure is not None


def test_promote_refuses_frames_of_other_streams(campaign: tuple, tmp_path: Path) -> None:
    folder, _, _ = campaign
    fine = AlchemicalScale(AlchemicalConfig(**TINY), ScaleContext("alchemical", folder, folder))
    frame = PromotedFrame(frame_id=f"{tmp_path}/trajectory.h5md:0", coupling="md-to-fine", source_task="md.0",
                          file=tmp_path / "trajectory.h5md", index=0, step=0, time=0.0, score=1.0,
                          positions=np.zeros((10, 3)), box=None, observables={})
    with pytest.raises(ValueError, match=r"no ligands.json next to .*estimates.h5md"):
        fine.promote(frame, "alchemical.x.00000")
