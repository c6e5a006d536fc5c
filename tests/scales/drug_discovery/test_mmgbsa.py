"""S3-CG: MM/GBSA energies of a real PGR complex, ESMACS replicas from S2 segments, and the summary's estimates.

One module-scoped campaign folder holds a docked progesterone pose in a small
PGR pocket (4 A around the ligand: about 520 atoms, so MD and energies take
seconds) and two short S2-like segments simulated from it, as the complex-md
scale would leave them.
"""

from __future__ import annotations

import contextlib
import csv
import json
import math
import time
from pathlib import Path

import numpy as np
import pytest

from mummi_like.scale import DoneTask, ScaleContext
from mummi_like.store import Store
from mummi_like.streams.tailer import read_frame
from mummi_like.tasks import CallablePayload, TaskResult, TaskSpec, TaskState
from mummi_like.view import CampaignView
from mummi_scales.drug_discovery import complexes, docking
from mummi_scales.drug_discovery import data as drug_data
from mummi_scales.drug_discovery.mmgbsa import (
    ESTIMATE,
    ESTIMATES_CSV,
    ESTIMATES_STREAM,
    LIGANDS_JSON,
    RESULTS,
    START,
    BindingEnergy,
    MMGBSAConfig,
    MMGBSAScale,
    bootstrap,
    run_replica,
    spread,
    summarize,
)
from mummi_scales.drug_discovery.results import Segment

LIGAND = "known-progesterone"


def dock_and_prepare(campaign: Path) -> complexes.PreparedComplex:
    """Progesterone docked into PGR (small, fast Vina search) and built as a 4 A pocket complex under ``campaign``."""
    smiles = dict(drug_data.known_ligands())[LIGAND]
    receptor = drug_data.docking_receptor("PGR", "crystal", campaign)
    with contextlib.chdir(campaign):
        docked = docking.dock_batch([[LIGAND, smiles]], str(receptor.pdbqt), list(receptor.center), [20.0, 20.0, 20.0],
                                    exhaustiveness=2, seed=1, poses=1, max_evals=20000)
    return complexes.prepare_complex(LIGAND, smiles, campaign / docked[LIGAND]["poses"], receptor,
                                     campaign / "complexes" / LIGAND, pocket_radius=4.0, cache=campaign / "cache",
                                     feature_radius=8.0)


def segment_value(ligand: str, smiles: str, complex: str, trajectory: str, rmsd: list[float],
                  left_pocket: bool) -> dict[str, object]:
    """The value complex-md's run_segment returns for a segment of ``len(rmsd)`` frames."""
    return Segment(ligand=ligand, smiles=smiles, docking_score=-8.3, complex=complex, trajectory=trajectory,
                   start_frame=None, frames=len(rmsd), times=[0.2 * (k + 1) for k in range(len(rmsd))],
                   ligand_rmsd=rmsd, contacts=[20] * len(rmsd), ligand_rmsd_max=max(rmsd, default=0.0),
                   ligand_rmsd_final=rmsd[-1] if rmsd else 0.0, left_pocket=left_pocket, leave_pocket_rmsd=5.0,
                   ns_per_day=10.0, atoms=520).model_dump(mode="json")


def s2_segment(campaign: Path, prepared: complexes.PreparedComplex, number: int, seed: int) -> DoneTask:
    """A finished S2 segment as complex-md leaves it: a trajectory of the complex and the value that names it."""
    task_id = f"md.{LIGAND}.s{number}"
    workdir = f"tasks/md/{task_id}"
    run = complexes.simulate(prepared, complexes.initial_positions(prepared), steps=100, report_interval=50,
                             seed=seed, stream=campaign / workdir / "trajectory.h5md", minimize=True,
                             minimize_iterations=100)
    value = segment_value(LIGAND, prepared.smiles, str(prepared.folder.relative_to(campaign)),
                          f"{workdir}/trajectory.h5md", run["ligand_rmsd"], left_pocket=False)
    spec = TaskSpec(id=task_id, workdir=workdir, labels={"scale": "md", "stage": "md", "ligand": LIGAND},
                    payload=CallablePayload(function="mummi_scales.drug_discovery.complexes:simulate"))
    return DoneTask(spec, value, campaign / workdir)


@pytest.fixture(scope="module")
def campaign(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, complexes.PreparedComplex, list[DoneTask]]:
    folder = tmp_path_factory.mktemp("campaign")
    prepared = dock_and_prepare(folder)
    return folder, prepared, [s2_segment(folder, prepared, 0, 11), s2_segment(folder, prepared, 1, 12)]


def scale(campaign_dir: Path, **config: object) -> MMGBSAScale:
    return MMGBSAScale(MMGBSAConfig(**config), ScaleContext("mmgbsa", campaign_dir, campaign_dir))


# -- the engine -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_one_frame_of_the_pgr_complex_gives_finite_terms_that_add_up(campaign: tuple) -> None:
    folder, prepared, segments = campaign
    frame = read_frame(segments[0].workdir / "trajectory.h5md", 1)
    began = time.perf_counter()
    terms = BindingEnergy(prepared)(frame.positions, "s0:1")
    print(f"MM/GBSA of one frame ({len(frame.positions)} atoms, with setup): {time.perf_counter() - began:.2f} s")
    assert all(math.isfinite(value) for value in terms.__dict__.values())
    assert terms.dg == pytest.approx(terms.complex - terms.receptor - terms.ligand, abs=1e-9)
    assert terms.dg == pytest.approx(terms.dg_gas + terms.dg_solvation, abs=1e-6)
    assert -80.0 < terms.dg < -10.0  # progesterone binds its receptor: a favourable, not absurd, interaction energy

    # The complex term is the complex system's energy without its backbone restraint (group 0 of a restrained one).
    import openmm
    from openmm import unit

    system, _ = complexes.build_system(prepared, restrain=True, cutoff=None)
    assert prepared.restrained_atoms  # a truncated pocket: the restraint exists and must be left out
    context = openmm.Context(system, openmm.VerletIntegrator(0.001), openmm.Platform.getPlatformByName("Reference"))
    context.setPositions(frame.positions.astype(np.float64))
    unrestrained = context.getState(getEnergy=True, groups={0}).getPotentialEnergy()
    assert terms.complex == pytest.approx(unrestrained.value_in_unit(unit.kilocalorie_per_mole), abs=1e-3)


def test_broken_frames_are_named(campaign: tuple) -> None:
    _, prepared, segments = campaign
    energy = BindingEnergy(prepared)
    positions = read_frame(segments[0].workdir / "trajectory.h5md", 0).positions.astype(np.float64)
    clash = positions.copy()
    clash[prepared.ligand_atoms[0]] = clash[prepared.receptor_atoms[0]]
    with pytest.raises(ValueError, match=r"frame clash:0 .* energy is not finite"):
        energy(clash, "clash:0")
    with pytest.raises(ValueError, match=r"frame short:3 .* must be \(\d+, 3\) finite"):
        energy(positions[:-1], "short:3")


# -- statistics and start points --------------------------------------------------------------------


def test_spread_takes_segment_ends_first_then_evenly_spaced_frames() -> None:
    assert spread([4, 4], 1) == [(1, 3)]
    assert spread([4, 4], 2) == [(1, 3), (0, 3)]
    assert spread([4, 4], 4) == [(1, 3), (0, 3), (0, 0), (1, 2)]
    assert spread([2, 0], 3) == [(0, 1), (0, 0), (0, 1)]  # fewer frames than replicas: reused, new velocities
    with pytest.raises(ValueError, match="no S2 segment has a complete frame"):
        spread([0, 0], 2)


def test_bootstrap_resamples_replicas_so_disagreeing_replicas_widen_the_interval() -> None:
    frames = np.random.default_rng(0).normal(0.0, 1.0, 40)
    agree = [frames[:20] - 30.0, frames[20:] - 30.0]
    disagree = [frames[:20] - 35.0, frames[20:] - 25.0]
    mean, sem, low, high = bootstrap(agree, 500, 0.95, np.random.default_rng(1))
    assert low < mean < high and high - low < 1.5
    wide = bootstrap(disagree, 500, 0.95, np.random.default_rng(1))
    assert wide[0] == pytest.approx(mean) and wide[1] > 4 * sem and wide[3] - wide[2] > 8.0
    assert bootstrap(agree, 500, 0.95, np.random.default_rng(1)) == (mean, sem, low, high)


def test_config_refuses_settings_that_make_no_frames() -> None:
    with pytest.raises(ValueError, match="report_interval .* is larger than steps"):
        MMGBSAConfig(steps=10, report_interval=20)
    with pytest.raises(ValueError, match="takes no parameters"):
        MMGBSAConfig(parameters={"x": [1]})
    with pytest.raises(ValueError, match="needs hydrogen_mass"):
        MMGBSAConfig(timestep=0.004)


# -- the scale --------------------------------------------------------------------------------------


def lost() -> DoneTask:
    """An S2 segment whose trajectory is gone."""
    spec = TaskSpec(id="md.lost.s0", workdir="tasks/md/md.lost.s0", labels={"scale": "md", "stage": "md"},
                    payload=CallablePayload(function="mummi_scales.drug_discovery.complexes:simulate"))
    value = segment_value("lost", "CCO", "complexes/lost", "tasks/md/md.lost.s0/trajectory.h5md", [], left_pocket=True)
    return DoneTask(spec, value, Path("tasks/md/md.lost.s0"))


def test_stage_makes_replicas_from_spread_s2_frames_and_a_summary_over_them(campaign: tuple) -> None:
    folder, _, segments = campaign
    tasks = scale(folder, replicas=3, steps=50, report_interval=25).on_upstream_done({"md": segments})
    replicas, summary = tasks[:-1], tasks[-1]
    assert [task.id for task in replicas] == [f"mmgbsa.{LIGAND}.r00", f"mmgbsa.{LIGAND}.r01", f"mmgbsa.{LIGAND}.r02"]
    assert summary.id == "mmgbsa.summary" and summary.depends_on == [task.id for task in replicas]
    assert {task.labels["stage"] for task in replicas} == {"replica"} and summary.labels["stage"] == "summary"
    expected = [(1, 1), (0, 1), (0, 0)]  # the last frame of each segment (latest first), then another
    for task, (segment, index) in zip(replicas, expected, strict=True):
        with np.load(folder / task.workdir / START) as start:
            np.testing.assert_array_equal(
                start["positions"], read_frame(segments[segment].workdir / "trajectory.h5md", index).positions)
            assert int(start["frame"]) == index and str(start["source_task"]) == segments[segment].spec.id
    seeds = {task.payload.kwargs["seed"] for task in replicas}
    assert len(seeds) == 3 and 0 not in seeds
    again = scale(folder, replicas=3, steps=50, report_interval=25).on_upstream_done({"md": segments})
    assert again == tasks  # a resumed campaign repeating the call gets the same tasks
    entries = summary.payload.kwargs["ligands"]
    assert [entry["ligand"] for entry in entries] == [LIGAND]
    assert entries[0]["replicas"] == [{"workdir": task.workdir, "complex": f"complexes/{LIGAND}"} for task in replicas]

    # A ligand whose S2 output is unreadable is handed to the summary with the reason; the others go on.
    with_lost = scale(folder, replicas=3, steps=50, report_interval=25).on_upstream_done({"md": [*segments, lost()]})
    assert with_lost[:-1] == replicas
    lost_entry = with_lost[-1].payload.kwargs["ligands"][1]
    assert lost_entry["ligand"] == "lost" and lost_entry["replicas"] == []
    assert "no replica could start: no S2 segment has a complete frame" in lost_entry["error"]

    with pytest.raises(ValueError, match="found no S2 segment .* make it depend on the complex-md scale"):
        scale(folder).on_upstream_done({"dock": [DoneTask(segments[0].spec.model_copy(update={"labels": {}}),
                                                          {"x": 1}, folder)]})
    assert scale(folder).on_upstream_done({"md": []}) == []
    not_a_segment = DoneTask(segments[0].spec, {"ligand": LIGAND, "frames": 2}, folder)
    with pytest.raises(ValueError, match=r"S2 task md\.\S+ \(stage: md\) did not return a complex-md segment "
                                         r"\(smiles: Field required \(and \d+ more\)\)"):
        scale(folder).on_upstream_done({"md": [not_a_segment]})


@pytest.mark.slow
def test_replicas_and_summary_write_estimates_and_a_stream_for_the_fine_stage(campaign: tuple) -> None:
    folder, prepared, segments = campaign
    tasks = scale(folder, replicas=2, steps=50, report_interval=25, bootstrap=200).on_upstream_done(
        {"md": [*segments, lost()]})
    values = []
    assert len(tasks) == 3  # two replicas of progesterone, none of the lost ligand, the summary
    for task in tasks[:-1]:
        with contextlib.chdir(folder / task.workdir):
            began = time.perf_counter()
            values.append(run_replica(**task.payload.kwargs))
            print(f"replica of 50 steps and 2 MM/GBSA frames: {time.perf_counter() - began:.2f} s")
    for value in values:
        assert value["ligand"] == LIGAND and value["frames"] == 2 and value["error"] is None
        assert -80.0 < value["dg_mean"] < -10.0
    written = json.loads((folder / tasks[0].workdir / RESULTS).read_text())
    assert np.mean([frame["dg"] for frame in written["frames"]]) == pytest.approx(values[0]["dg_mean"])

    # A replica whose start is broken is a recorded failure, and a ligand with no usable replica gets no estimate.
    broken = folder / "tasks/mmgbsa/mmgbsa.broken.r00"
    broken.mkdir(parents=True)
    positions = read_frame(segments[0].workdir / "trajectory.h5md", 0).positions.astype(np.float64)
    positions[prepared.ligand_atoms[0]] = positions[prepared.receptor_atoms[0]]
    np.savez(broken / START, positions=positions)
    with contextlib.chdir(broken):
        failed = run_replica(**{**tasks[0].payload.kwargs, "ligand": "broken"})
    assert failed["dg_mean"] is None and "ligand broken replica 0" in failed["error"]

    kwargs = dict(tasks[-1].payload.kwargs)
    kwargs["ligands"] = [*kwargs["ligands"], {**kwargs["ligands"][0], "ligand": "broken", "replicas": [
        {"workdir": "tasks/mmgbsa/mmgbsa.broken.r00", "complex": f"complexes/{LIGAND}"}]}]
    summary_dir = folder / tasks[-1].workdir
    summary_dir.mkdir(parents=True, exist_ok=True)
    with contextlib.chdir(summary_dir):
        result = summarize(**kwargs)
    estimate = result["ligands"][LIGAND]
    assert estimate["ci_low"] <= estimate["dg_mean"] <= estimate["ci_high"] and estimate["dg_sem"] > 0
    assert estimate["dg_mean"] == pytest.approx(np.mean([value["dg_mean"] for value in values]))
    assert estimate["n_replicas"] == 2 and estimate["n_frames"] == 4 and estimate["frame"] == 0
    assert set(result["failed"]) == {"lost", "broken"} and "start energy is nan" in result["failed"]["broken"]

    rows = list(csv.DictReader((summary_dir / ESTIMATES_CSV).open()))
    assert [row["ligand"] for row in rows] == [LIGAND, "lost", "broken"]
    assert float(rows[0]["dg_mean"]) == pytest.approx(estimate["dg_mean"]) and rows[2]["dg_mean"] == ""
    assert rows[1]["left_pocket"] == "True" and "no S2 segment has a complete frame" in rows[1]["error"]
    assert rows[2]["failed_replicas"] == "1" and rows[2]["n_replicas"] == "0"
    listed = json.loads((summary_dir / LIGANDS_JSON).read_text())
    assert [entry["ligand"] for entry in listed] == [LIGAND]
    assert listed[0]["complex"] == f"complexes/{LIGAND}" and listed[0]["atoms"] == len(positions)

    frame = read_frame(summary_dir / ESTIMATES_STREAM, 0)
    np.testing.assert_allclose(frame.observables[ESTIMATE], [estimate["dg_mean"], estimate["dg_sem"],
                                                             estimate["ci_low"], estimate["ci_high"]], rtol=1e-6)
    best = min(range(2), key=lambda k: values[k]["dg_mean"])
    last = read_frame(folder / tasks[best].workdir / "trajectory.h5md", 1)
    np.testing.assert_array_equal(frame.positions[: listed[0]["atoms"]], last.positions)

    # The report's section reads the summary from the store.
    with Store.open(folder) as store:
        store.add_tasks([tasks[-1]], 0.0)
        store.transition(tasks[-1].id, TaskState.DONE, 1.0, result=TaskResult(job_id="1", ok=True, value=result))
        store.flush()
    with CampaignView.open(folder) as view:
        sections = MMGBSAScale.report_sections(view, "mmgbsa")
    assert sections[0].html is not None and LIGAND in sections[0].html and "broken" in sections[0].html
    assert sections[1].figure is not None
