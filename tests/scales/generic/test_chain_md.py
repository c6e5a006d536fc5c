"""The ``chain-md`` scale: real (tiny) OpenMM runs that stream H5MD, seeded replicas, and promotion."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from pydantic import ValidationError

from mummi_like import plugins
from mummi_like.backends.pyworker import resolve
from mummi_like.scale import PromotedFrame, ScaleContext
from mummi_like.streams.tailer import read_frame
from mummi_like.tasks import CallablePayload, TaskSpec
from mummi_scales.generic.chain_md import SIGMA, START, TOPOLOGY, TRAJECTORY, ChainMDConfig, ChainMDScale, run_chain

BEADS = 16
SHORT = {"beads": BEADS, "temperature": 450.0, "timestep": 0.03, "friction": 5.0, "steps": 500,
         "report_interval": 50, "contact_cutoff": 0.6, "platform": "Reference"}  # fmt: skip
"""A run of a fraction of a second that streams 10 frames, reproducibly (Reference platform)."""


def _run_in(folder: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> dict[str, Any]:
    """``run_chain`` in ``folder``, as a backend worker runs it (cwd = the task's working directory)."""
    folder.mkdir(parents=True, exist_ok=True)
    with monkeypatch.context() as patch:
        patch.chdir(folder)
        return run_chain(**kwargs)


def _positions(folder: Path) -> np.ndarray:
    with h5py.File(folder / TRAJECTORY, "r") as file:
        return file["particles/trajectory/position/value"][:]


def _payload(task: TaskSpec) -> CallablePayload:
    assert isinstance(task.payload, CallablePayload)
    return task.payload


@pytest.fixture(scope="module")
def coarse_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """One short coarse run: its folder and its result."""
    folder = tmp_path_factory.mktemp("coarse")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        return folder, run_chain(**SHORT, seed=7)


def test_the_plugin_is_registered_and_imports_without_openmm() -> None:
    assert plugins.load("scale", "chain-md") is ChainMDScale
    # A fresh interpreter: `mummi-like plugins` and `validate` must not pay for importing OpenMM.
    code = "import sys, mummi_scales.generic.chain_md; print(sorted({'openmm', 'h5py'} & set(sys.modules)))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"


def test_run_chain_streams_complete_frames_with_contact_maps(coarse_run: tuple[Path, dict[str, Any]]) -> None:
    folder, result = coarse_run
    with h5py.File(folder / TRAJECTORY, "r") as file:
        assert file["mummi_like/complete"][0] == 10
        positions = file["particles/trajectory/position/value"][:]
        steps = file["particles/trajectory/position/step"][:]
        maps = file["observables/contact_map/value"][:]
        radii = file["observables/radius_of_gyration/value"][:]
        ends = file["observables/end_to_end/value"][:]
    assert positions.shape == (10, BEADS, 3)
    assert steps.tolist() == list(range(50, 501, 50))
    assert maps.shape == (10, BEADS, BEADS) and maps.dtype == np.uint8
    assert (maps == maps.transpose(0, 2, 1)).all()
    band = np.eye(BEADS, dtype=bool) | np.eye(BEADS, k=1, dtype=bool) | np.eye(BEADS, k=-1, dtype=bool)
    assert (maps[:, band] == 1).all()  # a bead and its bonded neighbours are always in contact
    centred = positions - positions.mean(axis=1, keepdims=True)
    assert np.allclose(radii, np.sqrt((centred**2).sum(axis=2).mean(axis=1)), atol=1e-5)
    assert np.allclose(ends, np.linalg.norm(positions[:, -1] - positions[:, 0], axis=1), atol=1e-5)
    extended = SIGMA * np.sqrt((BEADS**2 - 1) / 12)  # Rg of the straight chain the run starts from
    assert np.isfinite(radii).all() and (radii > 0).all() and (radii < extended).all()

    assert result["frames"] == 10 and result["steps"] == 500
    assert result["radius_of_gyration"] == pytest.approx(float(radii[-1]), abs=1e-5)
    assert result["contacts"] == int(np.triu(maps[-1], 2).sum())
    assert result["wall_seconds"] > 0
    # The topology written beside the stream lets MDAnalysis read it as a trajectory.
    import MDAnalysis

    universe = MDAnalysis.Universe(str(folder / TOPOLOGY), str(folder / TRAJECTORY))
    try:
        assert len(universe.trajectory) == 10
    finally:
        universe.trajectory.close()  # MDAnalysis holds the file open without SWMR, which later SWMR readers refuse


def test_a_seed_fixes_the_trajectory(
    coarse_run: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _run_in(tmp_path / "same", monkeypatch, **SHORT, seed=7)
    _run_in(tmp_path / "other", monkeypatch, **SHORT, seed=8)
    assert np.array_equal(_positions(tmp_path / "same"), _positions(coarse_run[0]))
    assert not np.allclose(_positions(tmp_path / "other"), _positions(coarse_run[0]), atol=1e-3)
    with pytest.raises(ValueError, match="seed must be at least 1"):
        run_chain(**SHORT, seed=0)


def test_replicas_are_seeded_tasks_with_ids_labels_and_workdirs(tmp_path: Path) -> None:
    context = ScaleContext(name="coarse", campaign_dir=tmp_path, spec_dir=tmp_path)
    config = ChainMDConfig(replicas=3, temperature=450.0, parameters={"temperature": [400.0, 450.0, 500.0]},
                           combine="zip", resources={"walltime": 60})  # fmt: skip
    tasks = ChainMDScale(config, context).tasks()
    assert [task.id for task in tasks] == ["coarse.0", "coarse.1", "coarse.2"]
    assert tasks[1].labels == {"scale": "coarse", "stage": "coarse", "param.temperature": "450.0", "param.replica": "1"}
    assert tasks[1].workdir == "tasks/coarse/coarse.1"
    assert tasks[1].resources.walltime == 60
    payloads = [_payload(task) for task in tasks]
    assert {payload.function for payload in payloads} == {"mummi_scales.generic.chain_md:run_chain"}
    assert [payload.kwargs["temperature"] for payload in payloads] == [400.0, 450.0, 500.0]
    assert all(payload.kwargs["start"] is None for payload in payloads)
    seeds = [payload.kwargs["seed"] for payload in payloads]
    assert len(set(seeds)) == 3 and min(seeds) >= 1
    assert seeds == [_payload(task).kwargs["seed"] for task in ChainMDScale(config, context).tasks()]
    assert ChainMDScale(ChainMDConfig(), context).tasks() == []  # replicas: 0, a scale of promoted frames only


def test_promote_writes_the_frame_and_the_task_starts_from_it(
    coarse_run: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    frame = read_frame(coarse_run[0] / TRAJECTORY, 6)
    promoted = PromotedFrame(
        frame_id=f"{frame.file}:6", coupling="coarse-to-fine", source_task="coarse.0", file=frame.file, index=6,
        step=frame.step, time=frame.time, score=1.5, positions=frame.positions, box=None,
        observables=frame.observables,
    )  # fmt: skip
    # One step, reported: the first frame shows where the run started, after moving a thermal step (~0.002 nm).
    config = ChainMDConfig(**{**SHORT, "temperature": 300.0, "timestep": 0.01, "steps": 1, "report_interval": 1})
    scale = ChainMDScale(config, ScaleContext(name="fine", campaign_dir=tmp_path, spec_dir=tmp_path))
    task = scale.promote(promoted, "fine.c.00000")

    assert (task.id, task.workdir) == ("fine.c.00000", "tasks/fine/fine.c.00000")
    assert task.labels == {"scale": "fine", "stage": "fine", "promoted_from": f"{frame.file}:6",
                           "coupling": "coarse-to-fine", "source_task": "coarse.0"}  # fmt: skip
    payload = _payload(task)
    assert payload.kwargs["start"] == START
    assert payload.kwargs["seed"] == _payload(scale.promote(promoted, "fine.c.00000")).kwargs["seed"]
    workdir = tmp_path / task.workdir
    with np.load(workdir / START) as start:
        assert np.array_equal(start["positions"], frame.positions)
        assert (str(start["frame_id"]), int(start["step"])) == (f"{frame.file}:6", 350)

    with monkeypatch.context() as patch:
        patch.chdir(workdir)
        result = resolve(payload.function)(**payload.kwargs)
    assert result["frames"] == 1
    first = _positions(workdir)[0]
    assert np.abs(first - frame.positions).max() < 0.01
    assert np.abs(first - _positions(coarse_run[0])[5]).max() > 0.05  # not merely close to any coarse frame

    wrong = PromotedFrame(**{**promoted.__dict__, "positions": np.zeros((BEADS + 1, 3))})
    with pytest.raises(ValueError, match=r"simulates 16 beads; give both scales the same `beads`"):
        scale.promote(wrong, "fine.c.00001")


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"replicas": 2, "temprature": 300}, r"temprature\s+Extra inputs are not permitted"),
        ({"steps": 100, "report_interval": 200}, r"would stream no frame"),
        ({"replicas": 2, "parameters": {"beads": [10, 20]}}, r"parameter 'beads' cannot be varied"),
        ({"replicas": 2, "parameters": {"temperature": [300, -1]}}, r"parameters.temperature: -1: Input should be"),
        ({"parameters": {"temperature": [300, 400]}}, r"replicas is 0"),
        ({"replicas": 3, "combine": "zip", "parameters": {"friction": [1, 5]}}, r"one value per replica"),
        ({"resources": {"cores": 2, "ranks": 2}}, r"OpenMM runs in one process"),
        ({"timestep": 0.1}, r"timestep\s+Input should be less than or equal to 0.04"),
    ],
)
def test_bad_configs_are_rejected_with_the_fix(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ChainMDConfig(**config)
