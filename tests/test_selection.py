"""The selector interface on a toy selector whose scores are known, the pool, and its rows in the store."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pytest

from mummi_like.selection import (
    CandidatePool,
    Selector,
    SelectorConfig,
    SelectorContext,
    TrainingTask,
)
from mummi_like.store import CandidateRow, Store
from mummi_like.tasks import CallablePayload, Resources, TaskSpec


class FirstFeature(Selector):
    """Scores a frame by its first feature, so every expected order can be read off the input."""

    config_model = SelectorConfig

    def _scores(self) -> np.ndarray:
        return self.pool.vectors[:, 0].astype(np.float64)


def toy(tmp_path: Path, pool_size: int = 10, store: Store | None = None) -> FirstFeature:
    return FirstFeature(SelectorConfig(pool_size=pool_size), SelectorContext("toy", tmp_path, seed=0, store=store))


def frames(*first: float) -> np.ndarray:
    """One frame (a 2x2 map) per value, whose first feature is that value."""
    maps = np.zeros((len(first), 2, 2))
    maps[:, 0, 0] = first
    return maps


def test_select_returns_at_most_k_highest_first_and_never_twice(tmp_path: Path) -> None:
    selector = toy(tmp_path)
    selector.ingest(["a", "b", "c", "d"], frames(0.5, 3.0, 1.0, 2.0))
    assert selector.select(2) == [("b", 3.0), ("d", 2.0)]
    selector.ingest(["b", "d", "e"], frames(9.0, 9.0, 0.75))  # b and d were promoted: their return is ignored
    assert selector.select(10) == [("c", 1.0), ("e", 0.75), ("a", 0.5)]
    assert selector.select(3) == []
    assert selector.select(0) == []
    assert selector.pool.selected_ids == ["b", "d", "c", "e", "a"]
    with pytest.raises(ValueError, match="k >= 0"):
        selector.select(-1)


def test_equal_scores_go_to_the_older_frame(tmp_path: Path) -> None:
    selector = toy(tmp_path)
    selector.ingest(["early", "late"], frames(1.0, 1.0))
    selector.ingest(["later"], frames(1.0))
    assert [i for i, _ in selector.select(3)] == ["early", "late", "later"]


def test_a_full_pool_drops_the_lowest_scores_oldest_first_and_may_take_a_dropped_frame_again(tmp_path: Path) -> None:
    selector = toy(tmp_path, pool_size=3)
    selector.ingest(["a", "b", "c"], frames(1.0, 5.0, 1.0))
    selector.ingest(["d", "e"], frames(4.0, 1.0))  # one of the three 1.0s stays: the newest, e
    assert selector.pool.ids == ["b", "d", "e"]
    selector.ingest(["a"], frames(6.0))
    assert selector.pool.ids == ["b", "d", "a"]
    assert selector.frames_seen == 6


def test_a_batch_repeating_an_id_keeps_the_first(tmp_path: Path) -> None:
    selector = toy(tmp_path)
    selector.ingest(["a", "a", "b"], frames(1.0, 7.0, 2.0))
    assert selector.select(2) == [("b", 2.0), ("a", 1.0)]


def test_bad_batches_are_refused_whole_with_the_frames_named(tmp_path: Path) -> None:
    selector = toy(tmp_path)
    bad = frames(1.0, 2.0, 3.0)
    bad[1, 1, 1] = np.nan
    bad[2, 0, 1] = np.inf
    with pytest.raises(ValueError, match=r"2 of 3 frames: 'f:1', 'f:2' hold NaN or infinite values"):
        selector.ingest(["f:0", "f:1", "f:2"], bad)
    assert len(selector.pool) == 0 and selector.frames_seen == 0
    with pytest.raises(ValueError, match="2 ids for 3 frames"):
        selector.ingest(["a", "b"], frames(1.0, 2.0, 3.0))
    with pytest.raises(ValueError, match="non-empty strings"):
        selector.ingest(["a", ""], frames(1.0, 2.0))
    with pytest.raises(ValueError, match="no feature axis"):
        selector.ingest(["a", "b"], np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="numeric array"):
        selector.ingest(["a"], np.array([["x"]]))
    selector.ingest(["a"], frames(1.0))
    with pytest.raises(ValueError, match=r"frames of shape \(4,\) differ from the \(2, 2\)"):
        selector.ingest(["b"], np.ones((1, 4)))


def test_a_selector_without_a_model_never_retrains(tmp_path: Path) -> None:
    selector = toy(tmp_path)
    selector.ingest(["a"], frames(1.0))
    assert selector.retrain_due() is False
    assert selector.training_task("tasks/train") is None
    with pytest.raises(TypeError, match="'toy' .FirstFeature. trains no model"):
        selector.load_model("model.pt")


def test_the_pool_is_written_through_to_the_store_and_restored_after_a_restart(tmp_path: Path) -> None:
    crashed = Store.open(tmp_path)
    first = toy(tmp_path, pool_size=3, store=crashed)
    first.ingest(["a", "b", "c", "d"], frames(1.0, 4.0, 3.0, 2.0))
    assert first.select(1) == [("b", 4.0)]
    assert crashed.load_candidates("toy") == []  # buffered until the loop's flush
    crashed.flush()
    first.select(1)  # promoted after the last flush: lost in a crash, as a task started then would be

    # A restarted coordinator opens the store afresh and sees what was committed only.
    with Store.open(tmp_path) as store:
        rows = store.load_candidates("toy")
        assert [(r.id, r.score, r.selected) for r in rows] == [("b", 4.0, True), ("c", 3.0, False), ("d", 2.0, False)]
        restored = toy(tmp_path, pool_size=3, store=store)
        assert restored.pool.ids == ["c", "d"] and restored.pool.selected_ids == ["b"]
        assert restored.frames_seen == 4 and restored.frame_shape == (2, 2)
        np.testing.assert_array_equal(restored.pool.vectors, frames(3.0, 2.0).reshape(2, -1))
        restored.ingest(["b", "e"], frames(9.0, 2.5))  # b was promoted before the restart
        assert restored.select(5) == [("c", 3.0), ("e", 2.5), ("d", 2.0)]
    crashed.close()


def test_a_restored_pool_is_trimmed_to_a_smaller_pool_size(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        toy(tmp_path, pool_size=4, store=store).ingest(["a", "b", "c"], frames(1.0, 3.0, 2.0))
    with Store.open(tmp_path) as store:
        assert toy(tmp_path, pool_size=2, store=store).pool.ids == ["b", "c"]
        store.flush()
        assert [r.id for r in store.load_candidates("toy")] == ["b", "c"]


def test_store_keeps_one_pending_operation_per_candidate(tmp_path: Path) -> None:
    row = CandidateRow("a", 0, 1.0, False, np.ones(2, dtype="<f4").tobytes())
    with Store.open(tmp_path) as store:
        store.save_candidates("s", [row, row._replace(id="b", seq=1)])
        store.update_candidates("s", [("a", 5.0, True)])
        store.drop_candidates("s", ["b"])
        store.save_selector_state("s", {"n": 1})
        store.save_selector_state("s", {"n": 2})
        assert store.pending() == 3
        store.flush()
        assert store.load_candidates("s") == [row._replace(score=5.0, selected=True)]
        assert store.load_selector_state("s") == {"n": 2}
        assert store.load_selector_state("other") is None and store.load_candidates("other") == []
        store.drop_candidates("s", ["a"])
        store.save_candidates("s", [row])  # dropped and taken again within one flush
        store.update_candidates("s", [("ghost", 1.0, False)])  # never saved: ignored
        store.flush()
        assert store.load_candidates("s") == [row]
        store.update_candidates("s", [("a", 2.0, False)])
        store.flush()
        assert store.load_candidates("s")[0].score == 2.0
        store.drop_candidates("s", ["a"])
        with pytest.raises(KeyError, match="'a' of selector 's' was dropped"):
            store.update_candidates("s", [("a", 3.0, False)])


def test_a_store_from_before_the_selector_tables_is_upgraded_and_keeps_its_tasks(tmp_path: Path) -> None:
    task = TaskSpec(id="t1", payload={"kind": "callable", "function": "math:sqrt"}, workdir="tasks/t1")
    with Store.open(tmp_path) as store:
        store.add_tasks([task], time=0.0)
    conn = sqlite3.connect(tmp_path / Store.FILENAME)
    conn.executescript(  # back to the version-2 layout: no selector tables, no resource columns
        "DROP TABLE candidates; DROP TABLE selector_state; DROP INDEX tasks_scale_state; "
        "ALTER TABLE tasks DROP COLUMN cores; ALTER TABLE tasks DROP COLUMN gpus; "
        "CREATE INDEX tasks_scale ON tasks(scale); PRAGMA user_version=2;"
    )
    conn.close()
    with Store.open(tmp_path) as store:
        assert store.get("t1").spec == task
        store.save_selector_state("s", {})
    with Store.open(tmp_path, readonly=True) as reader:
        assert reader.load_selector_state("s") == {}


def test_training_task_is_checked_when_built_and_gives_a_callable_payload() -> None:
    task = TrainingTask("pkg.mod:train", {"data": "/d.npz", "epochs": 2}, Resources(cores=2), "/m.pt")
    assert task.payload == CallablePayload(function="pkg.mod:train", kwargs={"data": "/d.npz", "epochs": 2})
    with pytest.raises(ValueError, match="not of the form"):
        TrainingTask("pkg.mod.train", {}, Resources(), "/m.pt")
    with pytest.raises(TypeError, match="not JSON serializable"):
        TrainingTask("pkg.mod:train", {"data": Path("/d.npz")}, Resources(), "/m.pt")


def test_pool_in_memory_tracks_waiting_and_promoted_frames() -> None:
    pool = CandidatePool(capacity=2)
    pool.add(["a", "b", "c"], np.eye(3), np.arange(3))
    pool.rescore(np.array([2.0, 1.0, 3.0]))
    assert pool.trim() == ["b"]
    assert pool.take(pool.best()) == ("c", 3.0)
    assert (len(pool), "c" in pool, "b" in pool) == (1, True, False)
    np.testing.assert_array_equal(pool.selected_vectors, [[0, 0, 1]])
    with pytest.raises(ValueError, match="2 scores for a pool of 1 frames"):
        pool.rescore(np.ones(2))
