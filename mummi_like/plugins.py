"""Finding scales, selectors, backends and pipelines through entry points.

The framework knows no plugin by name in its code: the built-in ones register
themselves in ``pyproject.toml`` exactly as a user's package would, so adding a
plugin never means editing ``mummi_like``. A package registers a class under one
of the groups in :data:`GROUPS`::

    [project.entry-points."mummi_like.scales"]
    my-md = "my_package.md:MyMDScale"

and, once installed (``pip install -e .`` is enough), the spec can say
``plugin: my-md``. Discovery reads only package metadata; a plugin's module is
imported when it is first :func:`load`-ed, so one broken or heavy plugin costs
nothing to campaigns that do not use it.

When two installed distributions register the same name in one group, the first
one found on ``sys.path`` wins, as with :mod:`importlib.metadata` itself.

:func:`document` reads a plugin's description and every key of its
``config:`` block (type, default, description, nested models expanded) from the
plugin class and its ``config_model``: ``mummi-like plugins NAME`` prints it and
the guide's page of config keys is generated from it, so neither can drift from
what validation accepts.
"""

from __future__ import annotations

import difflib
import enum
import inspect
import json
import types
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from pathlib import PurePath
from typing import Annotated, Any, Literal, NamedTuple, Union, get_args, get_origin

import annotated_types
from pydantic import BaseModel
from pydantic.fields import FieldInfo

GROUPS: dict[str, str] = {
    "scale": "mummi_like.scales",
    "selector": "mummi_like.selectors",
    "backend": "mummi_like.backends",
    "pipeline": "mummi_like.pipelines",
}
"""Plugin kind (as used in messages and by :func:`load`) -> entry-point group."""


class UnknownPlugin(LookupError):
    """No installed package registers a plugin of this kind (or, for ``kind=None``, of any kind) under this name.

    Attributes
    ----------
    kind, name:
        What was asked for; ``kind`` is ``None`` when any kind would do (``mummi-like plugins NAME``).
    installed:
        Names registered for ``kind`` (for every kind, when ``kind`` is ``None``), sorted.
    nearest:
        The installed name closest to ``name`` (a likely typo), or ``None``.
    """

    def __init__(self, kind: str | None, name: str, installed: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.installed = installed
        close = difflib.get_close_matches(name, installed, n=1)
        self.nearest = close[0] if close else None
        if kind is None:
            message = f"no installed plugin is named {name!r}; {self.hint} `mummi-like plugins` lists them by kind"
        else:
            message = (
                f"unknown {kind} plugin {name!r}; {self.hint} To add one, install a package that registers an entry "
                f'point in group {GROUPS[kind]!r}, e.g. in its pyproject.toml: [project.entry-points."{GROUPS[kind]}"] '
                f'{name} = "your_package.module:YourClass"'
            )
        super().__init__(message)

    @property
    def hint(self) -> str:
        """The nearest name and the installed ones, as one sentence for a short error line."""
        kind = self.kind or "plugin"
        listing = f"installed {kind}s: {', '.join(self.installed)}." if self.installed else (
            f"no {kind} plugins are installed." if self.kind else "no plugins are installed."
        )
        return f"did you mean {self.nearest!r}? {listing}" if self.nearest else listing


class PluginLoadError(ImportError):
    """A plugin is registered but importing it failed, or it is not a usable class.

    The original exception is chained (``__cause__``), so the traceback still
    shows the line in the plugin that failed.
    """

    def __init__(self, kind: str, name: str, value: str, reason: str) -> None:
        self.kind = kind
        self.name = name
        self.value = value
        self.reason = reason
        super().__init__(f"{kind} plugin {name!r} ({value}) failed to load: {reason}")


class PluginInfo(NamedTuple):
    """One row of :func:`describe`."""

    name: str
    value: str
    summary: str


def _group(kind: str) -> str:
    try:
        return GROUPS[kind]
    except KeyError:
        raise ValueError(f"unknown plugin kind {kind!r}; kinds are: {', '.join(GROUPS)}") from None


def installed(kind: str) -> dict[str, EntryPoint]:
    """The plugins of ``kind`` registered by installed packages, by name, without importing any.

    Raises
    ------
    ValueError
        ``kind`` is not a key of :data:`GROUPS`.
    """
    found: dict[str, EntryPoint] = {}
    for entry_point in entry_points(group=_group(kind)):
        found.setdefault(entry_point.name, entry_point)
    return dict(sorted(found.items()))


def load(kind: str, name: str, base: type | None = None) -> type:
    """Import and return the class registered as ``name`` for ``kind``.

    Parameters
    ----------
    kind:
        A key of :data:`GROUPS`, e.g. ``"scale"``.
    name:
        The entry-point name, as written in the spec's ``plugin:`` key.
    base:
        When given, the class must subclass it; checking here turns a wrong
        registration into one clear error instead of an ``AttributeError`` deep
        in the campaign loop.

    Raises
    ------
    UnknownPlugin
        Nothing is registered under ``name``; the message suggests the nearest name.
    PluginLoadError
        The registration exists but importing it raised, or it does not name a
        class (a subclass of ``base``).
    """
    registered = installed(kind)
    if name not in registered:
        raise UnknownPlugin(kind, name, list(registered))
    entry_point = registered[name]
    try:
        loaded = entry_point.load()
    except Exception as error:  # a plugin is foreign code: any failure at import is its failure to load
        raise PluginLoadError(kind, name, entry_point.value, f"{type(error).__name__}: {error}") from error
    if not isinstance(loaded, type):
        reason = f"it names {loaded!r} (of type {type(loaded).__name__}), not a class"
        raise PluginLoadError(kind, name, entry_point.value, reason)
    if base is not None and not issubclass(loaded, base):
        reason = f"{loaded.__qualname__} is not a subclass of {base.__module__}.{base.__qualname__}"
        raise PluginLoadError(kind, name, entry_point.value, reason)
    return loaded


def describe(kind: str) -> list[PluginInfo]:
    """Every plugin of ``kind`` with the first line of its docstring, for ``mummi-like plugins``.

    Each plugin is imported; one that fails is listed with ``failed to load: ...``
    as its summary, so a single broken package does not hide the others.
    """
    rows = []
    for name, entry_point in installed(kind).items():
        try:
            summary = _first_line(load(kind, name).__doc__)
        except PluginLoadError as error:
            summary = f"failed to load: {error.reason}"
        rows.append(PluginInfo(name, entry_point.value, summary))
    return rows


def _first_line(doc: str | None) -> str:
    lines = (doc or "").strip().splitlines()
    return lines[0].strip() if lines else ""


@dataclass(frozen=True)
class ConfigKeyDoc:
    """One key of a plugin's ``config:`` block, as :func:`document` describes it."""

    key: str
    """Where the key sits in the block, YAML keys joined by dots: ``resources.cores``; ``[]`` marks the items of a
    list (``sites[].name``) and ``<key>`` any key of a mapping (``weights.<key>.value``)."""
    type: str
    """The values it takes, with their bounds: ``int >= 1``, ``'CPU' | 'Reference'``, ``list[str]``."""
    default: str
    """Its default as YAML (JSON, which YAML reads), ``required`` when the spec must give it, or, for a nested
    model, ``see below`` (its keys follow, each with its own default)."""
    description: str
    """The field's description in the config model."""
    depth: int
    """How deep it is nested: 0 for a key of the block itself."""


@dataclass(frozen=True)
class PluginDoc:
    """What a plugin is and the keys its ``config:`` block takes, read from its class and its ``config_model``."""

    kind: str
    """A key of :data:`GROUPS`."""
    name: str
    """Its entry-point name, what a spec's ``plugin:`` key says."""
    value: str
    """Its entry point, ``package.module:Class``."""
    description: str
    """The class docstring, cleaned of its indentation."""
    config_model: str
    """The config model's name, or an empty string when the class declares none."""
    config_description: str
    """The config model's docstring, cleaned."""
    keys: tuple[ConfigKeyDoc, ...]
    """Every config key, in declaration order, nested keys after their parent."""

    @property
    def summary(self) -> str:
        """The first line of :attr:`description`."""
        return _first_line(self.description)


def document(kind: str, name: str) -> PluginDoc:
    """The description and config keys of the ``kind`` plugin ``name``; it is imported to read them.

    Raises
    ------
    UnknownPlugin, PluginLoadError
        As :func:`load` does.
    """
    cls = load(kind, name)
    declared = getattr(cls, "config_model", None)
    model = declared if isinstance(declared, type) and issubclass(declared, BaseModel) else None
    return PluginDoc(
        kind=kind,
        name=name,
        value=installed(kind)[name].value,
        description=inspect.cleandoc(cls.__doc__ or ""),
        config_model="" if model is None else model.__name__,
        config_description="" if model is None else inspect.cleandoc(model.__doc__ or ""),
        keys=() if model is None else tuple(config_keys(model)),
    )


def find(name: str) -> list[PluginDoc]:
    """:func:`document` of every plugin registered as ``name``, of whichever kind (usually one).

    Raises
    ------
    UnknownPlugin
        With ``kind=None`` when no kind has a plugin of that name; it suggests the nearest name of any kind.
    PluginLoadError
        When the plugin is registered but does not load.
    """
    kinds = [kind for kind in GROUPS if name in installed(kind)]
    if not kinds:
        raise UnknownPlugin(None, name, sorted({found for kind in GROUPS for found in installed(kind)}))
    return [document(kind, name) for kind in kinds]


def config_keys(model: type[BaseModel], prefix: str = "", depth: int = 0,
                defaults: BaseModel | None = None) -> list[ConfigKeyDoc]:
    """Every key of ``model`` as a :class:`ConfigKeyDoc`, a nested model's keys right after the key that holds it.

    ``defaults`` is the instance a parent field defaults to, whose values are
    the nested keys' defaults (a config may default ``resources`` to two cores
    while :class:`~mummi_like.tasks.Resources` itself defaults to one).
    """
    rows: list[ConfigKeyDoc] = []
    for field_name, info in model.model_fields.items():
        key = f"{prefix}{info.alias or field_name}"
        nested, path = _nested_model(info.annotation)
        default = _default(info, defaults, field_name)
        rows.append(ConfigKeyDoc(
            key=key,
            type=_type_name(info.annotation, info.metadata),
            default="see below" if nested is not None and not isinstance(default, _Required) else _yaml(default),
            description=" ".join((info.description or "").split()),
            depth=depth,
        ))
        if nested is not None and nested is not model:  # a model holding itself would expand for ever
            inner_defaults = default if isinstance(default, nested) and not path else None
            rows.extend(config_keys(nested, f"{key}{path}.", depth + 1, inner_defaults))
    return rows


class _Required:
    """The default of a field the spec must give."""


def _default(info: FieldInfo, defaults: BaseModel | None, field_name: str) -> Any:
    """The field's default: from the parent's default instance where there is one, else from the field."""
    if defaults is not None:
        return getattr(defaults, field_name)
    if info.is_required():
        return _Required()
    if info.default_factory is not None:
        return info.get_default(call_default_factory=True, validated_data={})
    return info.default


def _yaml(value: Any) -> str:
    """A default as YAML flow text (JSON, which YAML reads): ``1``, ``null``, ``"CPU"``, ``{}``."""
    if isinstance(value, _Required):
        return "required"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json", by_alias=True)
    elif isinstance(value, enum.Enum):
        value = value.value
    elif isinstance(value, PurePath):
        value = str(value)
    try:
        return json.dumps(value)
    except TypeError:  # a default JSON cannot write (a set, a custom object): say what it is
        return repr(value)


def _nested_model(annotation: Any) -> tuple[type[BaseModel] | None, str]:
    """The model whose keys a field's value holds, and the path step to them.

    ``Resources`` and ``Resources | None`` give ``(Resources, "")``;
    ``list[Site]`` gives ``(Site, "[]")`` and ``dict[str, Weight]`` gives
    ``(Weight, ".<key>")``. A union of several models (a tagged union, say)
    is not expanded: which keys apply depends on the value.
    """
    origin = get_origin(annotation)
    if origin is Annotated:
        return _nested_model(get_args(annotation)[0])
    if origin in (Union, types.UnionType):
        models = [arg for arg in get_args(annotation) if arg is not type(None)]
        return _nested_model(models[0]) if len(models) == 1 else (None, "")
    if origin in (list, tuple, set, frozenset):
        args = [arg for arg in get_args(annotation) if arg is not Ellipsis]
        if len(args) == 1:
            model, path = _nested_model(args[0])
            return model, f"[]{path}"
        return None, ""
    if origin is dict:
        model, path = _nested_model(get_args(annotation)[1])
        return model, f".<key>{path}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, ""
    return None, ""


def _type_name(annotation: Any, metadata: list[Any] | tuple[Any, ...] = ()) -> str:
    """A type as a spec's author reads it: ``int >= 1``, ``'CPU' | 'Reference'``, ``dict[str, list[str]]``."""
    origin = get_origin(annotation)
    if origin is Annotated:
        inner, *extra = get_args(annotation)
        return _type_name(inner, [*extra, *metadata])
    bounds = ", ".join(_bounds(metadata))
    union = origin in (Literal, Union, types.UnionType) or (
        isinstance(annotation, type) and issubclass(annotation, enum.Enum))
    if annotation is type(None):
        name = "null"
    elif annotation is Any:
        name = "any"
    elif origin is Literal:
        values = get_args(annotation)
        name = " | ".join(repr(value.value if isinstance(value, enum.Enum) else value) for value in values)
    elif origin in (Union, types.UnionType):
        name = " | ".join(_type_name(arg) for arg in get_args(annotation))
    elif origin is not None:
        args = ", ".join("..." if arg is Ellipsis else _type_name(arg) for arg in get_args(annotation))
        name = f"{getattr(origin, '__name__', str(origin))}[{args}]"
    elif isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        name = " | ".join(repr(member.value) for member in annotation)
    elif isinstance(annotation, type) and issubclass(annotation, PurePath):
        name = "path"
    elif isinstance(annotation, type):
        name = annotation.__name__
    else:
        name = str(annotation)
    if not bounds:
        return name
    return f"({name}) {bounds}" if union else f"{name} {bounds}"


_BOUNDS: tuple[tuple[type[Any], str, str], ...] = (
    (annotated_types.Ge, "ge", ">= {}"),
    (annotated_types.Gt, "gt", "> {}"),
    (annotated_types.Le, "le", "<= {}"),
    (annotated_types.Lt, "lt", "< {}"),
    (annotated_types.MultipleOf, "multiple_of", "a multiple of {}"),
    (annotated_types.MinLen, "min_length", "length >= {}"),
    (annotated_types.MaxLen, "max_length", "length <= {}"),
)
"""The constraints a field's type is shown with: annotated-types class, its attribute, how it reads."""


def _bounds(metadata: list[Any] | tuple[Any, ...]) -> list[str]:
    """The numeric and length bounds in a field's metadata, as text; validators and the rest say nothing here."""
    found = []
    for item in metadata:
        if isinstance(item, FieldInfo):  # Annotated[list[str], Field(min_length=1)] nests its own metadata
            found.extend(_bounds(item.metadata))
            continue
        for kind, attribute, text in _BOUNDS:
            if isinstance(item, kind):
                found.append(text.format(getattr(item, attribute)))
    return found
