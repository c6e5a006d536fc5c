"""Hostile and malformed campaign specs, generated: each gets a clear error at its YAML path, or runs as written.

Mirrors :mod:`mummi_like.spec`. Hypothesis feeds :func:`load_spec_text` random
text, random YAML structures, and valid specs (the shipped examples and the
reference campaign) with one field set to anything (huge integers, NaN and
infinities, unicode, empty and very long strings, nested lists and mappings,
``None``) or one unknown key added. The only outcomes allowed are a resolved
campaign or a :class:`SpecError` whose issues carry a line and name the bad
field's YAML path: never a bare ``TypeError``, ``KeyError``, ``RecursionError``,
``OverflowError`` or a hang. Paths with ``..``, absolute paths, ``~``, NUL bytes
and symlinks are refused except where a field says otherwise; shell
metacharacters reach the programs and functions of a real campaign literally;
and nothing a refused spec does touches a campaign directory.

Where paths may point (checked here, documented in :mod:`mummi_like.spec`):

- ``directory`` may be anywhere, ``..`` and absolute paths included: it is
  where the user wants the campaign written, often a scratch file system far
  from the spec. Only ``~`` (never expanded) and NUL bytes are refused.
- ``python_path`` entries must resolve (symlinks too) inside the spec's folder,
  since their code runs in every Python task; ``allow_outside_paths: true`` is
  the explicit opt-out.
- ``library_file`` (active docking) must resolve inside the spec's folder: the
  inputs stay with the spec that uses them. It is checked at validation (the
  scale's ``check_inputs``), before any campaign directory exists.
- a coupling's ``stream`` is a glob below the source scale's task folders: no
  ``..``, no absolute path, no ``~``.
- ``argv`` names whatever program the spec declares (that is its purpose); it
  is never parsed by a shell, so its items and the parameter values put in them
  stay single, literal arguments.

Example counts are modest, fixed and derandomized, so CI runs the same
:data:`FUZZED_PER_RUN` inputs every time in well under a minute;
``MUMMI_LIKE_SOAK=N`` multiplies every count by N (:func:`conftest.soak_factor`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import soak_factor
from hypothesis import HealthCheck, Phase, assume, event, given, settings
from hypothesis import strategies as st

from mummi_like.campaign.control import CampaignError
from mummi_like.campaign.loop import Campaign
from mummi_like.spec import ResolvedCampaign, SpecError, load_spec_text, yaml_path
from mummi_like.store import Store
from mummi_like.streams.tailer import StreamTailer
from mummi_like.tasks import MAX_COUNT

REPOSITORY = Path(__file__).parents[1]
CAMPAIGN_EXTRA = all(importlib.util.find_spec(name) for name in ("rdkit", "vina", "dockstring", "openmm"))
"""Whether the drug-discovery engines (the `campaign` extra) are installed."""
BASES = {
    "dag": REPOSITORY / "examples" / "dag" / "campaign.yaml",
    "sweep": REPOSITORY / "examples" / "sweep" / "campaign.yaml",
    **({"drug-discovery": REPOSITORY / "pipelines" / "mummi_pipelines" / "drug_discovery" / "configs" / "demo.yaml"}
       if CAMPAIGN_EXTRA else {}),
}
"""Valid specs that mutations start from: two examples on the generic scales, and the reference campaign, whose
every stage is a plugin with its own config model (where the `campaign` extra is installed)."""

EXAMPLES = {
    "raw_text": 150,
    "top_level": 60,
    "mutated_field": 120,
    "extra_key": 40,
    "python_path": 40,
    "directory": 30,
    "stream": 60,
    "hostile_arguments": 12,
    "refused_over_existing": 30,
}
"""Examples per property in one CI run, before :func:`soak_factor`."""
FUZZED_PER_RUN = sum(EXAMPLES.values())
"""Inputs fuzzed per CI run (the figure in bench/README's reliability table)."""

PWNED = "PWNED"
"""The file every injection attempt here would create; it must never appear."""


def fuzz(name: str) -> Callable[[Any], Any]:
    """Hypothesis settings of one property: its share of :data:`EXAMPLES`, derandomized, no deadline.

    Derandomized so that CI fuzzes the same inputs on every run and a failure
    reproduces; no deadline because a loaded 2-core machine makes timings noisy;
    no "explain" phase, which reruns a failure hundreds of times.
    """
    return settings(
        max_examples=EXAMPLES[name] * soak_factor(),
        derandomize=True,
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )


# --- strategies -----------------------------------------------------------------------------------------------

HUGE = [10**30, -(10**30), 2**63, 2**64, -(2**63) - 1, 10**400]
"""Integers no C type holds: where they reach SQLite, a backend or a timer, they must be refused, not crash."""

texts = st.text(st.characters(blacklist_categories=["Cs"]), max_size=30)
"""Any unicode but lone surrogates, which YAML cannot write; NUL and control characters included."""

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from(HUGE),
    st.floats(allow_nan=True, allow_infinity=True),
    texts,
    st.sampled_from(["", " ", "..", "/", "~", "${env:HOME}", "${HOME}", "{x.__class__}", "\x00", "<<", "x" * 20_000]),
)
structures = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts | scalars, inner, max_size=4),
    max_leaves=12,
)
"""Random YAML-able data: scalars, lists and mappings (keys of any scalar type), nested."""


class _PlainDumper(yaml.CSafeDumper):
    """Writes repeated objects out in full instead of as anchors and aliases, as a user would."""

    def ignore_aliases(self, data: Any) -> bool:
        return True


def dump(data: Any) -> str:
    """``data`` as YAML text that loads back to it (mapping order kept)."""
    return yaml.dump(data, Dumper=_PlainDumper, allow_unicode=True, sort_keys=False, width=1_000_000)


def round_trips(text: str) -> bool:
    """Whether ``text`` loads back to the data it was written from (checked by writing that again).

    YAML reads a few characters (U+2028, NEL) as line breaks, and those inputs
    would test the writer rather than the spec.
    """
    try:
        return dump(yaml.load(text, Loader=yaml.CSafeLoader)) == text  # noqa: S506 (a safe loader)
    except yaml.YAMLError:
        return False


YAML_PIECES = st.sampled_from([
    "name: x\n", "scales:\n", "  - ", "- ", "[", "]", "{", "}", ": ", ", ", "&a ", "*a",
    "!!python/object/apply:os.system ", "<<: ", "---\n", "\t", "'", '"', "# ", "%YAML 1.1\n", "? ", "|\n", ">\n",
    "${env:X}", "\\0", "\x00", "\ufeff", "é", "\U0001f600", "\n", "  ", "plugin: command\n", "config: {argv: [x]}\n",
    "1e400", "-.inf", ".nan", "~",
])
deep_nesting = st.tuples(
    st.sampled_from([1, 10, 49, 50, 51, 300, 1200]), st.sampled_from([("[", "]"), ("{a: ", "}"), ("- ", "")])
).map(lambda depth_brackets: "name: x\nscales: " + depth_brackets[1][0] * depth_brackets[0] + "1"
      + depth_brackets[1][1] * depth_brackets[0])
"""Lists and mappings nested around :data:`mummi_like.spec.MAX_DEPTH` and past what PyYAML's recursive composer
survives (a few hundred levels; deeper text costs the same, about a second, since the composer stops there)."""
alias_bombs = st.tuples(st.integers(2, 12), st.integers(2, 12)).map(
    lambda width_depth: "name: x\na0: &a0 [x]\n" + "".join(
        f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * width_depth[0])}]\n"
        for level in range(1, width_depth[1])
    ) + "scales: [{name: s, plugin: command, config: {argv: [x]}}]\n"
)
raw_texts = st.one_of(texts, st.lists(YAML_PIECES | texts, max_size=30).map("".join), deep_nesting, alias_bombs)


# --- what every outcome must be -------------------------------------------------------------------------------


def outcome(text: str, source: Path) -> ResolvedCampaign | SpecError:
    """The campaign ``text`` resolves to, or the :class:`SpecError` it raises; anything else fails the test.

    A spec error must hold at least one issue, each with a YAML path and a line
    of the text, and read as plain lines (no traceback).
    """
    try:
        campaign = load_spec_text(text, source)
    except SpecError as error:
        assert error.issues, "a SpecError names at least one problem"
        for issue in error.issues:
            assert issue.path and issue.message and isinstance(issue.line, int), issue
        assert "Traceback" not in str(error) and str(error).count("\n") == len(error.issues)
        return error
    assert campaign.directory.is_absolute() and campaign.scales
    return campaign


def locations(data: Any, loc: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    """Every node of ``data`` below the root: each mapping value and list item, containers included."""
    items = data.items() if isinstance(data, dict) else enumerate(data) if isinstance(data, list) else ()
    for key, value in items:
        yield (*loc, key)
        yield from locations(value, (*loc, key))


def node_at(data: Any, loc: tuple[str | int, ...]) -> Any:
    """The node of ``data`` at ``loc``."""
    for part in loc:
        data = data[part]
    return data


def replaced(data: Any, loc: tuple[str | int, ...], value: Any) -> Any:
    """A copy of ``data`` with the node at ``loc`` set to ``value``."""
    if not loc:
        return value
    copy = dict(data) if isinstance(data, dict) else list(data)
    copy[loc[0]] = replaced(data[loc[0]], loc[1:], value)  # type: ignore[index]
    return copy


def block(loc: tuple[str | int, ...]) -> tuple[str | int, ...]:
    """The part of the spec that ``loc`` belongs to: one scale or coupling, or one top-level key."""
    return loc[:2] if loc[0] in ("scales", "couplings") and len(loc) > 1 else loc[:1]


def assert_names_the_field(error: SpecError, loc: tuple[str | int, ...], original: Any) -> None:
    """At least one issue is at ``loc``, below it, or at the block holding it; or every issue is fallout elsewhere.

    A model-wide check reports at its block (``scales[0].config``: "argv[1] uses
    unknown placeholder"); a changed ``plugin`` makes the old ``config`` wrong
    for the new plugin; a renamed scale leaves references to its old name
    dangling, and those are reported where they are.
    """
    target = yaml_path(loc)
    ancestors = {yaml_path(loc[:length]) for length in range(len(block(loc)), len(loc) + 1)}
    below = (f"{target}.", f"{target}[")
    within = yaml_path(block(loc))
    paths = [issue.path for issue in error.issues]
    inside_block = (f"{within}.", f"{within}[")
    if any(path in ancestors or path.startswith(below) or path.startswith(inside_block) for path in paths):
        return
    dangling = loc[-1] == "name" and all(f"unknown scale {original!r}" in issue.message for issue in error.issues)
    yaml_level = all(issue.path == "<root>" and issue.message.startswith("invalid YAML") for issue in error.issues)
    assert dangling or yaml_level, (target, [str(issue) for issue in error.issues])


def base_data(name: str) -> dict[str, Any]:
    """The parsed base spec ``name`` (a valid campaign: checked once by :func:`test_the_bases_are_valid`)."""
    return yaml.safe_load(BASES[name].read_text(encoding="utf-8"))


# --- random text and structures -------------------------------------------------------------------------------


def test_the_bases_are_valid() -> None:
    for path in BASES.values():
        assert isinstance(outcome(path.read_text(encoding="utf-8"), path), ResolvedCampaign), path


@fuzz("raw_text")
@given(text=raw_texts)
def test_any_text_is_a_campaign_or_a_located_spec_error(text: str) -> None:
    event(type(outcome(text, Path("/nonexistent/fuzz/spec.yaml"))).__name__)


@fuzz("top_level")
@given(data=structures)
def test_any_structure_at_the_top_level_is_a_located_spec_error(data: Any) -> None:
    text = dump(data)
    error = outcome(text, Path("/nonexistent/fuzz/spec.yaml"))
    assert isinstance(error, SpecError), "a random structure has no `scales` of real plugins"


@fuzz("mutated_field")
@given(base=st.sampled_from(sorted(BASES)), data=st.data(), value=structures)
def test_one_field_of_a_valid_spec_set_to_anything_is_reported_at_its_path(
    base: str, data: st.DataObject, value: Any
) -> None:
    spec = base_data(base)
    loc = data.draw(st.sampled_from(sorted(locations(spec), key=yaml_path)), label="field")
    mutated = replaced(spec, loc, value)
    text = dump(mutated)
    assume(round_trips(text))
    result = outcome(text, BASES[base])
    event(type(result).__name__)
    if isinstance(result, SpecError):
        assert_names_the_field(result, loc, node_at(spec, loc))


@fuzz("extra_key")
@given(base=st.sampled_from(sorted(BASES)), data=st.data(), key=texts.filter(bool), value=structures)
def test_an_unknown_key_anywhere_is_reported_at_its_path(base: str, data: st.DataObject, key: str, value: Any) -> None:
    spec = base_data(base)
    mappings = [loc for loc in [(), *locations(spec)] if isinstance(node_at(spec, loc), dict)]
    loc = data.draw(st.sampled_from(sorted(mappings, key=yaml_path)), label="mapping")
    mapping = node_at(spec, loc)
    assume(key not in mapping)
    mutated = replaced(spec, loc, {**mapping, key: value})
    text = dump(mutated)
    assume(round_trips(text))
    result = outcome(text, BASES[base])
    event(type(result).__name__)
    if isinstance(result, SpecError):  # free-form mappings (kwargs, env, parameters) may take the key
        assert_names_the_field(result, (*loc, key), None)


# --- paths ----------------------------------------------------------------------------------------------------

ONE_SCALE = {"name": "paths", "scales": [{"name": "a", "plugin": "command", "config": {"argv": ["true"]}}]}
"""The smallest valid spec on a real plugin, to which each path test adds its path."""


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A spec folder ``project`` with a folder, a file, and symlinks that stay inside, lead out, or loop.

    ::

        root/project/code/            a folder of code
        root/project/inside -> code   a symlink that stays in the spec's folder
        root/project/escape -> ../outside
        root/project/loop -> loop     a symlink to itself
        root/project/notes.txt        a file
        root/outside/                 a folder next to the spec's folder
    """
    root = tmp_path_factory.mktemp("sandbox").resolve()
    project = root / "project"
    (project / "code").mkdir(parents=True)
    (root / "outside").mkdir()
    (project / "inside").symlink_to("code")
    (project / "escape").symlink_to("../outside")
    (project / "loop").symlink_to("loop")
    (project / "notes.txt").write_text("not a folder\n")
    return root


PATH_PARTS = ["..", ".", "", "code", "inside", "escape", "loop", "notes.txt", "outside", "project", "nope", "é", "~",
              "\x00", "x" * 300, "$HOME", "*"]
"""Path segments that lead in, out, up, into loops, through files, nowhere, or hold what no path can."""


def path_strings(root: Path) -> st.SearchStrategy[str]:
    """Relative and absolute paths built from :data:`PATH_PARTS`, some starting at ``root``, the sandbox."""
    relative = st.lists(st.sampled_from(PATH_PARTS), min_size=1, max_size=5).map("/".join)
    plausible = st.sampled_from(["code", "inside", "code/.", "inside/../code", "escape", "../outside", "."])
    return st.one_of(plausible, relative, relative.map(lambda path: f"/{path}"),
                     relative.map(lambda path: f"{root}/{path}"), plausible.map(lambda path: f"{root}/project/{path}"))


def looked_up(path: str) -> Path | None:
    """``path`` with its symlinks resolved by ``os.path.realpath``; ``None`` where the file system refuses to look
    it up (a NUL, a symlink loop, a name too long, a file used as a folder): the oracle the spec is checked against.
    """
    if "\x00" in path:
        return None
    real = Path(os.path.realpath(path))
    try:
        os.stat(real)
    except FileNotFoundError:
        return real
    except OSError:
        return None
    return real


@fuzz("python_path")
@given(data=st.data(), allow_outside=st.booleans())
def test_python_path_stays_in_the_spec_folder_unless_allowed(sandbox: Path, data: st.DataObject,
                                                              allow_outside: bool) -> None:
    entry = data.draw(path_strings(sandbox), label="entry")
    project = sandbox / "project"
    spec = {**ONE_SCALE, "python_path": [entry], "allow_outside_paths": allow_outside}
    result = outcome(dump(spec), project / "spec.yaml")
    real = looked_up(f"{project}/{entry}" if not entry.startswith("/") else entry)
    usable = (real is not None and not entry.startswith("~") and real.is_dir()
              and (allow_outside or real.is_relative_to(project)))
    event(f"accepted={usable}")
    if usable:
        assert isinstance(result, ResolvedCampaign) and result.spec.python_path == [real]
    else:
        assert isinstance(result, SpecError) and [issue.path for issue in result.issues] == ["python_path[0]"]


@fuzz("directory")
@given(data=st.data())
def test_directory_may_be_anywhere_a_folder_can_be_made(sandbox: Path, data: st.DataObject) -> None:
    entry = data.draw(path_strings(sandbox), label="directory")
    project = sandbox / "project"
    result = outcome(dump({**ONE_SCALE, "directory": entry}), project / "spec.yaml")
    real = looked_up(f"{project}/{entry}" if not entry.startswith("/") else entry)
    blocked = real is not None and not next(p for p in (real, *real.parents) if p.exists()).is_dir()
    usable = real is not None and not entry.startswith("~") and not blocked
    event(f"accepted={usable}")
    if usable:
        assert isinstance(result, ResolvedCampaign) and result.directory == real
    else:
        assert isinstance(result, SpecError) and [issue.path for issue in result.issues] == ["directory"]


@pytest.mark.parametrize(("directory", "refusal"), [
    ("~/runs", "starts with '~', which is not expanded"),
    ("run\x00s", "holds a NUL character"),
    ("loop/run", "leads into a loop of symlinks"),
    ("notes.txt/run", "cannot be created: {project}/notes.txt is a file"),
    ("x" * 300, "cannot be resolved: File name too long"),
])
def test_a_directory_that_cannot_be_made_is_refused_saying_why(sandbox: Path, directory: str, refusal: str) -> None:
    project = sandbox / "project"
    result = outcome(dump({**ONE_SCALE, "directory": directory}), project / "spec.yaml")
    assert isinstance(result, SpecError)
    [issue] = result.issues
    assert issue.path == "directory" and refusal.format(project=project) in issue.message
    assert not any(project.glob("run*")), "nothing was created"


@pytest.mark.parametrize("directory", ["../elsewhere/run", "/tmp/mummi-like-fuzz-run", "escape/run", "inside/run"])
def test_a_directory_outside_the_spec_folder_is_the_users_choice(sandbox: Path, directory: str) -> None:
    project = sandbox / "project"
    result = outcome(dump({**ONE_SCALE, "directory": directory}), project / "spec.yaml")
    assert isinstance(result, ResolvedCampaign)
    assert result.directory == Path(os.path.realpath(project / directory))


@fuzz("stream")
@given(data=st.data())
def test_a_coupling_stream_glob_never_reaches_outside_the_source_scale(sandbox: Path, data: st.DataObject) -> None:
    """Whatever glob a spec accepts, the real tailer finds only files below the source scale's task folders."""
    parts = st.sampled_from(["..", ".", "*", "**", "?", "[.][.]", "t1", "*.h5md", "~", "", "\\", "\x00", "other"])
    glob = data.draw(st.lists(parts, min_size=1, max_size=4).map("/".join) | st.sampled_from(["/*", "/**/*.h5md"]),
                     label="stream")
    campaign = sandbox / "streams"
    source = campaign / "tasks" / "src"
    for stream in (source / "t1" / "a.h5md", campaign / "tasks" / "other" / "b.h5md", campaign / "c.h5md",
                   sandbox / "d.h5md"):
        stream.parent.mkdir(parents=True, exist_ok=True)
        stream.write_text("not HDF5: only which files the glob finds matters here\n")
    spec = {**ONE_SCALE, "directory": str(campaign),
            "couplings": [{"source": "a", "target": "a", "selector": "novelty", "feature": "x", "stream": glob}]}
    result = outcome(dump(spec), sandbox / "project" / "spec.yaml")
    event(type(result).__name__)
    if isinstance(result, SpecError):
        assert {issue.path for issue in result.issues} == {"couplings[0].stream"}
        return
    with StreamTailer(source, pattern=result.spec.couplings[0].stream) as tailer:
        tailer.poll(rescan=True)
        found = tailer.files
    assert all(Path(os.path.realpath(path)).is_relative_to(source) for path in found), found


# --- shell metacharacters reach programs literally ------------------------------------------------------------

HOSTILE = ["; touch {pwned}", "$(touch {pwned})", "`touch {pwned}`", "a && touch {pwned}", "| touch {pwned}",
           "> {pwned}", "\ntouch {pwned}\n", "*", "$HOME", "~", "'\"\\", "-rf /", "--help", "{{task_id}}", "%s %n",
           "$${{HOME}}", "", " ", "é\U0001f600"]
"""Arguments a shell would act on, each formatted with the path of the file it would create (``{pwned}``)."""


def literal(value: str) -> str:
    """What a spec value stands for: ``$${`` is the spec's escape for a literal ``${`` (see :mod:`mummi_like.spec`)."""
    return value.replace("$${", "${")


def hostile_spec(name: str, values: list[str]) -> str:
    """A campaign that passes each of ``values`` to a program, an environment variable and a function.

    Each value becomes one parameter point of three scales: ``printf`` with the
    value alone and inside a longer argument, ``printenv`` of a variable set to
    it, and Python's ``str`` called with it.
    """
    return dump({
        "name": name,
        "backend": {"config": {"cores": 2}},
        "scales": [
            {"name": "argv", "plugin": "command",
             "config": {"argv": ["printf", "[%s]\\n", "{value}", "pre {value} post"], "parameters": {"value": values}}},
            {"name": "env", "plugin": "command",
             "config": {"argv": ["printenv", "HOSTILE"], "env": {"HOSTILE": "{value}"},
                        "parameters": {"value": values}}},
            {"name": "call", "plugin": "function",
             "config": {"function": "builtins:str", "parameters": {"object": values}}},
        ],
    })


def run(sandbox: Path, text: str, name: str) -> Path:
    """Run campaign ``text`` (a spec in the sandbox's project folder) to completion; its directory."""
    directory = sandbox / "runs" / name
    summary = Campaign.from_text(text, sandbox / "project" / "spec.yaml", directory).run()
    assert summary.complete, summary.failures
    return directory


def assert_arrived_literally(directory: Path, values: list[str]) -> None:
    """Each value reached ``printf`` as exactly one argument (twice), ``printenv`` and ``str`` unchanged."""
    with Store.open(directory, readonly=True) as store:
        records = {record.id: record for record in store.tasks()}
    width = len(str(len(values) - 1))
    for index, value in enumerate(map(literal, values)):
        task = f"{index:0{width}d}"
        argv_out = Path(records[f"argv.{task}"].stdout).read_bytes().decode()  # bytes: a "\r" stays a "\r"
        assert argv_out == f"[{value}]\n[pre {value} post]\n", (value, argv_out)
        assert Path(records[f"env.{task}"].stdout).read_bytes().decode() == f"{value}\n"
        assert records[f"call.{task}"].value == value


def assert_nothing_pwned(*folders: Path) -> None:
    found = [path for folder in folders for path in folder.rglob(f"*{PWNED}*")]
    assert not found, f"a shell ran: {found}"


def test_shell_metacharacters_reach_programs_as_single_literal_arguments(sandbox: Path) -> None:
    values = [value.format(pwned=sandbox / PWNED) for value in HOSTILE]
    text = hostile_spec("hostile", values)
    assert round_trips(text)
    directory = run(sandbox, text, "hostile")
    assert_arrived_literally(directory, values)
    assert_nothing_pwned(sandbox)


@fuzz("hostile_arguments")
@given(values=st.lists(st.text(st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=12)
                       .filter(lambda value: "${" not in value), min_size=1, max_size=6))
def test_any_text_reaches_programs_as_single_literal_arguments(sandbox: Path, values: list[str]) -> None:
    runs = sandbox / "runs"
    name = f"fuzzed-{len(list(runs.glob('fuzzed-*'))) if runs.exists() else 0}"
    text = hostile_spec(name, values)
    assume(round_trips(text))
    directory = run(sandbox, text, name)
    assert_arrived_literally(directory, values)
    assert_nothing_pwned(sandbox)


def test_a_nul_in_an_argument_is_refused_before_anything_runs(sandbox: Path) -> None:
    spec = {"name": "nul", "scales": [{"name": "a", "plugin": "command",
                                       "config": {"argv": ["printf", "{v}"], "parameters": {"v": ["a\x00b"]},
                                                  "env": {"X\x00": "1"}}}]}
    result = outcome(dump(spec), sandbox / "project" / "spec.yaml")
    assert isinstance(result, SpecError)
    assert [(issue.path, issue.message) for issue in result.issues] == [
        ("scales[0].config.parameters.v[0]", "holds a NUL character (\\0)"),
        ("scales[0].config.env['X\\x00']", "this key holds a NUL character (\\0)"),
    ]
    assert not (sandbox / "project" / "runs" / "nul").exists()


# --- a refused spec leaves no campaign directory, and never touches an existing one -----------------------------

TINY = {"name": "tiny", "backend": {"config": {"cores": 2}},
        "scales": [{"name": "a", "plugin": "command", "config": {"argv": ["true"], "parameters": {"i": [1, 2]}}},
                   {"name": "b", "plugin": "command", "depends_on": ["a"], "config": {"argv": ["true"]}}]}
"""A campaign that runs in a fraction of a second: the one that is already there, and the base of the mutations."""


def snapshot(directory: Path) -> dict[str, str]:
    """Every file below ``directory`` (the store included) by relative path, with a hash of its bytes."""
    return {str(path.relative_to(directory)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in sorted(directory.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def existing(sandbox: Path) -> tuple[Path, dict[str, str]]:
    """A finished campaign, and its :func:`snapshot`."""
    directory = run(sandbox, dump(TINY), "existing")
    return directory, snapshot(directory)


@fuzz("refused_over_existing")
@given(data=st.data(), value=structures)
def test_no_spec_touches_a_campaign_that_exists(existing: tuple[Path, dict[str, str]], sandbox: Path,
                                                data: st.DataObject, value: Any) -> None:
    """Valid or not, a spec aimed at an existing campaign is refused (resume continues one) and changes no byte."""
    directory, before = existing
    loc = data.draw(st.sampled_from([None, *sorted(locations(TINY), key=yaml_path)]), label="field")
    spec = TINY if loc is None else replaced(TINY, loc, value)
    text = dump(spec)
    assume(round_trips(text))
    with pytest.raises((SpecError, CampaignError)) as refused:
        Campaign.from_text(text, sandbox / "project" / "spec.yaml", directory)
    event(type(refused.value).__name__)
    if isinstance(refused.value, CampaignError):
        assert "already holds a campaign" in str(refused.value)
    assert snapshot(directory) == before


@pytest.mark.parametrize(("change", "reason"), [
    ({"budgets": {"max_tasks": 2}}, "the scales create 3 tasks but budgets.max_tasks is 2"),
    ({"scales": [TINY["scales"][0], {**TINY["scales"][1], "config": {"argv": ["true"], "parameters": {"i": [3]}}}]},
     "matches no task of upstream scale a"),
])
def test_a_spec_refused_when_its_tasks_are_made_leaves_no_directory(sandbox: Path, change: dict[str, Any],
                                                                      reason: str) -> None:
    directory = sandbox / "runs" / "refused-at-tasks"
    with pytest.raises(CampaignError, match=reason):
        Campaign.from_text(dump({**TINY, **change}), sandbox / "project" / "spec.yaml", directory)
    assert not directory.exists()


LIBRARY_FILES = [
    ("../outside.smi", "outside the spec's folder"),
    ("{root}/outside.smi", "outside the spec's folder"),
    ("escape/lib.smi", "outside the spec's folder"),
    ("loop/lib.smi", "leads into a loop of symlinks"),
    ("~/lib.smi", "cannot read the library"),
    ("notes.txt/lib.smi", "cannot read the library"),
]
"""``library_file`` values that leave the spec's folder or name nothing readable, and what the refusal says."""


@pytest.mark.parametrize(("library_file", "refusal"), LIBRARY_FILES)
def test_a_library_file_outside_the_spec_folder_is_refused_before_any_directory_exists(
    sandbox: Path, library_file: str, refusal: str
) -> None:
    pytest.importorskip("dockstring", reason="the docking scales are the `campaign` extra: pip install -e .[campaign]")
    (sandbox / "outside.smi").write_text("CCO ethanol\n")
    (sandbox / "outside" / "lib.smi").write_text("CCO ethanol\n")
    spec = {"name": "library", "scales": [{"name": "ml1", "plugin": "active-docking", "config": {
        "library_file": library_file.format(root=sandbox), "include_known_ligands": False,
        "initial": 1, "batch": 1, "budget": 2}}]}
    directory = sandbox / "runs" / "library"
    with pytest.raises(SpecError, match=refusal) as refused:
        Campaign.from_text(dump(spec), sandbox / "project" / "spec.yaml", directory)
    assert [issue.path for issue in refused.value.issues] == ["scales[0].config"]
    assert not directory.exists()


def test_huge_numbers_run_or_fail_their_task_clearly(sandbox: Path) -> None:
    """Integers no C type holds and infinite floats, where the spec allows them, never reach SQLite or a timer raw;
    resource counts, which the store keeps in integer columns, are bounded at validation."""
    huge = 10**30
    too_many = {"name": "greedy", "scales": [
        {"name": "a", "plugin": "command", "config": {"argv": ["true"], "resources": {"cores": huge}}}]}
    refused = outcome(dump(too_many), sandbox / "project" / "spec.yaml")
    assert isinstance(refused, SpecError)
    assert [(issue.path, issue.message) for issue in refused.issues] == [
        ("scales[0].config.resources.cores", f"Input should be less than or equal to {MAX_COUNT}")]
    spec = {"name": "huge", "backend": {"config": {"cores": 2}},
            "budgets": {"max_tasks": huge, "max_failures": huge, "max_hours": 1e300},
            "scales": [
                {"name": "first", "plugin": "command", "max_in_flight": huge,
                 "config": {"argv": ["true"], "priority": huge, "parameters": {"p": [huge, math.inf, math.nan]}}},
                {"name": "endless", "plugin": "command",
                 "config": {"argv": ["true"], "resources": {"walltime": math.inf}}},
            ]}
    greedy = {"name": "greedy", "plugin": "command", "config": {"argv": ["true"], "resources": {"cores": MAX_COUNT}}}
    refused = outcome(dump({**spec, "scales": [*spec["scales"], greedy]}), sandbox / "project" / "spec.yaml")
    assert isinstance(refused, SpecError)  # more than the backend's 2 cores: refused at validation, not at run time
    [issue] = refused.issues
    assert issue.path == "scales[2].config.resources"
    assert issue.message.startswith(f"asks for {MAX_COUNT} cores (at most 2 on 1 node(s)), more than the backend has")
    summary = Campaign.from_text(dump(spec), sandbox / "project" / "spec.yaml", sandbox / "runs" / "huge").run()
    assert summary.counts == {"first": {"done": 3}, "endless": {"done": 1}}


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux's /proc, where no folder can be made")
def test_a_directory_the_file_system_refuses_is_a_campaign_error_not_a_traceback(sandbox: Path) -> None:
    with pytest.raises(CampaignError, match=r"cannot create the campaign directory /proc/mummi-like-run: .*; choose "
                                            r"another with --dir"):
        Campaign.from_text(dump(TINY), sandbox / "project" / "spec.yaml", Path("/proc/mummi-like-run"))


HOSTILE_SPECS = {
    "nested": "name: x\nscales: " + "[" * 2000 + "]" * 2000 + "\n",
    "billion laughs": "name: x\na0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"a{level}: &a{level} [{', '.join([f'*a{level - 1}'] * 9)}]\n" for level in range(1, 10)
    ) + "scales: [{name: s, plugin: command, config: {argv: [x]}}]\n",
    "python tag": "name: !!python/object/apply:os.system ['touch PWNED']\nscales: []\n",
    "control character": "name: x\x07\nscales: []\n",
}
"""Specs that once crashed or hung the parser, or try to run code through YAML; each must get exit code 2."""


@pytest.mark.parametrize(("name", "command"), [("nested", "validate"), ("billion laughs", "run"),
                                               ("python tag", "run"), ("control character", "validate")])
def test_the_cli_refuses_a_hostile_spec_in_plain_lines_and_creates_nothing(sandbox: Path, name: str,
                                                                           command: str) -> None:
    folder = sandbox / "cli" / name.replace(" ", "-")
    folder.mkdir(parents=True)
    spec = folder / "campaign.yaml"
    spec.write_text(HOSTILE_SPECS[name], encoding="utf-8")
    result = subprocess.run([sys.executable, "-m", "mummi_like.cli", command, str(spec)],
                            capture_output=True, text=True, timeout=120, cwd=folder)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and result.stderr.startswith(f"invalid campaign spec {spec}")
    assert all(line.startswith(f"  {spec}:") for line in result.stderr.splitlines()[1:]), result.stderr
    assert sorted(path.name for path in folder.iterdir()) == ["campaign.yaml"], "no campaign directory, no PWNED"


def test_an_environment_name_no_process_can_take_is_refused_at_validation(sandbox: Path) -> None:
    """``A=B`` or an empty name would stop the coordinator when the task starts (``execve`` cannot take them)."""
    spec = {"name": "env", "scales": [{"name": "a", "plugin": "command",
                                       "config": {"argv": ["printenv"], "env": {"A=B": "x", "": "y", "OK_1": "z"}}}]}
    result = outcome(dump(spec), sandbox / "project" / "spec.yaml")
    assert isinstance(result, SpecError)
    assert [issue.path for issue in result.issues] == ["scales[0].config.env.A=B", "scales[0].config.env['']"]
    assert all("is not an environment variable name: use letters, digits and '_'" in issue.message
               for issue in result.issues)
