"""The ``function`` scale: any importable Python function as a campaign step.

Analysis, training and small models are often a function already; wrapping each
one in a plugin class would be boilerplate. The function is named, never
evaluated (``module:function``), and is imported only by the worker that runs
it; its arguments come from the spec and each parameter point, and must be
JSON-able because tasks are persisted as JSON.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

from pydantic import Field, JsonValue, ValidationError, field_validator, model_validator

from mummi_like import CallablePayload
from mummi_scales.generic.parameters import ParameterizedConfig, ParameterizedScale, Scalar


class FunctionConfig(ParameterizedConfig):
    """Config of the ``function`` scale."""

    function: str = Field(
        description="The function to call, as `package.module:function`; imported by the worker, in the task's "
        "working directory."
    )
    args: list[JsonValue] = Field(default_factory=list, description="Positional arguments (JSON-able).")
    kwargs: dict[str, JsonValue] = Field(
        default_factory=dict,
        description="Keyword arguments (JSON-able); each task also gets its parameter values as keyword arguments.",
    )

    @field_validator("function")
    @classmethod
    def _module_colon_function(cls, value: str) -> str:
        try:
            CallablePayload(function=value)
        except ValidationError as error:
            raise ValueError(error.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return value

    @model_validator(mode="after")
    def _one_process_and_distinct_kwargs(self) -> Self:
        if self.resources.ranks > 1:
            raise ValueError(
                f"resources.ranks is {self.resources.ranks}, but a function runs in one process; use ranks: 1 "
                "(reserve more with cores or gpus), or the command scale with mpi: true"
            )
        clashes = [name for name in self.parameters if name in self.kwargs]
        if clashes:
            raise ValueError(
                f"parameter {', '.join(map(repr, clashes))} is also a key of kwargs, so one would silently override "
                "the other; keep it in one of the two"
            )
        return self


class FunctionScale(ParameterizedScale):
    """Call a Python function (`module:function`) once per parameter combination, the values as keyword arguments.

    Each task calls ``function(*args, **kwargs, **point)``, where ``point`` maps
    every parameter to its value at that point, with ``env`` set (templated as
    in :mod:`mummi_scales.generic.parameters`); see there for ids, labels and
    dependencies.
    """

    config_model: ClassVar[type[FunctionConfig]] = FunctionConfig
    config: FunctionConfig

    def payload(self, point: Mapping[str, Scalar], values: Mapping[str, str], env: dict[str, str]) -> CallablePayload:
        """The call with the point's values merged over the configured kwargs."""
        return CallablePayload(
            function=self.config.function, args=self.config.args, kwargs={**self.config.kwargs, **point}, env=env
        )
