"""Plugin discovery through entry points.

The built-in scales are checked by their registered names only (their modules
may not be importable in every checkout); loading is exercised with the fake
installed distribution in ``tests/data/specs/site``, which ``importlib.metadata``
finds exactly as it finds a user's plugin package.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Literal

import pytest
from pydantic import Field

from mummi_like import cli, plugins
from mummi_like.scale import Scale
from mummi_like.tasks import Resources, StrictModel

SITE = Path(__file__).parent / "data" / "specs" / "site"


@pytest.fixture
def fixture_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the fake distribution for one test by putting it on sys.path."""
    monkeypatch.syspath_prepend(str(SITE))


def test_groups_name_every_kind() -> None:
    assert plugins.GROUPS == {
        "scale": "mummi_like.scales",
        "selector": "mummi_like.selectors",
        "backend": "mummi_like.backends",
        "pipeline": "mummi_like.pipelines",
    }


def test_installed_lists_the_registered_builtin_names_without_importing_them() -> None:
    scales = plugins.installed("scale")
    assert {"command", "function"} <= set(scales)
    assert scales["command"].value == "mummi_scales.generic.command:CommandScale"
    assert plugins.installed("backend")["local"].value == "mummi_like.backends.local:LocalBackend"
    assert list(scales) == sorted(scales)


def test_installed_rejects_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match=r"unknown plugin kind 'scales'; kinds are: scale, selector, backend, pipe"):
        plugins.installed("scales")


def test_unknown_plugin_names_kind_nearest_installed_and_how_to_add_one() -> None:
    with pytest.raises(plugins.UnknownPlugin) as caught:
        plugins.load("scale", "comand")
    error = caught.value
    message = str(error)
    assert message.startswith("unknown scale plugin 'comand'; did you mean 'command'?")
    assert "installed scales: " in message and "command" in message and "function" in message
    assert "group 'mummi_like.scales'" in message
    assert '[project.entry-points."mummi_like.scales"]' in message
    assert (error.kind, error.name, error.nearest) == ("scale", "comand", "command")
    assert {"command", "function"} <= set(error.installed)
    assert isinstance(error, LookupError)


def test_unknown_plugin_without_close_match_lists_installed_only() -> None:
    with pytest.raises(plugins.UnknownPlugin) as caught:
        plugins.load("scale", "zzzzzz")
    assert caught.value.nearest is None
    assert "did you mean" not in str(caught.value)
    assert "installed scales: " in str(caught.value)


def test_unknown_plugin_when_none_of_the_kind_is_installed() -> None:
    error = plugins.UnknownPlugin("selector", "lof", [])
    assert error.hint == "no selector plugins are installed."
    assert "group 'mummi_like.selectors'" in str(error)


def test_load_returns_the_registered_class(fixture_plugins: None) -> None:
    cls = plugins.load("scale", "tiny", Scale)
    assert cls.__name__ == "TinyScale" and issubclass(cls, Scale)
    assert plugins.load("selector", "tiny-selector").__name__ == "TinySelector"


def test_load_wraps_an_import_failure_with_plugin_name_and_entry_point(fixture_plugins: None) -> None:
    with pytest.raises(plugins.PluginLoadError) as caught:
        plugins.load("scale", "broken")
    assert str(caught.value) == (
        "scale plugin 'broken' (mummi_spec_fixtures_broken:BrokenScale) failed to load: "
        "ModuleNotFoundError: No module named 'mummi_spec_fixtures_missing_dependency'"
    )
    assert isinstance(caught.value.__cause__, ModuleNotFoundError)
    assert isinstance(caught.value, ImportError)


def test_load_refuses_something_that_is_not_a_class(fixture_plugins: None) -> None:
    with pytest.raises(plugins.PluginLoadError, match=r"'not-a-class' \(mummi_spec_fixtures:NOT_A_CLASS\) failed to "
                       r"load: it names 42 \(of type int\), not a class"):
        plugins.load("scale", "not-a-class")


def test_load_refuses_a_class_of_the_wrong_base(fixture_plugins: None) -> None:
    with pytest.raises(plugins.PluginLoadError, match=r"NotAScale is not a subclass of mummi_like\.scale\.Scale"):
        plugins.load("scale", "not-a-scale", Scale)


def test_describe_lists_docstrings_and_broken_plugins_without_crashing(fixture_plugins: None) -> None:
    rows = {row.name: row for row in plugins.describe("scale")}
    assert rows["tiny"] == ("tiny", "mummi_spec_fixtures:TinyScale", "A scale that makes no tasks.")
    assert rows["broken"].summary == (
        "failed to load: ModuleNotFoundError: No module named 'mummi_spec_fixtures_missing_dependency'"
    )
    assert rows["not-a-class"].summary == "failed to load: it names 42 (of type int), not a class"
    assert {"command", "function"} <= set(rows)
    name, value, summary = rows["tiny"]  # a plain 3-tuple for the CLI
    assert (name, value, summary) == ("tiny", "mummi_spec_fixtures:TinyScale", "A scale that makes no tasks.")


def test_fixture_plugins_are_gone_after_the_test_that_installed_them() -> None:
    assert "tiny" not in plugins.installed("scale")


# -- a plugin's description and config keys: `mummi-like plugins NAME` and the guide's generated page -------------


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Site(StrictModel):
    """A nested model reached through a list and a mapping."""

    name: str = Field(description="The site's name.")
    weight: float = Field(1.0, gt=0, le=10, description="How much it counts.")


class Tree(StrictModel):
    """A model that holds itself, which must not expand for ever."""

    child: Tree | None = Field(None, description="Another tree.")


class KitchenSinkConfig(StrictModel):
    """Every kind of field a plugin's config may declare."""

    resources: Resources = Field(default_factory=lambda: Resources(cores=2), description="What each task reserves.")
    sites: list[Site] = Field(default_factory=list, description="The sites, in order.")
    weights: dict[str, Site] = Field(default_factory=dict, description="Sites by key.")
    mode: Literal["fast", "exact"] = Field("fast", description="How.")
    colour: Colour = Field(Colour.RED, description="An enum.")
    out: Path = Field(Path("out"), description="A path.")
    cutoff: float | None = Field(None, gt=0, description="Optional and bounded.")
    tags: Annotated[list[str], Field(min_length=1)] = Field(description="Required and non-empty.")
    tree: Tree = Field(default_factory=Tree, description="Self-referencing.")


def test_config_keys_give_type_default_and_description_with_nested_models_expanded() -> None:
    rows = {row.key: row for row in plugins.config_keys(KitchenSinkConfig)}
    assert rows["resources"] == plugins.ConfigKeyDoc("resources", "Resources", "see below", "What each task reserves.",
                                                     0)
    # The nested defaults are those of the instance the field defaults to (2 cores), not of Resources (1).
    assert rows["resources.cores"] == plugins.ConfigKeyDoc(
        "resources.cores", "int >= 1, <= 2147483647", "2", "CPU cores reserved in total, over all ranks.", 1)
    assert rows["resources.walltime"].type == "(float | null) > 0"
    assert rows["sites"].type == "list[Site]" and rows["sites"].default == "see below"
    assert (rows["sites[].name"].default, rows["sites[].name"].depth) == ("required", 1)
    assert rows["sites[].weight"].type == "float > 0, <= 10" and rows["sites[].weight"].default == "1.0"
    assert rows["weights.<key>.weight"].description == "How much it counts."
    assert (rows["mode"].type, rows["mode"].default) == ("'fast' | 'exact'", '"fast"')
    assert (rows["colour"].type, rows["colour"].default) == ("'red' | 'blue'", '"red"')
    assert (rows["out"].type, rows["out"].default) == ("path", '"out"')
    assert (rows["cutoff"].type, rows["cutoff"].default) == ("(float | null) > 0", "null")
    assert (rows["tags"].type, rows["tags"].default) == ("list[str] length >= 1", "required")
    assert [key for key in rows if key.startswith("tree")] == ["tree", "tree.child"]
    assert list(rows)[:3] == ["resources", "resources.nodes", "resources.ranks"]  # parent first, then its keys


def test_document_reads_the_plugin_class_and_its_config_model(fixture_plugins: None) -> None:
    doc = plugins.document("scale", "tiny")
    assert (doc.kind, doc.name, doc.value) == ("scale", "tiny", "mummi_spec_fixtures:TinyScale")
    assert (doc.summary, doc.config_model, doc.config_description) == (
        "A scale that makes no tasks.", "TinyConfig", "Config of :class:`TinyScale`.")
    assert [row.key for row in doc.keys] == [
        "argv", "cores", "resources", "resources.nodes", "resources.ranks", "resources.cores", "resources.gpus",
        "resources.walltime",
    ]
    assert doc.keys[0] == plugins.ConfigKeyDoc("argv", "list[str]", "required", "Program and arguments.", 0)
    without = plugins.document("scale", "no-config")
    assert (without.config_model, without.keys) == ("", ())


def test_every_installed_plugin_documents_every_config_key() -> None:
    """What `mummi-like plugins NAME` and the guide show: every key of every built-in plugin has a description."""
    for kind in plugins.GROUPS:
        for name in plugins.installed(kind):
            doc = plugins.document(kind, name)
            assert doc.summary, f"{kind} {name!r} has no docstring"
            assert doc.config_model, f"{kind} {name!r} has no config_model"
            undocumented = [row.key for row in doc.keys if not row.description]
            assert not undocumented, f"{kind} {name!r}: config keys without a description: {undocumented}"


def test_find_looks_in_every_kind_and_suggests_the_nearest_name_of_any_kind() -> None:
    [doc] = plugins.find("novelty")
    assert (doc.kind, doc.config_model) == ("selector", "NoveltyConfig")
    assert [row.key for row in doc.keys] == ["pool_size", "min_samples", "latent_dim"]
    with pytest.raises(plugins.UnknownPlugin) as caught:
        plugins.find("novelt")
    error = caught.value
    assert (error.kind, error.nearest) == (None, "novelty")
    assert {"novelty", "chain-md", "local", "dag"} <= set(error.installed)
    assert str(error).startswith("no installed plugin is named 'novelt'; did you mean 'novelty'? installed plugins: ")
    assert str(error).endswith("`mummi-like plugins` lists them by kind")


def test_cli_plugins_name_prints_description_and_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plugins", "chain-md"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("chain-md: scale plugin mummi_scales.generic.chain_md:ChainMDScale "
                          "(group 'mummi_like.scales')\n")
    assert "  Langevin dynamics of a folding bead-spring chain" in out
    assert "config keys (ChainMDConfig):" in out
    assert "\n  beads: int >= 3; default 24\n      Beads of the chain (residues of the toy protein).\n" in out
    assert "\n  platform: 'CPU' | 'Reference'; default \"CPU\"\n" in out
    assert "\n  resources: Resources; keys below\n" in out
    assert "\n    resources.cores: int >= 1, <= 2147483647; default 1\n" in out
    for row in plugins.document("scale", "chain-md").keys:
        assert f" {row.key}: " in out


def test_cli_plugins_name_of_a_plugin_without_config_and_a_broken_one(
        fixture_plugins: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plugins", "no-config"]) == 0
    assert "config: 'no-config' declares no config_model, so no spec can configure it" in capsys.readouterr().out
    assert cli.main(["plugins", "broken"]) == 2
    assert capsys.readouterr().err == (
        "mummi-like plugins: scale plugin 'broken' (mummi_spec_fixtures_broken:BrokenScale) failed to load: "
        "ModuleNotFoundError: No module named 'mummi_spec_fixtures_missing_dependency'\n"
    )


def test_cli_plugins_unknown_name_exits_2_with_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["plugins", "chain_md"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("mummi-like plugins: no installed plugin is named 'chain_md'; did you mean "
                                   "'chain-md'?")
    assert "Traceback" not in captured.err
