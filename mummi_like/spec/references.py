"""Cross references between the parts of a spec: scale names, ``depends_on``, coupling ends, cycles.

Checked twice over: by :class:`~mummi_like.spec.models.CampaignSpec` itself,
for a spec validated directly, and by the resolver, which sees the names of
scales that are otherwise invalid too, so that one bad scale does not make every
reference to it an error as well.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mummi_like.spec.problems import Loc, Problem, did_you_mean

if TYPE_CHECKING:
    from mummi_like.spec.models import CouplingSpec, ScaleSpec

DEFER_REFERENCES = "defer_references"
"""Validation-context key with which the resolver checks references itself, to report each at its own path."""


def reference_problems(
    names: Mapping[int, str], scales: Mapping[int, ScaleSpec], couplings: Mapping[int, CouplingSpec]
) -> list[Problem]:
    """Duplicate scale names, references to unknown scales, and dependency cycles.

    ``names`` holds every scale name that can be read (even of scales that are
    otherwise invalid), so that one bad scale does not make every reference to
    it an error too; ``scales`` and ``couplings`` hold the valid entries by index.
    """
    problems = []
    first: dict[str, int] = {}
    for index, name in names.items():
        if name in first:
            problems.append(
                Problem(
                    ("scales", index, "name"),
                    f"duplicate scale name {name!r} (also scales[{first[name]}].name)",
                    "scale names must be unique; rename one",
                )
            )
        first.setdefault(name, index)
    known = list(first)

    def unknown(loc: Loc, name: str) -> Problem:
        return Problem(loc, f"unknown scale {name!r}", did_you_mean(name, known, "scales in this spec"))

    for index, scale in scales.items():
        for position, dependency in enumerate(scale.depends_on):
            if dependency not in first:
                problems.append(unknown(("scales", index, "depends_on", position), dependency))
    for index, coupling in couplings.items():
        for key in ("source", "target"):
            if getattr(coupling, key) not in first:
                problems.append(unknown(("couplings", index, key), getattr(coupling, key)))

    index_of: dict[str, int] = {}
    for index, scale in scales.items():
        index_of.setdefault(scale.name, index)
    graph = {name: [d for d in scales[index].depends_on if d in index_of] for name, index in index_of.items()}
    for cycle in _cycles(graph):
        problems.append(
            Problem(
                ("scales", index_of[cycle[0]], "depends_on"),
                f"dependency cycle: {' -> '.join(cycle)}",
                "a scale cannot depend, directly or through others, on itself; remove one of these depends_on entries",
            )
        )
    return problems


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle per back edge of a depth-first search, each written from its first node back to it."""
    done: set[str] = set()
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        stack.append(node)
        for successor in graph[node]:
            if successor in stack:
                cycles.append([*stack[stack.index(successor) :], successor])
            elif successor not in done:
                visit(successor)
        stack.pop()
        done.add(node)

    for node in graph:
        if node not in done:
            visit(node)
    return cycles
