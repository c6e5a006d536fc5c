"""The campaign spec: parsing, validation with located errors and hints, expansion, paths.

Plugins come from the fake installed distribution in ``tests/data/specs/site``
(``tiny`` scale, ``tiny-backend``, ``tiny-policy``, ``bare-policy``,
``tiny-selector`` and a few broken ones), found through real entry points; the
built-in ``command`` and ``function`` scales appear in listings by name.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pydantic import BaseModel, ValidationError

from mummi_like.spec import (
    _NUL_HINT,
    MAX_DEPTH,
    MAX_NAME_LENGTH,
    MAX_TEXT,
    MAX_VALUES,
    BackendSpec,
    Budgets,
    CampaignSpec,
    CouplingSpec,
    PolicySpec,
    ScaleSpec,
    SpecError,
    SpecIssue,
    StoreSpec,
    inside,
    load_spec,
    load_spec_text,
)

DATA = Path(__file__).parent / "data" / "specs"
SITE = DATA / "site"

HEAD = """\
name: demo
backend: {plugin: tiny-backend}
policy: {plugin: tiny-policy}
"""
ONE_SCALE = HEAD + "scales:\n  - {name: a, plugin: tiny, config: {argv: [x]}}\n"


@pytest.fixture(autouse=True)
def fixture_plugins(monkeypatch: pytest.MonkeyPatch) -> None:
    """Install the fake plugin distribution for every test here."""
    monkeypatch.syspath_prepend(str(SITE))


def problems(text: str, source: Path = Path("spec.yaml")) -> list[tuple[str, int | None, str, str | None]]:
    """``(path, line, message, hint)`` of every issue the spec text has."""
    with pytest.raises(SpecError) as caught:
        load_spec_text(text, source)
    return [(i.path, i.line, i.message, i.hint) for i in caught.value.issues]


def one_problem(text: str, source: Path = Path("spec.yaml")) -> tuple[str, int | None, str, str | None]:
    """The only issue of the spec text."""
    found = problems(text, source)
    assert len(found) == 1, found
    return found[0]


# --- a valid spec ---------------------------------------------------------------------------------------------


def test_valid_spec_resolves_plugins_configs_and_paths() -> None:
    campaign = load_spec(DATA / "valid.yaml")
    assert campaign.source == (DATA / "valid.yaml").absolute()
    assert campaign.spec_dir == DATA.resolve()
    assert campaign.directory == DATA.resolve() / "out" / "screen"
    assert campaign.spec.directory == campaign.directory
    assert campaign.backend.__name__ == "TinyBackend"
    assert campaign.backend_config.workers == 3
    assert [(s.spec.name, s.plugin.__name__) for s in campaign.scales] == [("dock", "TinyScale"), ("md", "TinyScale")]
    assert campaign.scales[0].config.argv == ["vina", "--config", "dock.conf"]
    assert campaign.scales[0].config.cores == 2
    assert campaign.scales[1].config.resources.ranks == 2
    assert campaign.scales[1].spec.depends_on == ["dock"]
    assert campaign.scales[1].spec.max_in_flight == 4
    assert campaign.spec.couplings == [
        CouplingSpec(source="dock", target="md", selector="tiny-selector", config={"pool_size": 3},
                     feature="contact_map")
    ]
    (coupling,) = campaign.couplings
    assert (coupling.selector.__name__, coupling.config.pool_size, coupling.spec.label) == (
        "TinySelector", 3, "dock-to-md")
    assert campaign.policy.__name__ == "TinyPolicy" and campaign.policy_config.ratio == 0.5
    assert campaign.spec.budgets == Budgets(max_tasks=100, max_failures=0, max_hours=1.5)


def test_policy_without_config_model_resolves_to_no_config() -> None:
    campaign = load_spec_text(ONE_SCALE.replace("tiny-policy", "bare-policy"), Path("/tmp/x/spec.yaml"))
    assert campaign.policy.__name__ == "BarePolicy" and campaign.policy_config is None


def test_defaults_of_the_models() -> None:
    spec = CampaignSpec.model_validate({"name": "c", "scales": [{"name": "a", "plugin": "command"}]})
    assert spec.backend == BackendSpec(plugin="local", config={})
    assert spec.policy == PolicySpec(plugin="dag", config={})
    assert spec.budgets == Budgets(max_tasks=None, max_failures=None, max_hours=None)
    assert spec.store == StoreSpec(synchronous="full")
    assert (spec.directory, spec.couplings, spec.python_path, spec.allow_outside_paths) == (None, [], [], False)
    assert spec.scales[0] == ScaleSpec(name="a", plugin="command", config={}, depends_on=[], max_in_flight=None)


@pytest.mark.parametrize("model", [BackendSpec, ScaleSpec, CouplingSpec, PolicySpec, Budgets, StoreSpec, CampaignSpec])
def test_every_field_is_described_and_unknown_keys_are_refused(model: type[BaseModel]) -> None:
    assert all(field.description for field in model.model_fields.values())
    assert model.model_config["extra"] == "forbid"


def test_a_store_synchronous_setting_other_than_normal_or_full_is_refused_naming_both() -> None:
    path, line, message, hint = one_problem(ONE_SCALE + "store: {synchronous: extra}\n")
    assert (path, line) == ("store.synchronous", 6)
    assert "'normal' or 'full'" in message + (hint or "")


def test_model_validation_alone_checks_references() -> None:
    with pytest.raises(ValidationError, match=r"scales\[0\]\.depends_on\[0\]: unknown scale 'b'"):
        CampaignSpec.model_validate({"name": "c", "scales": [{"name": "a", "plugin": "p", "depends_on": ["b"]}]})


# --- YAML ---------------------------------------------------------------------------------------------------


def test_yaml_syntax_error_has_line_column_and_indentation_hint() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(DATA / "bad_syntax.yaml")
    [issue] = caught.value.issues
    assert (issue.path, issue.line) == ("<root>", 5)
    assert issue.message == "invalid YAML: mapping values are not allowed here at column 12"
    assert issue.hint.startswith("check the indentation of this line and the lines above it, and quote values")
    assert str(issue).startswith(f"{DATA / 'bad_syntax.yaml'}:5: <root>: invalid YAML: mapping values")


def test_top_level_list_is_refused() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(DATA / "toplevel_list.yaml")
    assert [(i.path, i.line, i.message) for i in caught.value.issues] == [
        ("<root>", 1, "the top level must be a mapping of keys (name:, scales:, ...), not a list")
    ]
    assert "no leading `- `" in caught.value.issues[0].hint


def test_empty_spec() -> None:
    assert one_problem("# nothing\n") == (
        "<root>", 1, "the spec is empty", "start with `name: my-campaign` and a `scales:` list"
    )


def test_tab_indentation_gets_its_own_hint() -> None:
    path, line, message, hint = one_problem("name: x\nscales:\n\t- a\n")
    assert (path, line) == ("<root>", 3)
    assert "found character '\\t' that cannot start any token" in message
    assert hint == "YAML indents with spaces only; replace the tab with spaces"


def test_python_tags_are_not_constructed() -> None:
    path, line, message, hint = one_problem("name: !!python/object/apply:os.system [echo hi]\nscales: []\n")
    assert (path, line) == ("<root>", 1) and "could not determine a constructor for the tag" in message
    assert hint == "only plain YAML is allowed; remove the `!tag` (there are no !!python tags)"


def test_more_than_one_document_is_refused() -> None:
    path, line, message, hint = one_problem(ONE_SCALE + "---\nname: other\n")
    assert (path, line) == ("<root>", 6) and "expected a single document" in message
    assert hint == "a spec is one YAML document; remove the extra `---`"


def test_duplicate_keys_are_reported_instead_of_silently_overwritten() -> None:
    text = ONE_SCALE.replace("  - {name: a, plugin: tiny, config: {argv: [x]}}", "  - name: a\n    plugin: tiny\n"
                             "    config: {argv: [x]}\n    plugin: tiny")
    assert one_problem(text) == (
        "scales[0].plugin", 8, "duplicate key 'plugin' (first at line 6)",
        "YAML keeps only the last one; remove or merge the other",
    )


def test_recursive_alias_is_refused() -> None:
    assert one_problem(ONE_SCALE + "couplings: &loop [*loop]\n") == (
        "couplings[0]", 6, "this alias refers to a node that contains it",
        "an anchor cannot be used inside itself; write the values out instead",
    )


def test_unreadable_file() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(DATA / "does-not-exist.yaml")
    [issue] = caught.value.issues
    assert (issue.path, issue.line, issue.hint) == ("<root>", None, "check the path")
    assert issue.message.startswith("cannot read the spec: [Errno 2] No such file or directory")
    assert str(issue).startswith(f"{DATA / 'does-not-exist.yaml'}: <root>: cannot read the spec")


# --- structure errors and hints -------------------------------------------------------------------------------


def test_issue_and_error_formatting() -> None:
    issue = SpecIssue("scales[1].config.cores", 12, "Input should be a valid integer", "expected an integer, e.g. 4",
                      Path("spec.yaml"))
    assert str(issue) == "spec.yaml:12: scales[1].config.cores: Input should be a valid integer " \
                         "(hint: expected an integer, e.g. 4)"
    assert str(SpecIssue("<root>", None, "empty", None, Path("s.yaml"))) == "s.yaml: <root>: empty"
    error = SpecError(Path("spec.yaml"), [issue, issue])
    assert str(error).splitlines() == ["invalid campaign spec spec.yaml (2 problems):", f"  {issue}", f"  {issue}"]


def test_wrong_types_say_what_was_expected_in_plain_words() -> None:
    text = HEAD + """\
scales:
  - name: a
    plugin: tiny
    max_in_flight: many
    depends_on: b
    config:
      argv: [x]
      cores: four
      resources: 3
couplings: {}
"""
    assert problems(text) == [
        ("scales[0].max_in_flight", 7, "Input should be a valid integer, unable to parse string as an integer",
         "expected an integer, e.g. 4"),
        ("scales[0].depends_on", 8, "Input should be a valid list",
         "expected a list: `[a, b]`, or one `- item` per line"),
        ("scales[0].config.cores", 11, "Input should be a valid integer, unable to parse string as an integer",
         "expected an integer, e.g. 4"),
        ("scales[0].config.resources", 12, "Input should be a valid dictionary or instance of Resources",
         "expected a mapping: `key: value` lines indented under this key, or `{key: value}`"),
        ("couplings", 13, "Input should be a valid list", "expected a list: `[a, b]`, or one `- item` per line"),
    ]


def test_unknown_keys_suggest_the_nearest_key_at_that_level() -> None:
    text = """\
name: demo
scale:
  - {name: a}
backend: {plugin: tiny-backend, config: {worker: 2}}
policy: {plugin: tiny-policy}
scales:
  - name: a
    plugin: tiny
    dependson: []
    config:
      argv: [x]
      cors: 4
      resources: {gpu: 1, zzz: 0}
"""
    assert problems(text) == [
        ("scale", 2, "Extra inputs are not permitted", "unknown key 'scale'; did you mean 'scales'?"),
        ("backend.config.worker", 4, "Extra inputs are not permitted", "unknown key 'worker'; did you mean 'workers'?"),
        ("scales[0].dependson", 9, "Extra inputs are not permitted",
         "unknown key 'dependson'; did you mean 'depends_on'?"),
        ("scales[0].config.cors", 12, "Extra inputs are not permitted", "unknown key 'cors'; did you mean 'cores'?"),
        ("scales[0].config.resources.gpu", 13, "Extra inputs are not permitted",
         "unknown key 'gpu'; did you mean 'gpus'?"),
        ("scales[0].config.resources.zzz", 13, "Extra inputs are not permitted",
         "unknown key 'zzz'; valid keys: cores, gpus, nodes, ranks, walltime"),
    ]


def test_missing_keys_say_which_key_to_add_at_the_parents_line() -> None:
    text = "backend: {plugin: tiny-backend}\npolicy: {plugin: tiny-policy}\nscales:\n  - plugin: tiny\n    config: {}\n"
    assert problems(text) == [
        ("name", 1, "Field required", "required key; add `name: ...`"),
        ("scales[0].name", 4, "Field required", "required key; add `name: ...`"),
        ("scales[0].config.argv", 5, "Field required", "required key; add `argv: ...`"),
    ]


def test_names_are_identifier_like() -> None:
    found = problems("name: my campaign\n" + ONE_SCALE.split("\n", 1)[1].replace("name: a", "name: -a"))
    assert found == [
        ("name", 1, "'my campaign' is not a valid name: use letters, digits, '_' and '-', starting with a letter or "
         "'_'", None),
        ("scales[0].name", 5, "'-a' is not a valid name: use letters, digits, '_' and '-', starting with a letter or "
         "'_'", None),
    ]


def test_bounds_are_checked() -> None:
    found = problems(ONE_SCALE + "budgets: {max_tasks: 0, max_failures: -1, max_hours: 0}\n")
    assert [(p, m) for p, _, m, _ in found] == [
        ("budgets.max_tasks", "Input should be greater than or equal to 1"),
        ("budgets.max_failures", "Input should be greater than or equal to 0"),
        ("budgets.max_hours", "Input should be greater than 0"),
    ]
    assert problems(HEAD + "scales: []\n") == [
        ("scales", 4, "List should have at least 1 item after validation, not 0", None)
    ]


def test_every_error_is_reported_at_once() -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(DATA / "many_errors.yaml")
    issues = caught.value.issues
    assert [(i.path, i.line) for i in issues] == [
        ("backend.config.workers", 6),
        ("scales[0].config.cors", 12),
        ("scales[1].plugin", 14),
        ("scales[1].depends_on[0]", 15),
        ("budgets.max_failures", 18),
    ]
    text = str(caught.value)
    assert text.startswith(f"invalid campaign spec {DATA / 'many_errors.yaml'} (")
    assert len(text.splitlines()) == len(issues) + 1
    assert "unknown key 'cors'; did you mean 'cores'?" in text
    assert "unknown scale plugin 'tinny'" in text and "did you mean 'tiny'?" in text
    assert "unknown scale 'dok'" in text and "did you mean 'dock'?" in text


# --- plugins --------------------------------------------------------------------------------------------------


def test_unknown_scale_plugin_lists_installed_scales_and_nearest() -> None:
    path, line, message, hint = one_problem(ONE_SCALE.replace("plugin: tiny,", "plugin: comand,"))
    assert (path, line, message) == ("scales[0].plugin", 5, "unknown scale plugin 'comand'")
    assert hint.startswith("did you mean 'command'? installed scales: ")
    assert "command, " in hint and "function, " in hint
    assert hint.endswith("A plugin is a package registering an entry point in group 'mummi_like.scales'")


def test_unknown_backend_and_policy_plugins() -> None:
    text = ONE_SCALE.replace("tiny-backend", "flx").replace("tiny-policy", "tiny-polcy")
    found = problems(text)
    assert [(p, l, m) for p, l, m, _ in found] == [
        ("backend.plugin", 2, "unknown backend plugin 'flx'"),
        ("policy.plugin", 3, "unknown pipeline plugin 'tiny-polcy'"),
    ]
    assert "installed backends: " in found[0][3] and "local" in found[0][3]
    assert found[1][3].startswith("did you mean 'tiny-policy'?")


def test_plugin_that_fails_to_import_is_reported_with_its_entry_point() -> None:
    path, line, message, hint = one_problem(ONE_SCALE.replace("plugin: tiny,", "plugin: broken,"))
    assert (path, line) == ("scales[0].plugin", 5)
    assert message == ("scale plugin 'broken' (mummi_spec_fixtures_broken:BrokenScale) failed to load: "
                       "ModuleNotFoundError: No module named 'mummi_spec_fixtures_missing_dependency'")
    assert hint.startswith("fix or reinstall the package that provides it")


def test_plugin_of_the_wrong_class_or_without_config_model() -> None:
    text = HEAD + """\
scales:
  - {name: a, plugin: not-a-scale}
  - {name: b, plugin: no-config}
"""
    found = problems(text)
    assert [(p, l) for p, l, _, _ in found] == [("scales[0].plugin", 5), ("scales[1].plugin", 6)]
    assert "NotAScale is not a subclass of mummi_like.scale.Scale" in found[0][2]
    assert found[1][2] == "plugin class mummi_spec_fixtures.NoConfigScale has no `config_model`"


def test_policy_config_is_validated_and_a_policy_without_model_takes_none() -> None:
    assert one_problem(ONE_SCALE.replace("{plugin: tiny-policy}", "{plugin: tiny-policy, config: {ratio: 0}}")) == (
        "policy.config.ratio", 3, "Input should be greater than 0", None
    )
    assert one_problem(ONE_SCALE.replace("{plugin: tiny-policy}", "{plugin: bare-policy, config: {ratio: 1}}")) == (
        "policy.config", 3, "BarePolicy takes no config", "remove this block"
    )


# --- references -----------------------------------------------------------------------------------------------


def test_depends_on_an_unknown_scale() -> None:
    text = HEAD + "scales:\n  - {name: dock, plugin: tiny, config: {argv: [x]}}\n" \
                  "  - {name: md, plugin: tiny, depends_on: [dock, dok, zzz], config: {argv: [x]}}\n"
    assert problems(text) == [
        ("scales[1].depends_on[1]", 6, "unknown scale 'dok'", "did you mean 'dock'? scales in this spec: dock, md"),
        ("scales[1].depends_on[2]", 6, "unknown scale 'zzz'", "scales in this spec: dock, md"),
    ]


def test_dependency_cycles_are_reported_with_their_members() -> None:
    text = HEAD + """\
scales:
  - {name: a, plugin: tiny, depends_on: [c], config: {argv: [x]}}
  - {name: b, plugin: tiny, depends_on: [a], config: {argv: [x]}}
  - {name: c, plugin: tiny, depends_on: [b], config: {argv: [x]}}
  - {name: d, plugin: tiny, depends_on: [d], config: {argv: [x]}}
"""
    found = problems(text)
    assert [(p, l, m) for p, l, m, _ in found] == [
        ("scales[0].depends_on", 5, "dependency cycle: a -> c -> b -> a"),
        ("scales[3].depends_on", 8, "dependency cycle: d -> d"),
    ]
    assert found[0][3].startswith("a scale cannot depend, directly or through others, on itself")


def test_duplicate_scale_names() -> None:
    text = ONE_SCALE + "  - {name: a, plugin: tiny, config: {argv: [y]}}\n"
    assert one_problem(text) == (
        "scales[1].name", 6, "duplicate scale name 'a' (also scales[0].name)", "scale names must be unique; rename one"
    )


def test_a_scale_with_other_errors_still_counts_as_existing_for_references() -> None:
    text = HEAD + "scales:\n  - {name: a, plugin: tiny, max_in_flight: 0, config: {argv: [x]}}\n" \
                  "  - {name: b, plugin: tiny, depends_on: [a], config: {argv: [x]}}\n"
    assert [p for p, *_ in problems(text)] == ["scales[0].max_in_flight"]


def test_couplings_name_existing_scales_and_an_installed_selector() -> None:
    text = ONE_SCALE + "couplings:\n  - {source: a, target: b, selector: tiny-selectr, feature: map}\n"
    found = problems(text)
    assert [(p, l, m) for p, l, m, _ in found] == [
        ("couplings[0].target", 7, "unknown scale 'b'"),
        ("couplings[0].selector", 7, "unknown selector plugin 'tiny-selectr'"),
    ]
    assert found[1][3].startswith("did you mean 'tiny-selector'? installed selectors: ")
    assert "tiny-selector" in found[1][3]


def test_coupling_selector_config_is_validated_by_the_selector() -> None:
    text = ONE_SCALE + "couplings:\n  - {source: a, target: a, selector: tiny-selector, feature: m, config: {pool: 3}}\n"
    assert problems(text)[0][:3] == ("couplings[0].config.pool", 7, "Extra inputs are not permitted")


def test_a_selector_config_is_validated_even_when_another_key_of_its_coupling_is_invalid() -> None:
    """One run reports the coupling's own mistakes and its selector's, instead of one fix-and-rerun pass each."""
    text = ONE_SCALE + (
        "couplings:\n"
        "  - {source: a, target: a, selector: tiny-selector, feature: m, max_in_flight: 0, config: {pool: 3}}\n"
        "  - {source: a, target: a, selector: tiny-selector, config: {pool_size: 0}}\n"
    )
    assert [(path, line) for path, line, *_ in problems(text)] == [
        ("couplings[0].max_in_flight", 7),
        ("couplings[0].config.pool", 7),
        ("couplings[1].feature", 8),
        ("couplings[1].config.pool_size", 8),
    ]


# --- resource requests against the backend ----------------------------------------------------------------------


def test_resource_requests_over_the_declared_backend_capacity_fail_validation() -> None:
    """Refused at validation, at the request's path, as the backend would refuse each of these tasks at run time."""
    text = (
        "name: demo\nbackend: {plugin: local, config: {cores: 2, gpus: []}}\npolicy: {plugin: tiny-policy}\nscales:\n"
        "  - {name: a, plugin: tiny, config: {argv: [x], resources: {cores: 4}}}\n"
        "  - {name: b, plugin: tiny, config: {argv: [x], resources: {cores: 2}}}\n"
        "  - {name: c, plugin: tiny, config: {argv: [x], resources: {gpus: 1}}}\n"
    )
    found = problems(text)
    assert [(path, line) for path, line, *_ in found] == [("scales[0].config.resources", 5),
                                                          ("scales[2].config.resources", 7)]
    _, _, message, hint = found[0]
    assert message == ("asks for 4 cores (at most 2 on 1 node(s)), more than the backend has (1 node of 2 cores and "
                       "0 GPUs): these tasks could never start")
    assert hint is not None and hint.startswith("lower the request, or") and "`backend: {config: ...}`" in hint
    assert found[1][2].startswith("asks for 1 GPUs (at most 0 on 1 node(s)), more than the backend has")


def test_without_declared_cores_the_local_backend_has_the_cores_of_this_machine() -> None:
    cores = len(os.sched_getaffinity(0))
    text = (
        "name: demo\nbackend: {config: {gpus: []}}\nscales:\n"
        f"  - {{name: a, plugin: tiny, config: {{argv: [x], resources: {{cores: {cores + 1}}}}}}}\n"
    )
    path, _, message, _ = one_problem(text)
    assert path == "scales[0].config.resources"
    assert f"more than the backend has (1 node of {cores} cores and 0 GPUs)" in message
    assert load_spec_text(text.replace(f"cores: {cores + 1}", f"cores: {cores}"), Path("spec.yaml"))


def test_a_backend_that_knows_its_capacity_only_once_started_checks_nothing_at_validation() -> None:
    text = HEAD + "scales:\n  - {name: a, plugin: tiny, config: {argv: [x], resources: {cores: 100000, gpus: 64}}}\n"
    assert load_spec_text(text, Path("spec.yaml")).scales[0].config.resources.cores == 100_000


def test_a_selector_training_over_the_backend_capacity_fails_validation() -> None:
    pytest.importorskip("torch", reason="the CVAE selector needs torch")
    text = (
        "name: demo\nbackend: {config: {cores: 2, gpus: []}}\nscales:\n  - {name: a, plugin: tiny, config: {argv: [x]}}\n"
        "couplings:\n  - {source: a, target: a, selector: cvae-outliers, feature: m, config: {train_cores: 8}}\n"
    )
    path, line, message, _ = one_problem(text)
    assert (path, line) == ("couplings[0].config.train_cores", 6)
    assert message.startswith("asks for 8 cores (at most 2 on 1 node(s)), more than the backend has")


# --- expansion ------------------------------------------------------------------------------------------------


def expanded_argv(monkeypatch: pytest.MonkeyPatch, argv: str, **env: str) -> list[str]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    campaign = load_spec_text(ONE_SCALE.replace("argv: [x]", f"argv: {argv}"), Path("/tmp/x/spec.yaml"))
    return campaign.scales[0].config.argv


def test_env_expansion_of_a_set_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert expanded_argv(monkeypatch, "['${env:MUMMI_T_A}', 'x${env:MUMMI_T_A}y']", MUMMI_T_A="v") == ["v", "xvy"]


def test_env_expansion_default_when_unset_or_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUMMI_T_UNSET", raising=False)
    argv = "['${env:MUMMI_T_UNSET:-fallback}', '${env:MUMMI_T_EMPTY:-d}', '${env:MUMMI_T_SET:-d}', " \
           "'${env:MUMMI_T_UNSET:-}']"
    assert expanded_argv(monkeypatch, argv, MUMMI_T_EMPTY="", MUMMI_T_SET="s") == ["fallback", "d", "s", ""]


def test_env_missing_variable_names_it_and_its_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MUMMI_T_MISSING", raising=False)
    text = ONE_SCALE.replace("argv: [x]", "argv: [x, '${env:MUMMI_T_MISSING}'], cores: '${env:MUMMI_T_MISSING}'")
    assert problems(text) == [
        ("scales[0].config.argv[1]", 5, "environment variable 'MUMMI_T_MISSING' is not set",
         "set it or write ${env:MUMMI_T_MISSING:-default}"),
        ("scales[0].config.cores", 5, "environment variable 'MUMMI_T_MISSING' is not set",
         "set it or write ${env:MUMMI_T_MISSING:-default}"),
    ]  # and no second error for `cores` not being an integer


def test_env_value_is_converted_like_any_yaml_string(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUMMI_T_CORES", "6")
    campaign = load_spec_text(ONE_SCALE.replace("argv: [x]", "argv: [x], cores: '${env:MUMMI_T_CORES}'"),
                              Path("/tmp/x/spec.yaml"))
    assert campaign.scales[0].config.cores == 6


def test_escape_and_literal_dollars(monkeypatch: pytest.MonkeyPatch) -> None:
    argv = "['$${env:MUMMI_T_A}', '$HOME', 'cost: $$5', '$', '${env:MUMMI_T_INJECT}']"
    assert expanded_argv(monkeypatch, argv, MUMMI_T_A="v", MUMMI_T_INJECT="${env:MUMMI_T_A}") == [
        "${env:MUMMI_T_A}", "$HOME", "cost: $$5", "$", "${env:MUMMI_T_A}",  # expanded text is not expanded again
    ]


def test_other_brace_expansions_are_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    text = ONE_SCALE.replace("argv: [x]", "argv: ['${HOME}', '${env:A-b}']")
    found = problems(text)
    assert [(p, m) for p, _, m, _ in found] == [
        ("scales[0].config.argv[0]", "unsupported expansion '${HOME}'"),
        ("scales[0].config.argv[1]", "unsupported expansion '${env:A-b}'"),
    ]
    assert found[0][3].startswith("did you mean ${env:HOME}? write ${env:NAME} or ${env:NAME:-default}")
    assert found[0][3].endswith("or $${ for a literal ${")


def test_keys_are_not_expanded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MUMMI_T_KEY", "cores")
    path, _, message, _ = one_problem(ONE_SCALE.replace("argv: [x]", "argv: [x], '${env:MUMMI_T_KEY}': 2"))
    assert (path, message) == ("scales[0].config.${env:MUMMI_T_KEY}", "Extra inputs are not permitted")


# --- paths ----------------------------------------------------------------------------------------------------


def test_directory_defaults_to_runs_name_next_to_the_spec(tmp_path: Path) -> None:
    campaign = load_spec_text(ONE_SCALE, tmp_path / "spec.yaml")
    assert campaign.directory == tmp_path.resolve() / "runs" / "demo"


def test_relative_directory_resolves_against_the_spec_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "project").mkdir()
    campaign = load_spec_text(ONE_SCALE + "directory: ../elsewhere/run1\n", Path("project/spec.yaml"))
    assert campaign.directory == tmp_path.resolve() / "elsewhere" / "run1"  # the campaign root may be anywhere
    assert campaign.spec_dir == tmp_path.resolve() / "project"
    assert campaign.source == tmp_path / "project" / "spec.yaml"


def test_directory_override_is_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    campaign = load_spec_text(ONE_SCALE + "directory: ignored\n", Path("/somewhere/spec.yaml"), directory=Path("cli"))
    assert campaign.directory == tmp_path.resolve() / "cli"
    assert campaign.spec.directory == campaign.directory


def test_tilde_is_not_expanded_and_says_so() -> None:
    assert one_problem(ONE_SCALE + "directory: ~/runs\n") == (
        "directory", 6, "path '~/runs' starts with '~', which is not expanded", "write ${env:HOME}/... instead"
    )


def test_python_path_inside_the_spec_folder_resolves_to_absolute(tmp_path: Path) -> None:
    (tmp_path / "code" / "lib").mkdir(parents=True)
    campaign = load_spec_text(ONE_SCALE + f"python_path: [code, code/lib/., {tmp_path / 'code'}]\n",
                              tmp_path / "spec.yaml")
    code = tmp_path.resolve() / "code"
    assert campaign.spec.python_path == [code, code / "lib", code]


def test_python_path_escaping_the_spec_folder_is_rejected(tmp_path: Path) -> None:
    (tmp_path / "project").mkdir()
    (tmp_path / "outside").mkdir()
    (tmp_path / "project" / "link").symlink_to(tmp_path / "outside")
    text = ONE_SCALE + f"python_path:\n  - ../outside\n  - {tmp_path / 'outside'}\n  - link\n"
    found = problems(text, tmp_path / "project" / "spec.yaml")
    outside = tmp_path.resolve() / "outside"
    project = tmp_path.resolve() / "project"
    escaped = f"resolves to {outside}, outside the spec's folder {project}"
    assert [(p, l, m) for p, l, m, _ in found] == [
        ("python_path[0]", 7, f"python_path entry '../outside' {escaped}"),
        ("python_path[1]", 8, f"python_path entry '{outside}' {escaped}"),
        ("python_path[2]", 9, f"python_path entry 'link' {escaped}"),
    ]
    assert found[0][3] == ("keep the code next to the spec, or set `allow_outside_paths: true` if it must come from "
                           "elsewhere")
    campaign = load_spec_text(text + "allow_outside_paths: true\n", tmp_path / "project" / "spec.yaml")
    assert campaign.spec.python_path == [outside, outside, outside]


def test_python_path_must_be_an_existing_folder(tmp_path: Path) -> None:
    path, line, message, hint = one_problem(ONE_SCALE + "python_path: [nope]\n", tmp_path / "spec.yaml")
    assert (path, line, hint) == ("python_path[0]", 6, "create it or fix the path")
    assert message == f"python_path entry 'nope' is not a folder ({tmp_path.resolve() / 'nope'})"


# --- plugins' own input checks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["validate", "run"])
def test_an_input_run_would_refuse_is_refused_by_validate_too(tmp_path: Path, command: str) -> None:
    """``library_file`` outside the spec's folder: ``validate`` refuses it as ``run`` does, in one located line."""
    pytest.importorskip("dockstring", reason="the docking scales are the `campaign` extra: pip install -e .[campaign]")
    spec = tmp_path / "campaign.yaml"
    spec.write_text(
        "name: library\nscales:\n  - name: ml1\n    plugin: active-docking\n"
        "    config: {library_file: ../../../etc/passwd, include_known_ligands: false, initial: 1, batch: 1, budget: 2}\n",
        encoding="utf-8",
    )
    result = subprocess.run([sys.executable, "-m", "mummi_like.cli", command, str(spec)],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    header, *issues = result.stderr.splitlines()
    assert header == f"invalid campaign spec {spec} (1 problem):"
    [issue] = issues
    assert issue.startswith(f"  {spec}:5: scales[0].config: library_file '../../../etc/passwd' resolves to ")
    assert "outside the spec's folder" in issue
    assert sorted(path.name for path in tmp_path.iterdir()) == ["campaign.yaml"]


def test_an_unreadable_input_is_located_at_the_scale_config(tmp_path: Path) -> None:
    pytest.importorskip("dockstring", reason="the docking scales are the `campaign` extra: pip install -e .[campaign]")
    (tmp_path / "library.smi").mkdir()
    text = ("name: library\nscales:\n  - name: ml1\n    plugin: active-docking\n"
            "    config: {library_file: library.smi, include_known_ligands: false, initial: 1, batch: 1, budget: 2}\n")
    path, line, message, _ = one_problem(text, tmp_path / "campaign.yaml")
    assert (path, line) == ("scales[0].config", 5)
    assert message.startswith(f"library_file 'library.smi': cannot read the library {tmp_path.resolve()}/library.smi:")
    (tmp_path / "ok.smi").write_text("CCO ethanol\n")
    readable = load_spec_text(text.replace("library.smi", "ok.smi"), tmp_path / "campaign.yaml")
    assert readable.scales[0].config.library_file == "ok.smi"


# --- inside() -------------------------------------------------------------------------------------------------


def test_inside_resolves_relative_paths_under_the_root(tmp_path: Path) -> None:
    root = tmp_path.resolve()
    assert inside(tmp_path, "tasks/a/1") == root / "tasks" / "a" / "1"
    assert inside(tmp_path, Path("tasks/../tasks/b")) == root / "tasks" / "b"
    assert inside(tmp_path, root / "x") == root / "x"
    assert inside(tmp_path, "") == root


@pytest.mark.parametrize("escape", ["..", "tasks/../../x", "/etc/passwd"])
def test_inside_rejects_escapes(tmp_path: Path, escape: str) -> None:
    with pytest.raises(ValueError, match=rf"path {escape!r} resolves to .*, which is outside {tmp_path.resolve()}"):
        inside(tmp_path, escape)


def test_inside_rejects_a_symlink_that_leads_out(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root" / "link").symlink_to(tmp_path)
    with pytest.raises(ValueError, match=r"path 'link/x' resolves to .*/x, which is outside"):
        inside(tmp_path / "root", "link/x")



def test_coupling_stream_glob_stays_below_the_source_scale() -> None:
    text = ONE_SCALE + "couplings:\n  - {source: a, target: a, selector: tiny-selector, feature: m, stream: ../../*.h5}\n"
    path, line, message, _ = problems(text)[0]
    assert (path, line) == ("couplings[0].stream", 7)
    assert "must be a relative glob below the source's task folders" in message


# --- hostile input (regressions of what tests/test_spec_fuzz.py found) -----------------------------------------


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 3000])
def test_lists_nested_too_deep_are_refused_at_their_line_not_with_a_recursion_error(depth: int) -> None:
    path, line, message, hint = one_problem(ONE_SCALE + "couplings:\n  - " + "[" * depth + "]" * depth + "\n")
    assert line == 7 and f"nested more than {MAX_DEPTH} levels deep" in message
    assert path in ("couplings", "<root>")  # past PyYAML's own recursion limit, the reader has no node to name
    assert hint == "a spec needs a few levels; look for brackets or braces that are opened and never closed"


def test_aliases_nested_too_deep_together_are_refused() -> None:
    levels = "".join(f"a{level}: &a{level} [[[[[[[[[[*a{level - 1}]]]]]]]]]]\n" for level in range(1, 7))
    path, _, message, _ = one_problem(ONE_SCALE + "a0: &a0 [x]\n" + levels)
    assert path.startswith("a") and message == f"lists and mappings nested more than {MAX_DEPTH} levels deep " \
                                               "(through aliases)"


def test_a_billion_laughs_is_refused_at_once_at_the_alias_that_multiplies() -> None:
    levels = "".join(f"l{level}: &l{level} [{', '.join([f'*l{level - 1}'] * 10)}]\n" for level in range(1, 10))
    started = time.monotonic()
    path, line, message, _ = one_problem(ONE_SCALE + "l0: &l0 [lol]\n" + levels)
    assert time.monotonic() - started < 5, "the 10**9 values were never walked"
    assert (path, line) == ("l6", 12) and message.startswith(f"holds more than {MAX_VALUES:,} values")


def test_a_control_character_is_located_and_named() -> None:
    assert one_problem("name: de\x07mo\nscales: []\n") == (
        "<root>", 1, "invalid YAML: the character U+0007 is not allowed in a YAML file, at column 9",
        'remove it, or write it as an escape in a double-quoted string ("\\u0007")',
    )


def test_a_list_used_as_a_key_gets_a_hint_about_keys() -> None:
    path, line, message, hint = one_problem(ONE_SCALE + "? [a, b]\n: 1\n")
    assert (path, line) == ("<root>", 6) and "found unhashable key" in message
    assert hint == "a key must be plain text; a list or a mapping can be a value, not a key"


def test_a_merge_of_something_else_than_a_mapping_gets_a_hint_about_merging() -> None:
    _, _, message, hint = one_problem(ONE_SCALE + "budgets: {<<: 3}\n")
    assert "for merging" in message and hint.startswith("`<<:` merges mappings into this one")


def test_a_nul_character_is_refused_in_any_value_or_key() -> None:
    text = ONE_SCALE.replace("argv: [x]", 'argv: ["x\\0"], "re\\0sources": {}') + 'directory: "out\\0"\n'
    assert problems(text) == [
        ("scales[0].config.argv[0]", 5, "holds a NUL character (\\0)", _NUL_HINT),
        ("scales[0].config['re\\x00sources']", 5, "this key holds a NUL character (\\0)", _NUL_HINT),
        ("directory", 6, "holds a NUL character (\\0)", _NUL_HINT),
    ]


def test_names_are_whole_lines_of_at_most_the_maximum_length() -> None:
    assert one_problem(ONE_SCALE.replace("name: a,", 'name: "a\\n",'))[:3] == (
        "scales[0].name", 5, "'a\\n' is not a valid name: use letters, digits, '_' and '-', starting with a letter or "
        "'_'")
    long = "a" * (MAX_NAME_LENGTH + 1)
    assert one_problem(ONE_SCALE.replace("name: a,", f"name: {long},"))[2] == (
        f"a name of {MAX_NAME_LENGTH + 1} characters is too long: names become folder names and task ids, so they "
        f"have at most {MAX_NAME_LENGTH}")


def test_keys_that_would_not_read_as_one_path_part_are_quoted_and_long_messages_are_cut() -> None:
    long = "k" * 5000
    text = HEAD + f"scales:\n  - name: a\n    plugin: tiny\n    depends_on: [{long}]\n    config:\n" \
                  f"      argv: [x]\n      'a b': 1\n      '': 2\n      ? {long}\n      : 4\n" \
                  "  - {name: b, plugin: tiny, config: {argv: [x], 1.5: 3}}\n"
    found = problems(text)
    assert [(path, message) for path, _, message, _ in [*found[1:3], *found[4:]]] == [
        ("scales[0].config['a b']", "Extra inputs are not permitted"),
        ("scales[0].config['']", "Extra inputs are not permitted"),
        ("scales[1].config[1.5]", "Input should be a valid string"),
        ("scales[1].config[1.5]", "Keys should be strings"),
    ]
    unknown, key = found[0], found[3]
    assert unknown[0] == "scales[0].depends_on[0]"
    assert unknown[2].startswith("unknown scale 'kkk") and "characters left out" in unknown[2]
    assert key[0].startswith("scales[0].config.kkk") and "characters left out" in key[0]
    assert "characters left out" in key[3]
    assert all(len(text) < MAX_TEXT + 100 for issue in found for text in (issue[0], issue[2], issue[3] or ""))


def test_python_path_through_a_symlink_loop_or_a_name_too_long_is_refused(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    found = problems(ONE_SCALE + f"python_path: [loop/code, {'x' * 300}]\n", tmp_path / "spec.yaml")
    assert [(p, m) for p, _, m, _ in found] == [
        ("python_path[0]", f"path '{tmp_path.resolve()}/loop/code' leads into a loop of symlinks; fix or remove "
                           "the link"),
        ("python_path[1]", f"path '{tmp_path.resolve()}/{'x' * 300}' cannot be resolved: File name too long"),
    ]


def test_inside_turns_a_symlink_loop_into_a_value_error(tmp_path: Path) -> None:
    (tmp_path / "loop").symlink_to("loop")
    with pytest.raises(ValueError, match=r"leads into a loop of symlinks"):
        inside(tmp_path, "loop/x")
