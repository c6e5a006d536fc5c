"""The ``command`` scale: config validation and the tasks it generates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mummi_like import plugins
from mummi_like.scale import ScaleContext
from mummi_like.tasks import ExecutablePayload, TaskSpec
from mummi_scales.generic.command import CommandConfig, CommandScale


def _scale(
    tmp_path: Path, upstream: dict[str, list[TaskSpec]] | None = None, name: str = "sim", **config: Any
) -> CommandScale:
    context = ScaleContext(name=name, campaign_dir=tmp_path, spec_dir=tmp_path, upstream=upstream or {})
    return CommandScale(CommandConfig.model_validate(config), context)


def _argv(task: TaskSpec) -> list[str]:
    assert isinstance(task.payload, ExecutablePayload)
    return task.payload.argv


def test_the_entry_point_loads_this_class() -> None:
    assert plugins.load("scale", "command") is CommandScale


def test_one_task_per_point_with_parameters_substituted(tmp_path: Path) -> None:
    tasks = _scale(
        tmp_path, argv=["md", "--temp={t}", "--seed", "{seed}"], parameters={"t": [300, 310], "seed": [1, 2]}
    ).tasks()
    assert [_argv(task)[1:] for task in tasks] == [
        ["--temp=300", "--seed", "1"],
        ["--temp=300", "--seed", "2"],
        ["--temp=310", "--seed", "1"],
        ["--temp=310", "--seed", "2"],
    ]


def test_ids_are_zero_padded_stable_and_unique(tmp_path: Path) -> None:
    config = {"argv": ["md", "{i}"], "parameters": {"i": list(range(12))}}
    first = _scale(tmp_path, **config).tasks()
    second = _scale(tmp_path, **config).tasks()
    ids = [task.id for task in first]
    assert ids == [task.id for task in second]
    assert ids[:2] == ["sim.00", "sim.01"] and ids[-1] == "sim.11"
    assert len(set(ids)) == 12 and ids == sorted(ids)
    assert [task.id for task in _scale(tmp_path, argv=["md"]).tasks()] == ["sim.0"]


def test_labels_workdir_and_settings_are_carried(tmp_path: Path) -> None:
    (task,) = _scale(
        tmp_path,
        argv=["md"],
        parameters={"t": [300], "hot": [True]},
        resources={"cores": 4, "ranks": 2},
        retry={"max_retries": 2},
        mpi=True,
        priority=5,
    ).tasks()
    assert task.labels == {"scale": "sim", "stage": "sim", "param.t": "300", "param.hot": "True"}
    assert task.workdir == "tasks/sim/sim.0"
    assert (task.resources.cores, task.resources.ranks, task.retry.max_retries, task.priority) == (4, 2, 2, 5)
    assert isinstance(task.payload, ExecutablePayload) and task.payload.mpi


def test_builtins_and_env_are_substituted_with_absolute_paths(tmp_path: Path) -> None:
    (task,) = _scale(
        tmp_path,
        argv=["md", "{task_id}", "{scale}", "{workdir}/out.h5", "{campaign_dir}", "{{literal}}"],
        env={"OUT": "{workdir}", "TAG": "{scale}-{t}"},
        parameters={"t": [300]},
    ).tasks()
    workdir = tmp_path / "tasks" / "sim" / "sim.0"
    assert _argv(task) == ["md", "sim.0", "sim", f"{workdir}/out.h5", str(tmp_path), "{literal}"]
    assert isinstance(task.payload, ExecutablePayload)
    assert task.payload.env == {"OUT": str(workdir), "TAG": "sim-300"}
    assert Path(task.payload.env["OUT"]).is_absolute()
    assert workdir == tmp_path / task.workdir


def test_a_relative_campaign_dir_still_gives_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (task,) = _scale(Path("camp"), argv=["md", "{workdir}"]).tasks()
    assert _argv(task)[1] == str(tmp_path / "camp" / "tasks" / "sim" / "sim.0")


def test_unknown_placeholder_is_rejected_listing_valid_names() -> None:
    with pytest.raises(ValidationError) as caught:
        CommandConfig(argv=["md", "--temp={temp}"], parameters={"t": [300]})
    message = str(caught.value)
    assert "argv[1] uses unknown placeholder {temp}" in message
    assert "valid placeholders: {t}, {task_id}, {scale}, {workdir}, {campaign_dir}" in message


def test_malicious_placeholder_is_rejected_at_validation() -> None:
    with pytest.raises(ValidationError, match=r"env\.X: '\{x\.__class__\}' .* is not a placeholder"):
        CommandConfig(argv=["md"], parameters={"x": [1]}, env={"X": "{x.__class__}"})


def test_parameter_named_like_a_builtin_is_rejected() -> None:
    with pytest.raises(ValidationError, match=r"parameter 'workdir' has the name of a built-in placeholder"):
        CommandConfig(argv=["md"], parameters={"workdir": ["a"]})


def test_zip_length_mismatch_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match=r"a has 1, b has 2 values"):
        CommandConfig(argv=["md"], parameters={"a": [1], "b": [1, 2]}, combine="zip")


def test_ranks_without_mpi_and_empty_argv_and_unknown_keys_are_rejected() -> None:
    with pytest.raises(ValidationError, match=r"resources.ranks is 2 but mpi is false"):
        CommandConfig(argv=["md"], resources={"cores": 2, "ranks": 2})
    with pytest.raises(ValidationError):
        CommandConfig(argv=[])
    with pytest.raises(ValidationError, match="extra"):
        CommandConfig.model_validate({"argv": ["md"], "shell": True})


def test_every_field_is_described() -> None:
    assert all(field.description for field in CommandConfig.model_fields.values())


def test_dependencies_follow_shared_parameters(tmp_path: Path) -> None:
    prep = _scale(tmp_path, name="prep", argv=["prep", "{t}"], parameters={"t": [300, 310]}).tasks()
    setup = _scale(tmp_path, name="setup", argv=["setup"]).tasks()
    tasks = _scale(
        tmp_path,
        upstream={"prep": prep, "setup": setup},
        argv=["md", "{t}", "{seed}"],
        parameters={"t": [300, 310], "seed": [1, 2]},
    ).tasks()
    assert [(task.labels["param.t"], task.depends_on) for task in tasks] == [
        ("300", ["prep.0", "setup.0"]),
        ("300", ["prep.0", "setup.0"]),
        ("310", ["prep.1", "setup.0"]),
        ("310", ["prep.1", "setup.0"]),
    ]


def test_tasks_round_trip_through_json(tmp_path: Path) -> None:
    tasks = _scale(tmp_path, argv=["md", "{x}"], parameters={"x": [1, 2.5, "a", False]}, env={"A": "{x}"}).tasks()
    for task in tasks:
        assert TaskSpec.model_validate_json(task.model_dump_json()) == task
