"""The two scales: a coarse one that explores and streams, a fine one that continues promoted frames.

A scale turns its validated config into tasks (:class:`mummi_like.TaskSpec`);
the coordinator runs them on the backend, records them, retries and resumes
them, so the scale knows nothing of processes or of the store. Both scales run
:func:`~mummi_plugin_example.double_well.simulate` as a Python-callable task in
the task's working directory; they differ in where a run starts:

- :class:`CoarseScale` makes ``replicas`` runs from the left well when the
  campaign starts (:meth:`CoarseScale.tasks`);
- :class:`FineScale` makes none of its own and runs the frames a coupling
  promotes to it (:meth:`FineScale.promote`), from that frame's positions, at
  a finer timestep.

Each config model says what its ``config:`` block takes; ``mummi-like plugins
double-well-coarse`` prints it, and ``mummi-like validate`` reports a wrong key
or value at its YAML path with the message of the validator here.
"""

from __future__ import annotations

from typing import Any, ClassVar, Self

import numpy as np
from mummi_like import (
    CallablePayload,
    PromotedFrame,
    Resources,
    Scale,
    StrictModel,
    TaskSpec,
    atomic_write,
    task_seed,
)
from pydantic import Field, model_validator

from mummi_plugin_example.double_well import START, STIFFNESS, frames_of

SIMULATE = "mummi_plugin_example.double_well:simulate"
"""What every task calls (``module:function``); a backend worker imports it, so it must be importable there."""
ACCURACY_LIMIT = 0.5
"""Largest ``curvature * diffusion * timestep`` of a run. Euler-Maruyama diverges above 2 in a well of that
curvature; a quarter of that keeps the wells' shape (the barrier crossing rate) within a few percent."""


class DynamicsConfig(StrictModel):
    """What every double-well run takes: the potential, the dynamics, the seed and the resources."""

    barrier: float = Field(
        4.0, gt=0, le=20, description="Height of the barrier at x = 0 over the wells (kT); each kT more makes a "
        "crossing about e times rarer."
    )
    diffusion: float = Field(1.0, gt=0, description="Diffusion coefficient of a particle (nm^2/ps).")
    timestep: float = Field(0.005, gt=0, description="Integration step (ps).")
    steps: int = Field(40_000, ge=1, description="Integration steps of each task.")
    report_interval: int = Field(
        200, ge=1, description="Steps between streamed frames; it must divide `steps`, so a run streams its end."
    )
    seed: int = Field(
        0, ge=0, description="Campaign seed: a task's noise is seeded with mummi_like.task_seed(seed, task id), so a "
        "rerun or a resumed campaign repeats it."
    )
    resources: Resources = Field(default_factory=Resources, description="What each task reserves while it runs.")

    @model_validator(mode="after")
    def _streams_and_is_accurate(self) -> Self:
        frames_of(self.steps, self.report_interval)  # its ValueError is the spec error, at this config's path
        stiffest = max(8 * self.barrier, STIFFNESS)  # V'' at the bottom of a well, or across it
        if stiffest * self.diffusion * self.timestep > ACCURACY_LIMIT:
            raise ValueError(
                f"timestep {self.timestep:g} ps is too large for barrier {self.barrier:g} kT and diffusion "
                f"{self.diffusion:g} nm^2/ps (the dynamics would be inaccurate, or diverge); use at most "
                f"{ACCURACY_LIMIT / (stiffest * self.diffusion):.3g} ps"
            )
        return self

    def dynamics(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~mummi_plugin_example.double_well.simulate` that come from the config."""
        return self.model_dump(include={"barrier", "diffusion", "timestep", "steps", "report_interval"})


class CoarseConfig(DynamicsConfig):
    """Config of the ``double-well-coarse`` scale: long runs at a large timestep, from the left well."""

    particles: int = Field(8, ge=1, le=10_000, description="Independent particles per run.")
    replicas: int = Field(2, ge=1, description="Runs the scale starts, each with its own seed.")


class FineConfig(DynamicsConfig):
    """Config of the ``double-well-fine`` scale: short runs at a small timestep, from promoted frames."""

    timestep: float = Field(0.0005, gt=0, description="Integration step (ps); finer than the coarse scale's.")
    steps: int = Field(10_000, ge=1, description="Integration steps of each task.")
    report_interval: int = Field(
        500, ge=1, description="Steps between streamed frames; it must divide `steps`, so a run streams its end."
    )


class CoarseScale(Scale):
    """Explores the double well: ``replicas`` seeded runs from the left well, each streaming its frames as H5MD.

    Task ids are ``<scale>.<replica>``: stable across runs of the same spec, as
    the coordinator needs to recognise a task it recorded before a restart.
    """

    config_model: ClassVar[type[CoarseConfig]] = CoarseConfig
    config: CoarseConfig

    def tasks(self) -> list[TaskSpec]:
        """One run per replica."""
        return [simulation(self, f"{self.context.name}.{replica}", particles=self.config.particles)
                for replica in range(self.config.replicas)]


class FineScale(Scale):
    """Refines promoted frames: each run starts from a frame's positions, at a fine timestep.

    Its result tells which well each particle of the frame commits to (the
    task's ``right_fraction``, an estimate of the frame's committor).
    """

    config_model: ClassVar[type[FineConfig]] = FineConfig
    config: FineConfig

    def tasks(self) -> list[TaskSpec]:
        """None: this scale runs only what a coupling promotes to it."""
        return []

    def promote(self, frame: PromotedFrame, task_id: str) -> TaskSpec:
        """Write the frame's positions as :data:`~mummi_plugin_example.double_well.START` into the task's working
        directory and return the run that starts from them.

        The coordinator calls this with the task id it chose, and records the
        promotion and the task together. The file is written atomically: a
        coordinator killed meanwhile leaves the old file or the new one, never
        a torn one, and a resumed coordinator that promotes the frame again
        writes it again.

        Raises
        ------
        ValueError
            When the frame holds no ``(particles, 3)`` positions.
        """
        positions = np.asarray(frame.positions, dtype=np.float64)
        if positions.ndim != 2 or positions.shape[1] != 3:
            raise ValueError(f"frame {frame.frame_id} of coupling {frame.coupling!r} has positions of shape "
                             f"{positions.shape}; scale {self.context.name!r} needs (particles, 3)")
        folder = self.context.campaign_dir / self.workdir(task_id)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic_write(folder / START, "wb") as handle:
            np.save(handle, positions)
        return simulation(self, task_id, start=START)


def simulation(scale: CoarseScale | FineScale, task_id: str, **start: Any) -> TaskSpec:
    """The task that runs :func:`~mummi_plugin_example.double_well.simulate` with ``scale``'s config, seeded by
    its id, starting as ``start`` says (``particles=`` or ``start=``)."""
    config = scale.config
    return TaskSpec(
        id=task_id,
        workdir=scale.workdir(task_id),
        payload=CallablePayload(
            function=SIMULATE,
            kwargs={**config.dynamics(), "seed": task_seed(config.seed, task_id), **start},
        ),
        resources=config.resources,
    )
