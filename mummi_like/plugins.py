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
"""

from __future__ import annotations

import difflib
from importlib.metadata import EntryPoint, entry_points
from typing import NamedTuple

GROUPS: dict[str, str] = {
    "scale": "mummi_like.scales",
    "selector": "mummi_like.selectors",
    "backend": "mummi_like.backends",
    "pipeline": "mummi_like.pipelines",
}
"""Plugin kind (as used in messages and by :func:`load`) -> entry-point group."""


class UnknownPlugin(LookupError):
    """No installed package registers a plugin of this kind under this name.

    Attributes
    ----------
    kind, name:
        What was asked for.
    installed:
        Names registered for ``kind``, sorted.
    nearest:
        The installed name closest to ``name`` (a likely typo), or ``None``.
    """

    def __init__(self, kind: str, name: str, installed: list[str]) -> None:
        self.kind = kind
        self.name = name
        self.installed = installed
        close = difflib.get_close_matches(name, installed, n=1)
        self.nearest = close[0] if close else None
        super().__init__(
            f"unknown {kind} plugin {name!r}; {self.hint} To add one, install a package that registers an entry "
            f'point in group {GROUPS[kind]!r}, e.g. in its pyproject.toml: [project.entry-points."{GROUPS[kind]}"] '
            f'{name} = "your_package.module:YourClass"'
        )

    @property
    def hint(self) -> str:
        """The nearest name and the installed ones, as one sentence for a short error line."""
        listing = f"installed {self.kind}s: {', '.join(self.installed)}." if self.installed else (
            f"no {self.kind} plugins are installed."
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
