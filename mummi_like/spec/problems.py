"""Problems found in a spec, and how they are shown: located, with a hint, long text cut.

Every check of the spec package records a :class:`Problem` at a :data:`Loc`
(keys and indices from the top of the YAML data); :func:`load_spec
<mummi_like.spec.resolve.load_spec>` turns them into :class:`SpecIssue` lines
(file, line, YAML path, message, hint) and raises them all at once in one
:class:`SpecError`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

Loc = tuple[str | int, ...]
"""A location in the YAML data: mapping keys and list indices from the top."""

MAX_TEXT = 1000
"""Most characters of a problem's message or hint shown; longer ones (echoing a huge value) are cut in the middle."""


class Problem(NamedTuple):
    """What is wrong where, before the YAML lines are known: :func:`~mummi_like.spec.parsing.located_issues`
    turns problems into :class:`SpecIssue` lines."""

    loc: Loc
    message: str
    hint: str | None
    line: int | None = None
    """Set when the problem is about YAML text rather than a data node (syntax errors, duplicate keys)."""


def yaml_path(loc: Loc) -> str:
    """``loc`` written as :attr:`SpecIssue.path` writes it: ``scales[1].config.argv``, ``<root>`` for the document.

    A key that would not read as one part of such a path (a space, a dot, a
    bracket, a line break, nothing at all, a key YAML read as a number) is
    quoted in brackets, ``env['A B']``, ``config[1.5]``, so that a path always
    fits on its line and names one node.
    """
    text = ""
    for part in loc:
        if isinstance(part, int):
            text += f"[{part}]"
        elif not isinstance(part, str) or not part or not part.isprintable() or any(
            separator in part for separator in " .[]'\""
        ):
            text += f"[{clip(repr(part))}]"
        else:
            text += f".{clip(part)}" if text else clip(part)
    return text or "<root>"


def clip(text: str, limit: int = MAX_TEXT) -> str:
    """``text``, cut in the middle to at most about ``limit`` characters, saying how many were left out."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    return f"{text[:keep]}...({len(text) - 2 * keep} characters left out)...{text[-keep:]}"


def kind_of(value: Any) -> str:
    """What YAML made of ``value``, in words: "a list", "a string", "an empty value"."""
    if value is None:
        return "an empty value"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return "a string"
    return f"a {type(value).__name__}"


def did_you_mean(word: str, choices: Sequence[str], noun: str) -> str:
    """A hint for a name that matches none of ``choices``: the nearest one, if any, and the whole list."""
    close = difflib.get_close_matches(word, list(choices), n=1)
    listing = f"{noun}: {', '.join(choices)}" if choices else f"there are no {noun}"
    return f"did you mean {close[0]!r}? {listing}" if close else listing


@dataclass(frozen=True)
class SpecIssue:
    """One problem in a spec file, located for a human to fix.

    Attributes
    ----------
    path:
        YAML path of the bad node, like ``scales[1].config.argv``; ``<root>`` for
        the document itself.
    line:
        1-based line where that node starts; for a missing key, the line of the
        nearest enclosing node that exists. ``None`` when the file could not be read.
    message:
        What is wrong.
    hint:
        How to fix it, when there is something better to say than the message.
    source:
        The spec file, as the user named it.
    """

    path: str
    line: int | None
    message: str
    hint: str | None
    source: Path

    def __str__(self) -> str:
        where = f"{self.source}:{self.line}" if self.line is not None else f"{self.source}"
        hint = f" (hint: {self.hint})" if self.hint else ""
        return f"{where}: {self.path}: {self.message}{hint}"


class SpecError(ValueError):
    """A spec that cannot be run, with every problem found in it."""

    def __init__(self, source: Path, issues: list[SpecIssue]) -> None:
        self.source = source
        self.issues = issues
        count = f"{len(issues)} problem{'s' if len(issues) != 1 else ''}"
        super().__init__("\n".join([f"invalid campaign spec {source} ({count}):", *(f"  {i}" for i in issues)]))
