"""The ``function`` scale: config validation and the calls it generates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from mummi_like import plugins
from mummi_like.scale import ScaleContext
from mummi_like.tasks import CallablePayload, TaskSpec
from mummi_scales.generic.command import CommandConfig, CommandScale
from mummi_scales.generic.function import FunctionConfig, FunctionScale


def _context(tmp_path: Path, name: str = "fit", upstream: dict[str, list[TaskSpec]] | None = None) -> ScaleContext:
    return ScaleContext(name=name, campaign_dir=tmp_path, spec_dir=tmp_path, upstream=upstream or {})


def _payload(task: TaskSpec) -> CallablePayload:
    assert isinstance(task.payload, CallablePayload)
    return task.payload


def test_the_entry_point_loads_this_class() -> None:
    assert plugins.load("scale", "function") is FunctionScale


def test_parameters_are_merged_over_kwargs_per_point(tmp_path: Path) -> None:
    config = FunctionConfig(
        function="analysis.fit:run",
        args=["data.csv"],
        kwargs={"epochs": 3, "options": {"lr": 0.1}},
        parameters={"seed": [1, 2], "model": ["mlp"]},
    )
    tasks = FunctionScale(config, _context(tmp_path)).tasks()
    assert [(_payload(task).function, _payload(task).args, _payload(task).kwargs) for task in tasks] == [
        ("analysis.fit:run", ["data.csv"], {"epochs": 3, "options": {"lr": 0.1}, "seed": 1, "model": "mlp"}),
        ("analysis.fit:run", ["data.csv"], {"epochs": 3, "options": {"lr": 0.1}, "seed": 2, "model": "mlp"}),
    ]
    assert config.kwargs == {"epochs": 3, "options": {"lr": 0.1}}


def test_a_parameter_overriding_a_kwarg_is_rejected_by_name() -> None:
    with pytest.raises(ValidationError, match=r"parameter 'seed' is also a key of kwargs"):
        FunctionConfig(function="m:f", kwargs={"seed": 0, "n": 1}, parameters={"seed": [1, 2]})


def test_function_must_be_module_colon_function_and_args_json_able() -> None:
    with pytest.raises(ValidationError, match=r"'os.system\(1\)' is not of the form 'package.module:function'"):
        FunctionConfig(function="os.system(1)")
    with pytest.raises(ValidationError):
        FunctionConfig(function="m:f", kwargs={"when": object()})


def test_ranks_above_one_are_rejected() -> None:
    with pytest.raises(ValidationError, match=r"a function runs in one process"):
        FunctionConfig(function="m:f", resources={"cores": 2, "ranks": 2})


def test_ids_labels_workdir_env_and_settings(tmp_path: Path) -> None:
    config = FunctionConfig(
        function="m:f",
        parameters={"lr": [0.1, 0.01]},
        combine="zip",
        env={"RUN": "{task_id}@{workdir}", "LR": "{lr}"},
        resources={"gpus": 1},
        priority=-1,
    )
    first, second = FunctionScale(config, _context(tmp_path)).tasks()
    assert [first.id, second.id] == [task.id for task in FunctionScale(config, _context(tmp_path)).tasks()]
    assert (first.id, second.id) == ("fit.0", "fit.1")
    assert second.labels == {"scale": "fit", "stage": "fit", "param.lr": "0.01"}
    assert second.workdir == "tasks/fit/fit.1"
    assert _payload(second).env == {"RUN": f"fit.1@{tmp_path / 'tasks' / 'fit' / 'fit.1'}", "LR": "0.01"}
    assert (second.resources.gpus, second.priority) == (1, -1)


def test_unknown_env_placeholder_is_rejected_listing_valid_names() -> None:
    with pytest.raises(ValidationError) as caught:
        FunctionConfig(function="m:f", parameters={"lr": [0.1]}, env={"OUT": "{out}"})
    assert "env.OUT uses unknown placeholder {out}; valid placeholders: {lr}, {task_id}, {scale}, " in str(caught.value)


def test_depends_on_an_upstream_command_scale_by_shared_parameter(tmp_path: Path) -> None:
    md = CommandScale(
        CommandConfig(argv=["md", "{t}", "{seed}"], parameters={"t": [300, 310], "seed": [1, 2]}),
        _context(tmp_path, name="md"),
    ).tasks()
    tasks = FunctionScale(
        FunctionConfig(function="m:f", parameters={"t": [300, 310]}), _context(tmp_path, upstream={"md": md})
    ).tasks()
    assert [task.depends_on for task in tasks] == [["md.0", "md.1"], ["md.2", "md.3"]]


def test_a_campaign_without_parameters_is_one_call_that_waits_for_everything_upstream(tmp_path: Path) -> None:
    md_config = CommandConfig(argv=["md", "{t}"], parameters={"t": [1, 2]})
    md = CommandScale(md_config, _context(tmp_path, name="md")).tasks()
    fit_config = FunctionConfig(function="m:f", kwargs={"a": 1})
    (task,) = FunctionScale(fit_config, _context(tmp_path, upstream={"md": md})).tasks()
    assert (task.id, task.depends_on, _payload(task).kwargs) == ("fit.0", ["md.0", "md.1"], {"a": 1})


def test_every_field_is_described() -> None:
    assert all(field.description for field in FunctionConfig.model_fields.values())


@pytest.mark.parametrize("kwargs", [{}, {"note": "x", "nested": [1, {"a": None}]}])
def test_tasks_round_trip_through_json(tmp_path: Path, kwargs: dict[str, Any]) -> None:
    config = FunctionConfig(function="m:f", args=[1, "two"], kwargs=kwargs, parameters={"x": [1, 2.5, "a", True]})
    for task in FunctionScale(config, _context(tmp_path)).tasks():
        assert TaskSpec.model_validate_json(task.model_dump_json()) == task
