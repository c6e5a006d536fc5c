"""The CVAE + LOF outlier selector (DeepDriveMD-like), trained as a backend worker would train it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mummi_like.backends.pyworker import resolve
from mummi_like.selection import SelectorContext, TrainingTask
from mummi_like.store import Store
from mummi_selectors.cvae import CvaeConfig, CvaeOutlierSelector, load

SIZE = 16
FRAMES = 200
LATER = 29


def md_maps(n: int, seed: int, states: int = 2) -> np.ndarray:
    """Contact maps of a 16-bead chain fluctuating around a few folded states, as short MD would sample them."""
    rng = np.random.default_rng(seed)
    bonds = rng.standard_normal((states, SIZE, 3))
    folds = np.cumsum(bonds / np.linalg.norm(bonds, axis=2, keepdims=True), axis=1)
    beads = folds[rng.integers(states, size=n)] + 0.25 * rng.standard_normal((n, SIZE, 3))
    distances = np.linalg.norm(beads[:, :, None] - beads[:, None], axis=3)
    return (distances < 1.8).astype(np.float32)


def noise_map(seed: int) -> np.ndarray:
    """A symmetric map of random contacts: no chain makes it, so it must stand out."""
    upper = np.triu(np.random.default_rng(seed).random((SIZE, SIZE)) < 0.5)
    return (upper | upper.T).astype(np.float32)


def cvae(tmp_path: Path, store: Store | None = None, **config: object) -> CvaeOutlierSelector:
    settings = {"retrain_every": FRAMES, "epochs": 5, **config}
    return CvaeOutlierSelector(CvaeConfig(**settings), SelectorContext("md-outliers", tmp_path, 0, store))


def frames_with_outlier() -> tuple[list[str], np.ndarray]:
    """200 MD-like maps and one noise map ("outlier"), shuffled."""
    maps = np.concatenate([md_maps(FRAMES + LATER, seed=0)[:FRAMES], noise_map(0)[None]])
    ids = [f"md.h5:{i}" for i in range(FRAMES)] + ["outlier"]
    order = np.random.default_rng(1).permutation(len(ids))
    return [ids[i] for i in order], maps[order]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, TrainingTask, dict]:
    """A campaign folder whose selector (stored there) ingested the maps and has trained once, in-process."""
    campaign = tmp_path_factory.mktemp("campaign")
    with Store.open(campaign) as store:
        selector = cvae(campaign, store)
        selector.ingest(*frames_with_outlier())
        assert selector.retrain_due()
        task = selector.training_task("tasks/train/gen-0")
        assert not selector.retrain_due()
    # What a backend worker does with the task: resolve the function, call it with the kwargs, store the JSON result.
    result = resolve(task.function)(**task.kwargs)
    return campaign, task, json.loads(json.dumps(result))


def campaign_copy(trained: tuple[Path, TrainingTask, dict], tmp_path: Path) -> Path:
    """A copy of the trained campaign for one test to change (the model stays where the task wrote it)."""
    return Path(shutil.copytree(trained[0], tmp_path / "campaign"))


def test_training_task_is_a_json_callable_with_its_data_in_the_campaign(trained: tuple[Path, TrainingTask, dict]) -> None:
    campaign, task, _ = trained
    assert task.function == "mummi_selectors.cvae:train"
    assert task.model_path == str(campaign.resolve() / "tasks/train/gen-0/model.pt")
    assert task.kwargs["data"] == str(campaign.resolve() / "selectors/md-outliers/train-0000.npz")
    assert (task.kwargs["seed"], task.kwargs["epochs"]) == (0, 5)
    assert task.resources.cores == 1 and task.resources.gpus == 0
    with np.load(task.kwargs["data"]) as data:
        assert data["maps"].shape == (FRAMES + 1, SIZE, SIZE) and "outlier" in data["ids"]


def test_training_lowers_the_loss_and_load_model_flags_the_outlier(
    trained: tuple[Path, TrainingTask, dict], tmp_path: Path
) -> None:
    _, task, result = trained
    campaign = campaign_copy(trained, tmp_path)
    losses = result["losses"]
    assert len(losses) == 5 and result["loss"] == losses[-1] < 0.9 * losses[0]
    assert (result["frames"], result["model"]) == (FRAMES + 1, task.model_path)
    with Store.open(campaign) as store:
        selector = cvae(campaign, store)
        selector.load_model(task.model_path)
        top = selector.select(3)
    assert "outlier" in [i for i, _ in top]
    assert all(score > 1.0 for _, score in top)  # local outlier factors: about 1 for an inlier


def test_training_is_deterministic_under_the_seed(trained: tuple[Path, TrainingTask, dict], tmp_path: Path) -> None:
    _, task, result = trained
    again = resolve(task.function)(**{**task.kwargs, "output": str(tmp_path / "again.pt")})
    assert again["losses"] == result["losses"]
    first, second = load(task.model_path).state_dict(), load(again["model"]).state_dict()
    assert all(torch.equal(first[name], second[name]) for name in first)


def test_a_restarted_selector_reloads_its_model_and_continues(
    trained: tuple[Path, TrainingTask, dict], tmp_path: Path
) -> None:
    task = trained[1]
    campaign = campaign_copy(trained, tmp_path)
    # Later frames of the same simulations, and a second map of noise.
    more = np.concatenate([md_maps(FRAMES + LATER, seed=0)[FRAMES:], noise_map(7)[None]])
    more_ids = [f"md.h5:{i}" for i in range(FRAMES, FRAMES + LATER)] + ["second-outlier"]
    with Store.open(campaign) as store:
        selector = cvae(campaign, store)
        selector.load_model(task.model_path)
        store.flush()
        selector.ingest(more_ids, more)
        expected = selector.select(4)
    # The store was closed (and flushed) with the selector's writes; a new coordinator restores from it.
    with Store.open(campaign) as store:
        restored = cvae(campaign, store)
        assert restored.model_path == task.model_path and restored.frames_seen == FRAMES + 1 + LATER + 1
    twin = cvae(tmp_path / "twin")
    twin.ingest(*frames_with_outlier())
    twin.load_model(task.model_path)
    twin.ingest(more_ids, more)
    assert twin.select(4) == expected
    assert "second-outlier" in [i for i, _ in expected]


def test_maps_must_be_square_grids_of_values_in_zero_one(tmp_path: Path) -> None:
    selector = cvae(tmp_path)
    maps = md_maps(3, seed=0)
    maps[2, 0, 0] = 1.5
    with pytest.raises(ValueError, match=r"maps of 1 of 3 frames: 'c' have values outside \[0, 1\]"):
        selector.ingest(["a", "b", "c"], maps)
    with pytest.raises(ValueError, match=r"scores \(h, w\) maps, one per frame; got features of shape \(5,\)"):
        selector.ingest(["a"], np.zeros((1, 5)))
    with pytest.raises(ValueError, match="holds no frames to train on"):
        selector.training_task("tasks/train")


def test_a_model_for_other_maps_is_refused(trained: tuple[Path, TrainingTask, dict], tmp_path: Path) -> None:
    selector = cvae(tmp_path)
    selector.ingest(["a"], np.zeros((1, 8, 8)))
    with pytest.raises(ValueError, match=r"trained on \(16, 16\) maps, not \(8, 8\)"):
        selector.load_model(trained[1].model_path)


def test_training_tasks_take_their_resources_from_the_config_and_number_their_data(tmp_path: Path) -> None:
    selector = cvae(tmp_path, train_cores=2, train_walltime=600)
    selector.ingest(["a"], md_maps(1, seed=0))
    task = selector.training_task(str(tmp_path / "abs"))
    assert (task.resources.gpus, task.resources.cores, task.resources.walltime) == (0, 2, 600)
    assert task.model_path == str(tmp_path.resolve() / "abs/model.pt")
    assert task.kwargs["data"].endswith("train-0000.npz")
    assert selector.training_task("again").kwargs["data"].endswith("train-0001.npz")
