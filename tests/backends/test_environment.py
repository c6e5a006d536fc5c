"""The one set of rules by which the ``local`` and ``flux`` backends build a task's environment."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from mummi_like.backends.environment import (
    CAMPAIGN_VARIABLE,
    GPU_VARIABLE,
    JOB_VARIABLE,
    TASK_VARIABLE,
    THREAD_VARIABLES,
    inherited_environment,
    task_environment,
)
from mummi_like.tasks import TaskSpec


def task(env: dict[str, str] | None = None, **resources: Any) -> TaskSpec:
    """An executable task with the given payload ``env`` and resources."""
    return TaskSpec(id="t", payload={"kind": "executable", "argv": ["true"], "env": env or {}},
                    resources=resources, workdir="w/t")


def test_threads_are_capped_at_the_cores_of_one_rank() -> None:
    env = task_environment(task(ranks=2, cores=8), {})
    assert {name: env[name] for name in THREAD_VARIABLES} == dict.fromkeys(
        ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS"), "4")


def test_the_backend_names_the_run_and_binds_the_gpus_it_gave() -> None:
    env = task_environment(task(gpus=2), {JOB_VARIABLE: "t#3"}, gpu_ids=[1, 3])
    assert (env[JOB_VARIABLE], env[GPU_VARIABLE]) == ("t#3", "1,3")


def test_gpus_are_hidden_when_bound_to_none_and_left_alone_when_not_bound() -> None:
    assert task_environment(task(), {}, gpu_ids=[])[GPU_VARIABLE] == ""
    assert GPU_VARIABLE not in task_environment(task(), {TASK_VARIABLE: "t#1"})


def test_the_payload_env_overrides_everything_the_backend_sets() -> None:
    mine = {"OMP_NUM_THREADS": "16", JOB_VARIABLE: "mine", GPU_VARIABLE: "7", "EXTRA": "x"}
    env = task_environment(task(mine, cores=2), {JOB_VARIABLE: "t#1"}, gpu_ids=[0])
    assert {name: env[name] for name in mine} == mine
    assert env["MKL_NUM_THREADS"] == "2"


def test_every_task_inherits_the_coordinators_environment_and_the_campaign(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUMMI_LIKE_TEST_INHERITED", "yes")
    env = inherited_environment(tmp_path)
    assert (env["MUMMI_LIKE_TEST_INHERITED"], env[CAMPAIGN_VARIABLE]) == ("yes", str(tmp_path))
    assert env.keys() - {CAMPAIGN_VARIABLE} == os.environ.keys() - {CAMPAIGN_VARIABLE}
