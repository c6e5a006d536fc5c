"""Environment variables in string values of a spec: the only expansion there is.

Only environment variables are expanded, only inside string *values* (not keys),
and only with this explicit syntax:

- ``${env:NAME}``: the value of ``NAME``; an unset variable is an error that
  names it.
- ``${env:NAME:-default}``: ``default`` when ``NAME`` is unset or empty (as in a
  POSIX shell); the default is literal text and cannot contain ``}``.
- ``$${``: a literal ``${``.

Any other ``${...}`` is an error rather than silently left alone, and nothing
else is expanded: ``$HOME`` and ``~`` stay literal. Expanded text is not scanned
again and is never evaluated, so a variable cannot inject further expansions.
"""

from __future__ import annotations

import os
import re
from typing import Any

from mummi_like.spec.problems import Loc, Problem

_EXPANSION = re.compile(
    r"\$\$\{"
    r"|\$\{env:(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}"
    r"|\$\{(?P<other>[^}]*)\}?"
)


def expand(value: Any, loc: Loc, problems: list[Problem]) -> tuple[Any, set[Loc]]:
    """``value`` with ``${env:...}`` expanded in every string, and the locations that could not be expanded.

    A NUL character is refused in every string and key: no program argument,
    path or environment variable can carry one, so it could only fail later, in
    a task, with a confusing message (or in the coordinator, with a traceback).
    """
    if isinstance(value, str) and "\x00" in value:
        problems.append(Problem(loc, "holds a NUL character (\\0)", _NUL_HINT))
        return value, {loc}
    if isinstance(value, str):
        found: list[Problem] = []
        expanded = _EXPANSION.sub(lambda match: _substitute(match, loc, found), value)
        problems.extend(found)
        return (value, {loc}) if found else (expanded, set())
    failed: set[Loc] = set()
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if isinstance(key, str) and "\x00" in key:
                problems.append(Problem((*loc, key), "this key holds a NUL character (\\0)", _NUL_HINT))
                failed.add((*loc, key))  # what validation says of the key was said here
            result[key], bad = expand(item, (*loc, key), problems)
            failed |= bad
        return result, failed
    if isinstance(value, list):
        items = []
        for index, item in enumerate(value):
            expanded_item, bad = expand(item, (*loc, index), problems)
            items.append(expanded_item)
            failed |= bad
        return items, failed
    return value, failed


_NUL_HINT = "no program argument, path or environment variable can hold one; remove the \\0 escape"


def _substitute(match: re.Match[str], loc: Loc, found: list[Problem]) -> str:
    if match.group(0) == "$${":
        return "${"
    name = match.group("name")
    if name is not None:
        default = match.group("default")
        value = os.environ.get(name)
        if default is not None and not value:
            return default
        if value is None:
            found.append(
                Problem(
                    loc,
                    f"environment variable {name!r} is not set",
                    f"set it or write ${{env:{name}:-default}}",
                )
            )
            return match.group(0)
        return value
    other = match.group("other")
    suggestion = f"did you mean ${{env:{other}}}? " if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", other) else ""
    found.append(
        Problem(
            loc,
            f"unsupported expansion {match.group(0)!r}",
            f"{suggestion}write ${{env:NAME}} or ${{env:NAME:-default}} for an environment variable, "
            "or $${ for a literal ${",
        )
    )
    return match.group(0)
