"""YAML text to data, refusing hostile input, and the line of every node for the messages.

Hostile input
-------------
Whatever the text, :func:`~mummi_like.spec.resolve.load_spec` returns a campaign or raises a
:class:`~mummi_like.spec.problems.SpecError`: lists and mappings nested more than :data:`MAX_DEPTH` deep
(even through aliases), more than :data:`MAX_VALUES` values once aliases are
expanded (the "billion laughs"), characters YAML does not allow, NUL
characters in any value or key (no argument, path or environment variable can
hold one) and names longer than :data:`~mummi_like.spec.models.MAX_NAME_LENGTH` are each one located
issue. ``tests/test_spec_fuzz.py`` checks this with generated input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mummi_like.spec.problems import Loc, Problem, SpecIssue, clip, yaml_path

MAX_DEPTH = 50
"""Most levels of lists and mappings a spec may nest. Real specs use fewer than ten; the limit keeps every walk
over the data (which recurses) far from Python's recursion limit, whatever the input."""
MAX_VALUES = 1_000_000
"""Most values (scalars, lists and mappings) a spec may hold once its aliases are expanded. A few aliases that
each repeat the previous one stand for billions of values (the "billion laughs"), which would take hours to walk."""


def line_of(root: yaml.Node | None, loc: Loc) -> int | None:
    """Line of the node at ``loc``, or of its nearest existing ancestor; a mapping entry counts from its key."""
    if root is None:
        return None
    node, line = root, root.start_mark.line + 1
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            entries = [(k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)]
            if not entries:
                break
            key, node = entries[-1]  # YAML keeps the last of duplicate keys, and so does the data
            line = key.start_mark.line + 1
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def located_issues(problems: list[Problem], root: yaml.Node | None, source: Path) -> list[SpecIssue]:
    issues: list[SpecIssue] = []
    for problem in problems:
        line = problem.line if problem.line is not None else line_of(root, problem.loc)
        hint = None if problem.hint is None else clip(problem.hint)
        issue = SpecIssue(yaml_path(problem.loc), line, clip(problem.message), hint, source)
        if issue not in issues:
            issues.append(issue)
    return sorted(issues, key=lambda issue: issue.line if issue.line is not None else 0)


def parse(text: str, problems: list[Problem]) -> tuple[yaml.Node | None, Any]:
    """Compose and construct one YAML document, keeping the nodes for line numbers."""
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as error:  # the reader checks every character of a text at once, here
        problems.append(_unprintable_problem(error, text))
        return None, None
    try:
        root = loader.get_single_node()
        if root is None:
            problems.append(Problem((), "the spec is empty", "start with `name: my-campaign` and a `scales:` list", 1))
            return None, None
        oversized = _extent_problem(root)
        if oversized is not None:
            problems.append(oversized)
            return None, None  # nothing below may walk it
        structural = _node_problems(root, (), frozenset())
        recursive = [p for p in structural if p.line is None]
        problems.extend(p._replace(line=line_of(root, p.loc)) if p.line is None else p for p in structural)
        if recursive:
            return None, None  # nothing below (expansion, validation) can walk a structure that contains itself
        return root, loader.construct_document(root)  # merges `<<:` keys into the nodes too
    except yaml.YAMLError as error:
        problems.append(_yaml_problem(error))
        return None, None
    except RecursionError:  # PyYAML composes nested nodes recursively: a few hundred levels exhaust the stack
        mark = loader.get_mark()
        problems.append(
            Problem((), f"lists and mappings nested more than {MAX_DEPTH} levels deep, at column {mark.column + 1}",
                     _TOO_DEEP_HINT, mark.line + 1)
        )
        return None, None
    finally:
        loader.dispose()


_TOO_DEEP_HINT = "a spec needs a few levels; look for brackets or braces that are opened and never closed"


class _Oversized(Exception):
    """Raised inside :func:`_extent_problem` with the problem to report."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.message)
        self.problem = problem


def _extent_problem(root: yaml.Node) -> Problem | None:
    """The problem with a document nested deeper than :data:`MAX_DEPTH` or holding more than :data:`MAX_VALUES`
    values once its aliases are expanded; ``None`` when it has neither.

    Each node is measured once (an alias is the same node object as its anchor)
    and the descent stops at the limit, so this takes time linear in the text
    and a bounded stack, however the aliases multiply.
    """
    extents: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) of the node with its aliases expanded

    def extent(node: yaml.Node, loc: Loc) -> tuple[int, int]:
        known = extents.get(id(node))
        if known is None:
            extents[id(node)] = (1, 1)  # a node that contains itself counts once here; _node_problems reports it
            if len(loc) > MAX_DEPTH:
                raise _Oversized(Problem(loc[:1], f"lists and mappings nested more than {MAX_DEPTH} levels deep",
                                          _TOO_DEEP_HINT, node.start_mark.line + 1))
            children: list[tuple[str | int, yaml.Node]] = []
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    part = key.value if isinstance(key, yaml.ScalarNode) else "?"
                    children += [(part, key), (part, value)]
            elif isinstance(node, yaml.SequenceNode):
                children = list(enumerate(node.value))
            values, levels = 1, 0
            for part, child in children:
                child_values, child_levels = extent(child, (*loc, part))
                values, levels = values + child_values, max(levels, child_levels)
            known = extents[id(node)] = (values, levels + 1)
        if len(loc) + known[1] - 1 > MAX_DEPTH:
            raise _Oversized(Problem(loc[:1], f"lists and mappings nested more than {MAX_DEPTH} levels deep "
                                      "(through aliases)", _TOO_DEEP_HINT, node.start_mark.line + 1))
        if known[0] > MAX_VALUES:
            raise _Oversized(Problem(loc, f"holds more than {MAX_VALUES:,} values, each alias (*name) counted as "
                                      "the values it repeats", "give long inputs as a file (a library file) or as a "
                                      "product of parameters; aliases that repeat other aliases multiply",
                                      node.start_mark.line + 1))
        return known

    try:
        extent(root, ())
    except _Oversized as oversized:
        return oversized.problem
    return None


def _unprintable_problem(error: yaml.reader.ReaderError, text: str) -> Problem:
    """A character YAML does not allow in a document (a control character, say), located in ``text``."""
    before = text[: error.position]
    line, column = before.count("\n") + 1, error.position - (before.rfind("\n") + 1) + 1
    character = error.character if isinstance(error.character, int) else ord(error.character)
    return Problem(
        (),
        f"invalid YAML: the character U+{character:04X} is not allowed in a YAML file, at column {column}",
        f"remove it, or write it as an escape in a double-quoted string (\"\\u{character:04x}\")",
        line,
    )


def _yaml_problem(error: yaml.YAMLError) -> Problem:
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    message = f"invalid YAML: {problem}" + (f" ({context})" if context else "")
    if mark is not None:
        message += f" at column {mark.column + 1}"
    if "unhashable key" in problem:
        hint = "a key must be plain text; a list or a mapping can be a value, not a key"
    elif "for merging" in problem:
        hint = "`<<:` merges mappings into this one: give it an alias of a mapping (`<<: *defaults`) or a list of them"
    elif isinstance(error, yaml.constructor.ConstructorError):
        hint = "only plain YAML is allowed; remove the `!tag` (there are no !!python tags)"
    elif "'\\t'" in problem:  # PyYAML quotes the tab it found as '\t'
        hint = "YAML indents with spaces only; replace the tab with spaces"
    elif "single document" in (context or ""):
        hint = "a spec is one YAML document; remove the extra `---`"
    else:
        hint = (
            "check the indentation of this line and the lines above it, and quote values that contain ': ' or ' #' "
            "or start with one of { [ * & ! % @ `"
        )
    return Problem((), message, hint, mark.line + 1 if mark is not None else None)


def _node_problems(node: yaml.Node, loc: Loc, ancestors: frozenset[int]) -> list[Problem]:
    """Repeated keys, which YAML loaders silently resolve by keeping the last one, and recursive aliases.

    A recursive alias is returned without a line (its node has none of its own);
    every other problem has one.
    """
    if id(node) in ancestors:
        return [
            Problem(
                loc,
                "this alias refers to a node that contains it",
                "an anchor cannot be used inside itself; write the values out instead",
            )
        ]
    ancestors |= {id(node)}
    found: list[Problem] = []
    if isinstance(node, yaml.MappingNode):
        first_line: dict[str, int] = {}
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else None
            if name is not None and name != "<<":
                line = key.start_mark.line + 1
                if name in first_line:
                    found.append(
                        Problem(
                            (*loc, name),
                            f"duplicate key {name!r} (first at line {first_line[name]})",
                            "YAML keeps only the last one; remove or merge the other",
                            line,
                        )
                    )
                first_line.setdefault(name, line)
            found.extend(_node_problems(value, (*loc, name if name is not None else "?"), ancestors))
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            found.extend(_node_problems(item, (*loc, index), ancestors))
    return found
