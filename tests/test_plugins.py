"""Plugin discovery through entry points.

The built-in scales are checked by their registered names only (their modules
may not be importable in every checkout); loading is exercised with the fake
installed distribution in ``tests/data/specs/site``, which ``importlib.metadata``
finds exactly as it finds a user's plugin package.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from mummi_like import plugins
from mummi_like.scale import Scale

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
