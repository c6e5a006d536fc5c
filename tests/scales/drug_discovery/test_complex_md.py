"""The ``complex-md`` scale (S2): finalists from real docking results, prep and MD tasks, promoted restarts, report."""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

EXTRA = "the docking and MD engines are the `campaign` extra: pip install -e '.[campaign]'"
pytest.importorskip("vina", reason=EXTRA)
pytest.importorskip("openmm", reason=EXTRA)

from mummi_like import plugins  # noqa: E402
from mummi_like.scale import DoneTask, PromotedFrame, ScaleContext  # noqa: E402
from mummi_like.store import Store  # noqa: E402
from mummi_like.streams.tailer import read_frame  # noqa: E402
from mummi_like.tasks import CallablePayload, TaskResult, TaskSpec, TaskState  # noqa: E402
from mummi_like.view import CampaignView  # noqa: E402
from mummi_scales.drug_discovery import data  # noqa: E402
from mummi_scales.drug_discovery.complex_md import (  # noqa: E402
    MD,
    PREP,
    SEGMENT,
    START,
    ComplexMDConfig,
    ComplexMDScale,
)
from mummi_scales.drug_discovery.docking import DockingConfig, dock_payload  # noqa: E402

PROGESTERONE = dict(data.known_ligands())["known-progesterone"]
LIGANDS = [["known-progesterone", PROGESTERONE], ["butylamine", "CCCCN"], ["phenol", "Oc1ccccc1"],
           ["broken", "C1CC(N"]]
FAST = DockingConfig(box_size=20.0, exhaustiveness=4, max_evals=20_000, seed=1)
DEMO = {"top_k": 2, "pocket_radius": 5.0, "steps": 100, "report_interval": 25, "minimize_iterations": 50}
"""Tiny dynamics: 100 steps of 4 fs, a frame every 25."""


def run_task(campaign: Path, task: TaskSpec) -> Any:
    """Call a task's function in its working directory, as a backend worker does."""
    assert isinstance(task.payload, CallablePayload)
    module, _, name = task.payload.function.partition(":")
    function = getattr(importlib.import_module(module), name)
    folder = campaign / task.workdir
    folder.mkdir(parents=True, exist_ok=True)
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        return json.loads(json.dumps(function(*task.payload.args, **task.payload.kwargs)))  # JSON-able, as stored
    finally:
        os.chdir(cwd)


@pytest.fixture(scope="module")
def docked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DoneTask]:
    """A campaign folder with one finished dock task: three ligands docked into PGR and one invalid SMILES."""
    campaign = tmp_path_factory.mktemp("campaign")
    spec = TaskSpec(id="dock.0", payload=dock_payload(FAST, LIGANDS, {}, campaign), workdir="tasks/dock/dock.0",
                    labels={"scale": "dock", "stage": "dock"})
    value = run_task(campaign, spec)
    return campaign, DoneTask(spec=spec, value=value, workdir=campaign / spec.workdir)


def scale(campaign: Path, **config: Any) -> ComplexMDScale:
    return ComplexMDScale(ComplexMDConfig(**{**DEMO, **config}), ScaleContext("s2", campaign, campaign))


def test_entry_point_and_no_initial_tasks(tmp_path: Path) -> None:
    assert plugins.load("scale", "complex-md") is ComplexMDScale
    assert scale(tmp_path).tasks() == []


@pytest.mark.parametrize(("config", "message"), [
    ({"timestep": 0.004, "hydrogen_mass": None}, "needs hydrogen_mass"),
    ({"steps": 10, "report_interval": 20}, "exceeds steps"),
    ({"parameters": {"x": [1]}}, "takes no parameters"),
    ({"target": "NOPE"}, "dockstring has no target 'NOPE'"),
])
def test_config_rejects_settings_that_cannot_run(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ComplexMDConfig(**config)


@pytest.mark.slow
def test_complexes_are_refused_on_another_receptor_than_the_poses_were_docked_into(
    docked: tuple[Path, DoneTask],
) -> None:
    campaign, dock = docked
    with pytest.raises(ValueError, match=r"builds complexes on receptor 'dockstring' .* but dock.0 docked into .*"
                                         r"1a28-A-STR.receptor.pdbqt.*give both scales the same target and receptor"):
        scale(campaign, receptor="dockstring").on_upstream_done({"dock": [dock]})


@pytest.mark.slow
def test_finalists_are_the_top_k_docked_ligands(docked: tuple[Path, DoneTask]) -> None:
    campaign, dock = docked
    scores = {ligand: entry["score"] for ligand, entry in dock.value.items() if "score" in entry}
    assert "error" in dock.value["broken"] and len(scores) == 3
    best = sorted(scores, key=scores.__getitem__)[:2]
    # A surrogate's training task upstream has another value shape and is ignored; a worse re-docking is too.
    training = DoneTask(spec=dock.spec.model_copy(update={"id": "dock.train"}), value={"model": "m.pt", "loss": 0.1},
                        workdir=campaign / "tasks/dock/dock.train")
    redock = DoneTask(spec=dock.spec.model_copy(update={"id": "dock.1"}),
                      value={best[0]: {**dock.value[best[0]], "score": 0.0}}, workdir=dock.workdir)
    tasks = scale(campaign).on_upstream_done({"dock": [dock, training, redock]})
    assert [task.id for task in tasks] == [f"s2.{ligand}.{stage}" for ligand in best for stage in (PREP, "md000")]
    for prep, md in zip(tasks[::2], tasks[1::2]):
        ligand = prep.labels["ligand"]
        assert prep.labels == {"scale": "s2", "stage": PREP, "ligand": ligand}
        assert md.labels == {"scale": "s2", "stage": MD, "ligand": ligand} and md.depends_on == [prep.id]
        assert (campaign / str(prep.payload.kwargs["pose"])).is_file()  # type: ignore[union-attr]
        assert prep.payload.kwargs["docking_score"] == scores[ligand]  # type: ignore[union-attr]
        segment = json.loads((campaign / md.workdir / SEGMENT).read_text())
        assert segment == {"ligand": ligand, "smiles": dict(LIGANDS)[ligand], "docking_score": scores[ligand],
                           "complex": prep.workdir}
    # Stable ids: the same upstream gives the same tasks.
    assert scale(campaign).on_upstream_done({"dock": [dock, training, redock]}) == tasks


def test_upstream_without_dock_tasks_is_an_error(tmp_path: Path) -> None:
    spec = TaskSpec(id="x.0", payload=CallablePayload(function="m:f"), workdir="tasks/x/x.0")
    with pytest.raises(ValueError, match="none of the finished tasks of train is a dock task"):
        scale(tmp_path).on_upstream_done({"train": [DoneTask(spec, {"loss": 1.0}, tmp_path)]})
    assert scale(tmp_path).on_upstream_done({"dock": []}) == []


@pytest.mark.slow
def test_prep_segment_promotion_and_report(docked: tuple[Path, DoneTask]) -> None:
    campaign, dock = docked
    md_scale = scale(campaign, top_k=1)
    prep, first = md_scale.on_upstream_done({"dock": [dock]})
    prepared = run_task(campaign, prep)
    ligand = prep.labels["ligand"]
    assert prepared["ligand"] == ligand and prepared["complex"] == prep.workdir
    assert isinstance(prepared["net_charge"], int) and prepared["atoms"] > 300
    assert prepared["parameterization_seconds"] > 0

    value = run_task(campaign, first)
    assert value["frames"] == 4 and len(value["ligand_rmsd"]) == len(value["contacts"]) == len(value["times"]) == 4
    assert value["trajectory"] == f"{first.workdir}/trajectory.h5md" and (campaign / value["trajectory"]).is_file()
    assert value["ligand_rmsd_max"] == max(value["ligand_rmsd"]) and value["left_pocket"] is False
    assert value["ns_per_day"] > 0 and value["start_frame"] is None

    frame = read_frame(campaign / value["trajectory"], 2)
    promoted = PromotedFrame(frame_id=f"{frame.file}:2", coupling="s2-to-s2", source_task=first.id, file=frame.file,
                             index=2, step=frame.step, time=frame.time, score=1.5, positions=frame.positions,
                             box=None, observables=frame.observables)
    restart = md_scale.promote(promoted, "s2.s2-to-s2.00000")
    assert restart.labels["ligand"] == ligand and restart.labels["stage"] == MD
    with np.load(campaign / restart.workdir / START) as start:
        np.testing.assert_array_equal(start["positions"], frame.positions)
    assert restart.payload.kwargs["seed"] != first.payload.kwargs["seed"]  # type: ignore[union-attr]
    restarted = run_task(campaign, restart)
    assert restarted["ligand"] == ligand and restarted["start_frame"] == promoted.frame_id
    assert restarted["frames"] == 4 and np.isfinite(restarted["ligand_rmsd"]).all()

    with pytest.raises(ValueError, match="not a segment of scale 's2'"):
        md_scale.promote(PromotedFrame(**{**promoted.__dict__, "source_task": prep.id}), "s2.s2-to-s2.00001")

    with Store.open(campaign) as store:
        store.add_tasks([first, restart], 0.0)
        for task, result in ((first, value), (restart, restarted)):
            store.transition(task.id, TaskState.DONE, 1.0, result=TaskResult(job_id=task.id, ok=True, value=result))
        store.flush()
    with CampaignView.open(campaign) as view:
        sections = ComplexMDScale.report_sections(view, "s2")
    assert len(sections) == 1 and sections[0].figure is not None
    assert ligand in (sections[0].html or "") and "2 segment(s) of 1 ligand(s); 0 left the pocket" in (
        sections[0].text or "")
