"""The ML1 surrogate: fingerprints, the MLP ensemble, acquisition functions, stop rules and the training task."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

pytest.importorskip("rdkit", reason="fingerprints need RDKit, in the `campaign` extra: pip install -e '.[campaign]'")

from rdkit import Chem  # noqa: E402

from mummi_scales.drug_discovery import data  # noqa: E402
from mummi_scales.drug_discovery.surrogate import (  # noqa: E402
    BATCH,
    MODEL,
    PREDICTIONS,
    SCORES,
    ActiveLearningConfig,
    Ensemble,
    MessagePassingNet,
    SparseLinear,
    SurrogateConfig,
    acquire,
    distance_noise,
    farthest_first,
    fingerprints,
    learn_round,
    library_fingerprints,
    load_predictions,
    nearest_distance,
    r_squared,
    round_rng,
    sparse_features,
    stop_reason,
    train_and_acquire,
)

SMALL = SurrogateConfig(members=3, hidden=[64, 16], epochs=80, batch_size=16, fingerprint_bits=1024, validation=0.25,
                        device="cpu")  # fmt: skip
"""An ensemble that trains on a few dozen molecules in about a second."""


@pytest.fixture(scope="module")
def molecules() -> tuple[list[str], list[str], np.ndarray]:
    """60 MOSES molecules and a score the fingerprint can explain: -0.5 per aromatic atom, +1 per oxygen.

    (Stacking on aromatic rings helps a ligand in PGR's pocket; a made-up
    target, so that a few dozen molecules suffice to learn it.)
    """
    library = data.library(60, seed=11)
    ids, smiles = [ligand_id for ligand_id, _ in library], [text for _, text in library]
    scores = []
    for text in smiles:
        atoms = Chem.MolFromSmiles(text).GetAtoms()
        aromatic, oxygens = sum(atom.GetIsAromatic() for atom in atoms), sum(atom.GetSymbol() == "O" for atom in atoms)
        scores.append(-0.5 * aromatic + oxygens)
    return ids, smiles, np.array(scores)


def test_fingerprints_count_substructures_and_flag_bad_smiles() -> None:
    rows, valid = fingerprints(["CCO", "CCCCCCO", "C1CC(N"], SurrogateConfig(fingerprint_bits=256, fingerprint="morgan"))
    assert rows.shape == (3, 256) and rows.dtype == np.uint8
    assert valid.tolist() == [True, True, False] and not rows[2].any()
    assert rows[1].sum() > rows[0].sum(), "a longer chain holds more (and repeated) substructures"
    bits, _ = fingerprints(["CCCCCCO"], SurrogateConfig(fingerprint_bits=256, fingerprint="morgan-bits"))
    assert set(np.unique(bits)) <= {0, 1} and (bits[0] > 0).tolist() == (rows[1] > 0).tolist()


def test_the_default_fingerprint_is_morgan_counts_beside_atom_pair_counts() -> None:
    """Atom pairs at every distance: a longer chain has pairs farther apart, which Morgan radius 2 does not see."""
    config = SurrogateConfig(fingerprint_bits=256)
    both, _ = fingerprints(["CCCCCCO", "CCCCCCCCCCCCO"], config)
    morgan, _ = fingerprints(["CCCCCCO"], config.model_copy(update={"fingerprint": "morgan"}))
    pairs, _ = fingerprints(["CCCCCCO"], config.model_copy(update={"fingerprint": "atom-pair"}))
    assert both.shape == (2, 512) and np.array_equal(both[0], np.concatenate([morgan[0], pairs[0]]))
    assert np.count_nonzero(both[1, 256:]) > np.count_nonzero(both[0, 256:])
    with pytest.raises(ValidationError, match=r"fingerprint\n  Input should be 'morgan\+atom-pair', 'morgan'"):
        SurrogateConfig(fingerprint="count")


def test_the_sparse_first_layer_equals_a_dense_layer_on_log1p_counts() -> None:
    rows, _ = fingerprints(["CCO", "c1ccccc1C(=O)N", "CCCCCCCCCC"], SurrogateConfig(fingerprint_bits=256))
    layer = SparseLinear(512, 8)
    dense = np.log1p(rows.astype(np.float32)) @ layer.bag.weight[:512].detach().numpy() + layer.bias.detach().numpy()
    with torch.no_grad():
        assert np.allclose(layer(*sparse_features(rows)).numpy(), dense, atol=1e-5)


def test_training_lowers_the_error_on_unseen_molecules(molecules: tuple[list[str], list[str], np.ndarray]) -> None:
    _, smiles, scores = molecules
    rows, _ = fingerprints(smiles, SMALL)
    train, test = slice(0, 45), slice(45, 60)
    untrained = Ensemble(SMALL.model_copy(update={"epochs": 1}), seed=0).fit(rows[train], scores[train])
    trained = Ensemble(SMALL, seed=0).fit(rows[train], scores[train])
    before = r_squared(scores[test], untrained.predict(rows[test])[0])
    after = r_squared(scores[test], trained.predict(rows[test])[0])
    assert after > 0.25 and after > before + 0.4, (before, after)


def test_the_ensemble_is_deterministic_under_its_seed_and_survives_save_and_load(
    molecules: tuple[list[str], list[str], np.ndarray], tmp_path: Path
) -> None:
    _, smiles, scores = molecules
    rows, _ = fingerprints(smiles, SMALL)
    config = SMALL.model_copy(update={"epochs": 10})
    first = Ensemble(config, seed=4).fit(rows[:40], scores[:40])
    mean, std = first.predict(rows)
    again = Ensemble(config, seed=4).fit(rows[:40], scores[:40]).predict(rows)
    other = Ensemble(config, seed=5).fit(rows[:40], scores[:40]).predict(rows)
    assert np.array_equal(mean, again[0]) and np.array_equal(std, again[1])
    assert not np.allclose(mean, other[0])
    assert (std > 0).all(), "initialisations, batch orders and validation draws make the members disagree"
    first.save(tmp_path / MODEL)
    assert np.allclose(Ensemble.load(tmp_path / MODEL).predict(rows)[0], mean)


def test_the_message_passing_surrogate_trains_predicts_with_uncertainty_and_survives_save_and_load(
    molecules: tuple[list[str], list[str], np.ndarray], tmp_path: Path
) -> None:
    """chemprop's D-MPNN members on the molecular graph: they learn the made-up score from 45 molecules, disagree,
    are reproducible under their seed, save and load, and need the SMILES (a clear error without them)."""
    pytest.importorskip("chemprop", reason="the message-passing surrogate needs the extra: pip install -e '.[chemprop]'")
    ids, smiles, scores = molecules
    config = SMALL.model_copy(update={"model": "chemprop-mpnn", "hidden": [48, 16], "epochs": 40, "depth": 2})
    rows, _ = fingerprints(smiles, config)
    trained = Ensemble(config, seed=0).fit(rows[:45], scores[:45], smiles[:45])
    mean, std = trained.predict(rows, smiles)
    assert mean.shape == std.shape == (60,) and (std > 0).all()
    assert all(isinstance(member, MessagePassingNet) for member in trained.members)
    held = r_squared(scores[45:], mean[45:])
    assert held is not None and held > 0.25, held
    assert np.isfinite(trained.out_of_fold).sum() >= 10
    again = Ensemble(config, seed=0).fit(rows[:45], scores[:45], smiles[:45]).predict(rows, smiles)
    assert np.allclose(mean, again[0], atol=1e-5)
    trained.save(tmp_path / MODEL)
    assert np.allclose(Ensemble.load(tmp_path / MODEL).predict(rows, smiles)[0], mean, atol=1e-5)
    with pytest.raises(ValueError, match="'chemprop-mpnn' needs the SMILES"):
        trained.predict(rows)
    docked = np.zeros(60, dtype=bool)
    docked[:30] = True
    plan = ActiveLearningConfig(initial=30, batch=5, budget=40)
    found = learn_round(ids, rows, np.ones(60, dtype=bool), np.where(docked, scores, np.nan), docked, config, plan, 1,
                        None, [], seed=0, smiles=smiles)  # fmt: skip
    assert len(found.chosen) == 5 and not docked[found.chosen].any() and found.r2 is not None


def test_a_message_passing_surrogate_without_chemprop_is_refused_naming_the_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "chemprop" else real(name, *rest))
    with pytest.raises(ValidationError, match=r"needs chemprop, which is not installed: pip install 'mummi-like\[chemprop\]'"):
        SurrogateConfig(model="chemprop-mpnn")
    with pytest.raises(ValidationError, match="Input should be 'fingerprint-mlp' or 'chemprop-mpnn'"):
        SurrogateConfig(model="chemprop")


def test_bagged_members_disagree_where_a_prediction_rests_on_one_label(
    molecules: tuple[list[str], list[str], np.ndarray],
) -> None:
    """One molecule scored far off its neighbours: members that drew it into their resample learn it, those
    that did not predict its neighbours' value, so the spread there grows; without bagging they all learn it."""
    _, smiles, scores = molecules
    rows, _ = fingerprints(smiles, SMALL)
    odd = scores[:40].copy()
    odd[0] = scores.min() - 10
    config = SMALL.model_copy(update={"members": 8, "validation": 0.0, "epochs": 60})
    bagged = Ensemble(config, seed=1).fit(rows[:40], odd).predict(rows[:40])[1]
    plain = Ensemble(config.model_copy(update={"bootstrap": False}), seed=1).fit(rows[:40], odd).predict(rows[:40])[1]
    assert bagged[0] > 2 * plain[0], (bagged[0], plain[0])
    assert bagged[0] > np.median(bagged), "the spread is largest where the prediction rests on the one label"


def test_acquisition_functions_choose_as_defined() -> None:
    mean = np.array([-9.0, -8.0, -7.0, -6.0, -5.0, -10.0])
    std = np.array([0.1, 0.1, 2.5, 0.1, 5.0, 0.1])
    candidates = np.arange(5)  # molecule 5 is docked already
    assert acquire("greedy", mean, std, candidates, 2, 1.0, round_rng(0, 1)).tolist() == [0, 1]
    assert acquire("ucb", mean, std, candidates, 2, 1.0, round_rng(0, 1)).tolist() == [4, 2]  # -10.0, -9.5
    assert acquire("ucb", mean, std, candidates, 2, 0.0, round_rng(0, 1)).tolist() == [0, 1], "beta 0 is greedy"
    draws = [acquire("thompson", mean, std, candidates, 3, 1.0, round_rng(seed, 1)).tolist() for seed in range(30)]
    assert draws[0] == acquire("thompson", mean, std, candidates, 3, 1.0, round_rng(0, 1)).tolist()
    assert all(5 not in draw for draw in draws) and len({tuple(draw) for draw in draws}) > 1
    firsts = {draw[0] for draw in draws}
    assert {2, 4} <= firsts <= {0, 2, 4}, "wide predictions are sometimes drawn lowest; narrow worse ones never"
    chosen = acquire("random", mean, std, candidates, 3, 1.0, round_rng(0, 1))
    assert len(set(chosen.tolist())) == 3 and set(chosen.tolist()) <= set(candidates.tolist())
    assert chosen.tolist() == acquire("random", mean, std, candidates, 3, 1.0, round_rng(0, 1)).tolist()
    assert len(acquire("greedy", mean, std, candidates, 10, 1.0, round_rng(0, 1))) == 5


def test_stop_rules_budget_exhaustion_and_convergence() -> None:
    plan = ActiveLearningConfig(initial=10, budget=100, converged_overlap=0.9, patience=2)
    assert stop_reason(100, 50, [], plan) == "budget: 100 docking calls spent of 100"
    assert stop_reason(60, 0, [], plan) == "library exhausted after 60 docking calls"
    assert stop_reason(60, 50, [0.95], plan) is None, "one converged round is not enough with patience 2"
    assert stop_reason(60, 50, [0.95, 0.8], plan) is None
    assert stop_reason(60, 50, [0.8, 0.92, 0.95], plan).startswith("converged: the top 50")  # type: ignore[union-attr]
    with pytest.raises(ValidationError, match=r"initial \(200\) is larger than budget \(100\)"):
        ActiveLearningConfig(initial=200, budget=100)


def _first_docked(
    molecules: tuple[list[str], list[str], np.ndarray], count: int
) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The molecules' ids, fingerprint rows, parse mask and scores, and a mask docking the first ``count``."""
    ids, smiles, truth = molecules
    rows, valid = fingerprints(smiles, SMALL)
    docked = np.zeros(len(ids), dtype=bool)
    docked[:count] = True
    return ids, rows, valid, truth, docked


def test_a_round_trains_on_labels_only_and_chooses_among_molecules_not_docked(
    molecules: tuple[list[str], list[str], np.ndarray],
) -> None:
    ids, rows, valid, truth, docked = _first_docked(molecules, 30)
    scores = np.where(docked, truth, np.nan)
    scores[3] = np.nan  # docked but failed: never chosen again, never trained on
    plan = ActiveLearningConfig(initial=30, batch=8, budget=50, acquisition="greedy", top_k=10, explore=0)
    found = learn_round(ids, rows, valid, scores, docked, SMALL, plan, 1, None, [], seed=2)
    assert len(found.chosen) == 8 and not docked[found.chosen].any()
    greedy = acquire("greedy", found.mean, found.std, np.flatnonzero(~docked), 8, 0, round_rng(2, 1))
    assert found.chosen.tolist() == greedy.tolist()
    validated = ~np.isnan(found.out_of_fold)
    assert validated.sum() > 10 and not (validated & np.isnan(scores)).any(), "out of fold: labelled molecules only"
    assert found.r2 == pytest.approx(r_squared(np.minimum(truth, 0)[validated], found.out_of_fold[validated]))
    assert found.r2 is not None and found.overlap is None and found.stop is None
    top_ids = [ids[index] for index in found.top]
    again = learn_round(ids, rows, valid, scores, docked, SMALL, plan, 2, top_ids, [], seed=2)
    assert again.overlap is not None and 0.5 <= again.overlap <= 1.0
    spent = learn_round(ids, rows, valid, scores, docked, SMALL, plan.model_copy(update={"budget": 30}), 1, None, [], 2)
    assert spent.stop == "budget: 30 docking calls spent of 30" and len(spent.chosen) == 0


def test_nearest_distance_is_one_minus_the_best_tanimoto_to_the_labelled_rows() -> None:
    rows = np.array([[2, 1, 0, 0], [2, 1, 0, 0], [1, 1, 0, 0], [0, 0, 3, 1]], dtype=np.uint8)
    distance = nearest_distance(rows, rows[:2])
    assert distance == pytest.approx([0.0, 0.0, 1 - 2 / 3, 1.0])  # MinMax: (1 + 1) / (2 + 1) for row 2
    alone = nearest_distance(rows[:2], rows[:2], exclude=np.array([0, -1]))
    assert alone == pytest.approx([0.0, 0.0]), "row 0 without itself still has its twin, row 1"
    assert nearest_distance(rows[2:3], rows[2:3], exclude=np.array([0]))[0] == pytest.approx(1.0), "nothing left"


def test_the_distance_term_is_fitted_to_errors_that_grow_with_distance() -> None:
    """Out-of-fold residuals drawn with std 0.2 + 3 * distance: the fit recovers the slope; few residuals: none."""
    rng = np.random.default_rng(0)
    distance = rng.uniform(0, 1, 400)
    residual = rng.normal(0, 0.2 + 3 * distance)
    a, b = distance_noise(distance, residual, np.zeros(400))
    assert 0.05 < a < 0.5 and 2.4 < b < 3.6, (a, b)
    flat_a, flat_b = distance_noise(distance, rng.normal(0, 1.0, 400), np.zeros(400))
    assert flat_b < 0.5 < flat_a, "errors that do not grow with distance get no distance term"
    assert distance_noise(distance[:3], residual[:3], np.zeros(3)) == (0.0, 0.0)


def test_farthest_first_picks_the_molecules_least_like_anything_docked() -> None:
    """Two tight groups docked; three candidates near them and two far ones, near each other: one far pick, then
    the candidate farthest from the docked, the chosen and that first pick."""
    rows = np.array([[4, 0, 0, 0], [0, 4, 0, 0], [4, 1, 0, 0], [1, 4, 0, 0], [3, 3, 0, 0], [0, 0, 4, 4], [0, 0, 4, 3]],
                    dtype=np.uint8)  # fmt: skip
    docked, candidates = np.array([0, 1]), np.array([2, 3, 4, 5, 6])
    first, second = farthest_first(rows, candidates, docked, np.empty(0, dtype=np.int64), 2).tolist()
    assert first == 5 and second == 4, "6 is now next to 5; 4 is halfway between the docked groups"
    assert farthest_first(rows, candidates, docked, np.array([5]), 1).tolist() == [4], "a chosen molecule counts"
    assert len(farthest_first(rows, candidates, docked, np.empty(0, dtype=np.int64), 9)) == 5


def test_a_round_spends_its_novelty_share_on_the_most_uncertain_and_the_least_explored_molecules(
    molecules: tuple[list[str], list[str], np.ndarray],
) -> None:
    """explore_by uncertainty+distance (the default): after the acquisition's picks, half the share (rounded up)
    to the largest predicted std among the rest however poor their mean, the others farthest-first; each
    mode alone gives the whole share to its own picks."""
    ids, rows, valid, truth, docked = _first_docked(molecules, 30)
    scores = np.where(docked, truth, np.nan)
    plan = ActiveLearningConfig(initial=30, batch=10, budget=50, acquisition="greedy", explore=0.3)
    assert plan.explore_by == "uncertainty+distance"

    def chosen(explore_by: str) -> np.ndarray:
        mode = plan.model_copy(update={"explore_by": explore_by})
        return learn_round(ids, rows, valid, scores, docked, SMALL, mode, 1, None, [], seed=2).chosen

    found = learn_round(ids, rows, valid, scores, docked, SMALL, plan, 1, None, [], seed=2)
    exploit, uncertain, far = found.chosen[:7], found.chosen[7:9], found.chosen[9:]
    assert len(found.chosen) == 10 and len(set(found.chosen)) == 10 and not docked[found.chosen].any()
    assert exploit.tolist() == acquire("greedy", found.mean, found.std, np.flatnonzero(~docked), 7, 0,
                                       round_rng(2, 1)).tolist()  # fmt: skip
    rest = np.setdiff1d(np.flatnonzero(~docked), exploit)
    assert found.std[uncertain] == pytest.approx(np.sort(found.std[rest])[::-1][:2])
    assert found.std[uncertain].min() > np.median(found.std[rest]), "the novelty picks are not the exploiting ones"
    picked = np.concatenate([exploit, uncertain])
    assert far.tolist() == farthest_first(rows, np.setdiff1d(rest, uncertain), np.flatnonzero(docked), picked,
                                          1).tolist()  # fmt: skip
    by_std = chosen("uncertainty")
    assert by_std[:7].tolist() == exploit.tolist()
    assert found.std[by_std[7:]] == pytest.approx(np.sort(found.std[rest])[::-1][:3])
    by_distance = chosen("distance")
    assert by_distance[7:].tolist() == farthest_first(rows, rest, np.flatnonzero(docked), exploit, 3).tolist()


def test_a_round_adds_the_fitted_distance_term_to_the_spread(
    molecules: tuple[list[str], list[str], np.ndarray],
) -> None:
    """std = sqrt(spread^2 + (a + b d)^2), d the distance to the nearest labelled molecule, (a, b) fitted on the
    out-of-fold errors (each labelled molecule's distance leaves itself out); the mean is the ensemble's either way."""
    names, rows, valid, truth, docked = _first_docked(molecules, 40)
    scores = np.where(docked, truth, np.nan)
    plan = ActiveLearningConfig(initial=40, batch=5, budget=60)
    found = learn_round(names, rows, valid, scores, docked, SMALL, plan, 1, None, [], seed=0)
    spread = learn_round(names, rows, valid, scores, docked, SMALL.model_copy(update={"uncertainty": "ensemble"}),
                         plan, 1, None, [], seed=0)  # fmt: skip
    assert spread.distance_noise is None and np.array_equal(found.mean, spread.mean)
    assert found.distance_noise is not None
    a, b = found.distance_noise
    itself = np.where(docked, np.cumsum(docked) - 1, -1)
    distance = nearest_distance(rows, rows[docked], exclude=itself)
    assert found.std == pytest.approx(np.sqrt(spread.std**2 + (a + b * distance) ** 2))
    assert (distance[~docked] > 0.3).all() and (distance[docked] < 1).all()


def test_the_fingerprint_cache_is_reused_and_renewed_when_settings_change(tmp_path: Path) -> None:
    ids, smiles = ["a", "b"], ["CCO", "CCN"]
    cache = tmp_path / "fingerprints.npz"
    rows, _ = library_fingerprints(ids, smiles, SMALL, cache)
    with np.load(cache) as saved:
        assert np.array_equal(saved["rows"], rows)
    stamp = cache.stat().st_mtime_ns
    assert np.array_equal(library_fingerprints(ids, smiles, SMALL, cache)[0], rows)
    assert cache.stat().st_mtime_ns == stamp, "the same library and settings read the cache"
    wider = SMALL.model_copy(update={"fingerprint_bits": 2048})
    assert library_fingerprints(ids, smiles, wider, cache)[0].shape == (2, 4096)  # Morgan + atom pairs


def _dock_folder(folder: Path, results: dict[str, dict[str, object]]) -> str:
    folder.mkdir(parents=True)
    (folder / SCORES).write_text(json.dumps(results))
    return str(folder)


def test_the_training_task_writes_predictions_and_chooses_the_next_batch(
    molecules: tuple[list[str], list[str], np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Docking results as dock tasks leave them (scores.json), one failure among them."""
    ids, smiles, truth = molecules
    library = tmp_path / "library.csv"
    library.write_text("id,smiles\n" + "".join(f"{i},{s}\n" for i, s in zip(ids, smiles)))
    docked = {i: {"score": float(t), "poses": f"poses/{i}.sdf", "smiles": s} for i, s, t in zip(ids, smiles, truth)}
    first = {i: docked[i] for i in ids[:12]}
    second = {i: docked[i] for i in ids[12:20]}
    second[ids[20]] = {"error": "embedding: ETKDG found no 3D conformer", "smiles": smiles[20]}
    dirs = [_dock_folder(tmp_path / "d0", first), _dock_folder(tmp_path / "d1", second)]
    work = tmp_path / "train"
    work.mkdir()
    monkeypatch.chdir(work)
    plan = ActiveLearningConfig(initial=12, batch=5, budget=40, acquisition="ucb", top_k=5)
    value = train_and_acquire(
        str(library), str(tmp_path / "fp.npz"), dirs, 1, None, [], SMALL.model_dump(), plan.model_dump(), seed=3
    )
    assert (value["round"], value["docked"], value["labelled"], value["failed"]) == (1, 21, 20, 1)
    assert value["trained_on"] == 20 and 0 < value["held_out"] <= 20  # type: ignore[operator]
    assert value["best_score"] == pytest.approx(float(truth[:20].min())) and value["stop"] is None
    chosen = [ligand_id for ligand_id, _ in value["next"]]  # type: ignore[union-attr]
    assert len(chosen) == 5 and not set(chosen) & set(ids[:21])
    library_smiles = dict(zip(ids, smiles))
    assert all(library_smiles[ligand_id] == text for ligand_id, text in value["next"])  # type: ignore[union-attr]
    saved = load_predictions(work / PREDICTIONS)
    assert saved["ids"].tolist() == ids and int(saved["docked"].sum()) == 21 and len(saved["top"]) == 5
    assert np.isnan(saved["score"][20]) and saved["score"][0] == pytest.approx(truth[0])
    assert (work / MODEL).is_file()
    not_scores = _dock_folder(tmp_path / "d8", {ids[0]: {"score": "high", "smiles": smiles[0]}})  # type: ignore[dict-item]
    with pytest.raises(ValueError, match=r"d8/scores.json holds no dock task's scores \(.*; rerun the dock task"):
        train_and_acquire(str(library), str(tmp_path / "fp.npz"), [not_scores], 1, None, [],
                          SMALL.model_dump(), plan.model_dump(), seed=3)  # fmt: skip


def test_a_dock_task_that_ended_without_scores_fails_its_ligands_and_the_round_goes_on(
    molecules: tuple[list[str], list[str], np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A dock task killed mid-batch left its batch but no scores; one that never ran left nothing."""
    ids, smiles, truth = molecules
    library = tmp_path / "library.csv"
    library.write_text("id,smiles\n" + "".join(f"{i},{s}\n" for i, s in zip(ids, smiles)))
    scored = _dock_folder(tmp_path / "d0", {i: {"score": float(t), "poses": f"poses/{i}.sdf", "smiles": s}
                                            for i, s, t in zip(ids[:12], smiles[:12], truth[:12])})  # fmt: skip
    killed = tmp_path / "d1"
    killed.mkdir()
    (killed / BATCH).write_text(json.dumps([[i, s] for i, s in zip(ids[12:17], smiles[12:17])]))
    never_ran = tmp_path / "d2"
    never_ran.mkdir()
    work = tmp_path / "train"
    work.mkdir()
    monkeypatch.chdir(work)
    plan = ActiveLearningConfig(initial=12, batch=5, budget=40, acquisition="greedy", top_k=5)
    value = train_and_acquire(str(library), str(tmp_path / "fp.npz"), [scored, str(killed), str(never_ran)], 1,
                              None, [], SMALL.model_dump(), plan.model_dump(), seed=3)  # fmt: skip
    assert (value["docked"], value["labelled"], value["failed"]) == (17, 12, 5)
    chosen = {ligand_id for ligand_id, _ in value["next"]}  # type: ignore[union-attr]
    assert len(chosen) == 5 and not chosen & set(ids[:17])
    assert f"{never_ran.resolve()} has neither scores.json nor batch.json" in capsys.readouterr().err


@pytest.mark.slow
def test_the_effective_performance_bench_replays_campaigns_on_the_reference_table(tmp_path: Path) -> None:
    """The bench at a tiny scale: 300 rows of the reference table, two acquisitions, a small ensemble."""
    bench = Path(__file__).parents[3] / "bench" / "effective_performance.py"
    out = tmp_path / "recall.png"
    result = subprocess.run(
        [sys.executable, str(bench), "--rows", "300", "--seeds", "0", "--acquisitions", "greedy", "random",
         "--initial", "30", "--batch", "15", "--budget", "60", "--members", "2", "--epochs", "5", "--out", str(out)],
        capture_output=True, text=True, timeout=110, env={**os.environ, "COLUMNS": "200"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "300 rows of" in result.stdout and "budget 60 calls" in result.stdout
    assert "ours, greedy" in result.stdout and "ours, random" in result.stdout
    assert out.stat().st_size > 10_000


def test_the_device_string_chooses_where_the_ensemble_trains(
    molecules: tuple[list[str], list[str], np.ndarray],
) -> None:
    """auto is the task's GPU where torch sees one, else the CPU; a GPU asked for where there is none says so."""
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert SurrogateConfig().torch_device().type == expected
    with pytest.raises(ValidationError, match=r"device 'gpu0' is no torch device .*use auto, cpu or cuda"):
        SurrogateConfig(device="gpu0")
    _, smiles, scores = molecules
    rows, _ = fingerprints(smiles[:20], SMALL)
    if torch.cuda.is_available():
        ensemble = Ensemble(SMALL.model_copy(update={"device": "cuda:0", "epochs": 5}), seed=0).fit(rows, scores[:20])
        assert next(ensemble.members[0].parameters()).device.type == "cuda"
        assert ensemble.predict(rows)[0].shape == (20,)
    else:
        with pytest.raises(RuntimeError, match=r"surrogate device 'cuda:0': torch sees no CUDA device here"):
            Ensemble(SMALL.model_copy(update={"device": "cuda:0"}), seed=0)
    on_cpu = Ensemble(SMALL.model_copy(update={"epochs": 5}), seed=0).fit(rows, scores[:20])
    assert next(on_cpu.members[0].parameters()).device.type == "cpu"
