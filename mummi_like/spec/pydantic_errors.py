"""Pydantic's validation errors as problems at YAML paths, with hints in plain words.

Pydantic locates an error in the validated value, adding parts the YAML does
not have (union branch labels, keys written as text); the problems here point
at the node the user wrote, and say what was expected or which key was meant.
"""

from __future__ import annotations

import difflib
import types
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from mummi_like.spec.problems import Loc, Problem

_EXPECTED = {
    "int_type": "an integer, e.g. 4",
    "int_parsing": "an integer, e.g. 4",
    "int_from_float": "a whole number, e.g. 4",
    "float_type": "a number, e.g. 2.5",
    "float_parsing": "a number, e.g. 2.5",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "string_type": "text; put it in quotes if YAML reads it as a number, a boolean or a list",
    "list_type": "a list: `[a, b]`, or one `- item` per line",
    "tuple_type": "a list: `[a, b]`, or one `- item` per line",
    "set_type": "a list: `[a, b]`, or one `- item` per line",
    "dict_type": "a mapping: `key: value` lines indented under this key, or `{key: value}`",
    "model_type": "a mapping: `key: value` lines indented under this key, or `{key: value}`",
    "model_attributes_type": "a mapping: `key: value` lines indented under this key, or `{key: value}`",
    "path_type": "a path, written as text",
}


def validation_problems(
    error: ValidationError, model: type[BaseModel], data: Any, prefix: Loc, unexpanded: set[Loc]
) -> list[Problem]:
    """Pydantic's errors as problems at YAML locations, with hints."""
    problems = []
    for detail in error.errors(include_url=False):
        raw: Loc = tuple(detail["loc"])
        loc = (*prefix, *_data_loc(data, raw, keep_last=detail["type"] == "missing"))
        if loc in unexpanded:
            continue  # already reported: the environment variable that should have filled it is missing
        message = detail["msg"].removeprefix("Value error, ")
        problems.append(Problem(loc, message, _hint(detail, model, raw)))
    return problems


def _data_loc(data: Any, raw: Loc, keep_last: bool) -> Loc:
    """``raw`` without the parts pydantic adds that are not in the YAML (union branch labels, ``[key]``)."""
    kept: list[str | int] = []
    node = data
    for index, part in enumerate(raw):
        if isinstance(node, dict) and part not in node:  # pydantic writes a key YAML read as a number as text
            part = next((key for key in node if not isinstance(key, str) and str(key) == part), part)
        if has_entry(node, part):
            node = node[part]
            kept.append(part)
        elif keep_last and index == len(raw) - 1:
            kept.append(part)
    return tuple(kept)


def has_entry(node: Any, part: str | int) -> bool:
    """Whether ``node[part]`` is an entry of the YAML data (a key of a mapping or an index of a list)."""
    if isinstance(node, dict):
        return part in node
    return isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)


def _hint(detail: Mapping[str, Any], model: type[BaseModel], raw: Loc) -> str | None:
    kind = detail["type"]
    if kind == "extra_forbidden":
        key = str(raw[-1])
        fields = _fields_at(model, raw[:-1])
        if fields is None:
            return f"unknown key {key!r}; remove it"
        if not fields:
            return f"unknown key {key!r}; this block takes no keys"
        close = difflib.get_close_matches(key, fields, n=1)
        if close:
            return f"unknown key {key!r}; did you mean {close[0]!r}?"
        return f"unknown key {key!r}; valid keys: {', '.join(fields)}"
    if kind == "missing":
        return f"required key; add `{raw[-1]}: ...`"
    if kind in ("literal_error", "enum"):
        return f"expected one of {detail.get('ctx', {}).get('expected', '')}"
    if kind in _EXPECTED:
        return f"expected {_EXPECTED[kind]}"
    return None


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str] | None:
    """Keys accepted at ``loc`` of ``model``, or ``None`` when no model is found there."""
    candidates: list[Any] = [model]
    for part in loc:
        children = [child for candidate in candidates for child in _children(candidate, part)]
        if children:
            candidates = children
        # otherwise ``part`` is a label pydantic adds for a union branch: the location stays where it is
    models = [c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)]
    if not models:
        return None
    return sorted({field.alias or name for m in models for name, field in m.model_fields.items()})


def _children(annotation: Any, part: str | int) -> list[Any]:
    """The types found one step below ``annotation`` at key or index ``part``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        for name, field in annotation.model_fields.items():
            if part in (name, field.alias):
                return _members(field.annotation)
        return []
    origin, args = get_origin(annotation), get_args(annotation)
    if origin in (list, tuple, set, frozenset, Sequence) and isinstance(part, int) and args:
        return _members(args[0])
    if origin in (dict, Mapping) and isinstance(part, str) and len(args) == 2:
        return _members(args[1])
    return []


def _members(annotation: Any) -> list[Any]:
    """The types an annotation allows, unions and ``Annotated`` unwrapped."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _members(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        return [member for arg in get_args(annotation) for member in _members(arg)]
    return [annotation]
