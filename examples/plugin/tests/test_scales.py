"""The scales: the tasks they make and what a promotion writes, without a coordinator."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mummi_like import PromotedFrame, ScaleContext, task_seed
from pydantic import ValidationError

from mummi_plugin_example.double_well import START, TRAJECTORY, simulate
from mummi_plugin_example.scales import SIMULATE, CoarseConfig, CoarseScale, FineConfig, FineScale


def context(tmp_path: Path, name: str) -> ScaleContext:
    return ScaleContext(name=name, campaign_dir=tmp_path, spec_dir=tmp_path)


def frame(positions: np.ndarray) -> PromotedFrame:
    return PromotedFrame(
        frame_id="tasks/coarse/coarse.0/trajectory.h5md:12", coupling="coarse-to-fine", source_task="coarse.0",
        file=Path("tasks/coarse/coarse.0/trajectory.h5md"), index=12, step=2600, time=13.0, score=0.4,
        positions=positions, box=None, observables={"reaction_coordinate": positions[:, 0]},
    )


def test_the_coarse_scale_makes_one_seeded_run_per_replica(tmp_path: Path) -> None:
    scale = CoarseScale(CoarseConfig(replicas=3, particles=4, seed=5), context(tmp_path, "coarse"))
    tasks = scale.tasks()
    assert [task.id for task in tasks] == ["coarse.0", "coarse.1", "coarse.2"]
    assert [task.workdir for task in tasks] == ["tasks/coarse/coarse.0", "tasks/coarse/coarse.1",
                                                "tasks/coarse/coarse.2"]
    for task in tasks:
        assert task.payload.kind == "callable" and task.payload.function == SIMULATE
        assert task.payload.kwargs["particles"] == 4
        assert task.payload.kwargs["seed"] == task_seed(5, task.id)
    assert len({task.payload.kwargs["seed"] for task in tasks}) == 3
    assert [task.id for task in scale.tasks()] == [task.id for task in tasks]  # stable: a resume finds them again


def test_the_fine_scale_starts_a_promoted_frame_from_its_positions(tmp_path: Path) -> None:
    scale = FineScale(FineConfig(steps=1000, report_interval=500, seed=2), context(tmp_path, "fine"))
    assert scale.tasks() == []
    positions = np.zeros((6, 3), dtype=np.float32)
    positions[:, 0] = np.linspace(-0.2, 0.2, 6)
    task = scale.promote(frame(positions), "fine.coarse-to-fine.00000")
    workdir = tmp_path / task.workdir
    assert task.workdir == "tasks/fine/fine.coarse-to-fine.00000"
    assert np.array_equal(np.load(workdir / START), positions)
    assert task.payload.kind == "callable"
    assert task.payload.kwargs == {"barrier": 4.0, "diffusion": 1.0, "timestep": 0.0005, "steps": 1000,
                                   "report_interval": 500, "seed": task_seed(2, task.id), "start": START}
    # What a backend worker does with the task: call the function in the task's working directory.
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(workdir)
        summary = simulate(**task.payload.kwargs)
    assert summary["frames"] == 2 and summary["near_barrier"] == 6
    assert (workdir / TRAJECTORY).is_file()


def test_promote_refuses_a_frame_without_3d_positions(tmp_path: Path) -> None:
    scale = FineScale(FineConfig(), context(tmp_path, "fine"))
    with pytest.raises(ValueError, match=r"has positions of shape \(6, 2\); scale 'fine' needs \(particles, 3\)"):
        scale.promote(frame(np.zeros((6, 2))), "fine.x.00000")


def test_configs_refuse_a_timestep_too_large_and_a_run_that_would_not_stream_its_end() -> None:
    with pytest.raises(ValidationError, match=r"timestep 0.05 ps is too large for barrier 4 kT .* use at most 0.0156"):
        CoarseConfig(timestep=0.05)
    with pytest.raises(ValidationError, match=r"steps \(1000\) must be a positive multiple of report_interval \(300\)"):
        FineConfig(steps=1000, report_interval=300)
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        CoarseConfig.model_validate({"replica": 2})  # a typo is an error, not a default
