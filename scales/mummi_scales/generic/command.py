"""The ``command`` scale: any executable as a campaign step, configured in the spec alone.

Most simulation engines are programs with a command line (GROMACS, LAMMPS, a
site script), so a user should be able to run one under the coordinator, swept
over parameters and chained to other scales, without writing a plugin. The argv
is a list and goes to the backend as a list: no shell ever parses it, so a
parameter value can never inject a command.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

from pydantic import Field, model_validator

from mummi_like import ExecutablePayload
from mummi_scales.generic.parameters import BUILTINS, ParameterizedConfig, ParameterizedScale, Scalar, substitute


class CommandConfig(ParameterizedConfig):
    """Config of the ``command`` scale."""

    argv: list[str] = Field(
        min_length=1,
        description="Program and arguments, one item per argument, never run through a shell; items may use "
        f"{{parameter}} and the built-in placeholders {', '.join(f'{{{name}}}' for name in BUILTINS)}; "
        "write {{ and }} for literal braces.",
    )
    mpi: bool = Field(False, description="Launch under the backend's MPI launcher with `resources.ranks` processes.")

    def templates(self) -> dict[str, str]:
        """The argv items and the env values, by where they are in the config."""
        return {**{f"argv[{index}]": item for index, item in enumerate(self.argv)}, **super().templates()}

    @model_validator(mode="after")
    def _ranks_need_mpi(self) -> Self:
        if self.resources.ranks > 1 and not self.mpi:
            raise ValueError(
                f"resources.ranks is {self.resources.ranks} but mpi is false, so only one process would start; "
                "set mpi: true, or ranks: 1 for a program that starts its own processes"
            )
        return self


class CommandScale(ParameterizedScale):
    """Run a command (argv, no shell, optionally MPI) once per parameter combination.

    Each ``{name}`` in ``argv`` and ``env`` becomes the point's value of parameter
    ``name`` or a built-in (``{task_id}``, ``{scale}``, ``{workdir}``,
    ``{campaign_dir}``); see :mod:`mummi_scales.generic.parameters` for ids, labels and
    dependencies.
    """

    config_model: ClassVar[type[CommandConfig]] = CommandConfig
    config: CommandConfig

    def payload(
        self, point: Mapping[str, Scalar], values: Mapping[str, str], env: dict[str, str]
    ) -> ExecutablePayload:
        """The templated argv, launched under MPI when the config says so."""
        argv = [substitute(item, values) for item in self.config.argv]
        return ExecutablePayload(argv=argv, mpi=self.config.mpi, env=env)
