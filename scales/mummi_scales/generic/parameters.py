"""Parameterized steps: one task per point of a parameter space, as in Maestro.

A campaign often runs the same program over a grid (temperatures x seeds, one
ligand per receptor). Instead of asking users to write a scale for that, the
generic scales take a ``parameters:`` block, expand it into points
(:class:`ParameterSpace`), write each point into the task's command line or
environment through ``{name}`` placeholders, attach it to the task as
``param.<name>`` labels, and derive task-level dependencies from those labels
(:func:`upstream_dependencies`), following Maestro's rule for parameterized steps.

Placeholders are expanded with a strict regular expression rather than
:meth:`str.format`: ``str.format`` evaluates attribute and index lookups such as
``{x.__class__}`` on the values it formats, which must never happen to text taken
from a spec file. Here a placeholder is an identifier in braces, ``{{`` and ``}}``
are literal braces, and anything else with a brace is an error.

:class:`ParameterizedConfig` and :class:`ParameterizedScale` hold what the
``command`` and ``function`` scales share: the config fields, their validation,
and the generation of task ids, labels, working directories and dependencies.
"""

from __future__ import annotations

import abc
import itertools
import re
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Literal, Self

from pydantic import AfterValidator, Field, JsonValue, model_validator

from mummi_like import (
    CallablePayload,
    EnvName,
    ExecutablePayload,
    Resources,
    RetryPolicy,
    Scale,
    StrictModel,
    TaskSpec,
)

Scalar = bool | int | float | str
"""A parameter value; written into templates and labels as ``str(value)``."""

Combine = Literal["product", "zip"]
"""How parameter lists combine: every combination, or the i-th values together."""

BUILTINS: dict[str, str] = {
    "task_id": "the task's id, e.g. 'sim.03'",
    "scale": "the scale's name",
    "workdir": "absolute path of the task's working directory",
    "campaign_dir": "absolute path of the campaign directory",
}
"""Placeholders every template may use besides the parameters, with what they hold."""

LABEL_PREFIX = "param."
"""Prefix of the task labels that carry a task's parameter values."""

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_TOKEN = re.compile(r"\{\{|\}\}|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bad>\{[^{}]*\}?|\})")


def _identifier(name: str) -> str:
    if not _IDENTIFIER.fullmatch(name):
        raise ValueError(f"parameter name {name!r} must be letters, digits and '_', not starting with a digit")
    return name


ParameterName = Annotated[str, AfterValidator(_identifier)]
"""A parameter name: usable as a ``{placeholder}``, a label suffix and a keyword argument."""

ParameterValues = Annotated[list[Scalar], Field(min_length=1)]
"""The values one parameter takes; at least one, since an empty list would silently make no tasks."""


def check_zip(values: Mapping[str, list[Scalar]], combine: Combine) -> None:
    """Reject ``combine: zip`` over lists of different lengths.

    Raises
    ------
    ValueError
        Naming every parameter with its length.
    """
    lengths = {name: len(items) for name, items in values.items()}
    if combine == "zip" and len(set(lengths.values())) > 1:
        listed = ", ".join(f"{name} has {length}" for name, length in lengths.items())
        raise ValueError(
            f"combine: zip pairs the i-th values of every parameter, so all lists need the same length; {listed} "
            "values (use combine: product for every combination)"
        )


class ParameterSpace(StrictModel):
    """Named lists of values and how they combine into points."""

    values: dict[ParameterName, ParameterValues] = Field(
        default_factory=dict, description="Parameter name -> the values it takes."
    )
    combine: Combine = Field(
        "product",
        description="'product': every combination (the last parameter varies fastest); "
        "'zip': the i-th values of all parameters together (lists of equal length).",
    )

    @model_validator(mode="after")
    def _zip_lengths(self) -> Self:
        check_zip(self.values, self.combine)
        return self

    def points(self) -> list[dict[str, Scalar]]:
        """The points, in a deterministic order given by the order of :attr:`values`.

        Returns
        -------
        list of dict
            One mapping of every parameter name to a value per point; a single
            empty mapping when there are no parameters.
        """
        names = list(self.values)
        lists = [self.values[name] for name in names]
        combined = itertools.product(*lists) if self.combine == "product" else zip(*lists, strict=True)
        return [dict(zip(names, point, strict=True)) for point in combined] if names else [{}]


def _tokens(text: str) -> Iterator[tuple[str, str | None]]:
    """``text`` as (literal text, placeholder name or ``None``) pieces.

    Raises
    ------
    ValueError
        At the first brace that is neither a placeholder nor an escape.
    """
    position = 0
    for match in _TOKEN.finditer(text):
        yield text[position : match.start()], None
        position = match.end()
        if match["bad"] is not None:
            raise ValueError(
                f"{match['bad']!r} in {text!r} is not a placeholder: write {{name}} with a name of letters, digits "
                "and '_', and {{ or }} for a literal brace"
            )
        if match["name"] is not None:
            yield "", match["name"]
        else:
            yield match[0][0], None
    yield text[position:], None


def placeholders(text: str) -> set[str]:
    """Names of the ``{name}`` placeholders in ``text``.

    Raises
    ------
    ValueError
        If ``text`` holds a brace that is neither a placeholder nor ``{{``/``}}``.
    """
    return {name for _, name in _tokens(text) if name is not None}


def substitute(text: str, values: Mapping[str, str]) -> str:
    """``text`` with each ``{name}`` replaced by ``values[name]`` and ``{{``/``}}`` by ``{``/``}``.

    Nothing in ``text`` or ``values`` is evaluated: a placeholder is a plain
    look-up of an identifier.

    Raises
    ------
    KeyError
        For a placeholder not in ``values``, naming it and the known names.
    ValueError
        For a malformed brace, as :func:`placeholders`.
    """
    pieces = []
    for literal, name in _tokens(text):
        pieces.append(literal)
        if name is not None:
            if name not in values:
                raise KeyError(f"unknown placeholder {{{name}}} in {text!r}; known: {', '.join(values) or 'none'}")
            pieces.append(values[name])
    return "".join(pieces)


def point_labels(point: Mapping[str, Scalar]) -> dict[str, str]:
    """The labels ``param.<name>: str(value)`` that record a point on its task."""
    return {f"{LABEL_PREFIX}{name}": str(value) for name, value in point.items()}


def upstream_dependencies(point_labels: Mapping[str, str], upstream_tasks: list[TaskSpec]) -> list[str]:
    """Ids of the upstream tasks a task with ``point_labels`` depends on (Maestro's rule).

    For each upstream task, take the parameter names that both tasks carry as
    ``param.<name>`` labels. If they share none, the task depends on it (a
    parameterized step after an unparameterized one, or after one swept over
    other parameters, waits for all of it). If they share some, it depends on it
    only when every shared parameter has the same value (``temperature=300``
    after ``temperature=300``: one-to-one). Values compare as label strings, so
    ``1`` and ``1.0`` differ.

    Parameters
    ----------
    point_labels:
        Labels of the downstream task; only ``param.*`` ones are read.
    upstream_tasks:
        Tasks of one or more upstream scales, in the order the ids are returned.

    Returns
    -------
    list of str
        Ids of the upstream tasks to wait for.

    Raises
    ------
    ValueError
        When every upstream task shares a parameter with a different value: the
        task would otherwise start with nothing upstream to wait for, which is
        almost always mismatched parameter values between the two scales.
    """
    mine = {key: value for key, value in point_labels.items() if key.startswith(LABEL_PREFIX)}
    depends = []
    for task in upstream_tasks:
        shared = mine.keys() & {key for key in task.labels if key.startswith(LABEL_PREFIX)}
        if all(task.labels[key] == mine[key] for key in shared):
            depends.append(task.id)
    if upstream_tasks and not depends:
        scales = ", ".join(sorted({task.scale or task.id for task in upstream_tasks}))
        point = ", ".join(f"{key.removeprefix(LABEL_PREFIX)}={value}" for key, value in mine.items())
        raise ValueError(
            f"the task for {point} matches no task of upstream scale {scales}: each shares a parameter with it but "
            "has another value; give parameters that both scales have the same values, or rename one of them"
        )
    return depends


class ParameterizedConfig(StrictModel):
    """Config fields every parameterized scale takes; subclasses add what their tasks run."""

    parameters: dict[ParameterName, ParameterValues] = Field(
        default_factory=dict,
        description="Parameter name -> list of values; one task per point, each {name} in templates replaced by "
        "the point's value. No parameters: one task.",
    )
    combine: Combine = Field(
        "product",
        description="'product': one task per combination of values (the last parameter varies fastest); "
        "'zip': one task per position in the lists, which must have equal lengths.",
    )
    resources: Resources = Field(default_factory=Resources, description="What each task reserves while it runs.")
    retry: RetryPolicy = Field(default_factory=RetryPolicy, description="Which failures of a task are retried.")
    env: dict[EnvName, str] = Field(
        default_factory=dict,
        description="Extra environment variables; values may use {parameter} and the built-in placeholders "
        f"{', '.join(f'{{{name}}}' for name in BUILTINS)}.",
    )
    priority: int = Field(0, description="Higher starts first among tasks that fit.")

    @property
    def space(self) -> ParameterSpace:
        """The parameter space of :attr:`parameters` and :attr:`combine`."""
        return ParameterSpace(values=self.parameters, combine=self.combine)

    def templates(self) -> dict[str, str]:
        """Every templated string, by where it is in the config (for error messages)."""
        return {f"env.{key}": value for key, value in self.env.items()}

    def own_tasks_problems(self, tasks: str, engine: str) -> list[str]:
        """What a config of a scale that makes its own tasks (no parameter space) and runs ``engine`` in one
        process cannot hold: ``parameters``, or more than one rank. ``tasks`` says what its tasks are instead."""
        problems = []
        if self.parameters:
            problems.append(f"{tasks} and takes no parameters")
        if self.resources.ranks > 1:
            problems.append(f"resources.ranks is {self.resources.ranks}, but {engine} runs in one process; use ranks: 1 "
                            "and give it threads with cores")
        return problems

    @model_validator(mode="after")
    def _parameters_and_placeholders(self) -> Self:
        problems = []
        try:
            check_zip(self.parameters, self.combine)
        except ValueError as error:
            problems.append(str(error))
        reserved = [name for name in self.parameters if name in BUILTINS]
        if reserved:
            problems.append(
                f"parameter {', '.join(map(repr, reserved))} has the name of a built-in placeholder; rename it "
                f"(built-ins: {', '.join(BUILTINS)})"
            )
        valid = list(dict.fromkeys([*self.parameters, *BUILTINS]))
        bad_templates = False
        for where, text in self.templates().items():
            try:
                unknown = sorted(placeholders(text) - set(valid))
            except ValueError as error:
                problems.append(f"{where}: {error}")
                bad_templates = True
                continue
            if unknown:
                problems.append(f"{where} uses unknown placeholder {', '.join(f'{{{name}}}' for name in unknown)}")
                bad_templates = True
        if bad_templates:
            problems.append(
                f"valid placeholders: {', '.join(f'{{{name}}}' for name in valid)} (add a parameter of that name, "
                "or write {{ and }} for literal braces)"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


def campaign_root(workdir: str) -> str:
    """The campaign directory as seen from a task's ``workdir`` (``../../..``): paths a task gets stay relative,
    so a campaign folder can be moved or resumed elsewhere."""
    return "/".join([".."] * len(Path(workdir).parts))


def builtin_values(scale: Scale, task_id: str) -> dict[str, str]:
    """The placeholders every task of ``scale`` may use besides its parameters (see :data:`BUILTINS`)."""
    campaign_dir = scale.context.campaign_dir.absolute()
    return {"task_id": task_id, "scale": scale.context.name, "workdir": str(campaign_dir / scale.workdir(task_id)),
            "campaign_dir": str(campaign_dir)}


def configured_env(config: ParameterizedConfig, values: Mapping[str, str]) -> dict[str, str]:
    """The config's ``env`` with its placeholders filled from ``values``."""
    return {key: substitute(value, values) for key, value in config.env.items()}


def callable_task(scale: Scale, config: ParameterizedConfig, task_id: str, function: str,
                  kwargs: Mapping[str, JsonValue], labels: Mapping[str, str], *, resources: Resources | None = None,
                  depends_on: Sequence[str] = ()) -> TaskSpec:
    """A Python-callable task of ``scale`` in its conventional working directory, carrying what every scale
    config sets for its tasks: the ``env`` (placeholders filled), resources, retry policy and priority.

    The scales that make their tasks at run time (at a stage barrier, from a
    promoted frame, round after round) build them here, so that each honours
    its config the same way the parameter-space scales do.
    """
    return TaskSpec(
        id=task_id,
        payload=CallablePayload(function=function, kwargs=dict(kwargs),
                                env=configured_env(config, builtin_values(scale, task_id))),
        resources=resources or config.resources, retry=config.retry,
        labels={"scale": scale.context.name, **labels}, workdir=scale.workdir(task_id),
        depends_on=list(depends_on), priority=config.priority,
    )


class ParameterizedScale(Scale):
    """A scale that makes one task per parameter point; subclasses say what each task runs.

    Task ids are ``<scale>.<index>``, the index zero-padded to the width of the
    largest one, so they are stable across runs of the same spec and sort in
    point order. Each task carries the labels ``scale`` and ``stage`` (both the
    scale's name) and its ``param.*`` labels, runs in :meth:`Scale.workdir`, and
    depends on the tasks of every upstream scale chosen by
    :func:`upstream_dependencies`.
    """

    config: ParameterizedConfig

    @abc.abstractmethod
    def payload(
        self, point: Mapping[str, Scalar], values: Mapping[str, str], env: dict[str, str]
    ) -> ExecutablePayload | CallablePayload:
        """What the task for ``point`` runs.

        Parameters
        ----------
        point:
            The parameter values, with their types.
        values:
            The same values as strings, plus the built-in placeholders: what
            :func:`substitute` fills templates with.
        env:
            The config's ``env``, already substituted.
        """

    def tasks(self) -> list[TaskSpec]:
        """One task per point of the config's parameter space, in point order."""
        name = self.context.name
        points = self.config.space.points()
        width = len(str(len(points) - 1))
        specs = []
        for index, point in enumerate(points):
            task_id = f"{name}.{index:0{width}d}"
            workdir = self.workdir(task_id)
            labels = point_labels(point)
            values = {**{key: str(value) for key, value in point.items()}, **builtin_values(self, task_id)}
            env = configured_env(self.config, values)
            specs.append(
                TaskSpec(
                    id=task_id,
                    payload=self.payload(point, values, env),
                    resources=self.config.resources,
                    retry=self.config.retry,
                    labels={"scale": name, "stage": name, **labels},
                    workdir=workdir,
                    depends_on=[
                        dependency
                        for upstream in self.context.upstream.values()
                        for dependency in upstream_dependencies(labels, upstream)
                    ],
                    priority=self.config.priority,
                )
            )
        return specs
