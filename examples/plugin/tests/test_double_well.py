"""The simulation itself: the potential, the dynamics, and the stream it writes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from mummi_like import read_frame

from mummi_plugin_example.double_well import (
    ENERGY,
    FEATURE,
    START,
    TRAJECTORY,
    WELL,
    force,
    frames_of,
    potential,
    simulate,
)

RUN = {"barrier": 4.0, "diffusion": 1.0, "timestep": 0.005, "steps": 400, "report_interval": 100}


def test_the_wells_lie_at_plus_and_minus_one_under_a_barrier_of_the_given_height() -> None:
    points = np.array([[-WELL, 0, 0], [WELL, 0, 0], [0, 0, 0]])
    assert potential(points, barrier=3.0).tolist() == [0.0, 0.0, 3.0]
    assert np.allclose(force(points[:2], barrier=3.0), 0)


def test_force_is_minus_the_gradient_of_the_potential() -> None:
    rng = np.random.default_rng(0)
    points = rng.normal(scale=1.2, size=(20, 3))
    h = 1e-6
    for axis in range(3):
        shift = np.zeros(3)
        shift[axis] = h
        numeric = -(potential(points + shift, 4.0) - potential(points - shift, 4.0)) / (2 * h)
        assert np.allclose(force(points, 4.0)[:, axis], numeric, atol=1e-5)


def test_simulate_streams_every_frame_with_a_vector_and_a_scalar_observable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    summary = simulate(**RUN, seed=7, particles=5)
    assert summary["frames"] == 4 and summary["simulated_ps"] == pytest.approx(2.0)
    assert summary["near_barrier"] == 0 and summary["committor"] is None  # every particle began in the left well
    for index in range(4):
        frame = read_frame(tmp_path / TRAJECTORY, index)
        assert frame.step == 100 * (index + 1) and frame.time == pytest.approx(0.5 * (index + 1))
        assert frame.positions.shape == (5, 3)
        assert frame.observables[FEATURE].shape == (5,)
        assert np.allclose(frame.observables[FEATURE], frame.positions[:, 0])
        assert frame.observables[ENERGY].shape == ()
    last = read_frame(tmp_path / TRAJECTORY, 3)
    assert summary["right_fraction"] == np.mean(last.positions[:, 0] > 0)


def test_a_seed_fixes_the_trajectory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    finals = []
    for seed, folder in [(1, "a"), (1, "b"), (2, "c")]:
        (tmp_path / folder).mkdir()
        monkeypatch.chdir(tmp_path / folder)
        simulate(**RUN, seed=seed, particles=3)
        finals.append(read_frame(Path(TRAJECTORY), 3).positions)
    assert np.array_equal(finals[0], finals[1])
    assert not np.array_equal(finals[0], finals[2])


def test_a_run_from_the_barrier_top_estimates_a_committor_near_one_half(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    np.save(START, np.zeros((400, 3)))
    summary = simulate(barrier=4.0, diffusion=1.0, timestep=0.0005, steps=4000, report_interval=1000, seed=3,
                       start=START)
    assert summary["near_barrier"] == 400
    assert summary["committor"] == pytest.approx(0.5, abs=0.1)  # 400 particles: a standard error of 0.025


def test_bad_inputs_are_refused_with_what_to_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"steps \(150\) must be a positive multiple of report_interval \(100\)"):
        frames_of(150, 100)
    with pytest.raises(ValueError, match="give exactly one of `particles`"):
        simulate(**RUN, seed=1)
    np.save(START, np.zeros((4, 2)))
    with pytest.raises(ValueError, match=r"must be \(particles, 3\) finite numbers in nm, got shape \(4, 2\)"):
        simulate(**RUN, seed=1, start=START)
