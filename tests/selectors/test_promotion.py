"""The uncertain-competitive selector: S3-CG estimates in, the ligands worth an alchemical run out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mummi_like import plugins
from mummi_like.selection import Selector, SelectorContext
from mummi_like.store import Store
from mummi_selectors.promotion import UncertainCompetitiveConfig, UncertainCompetitiveSelector, normal_cdf, scores


def selector(tmp_path: Path, store: Store | None = None, **config: object) -> UncertainCompetitiveSelector:
    return UncertainCompetitiveSelector(UncertainCompetitiveConfig(**config),
                                        SelectorContext("cg-to-fg", tmp_path, 0, store))


def estimate(mean: float, sem: float, half_width: float | None = None) -> list[float]:
    half = 1.96 * sem if half_width is None else half_width
    return [mean, sem, mean - half, mean + half]


# kcal/mol: a confident leader, an uncertain one just behind it, a confident bad one, an uncertain hopeless one.
LIGANDS = {
    "leader": estimate(-30.0, 0.2),
    "uncertain-close": estimate(-29.0, 3.0),
    "confident-bad": estimate(-20.0, 0.2),
    "uncertain-far": estimate(-5.0, 3.0),
}


def test_the_selector_is_registered_with_a_described_config() -> None:
    cls = plugins.load("selector", "uncertain-competitive", Selector)
    assert cls is UncertainCompetitiveSelector
    for name, field in cls.config_model.model_fields.items():
        assert field.description, f"config field {name} has no description"


def test_normal_cdf_matches_known_values() -> None:
    np.testing.assert_allclose(normal_cdf(np.array([0.0, 1.96, -1.0, np.inf, -np.inf])),
                               [0.5, 0.9750021, 0.1586553, 1.0, 0.0], atol=1e-6)


def test_an_uncertain_competitive_ligand_outranks_confident_and_hopeless_ones(tmp_path: Path) -> None:
    chooser = selector(tmp_path, margin=1.0, min_score=0.0)
    ids = [f"estimates.h5md:{i}" for i in range(len(LIGANDS))]
    chooser.ingest(ids, np.array(list(LIGANDS.values())))
    by_ligand = dict(zip(LIGANDS, chooser.pool.scores, strict=True))
    assert by_ligand["uncertain-close"] > by_ligand["leader"]  # the leader's interval is already tight
    assert by_ligand["uncertain-close"] > by_ligand["confident-bad"]
    assert by_ligand["uncertain-close"] > by_ligand["uncertain-far"]
    assert by_ligand["confident-bad"] < 1e-6 and by_ligand["uncertain-far"] < 1e-3
    assert ((0 <= chooser.pool.scores) & (chooser.pool.scores <= 1)).all()
    assert chooser.select(1)[0][0] == ids[1]


def test_the_score_follows_the_formula() -> None:
    rows = np.array([estimate(-10.0, 1.0, 2.0), estimate(-8.0, 0.5, 1.0), estimate(-12.0, 0.0, 0.0)])
    got = scores(rows, best=-12.0, margin=1.0)
    expected_first = normal_cdf(np.array([(-12.0 + 1.0 + 10.0) / 1.0]))[0] * 4.0 / (4.0 + 1.0)
    expected_second = normal_cdf(np.array([(-12.0 + 1.0 + 8.0) / 0.5]))[0] * 1.0 / (1.0 + 1.0)
    np.testing.assert_allclose(got, [expected_first, expected_second, 0.0])  # a point estimate is never refined


def test_ligands_below_min_score_are_never_promoted(tmp_path: Path) -> None:
    chooser = selector(tmp_path, margin=1.0, min_score=0.2)
    chooser.ingest([f"e:{i}" for i in range(len(LIGANDS))], np.array(list(LIGANDS.values())))
    eligible = {f"e:{i}" for i, score in enumerate(chooser.pool.scores) if score >= 0.2}
    chosen = chooser.select(10)
    assert {frame for frame, _ in chosen} == eligible and eligible == {"e:1"}
    assert chooser.select(10) == []
    assert len(chooser.pool) == 3  # the others wait; a later, better estimate could make them eligible


def test_the_best_mean_counts_promoted_ligands(tmp_path: Path) -> None:
    chooser = selector(tmp_path, margin=1.0, min_score=0.0)
    chooser.ingest(["e:0"], np.array([estimate(-30.0, 3.0)]))
    chooser.select(1)
    chooser.ingest(["e:1"], np.array([estimate(-20.0, 3.0)]))
    alone = selector(tmp_path / "alone", margin=1.0, min_score=0.0)
    alone.ingest(["e:1"], np.array([estimate(-20.0, 3.0)]))
    assert chooser.pool.scores[0] < 0.01 < alone.pool.scores[0]


def test_scores_are_deterministic_and_survive_a_restart(tmp_path: Path) -> None:
    store = Store.open(tmp_path)
    first = selector(tmp_path, store, min_score=0.0)
    first.ingest([f"e:{i}" for i in range(len(LIGANDS))], np.array(list(LIGANDS.values())))
    store.flush()
    again = selector(tmp_path, store, min_score=0.0)
    np.testing.assert_allclose(again.pool.scores, first.pool.scores)
    assert again.select(2) == first.select(2)
    store.close()


@pytest.mark.parametrize(
    ("features", "message"),
    [
        (np.zeros((2, 3)), r"\[mean, sem, ci_low, ci_high\] \(shape \(4,\)\), got shape \(3,\)"),
        (np.array([estimate(-5.0, 1.0), [-5.0, -1.0, -6.0, -4.0]]), r"1 of 2 frames: 'e:1'.*negative standard error"),
        (np.array([[-5.0, 1.0, -4.0, -6.0]]), r"'e:0'.*ci_low > ci_high"),
        (np.array([[-5.0, np.nan, -6.0, -4.0]]), r"'e:0'.*NaN or infinite"),
    ],
)
def test_bad_frames_are_refused_by_name(tmp_path: Path, features: np.ndarray, message: str) -> None:
    chooser = selector(tmp_path)
    with pytest.raises(ValueError, match=message):
        chooser.ingest([f"e:{i}" for i in range(len(features))], features)
    assert len(chooser.pool) == 0
