"""Parameter spaces, placeholders, labels and Maestro-style dependencies."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from mummi_like.tasks import ExecutablePayload, TaskSpec
from mummi_scales.generic.parameters import (
    ParameterSpace,
    placeholders,
    point_labels,
    substitute,
    upstream_dependencies,
)


def _task(task_id: str, scale: str, **params: str) -> TaskSpec:
    return TaskSpec(
        id=task_id,
        payload=ExecutablePayload(argv=["true"]),
        labels={"scale": scale, **point_labels(params)},
        workdir=f"tasks/{scale}/{task_id}",
    )


def test_product_varies_the_last_parameter_fastest_in_spec_order() -> None:
    space = ParameterSpace(values={"t": [300, 310], "seed": [1, 2, 3]})
    assert space.points() == [
        {"t": 300, "seed": 1},
        {"t": 300, "seed": 2},
        {"t": 300, "seed": 3},
        {"t": 310, "seed": 1},
        {"t": 310, "seed": 2},
        {"t": 310, "seed": 3},
    ]


def test_zip_pairs_values_by_position_and_keeps_their_types() -> None:
    space = ParameterSpace(values={"ligand": ["a", "b"], "scale": [0.5, 1], "hot": [True, False]}, combine="zip")
    assert space.points() == [{"ligand": "a", "scale": 0.5, "hot": True}, {"ligand": "b", "scale": 1, "hot": False}]
    assert [type(point["hot"]) for point in space.points()] == [bool, bool]
    assert type(space.points()[1]["scale"]) is int


def test_no_parameters_is_one_empty_point() -> None:
    assert ParameterSpace().points() == [{}]
    assert ParameterSpace(combine="zip").points() == [{}]


def test_zip_of_unequal_lengths_names_every_length() -> None:
    with pytest.raises(ValidationError, match=r"t has 2, seed has 3 values"):
        ParameterSpace(values={"t": [300, 310], "seed": [1, 2, 3]}, combine="zip")


@pytest.mark.parametrize("bad", [{"x": []}, {"not a name": [1]}, {"1x": [1]}])
def test_empty_lists_and_non_identifier_names_are_rejected(bad: dict[str, list[int]]) -> None:
    with pytest.raises(ValidationError):
        ParameterSpace(values=bad)


def test_substitute_fills_names_and_unescapes_braces() -> None:
    values = {"t": "300", "seed": "7"}
    assert substitute("--temp={t} --seed {seed}", values) == "--temp=300 --seed 7"
    assert substitute("{{t}} {{{t}}} }}{{", values) == "{t} {300} }{"
    assert substitute("plain", {}) == "plain"
    assert placeholders("{t}-{seed}-{{lit}}-{t}") == {"t", "seed"}


def test_substitute_does_not_rescan_substituted_values() -> None:
    assert substitute("{a}", {"a": "{b}", "b": "no"}) == "{b}"


@pytest.mark.parametrize("text", ["{x.__class__}", "{x[0]}", "{x!r}", "{}", "{ x }", "a { b", "a } b", "{x"])
def test_anything_but_an_identifier_in_braces_is_rejected_not_evaluated(text: str) -> None:
    with pytest.raises(ValueError, match="is not a placeholder"):
        placeholders(text)
    with pytest.raises(ValueError, match="is not a placeholder"):
        substitute(text, {"x": "1"})


def test_unknown_placeholder_is_a_key_error_naming_it_and_the_known_ones() -> None:
    with pytest.raises(KeyError, match=r"unknown placeholder \{temp\} in '--t=\{temp\}'; known: t, seed"):
        substitute("--t={temp}", {"t": "300", "seed": "1"})


def test_point_labels_are_prefixed_strings() -> None:
    assert point_labels({"t": 300, "hot": True, "x": 0.5, "name": "a"}) == {
        "param.t": "300",
        "param.hot": "True",
        "param.x": "0.5",
        "param.name": "a",
    }


def test_a_shared_parameter_makes_dependencies_one_to_one() -> None:
    upstream = [_task("prep.0", "prep", t="300"), _task("prep.1", "prep", t="310")]
    assert upstream_dependencies(point_labels({"t": 310, "seed": 1}), upstream) == ["prep.1"]
    assert upstream_dependencies(point_labels({"t": 300, "seed": 2}), upstream) == ["prep.0"]


def test_every_shared_parameter_must_agree() -> None:
    upstream = [_task(f"prep.{i}", "prep", t=t, p=p) for i, (t, p) in enumerate([("1", "a"), ("1", "b"), ("2", "a")])]
    assert upstream_dependencies(point_labels({"t": 1, "p": "b", "seed": 5}), upstream) == ["prep.1"]


def test_no_shared_parameter_depends_on_every_upstream_task() -> None:
    swept = [_task("prep.0", "prep", ligand="a"), _task("prep.1", "prep", ligand="b")]
    assert upstream_dependencies(point_labels({"t": 300}), swept) == ["prep.0", "prep.1"]
    plain = [_task("setup.0", "setup")]
    assert upstream_dependencies(point_labels({"t": 300}), plain) == ["setup.0"]
    assert upstream_dependencies({}, swept) == ["prep.0", "prep.1"]
    assert upstream_dependencies(point_labels({"t": 300}), []) == []


def test_a_shared_parameter_matching_nothing_is_an_error() -> None:
    upstream = [_task("prep.0", "prep", t="300")]
    with pytest.raises(ValueError, match=r"t=400 matches no task of upstream scale prep"):
        upstream_dependencies(point_labels({"t": 400}), upstream)
