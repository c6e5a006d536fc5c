"""The ``active-docking`` scale (ML1 + S1): its rounds of tasks, its stop rules, and a tiny real campaign."""

from __future__ import annotations

import csv
import json
import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

pytest.importorskip("vina", reason="the docking engines are the `campaign` extra: pip install -e '.[campaign]'")

from mummi_like import plugins  # noqa: E402
from mummi_like.campaign.loop import Campaign  # noqa: E402
from mummi_like.report import ReportSection  # noqa: E402
from mummi_like.scale import ScaleContext  # noqa: E402
from mummi_like.store import Store  # noqa: E402
from mummi_like.tasks import CallablePayload, TaskResult, TaskSpec, TaskState  # noqa: E402
from mummi_like.view import CampaignView  # noqa: E402
from mummi_scales.drug_discovery import data  # noqa: E402
from mummi_scales.drug_discovery.active_docking import (  # noqa: E402
    FINGERPRINTS,
    LIBRARY,
    RECORD_FUNCTION,
    TRAIN_FUNCTION,
    ActiveDockingConfig,
    ActiveDockingScale,
)
from mummi_scales.drug_discovery.results import SurrogateRound  # noqa: E402
from mummi_scales.drug_discovery.surrogate import PREDICTIONS, SCORES  # noqa: E402

MOLECULES = 16


@pytest.fixture(scope="module")
def spec_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spec folder with a SMILES library of 16 MOSES molecules, named m0 ... m15."""
    folder = tmp_path_factory.mktemp("spec")
    lines = [f"{smiles} m{index}" for index, (_, smiles) in enumerate(data.library(MOLECULES, seed=5))]
    (folder / "library.smi").write_text("\n".join(lines) + "\n")
    return folder


def _scale(spec_dir: Path, campaign_dir: Path, **config: Any) -> ActiveDockingScale:
    settings = {"library_file": "library.smi", "include_known_ligands": False, "initial": 6, "batch": 4,
                "budget": 14, "ligands_per_task": 4, **config}  # fmt: skip
    context = ScaleContext(name="ml1", campaign_dir=campaign_dir, spec_dir=spec_dir)
    return ActiveDockingScale(ActiveDockingConfig(**settings), context)


def _kwargs(task: TaskSpec) -> dict[str, Any]:
    assert isinstance(task.payload, CallablePayload)
    return task.payload.kwargs


def _trained(task: TaskSpec, **value: Any) -> TaskResult:
    """What a training task of round ``value['round']`` returns, the fields on_result reads set by ``value``."""
    trained = SurrogateRound(**{"docked": 6, "labelled": 6, "failed": 0, "trained_on": 5, "held_out": 1, "r2": None,
                                "spearman": None, "topk_overlap": None, "best_score": -7.0, "best_id": "user-m3",
                                "stop": None, "seconds": 1.0, **value})
    return TaskResult(job_id="1", ok=True, value=trained.model_dump(mode="json"))


def test_the_entry_point_loads_this_class() -> None:
    assert plugins.load("scale", "active-docking") is ActiveDockingScale


def test_round_zero_docks_a_seeded_random_sample_then_trains(spec_dir: Path, tmp_path: Path) -> None:
    tasks = _scale(spec_dir, tmp_path).tasks()
    assert [task.id for task in tasks] == ["ml1.r000.b000", "ml1.r000.b001", "ml1.r000.train"]
    docks, train = tasks[:2], tasks[2]
    assert all(task.labels == {"scale": "ml1", "stage": "dock", "round": "0"} for task in docks)
    assert train.labels == {"scale": "ml1", "stage": "train", "round": "0"}
    assert train.after == ["ml1.r000.b000", "ml1.r000.b001"] and not train.depends_on and train.workdir == "tasks/ml1/ml1.r000.train"
    docked = [ligand for task in docks for ligand in _kwargs(task)["ligands"]]
    assert [len(_kwargs(task)["ligands"]) for task in docks] == [4, 2] and len({i for i, _ in docked}) == 6
    assert all(isinstance(task.payload, CallablePayload) and task.payload.function == RECORD_FUNCTION for task in docks)
    with (tmp_path / "tasks" / "ml1" / LIBRARY).open(newline="") as handle:
        library = {row["id"]: row["smiles"] for row in csv.DictReader(handle)}
    assert len(library) == MOLECULES and all(library[i] == smiles for i, smiles in docked)
    kwargs = _kwargs(train)
    assert train.payload.function == TRAIN_FUNCTION  # type: ignore[union-attr]
    assert kwargs["dock_dirs"] == ["../ml1.r000.b000", "../ml1.r000.b001"] and kwargs["previous"] is None
    assert (kwargs["library"], kwargs["cache"]) == (f"../{LIBRARY}", f"../{FINGERPRINTS}")
    assert kwargs["learning"]["budget"] == 14 and kwargs["surrogate"]["members"] == 5
    again = _scale(spec_dir, tmp_path / "again").tasks()
    assert [_kwargs(task)["ligands"] for task in again[:2]] == [_kwargs(task)["ligands"] for task in docks]
    other = _scale(spec_dir, tmp_path / "other", seed=1).tasks()
    assert [_kwargs(task)["ligands"] for task in other[:2]] != [_kwargs(task)["ligands"] for task in docks]


def test_a_training_result_makes_the_next_round_from_its_choice(spec_dir: Path, tmp_path: Path) -> None:
    scale = _scale(spec_dir, tmp_path)
    train = scale.tasks()[-1]
    chosen = [["user-m3", "CCO"], ["user-m9", "CCN"], ["user-m1", "CCC"]]
    follow = scale.on_result(train, _trained(train, round=0, next=chosen, topk_overlap=None))
    assert [task.id for task in follow] == ["ml1.r001.b000", "ml1.r001.train"]
    assert _kwargs(follow[0])["ligands"] == chosen and follow[0].labels["round"] == "1"
    kwargs = _kwargs(follow[1])
    assert follow[1].after == ["ml1.r001.b000"]
    assert kwargs["dock_dirs"] == ["../ml1.r000.b000", "../ml1.r000.b001", "../ml1.r001.b000"]
    assert kwargs["previous"] == f"../ml1.r000.train/{PREDICTIONS}" and kwargs["round_index"] == 1
    later = scale.on_result(follow[1], _trained(follow[1], round=1, next=chosen[:1], topk_overlap=0.75))
    assert _kwargs(later[-1])["overlaps"] == [0.75] and later[-1].id == "ml1.r002.train"
    assert scale.on_result(follow[0], TaskResult(job_id="2", ok=True, value={"user-m3": {"score": -7.0}})) == []


def test_a_stop_or_an_empty_choice_ends_the_campaign(spec_dir: Path, tmp_path: Path) -> None:
    scale = _scale(spec_dir, tmp_path)
    train = scale.tasks()[-1]
    stopped = _trained(train, round=3, next=[], stop="budget: 14 docking calls spent of 14")
    assert scale.on_result(train, stopped) == []
    assert scale.on_result(train, _trained(train, round=3, next=[])) == []


def test_bad_configs_and_libraries_are_refused_with_the_fix(spec_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match=r"initial \(20\) is larger than budget \(14\)"):
        _scale(spec_dir, tmp_path, initial=20)
    with pytest.raises(ValueError, match=r"initial \(17\) asks for more molecules than the library has \(16\)"):
        _scale(spec_dir, tmp_path, initial=17, budget=40).tasks()
    outside = tmp_path / "outside.smi"
    outside.write_text("CCO a\n")
    with pytest.raises(ValueError, match=r"outside the spec's folder .* copy the library next to the spec"):
        _scale(spec_dir, tmp_path, library_file=str(outside)).tasks()
    with pytest.raises(ValidationError, match=r"takes no parameters"):
        _scale(spec_dir, tmp_path, parameters={"seed": [1, 2]})


CAMPAIGN = """
    name: active
    backend: {config: {cores: 2}}
    scales:
      - name: ml1
        plugin: active-docking
        config:
          library_file: library.smi
          include_known_ligands: false
          box_size: 20
          exhaustiveness: 1
          max_evals: 5000
          poses: 1
          ligands_per_task: 4
          initial: 8
          batch: 4
          budget: 12
          top_k: 4
          surrogate: {members: 2, hidden: [32], epochs: 5, validation: 0.25}
    """
"""Two rounds on 16 molecules: 8 random, then 4 chosen by ucb; Vina at its quickest setting."""


@pytest.mark.slow
def test_a_tiny_campaign_runs_two_rounds_and_reports(spec_dir: Path, tmp_path: Path) -> None:
    spec = spec_dir / "campaign.yaml"
    text = textwrap.dedent(CAMPAIGN)
    spec.write_text(text)
    directory = tmp_path / "run"
    summary = Campaign.from_text(text, spec, directory).run()
    assert summary.complete and summary.counts == {"ml1": {"done": 5}}
    with Store.open(directory, readonly=True) as store:
        records = {record.id: record for record in store.tasks()}
        first, last = records["ml1.r000.train"].value, records["ml1.r001.train"].value
        assert (first["docked"], first["stop"], len(first["next"])) == (8, None, 4)
        assert last["docked"] == 12 and last["stop"] == "budget: 12 docking calls spent of 12" and last["next"] == []
        round_one = records["ml1.r001.b000"].value
        assert sorted(round_one) == sorted(ligand_id for ligand_id, _ in first["next"])
        for ligand_id, result in round_one.items():
            assert isinstance(result["score"], float) and result["smiles"] == dict(first["next"])[ligand_id]
            assert (directory / "tasks/ml1/ml1.r001.b000" / result["poses"]).is_file()
        scores = json.loads((directory / "tasks/ml1/ml1.r001.b000" / SCORES).read_text())
        assert scores == round_one
        assert records["ml1.r001.train"].state is TaskState.DONE
    with CampaignView.open(directory) as view:
        sections = ActiveDockingScale.report_sections(view, "ml1")
    assert [section.title for section in sections] == [
        "Docking score distribution", "Surrogate parity", "Active-learning curve"]  # fmt: skip
    assert all(isinstance(section, ReportSection) and section.figure is not None for section in sections)
    assert "12 molecules docked, 0 failed" in (sections[0].text or "")
