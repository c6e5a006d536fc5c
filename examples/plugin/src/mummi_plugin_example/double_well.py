"""Overdamped Langevin dynamics of independent particles in a double-well potential, streamed as H5MD.

The smallest simulation with a rare event worth a multiscale campaign: each
particle sits in one of two wells, at ``x = -1`` or ``x = +1`` nm, separated by
a barrier at ``x = 0``, and crosses it now and then, driven by thermal noise.
The potential of one particle, in units of kT, is

    V(x, y, z) = barrier * (x**2 - 1)**2 + STIFFNESS / 2 * (y**2 + z**2)

and the positions follow the Euler-Maruyama step of Brownian dynamics,
``r += -D grad V dt + sqrt(2 D dt) * N(0, 1)``, with ``D`` the diffusion
coefficient (nm^2/ps) and ``dt`` the timestep (ps). A coarse run (large
timestep, long) explores and streams frames; a fine run starts from a frame
near the barrier at a small timestep and tells which well each particle falls
into: the fraction that ends on the right is an estimate of the committor of
that frame, 0.5 for a frame exactly on the barrier top.

:func:`simulate` is the function every task calls, in its working directory:
it writes :data:`TRAJECTORY` through :class:`mummi_like.H5MDWriter`, so that the
coordinator reads each frame while the run goes on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from mummi_like import H5MDWriter

TRAJECTORY = "trajectory.h5md"
"""The stream every task writes in its working directory; it matches the coupling's default glob ``**/*.h5md``."""
START = "start.npy"
"""The positions a promoted (fine) task starts from, written by :meth:`FineScale.promote
<mummi_plugin_example.scales.FineScale.promote>` into its working directory."""
STIFFNESS = 10.0
"""Curvature of the potential across the reaction coordinate (kT/nm^2): keeps y and z within about 0.3 nm."""
WELL = 1.0
"""Where the wells are, at x = -WELL and x = +WELL (nm)."""
COMMITTED = WELL / 2
"""A particle farther than this from the barrier (nm) is in a well: it has committed to that side. A crossing of
x = 0 alone is no transition, since a particle on the barrier top recrosses it many times a picosecond."""
FEATURE = "reaction_coordinate"
"""The vector observable: each particle's x (nm), one value per particle; what the coupling's selector scores."""
ENERGY = "potential_energy"
"""The scalar observable: the mean potential energy per particle (kT); a coupling receives it as a 1-vector."""


def potential(positions: np.ndarray, barrier: float) -> np.ndarray:
    """V of each particle (kT) at ``(n, 3)`` positions (nm)."""
    x, y, z = positions.T
    return barrier * (x**2 - WELL**2) ** 2 + STIFFNESS / 2 * (y**2 + z**2)


def force(positions: np.ndarray, barrier: float) -> np.ndarray:
    """``-grad V`` of each particle (kT/nm), ``(n, 3)``."""
    x = positions[:, 0]
    result = -STIFFNESS * positions
    result[:, 0] = -4 * barrier * x * (x**2 - WELL**2)
    return result


def start_positions(particles: int) -> np.ndarray:
    """Every particle at the bottom of the left well: a coarse run starts far from the barrier."""
    positions = np.zeros((particles, 3))
    positions[:, 0] = -WELL
    return positions


def frames_of(steps: int, report_interval: int) -> int:
    """The frames a run of ``steps`` streams, one every ``report_interval`` steps.

    Raises
    ------
    ValueError
        Unless ``report_interval`` divides ``steps``: a run streams its last
        step, so a fine run's end is a frame its reader can start from.
    """
    if report_interval < 1 or steps < report_interval or steps % report_interval:
        raise ValueError(f"steps ({steps}) must be a positive multiple of report_interval ({report_interval}), so "
                         "that the run streams its last step")
    return steps // report_interval


def simulate(
    *,
    barrier: float,
    diffusion: float,
    timestep: float,
    steps: int,
    report_interval: int,
    seed: int,
    particles: int | None = None,
    start: str | None = None,
) -> dict[str, float | int]:
    """Run the dynamics in the current directory, streaming a frame every ``report_interval`` steps.

    Parameters
    ----------
    barrier, diffusion, timestep, steps, report_interval
        As in :class:`~mummi_plugin_example.scales.DynamicsConfig` (kT, nm^2/ps, ps).
    seed
        Seed of the noise: the same seed and inputs give the same trajectory.
    particles
        How many particles start in the left well; only without ``start``.
    start
        An ``.npy`` file of ``(n, 3)`` positions (nm) to start from, relative to
        the current directory, as :data:`START` is.

    Returns
    -------
    dict
        JSON-able, what the coordinator stores as the task's value:
        ``frames`` streamed; ``transitions`` from one well to the other, over
        all particles; ``right_fraction``, the particles with x > 0 at the end;
        ``near_barrier``, the particles that started between the wells (within
        :data:`COMMITTED` of x = 0), and ``committor``, the fraction of those
        that reached the right well first (null when none started there): the
        committor estimate of a fine run from a promoted frame, 0.5 on the
        barrier top; and ``simulated_ps``.

    Raises
    ------
    ValueError
        When ``report_interval`` does not divide ``steps`` (:func:`frames_of`),
        when neither or both of ``particles`` and ``start`` are given, when the
        start file holds no ``(n, 3)`` finite positions, or when the dynamics
        diverges (the writer refuses a frame with NaN or infinite positions,
        naming it; every frame before it stays readable).
    """
    frames = frames_of(steps, report_interval)
    if (particles is None) == (start is None):
        raise ValueError("give exactly one of `particles` (start in the left well) and `start` (a positions file)")
    positions = start_positions(particles) if particles is not None else _read_start(Path(start or ""))
    rng = np.random.default_rng(seed)
    noise_scale = np.sqrt(2 * diffusion * timestep)
    near_barrier = np.abs(positions[:, 0]) < COMMITTED
    side = _side(positions)  # the well each particle was last in, 0 before it reached one
    first_well = side.copy()
    transitions = 0
    observables = {FEATURE: ((len(positions),), np.float32), ENERGY: ((), np.float64)}
    with H5MDWriter(TRAJECTORY, len(positions), observables=observables, author=__name__) as writer:
        for frame in range(1, frames + 1):
            # One draw per frame: numpy is fast on arrays and slow on many small calls.
            for kick in rng.standard_normal((report_interval, *positions.shape)):
                positions = positions + diffusion * timestep * force(positions, barrier) + noise_scale * kick
                arrived = _side(positions)
                moved = (arrived != 0) & (arrived != side)
                transitions += int(np.count_nonzero(moved & (side != 0)))
                first_well = np.where(first_well == 0, arrived, first_well)
                side = np.where(moved, arrived, side)
            step = frame * report_interval
            writer.write_frame(positions, step=step, time=step * timestep, observables={
                FEATURE: positions[:, 0], ENERGY: potential(positions, barrier).mean(),
            })
    return {
        "frames": frames,
        "transitions": transitions,
        "right_fraction": float(np.mean(positions[:, 0] > 0)),
        "near_barrier": int(near_barrier.sum()),
        "committor": float(np.mean(first_well[near_barrier] > 0)) if near_barrier.any() else None,
        "simulated_ps": frames * report_interval * timestep,
    }


def _side(positions: np.ndarray) -> np.ndarray:
    """-1 for a particle in the left well, +1 in the right, 0 between (within :data:`COMMITTED` of the barrier)."""
    x = positions[:, 0]
    return np.where(x > COMMITTED, 1, np.where(x < -COMMITTED, -1, 0))


def _read_start(path: Path) -> np.ndarray:
    """The ``(n, 3)`` finite positions in ``path``; a ValueError naming the file otherwise."""
    positions = np.load(path)
    if positions.ndim != 2 or positions.shape[1] != 3 or not np.isfinite(positions).all():
        raise ValueError(f"{path.absolute()}: the start positions must be (particles, 3) finite numbers in nm, "
                         f"got shape {positions.shape}")
    return positions.astype(np.float64)
