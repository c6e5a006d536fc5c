"""Tests of the campaign store: buffered writes, committed reads, WAL behaviour, crash safety."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from mummi_like.store import SCHEMA_VERSION, Store, StoreError, TaskRecord
from mummi_like.tasks import Failure, Resources, TaskResult, TaskSpec, TaskState


def spec(task_id: str, scale: str = "s") -> TaskSpec:
    return TaskSpec(
        id=task_id,
        payload={"kind": "callable", "function": "math:sqrt", "args": [4]},
        workdir=f"tasks/{scale}/{task_id}",
        labels={"scale": scale},
    )


def reader_conn(path: Path) -> sqlite3.Connection:
    """A raw read-only connection, as another process would open it."""
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None)


@pytest.fixture
def store(tmp_path: Path):
    with Store.open(tmp_path) as s:
        yield s


def test_round_trip_of_add_transitions_and_result(store: Store) -> None:
    store.add_tasks([spec("t1")], time=0.5)
    store.transition("t1", TaskState.QUEUED, 1.0, attempt=1, job_id="t1#1")
    store.transition("t1", TaskState.RUNNING, 1.5, info={"host": "n1"})
    result = TaskResult(job_id="t1#1", ok=True, exit_code=0, value=2.0, started=1.0, ended=2.0, stdout="o", stderr="e")
    store.transition("t1", TaskState.DONE, 2.5, result=result)
    assert store.flush() == 6  # 1 task + the 3 transitions merged into 1 update + 4 history rows

    record = store.get("t1")
    assert isinstance(record, TaskRecord)
    assert record.spec == spec("t1")
    assert record.id == "t1"
    assert (record.state, record.attempt, record.failures, record.job_id) == (TaskState.DONE, 1, 0, "t1#1")
    assert (record.created, record.updated, record.started, record.ended) == (0.5, 2.5, 1.0, 2.0)
    assert (record.exit_code, record.signal, record.reason, record.value) == (0, None, None, 2.0)
    assert (record.stdout, record.stderr) == ("o", "e")
    assert store.history("t1")[2] == (TaskState.RUNNING, 1, 1.5, {"host": "n1"})


def test_transitions_merged_within_one_flush_equal_transitions_flushed_one_by_one(tmp_path: Path) -> None:
    failed = TaskResult(job_id="t1#1", ok=False, exit_code=3, started=1.0, ended=2.0,
                        failure=Failure(kind="exit", exit_code=3, message="exit code 3"))
    done = TaskResult(job_id="t1#2", ok=True, exit_code=0, value=[1], started=3.0, ended=4.0)
    steps = [
        dict(state=TaskState.QUEUED, time=1.0, attempt=1, job_id="t1#1"),
        dict(state=TaskState.RUNNING, time=1.5),
        dict(state=TaskState.RETRYING, time=2.0, failures=1, result=failed),
        dict(state=TaskState.QUEUED, time=2.5, attempt=2, job_id="t1#2"),
        dict(state=TaskState.RUNNING, time=3.0, reason="only a note"),
        dict(state=TaskState.DONE, time=4.0, result=done),
    ]
    records = []
    for flush_each in (True, False):
        with Store.open(tmp_path / str(flush_each)) as each:
            each.add_tasks([spec("t1")], time=0.0)
            for step in steps:
                fields = dict(step)
                each.transition("t1", fields.pop("state"), fields.pop("time"), **fields)
                if flush_each:
                    each.flush()
            each.flush()
            records.append((each.get("t1"), each.history("t1")))
    assert records[0] == records[1]
    record = records[1][0]
    assert (record.state, record.attempt, record.failures, record.job_id) == (TaskState.DONE, 2, 1, "t1#2")
    assert (record.exit_code, record.value, record.reason, record.started) == (0, [1], None, 3.0)


def test_new_attempt_result_replaces_the_previous_outputs(store: Store) -> None:
    store.add_tasks([spec("t1")], time=0.0)
    store.transition("t1", TaskState.QUEUED, 1.0, attempt=1, job_id="t1#1")
    failed = TaskResult(
        job_id="t1#1", ok=False, exit_code=3, value=None, started=1.0, ended=2.0,
        failure=Failure(kind="exit", exit_code=3, message="exit code 3"),
    )  # fmt: skip
    store.transition("t1", TaskState.RETRYING, 2.0, failures=1, result=failed)
    store.flush()
    record = store.get("t1")
    assert (record.state, record.failures, record.exit_code, record.reason) == (TaskState.RETRYING, 1, 3, "exit code 3")

    store.transition("t1", TaskState.QUEUED, 3.0, attempt=2, job_id="t1#2")
    killed = TaskResult(job_id="t1#2", ok=False, signal=9, failure=Failure(kind="signal", signal=9, message="killed"))
    store.transition("t1", TaskState.FAILED, 4.0, result=killed)
    store.flush()
    record = store.get("t1")
    # Nothing of attempt 1 lingers: exit code and times belong to attempt 2.
    assert (record.attempt, record.job_id, record.exit_code, record.signal) == (2, "t1#2", None, 9)
    assert (record.started, record.ended, record.reason, record.failures) == (None, None, "killed", 1)


def test_reason_without_result(store: Store) -> None:
    store.add_tasks([spec("t1")], time=0.0)
    store.transition("t1", TaskState.FAILED, 1.0, reason="dependency t0 failed")
    store.flush()
    assert store.get("t1").reason == "dependency t0 failed"


def test_history_is_in_order_with_attempts(store: Store) -> None:
    store.add_tasks([spec("t1"), spec("t2")], time=0.0)
    store.transition("t1", TaskState.QUEUED, 1.0, attempt=1)
    store.transition("t2", TaskState.QUEUED, 1.0, attempt=1)
    store.transition("t1", TaskState.RETRYING, 2.0, info={"why": "exit 1"})
    store.flush()
    store.transition("t1", TaskState.QUEUED, 3.0, attempt=2)
    store.transition("t1", TaskState.DONE, 4.0)
    store.flush()
    assert store.history("t1") == [
        (TaskState.CREATED, 0, 0.0, {}),
        (TaskState.QUEUED, 1, 1.0, {}),
        (TaskState.RETRYING, 1, 2.0, {"why": "exit 1"}),
        (TaskState.QUEUED, 2, 3.0, {}),
        (TaskState.DONE, 2, 4.0, {}),
    ]
    assert [h[0] for h in store.history("t2")] == [TaskState.CREATED, TaskState.QUEUED]


def test_counts_and_filters_per_scale_and_state(store: Store) -> None:
    store.add_tasks([spec("a1", "a"), spec("a2", "a"), spec("b1", "b"), spec("x", scale="")], time=0.0)
    store.transition("a2", TaskState.DONE, 1.0)
    store.transition("b1", TaskState.RUNNING, 1.0)
    store.flush()
    assert store.counts() == {"a": {"created": 1, "done": 1}, "b": {"running": 1}, "": {"created": 1}}
    assert [r.id for r in store.tasks()] == ["a1", "a2", "b1", "x"]
    assert [r.id for r in store.tasks(scale="a")] == ["a1", "a2"]
    assert [r.id for r in store.tasks(states=[TaskState.DONE, TaskState.RUNNING])] == ["a2", "b1"]
    assert [r.id for r in store.tasks(states=[TaskState.CREATED], scale="a")] == ["a1"]
    assert store.tasks(states=[]) == []
    assert store.task_ids() == {"a1", "a2", "b1", "x"}


def test_unflushed_writes_are_invisible_until_flush(tmp_path: Path) -> None:
    writer = Store.open(tmp_path)
    reader = Store.open(tmp_path, readonly=True)
    writer.add_tasks([spec("t1")], time=0.0)
    writer.log_event("tick", 0.0)
    assert reader.task_ids() == set()
    assert writer.task_ids() == set()  # the writer's own reads see committed data only
    assert reader.events() == []
    with pytest.raises(KeyError, match="t1"):
        reader.get("t1")

    assert writer.flush() == 3
    assert reader.task_ids() == {"t1"}
    assert reader.get("t1").state is TaskState.CREATED
    assert [e[2] for e in reader.events()] == ["tick"]
    assert writer.flush() == 0  # nothing buffered: a no-op
    reader.close()
    writer.close()


def test_database_is_in_wal_mode(store: Store) -> None:
    conn = reader_conn(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_reader_holding_a_snapshot_does_not_block_a_flush(store: Store) -> None:
    store.add_tasks([spec("t1")], time=0.0)
    store.flush()
    conn = reader_conn(store.path)
    conn.execute("BEGIN")
    assert conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 1  # the read transaction holds a snapshot

    store.add_tasks([spec("t2")], time=1.0)
    assert store.flush() == 2  # commits while the reader is mid-transaction
    assert conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 1  # its snapshot is unchanged
    conn.execute("COMMIT")
    assert conn.execute("SELECT COUNT(*) FROM tasks").fetchone()[0] == 2
    conn.close()


def test_readonly_open_of_missing_store_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match=r"no campaign store at .*campaign\.db") as info:
        Store.open(tmp_path / "nowhere", readonly=True)
    assert str(tmp_path / "nowhere" / Store.FILENAME) in str(info.value)
    assert not (tmp_path / "nowhere").exists()


def test_readonly_store_refuses_writes(tmp_path: Path) -> None:
    Store.open(tmp_path).close()
    with Store.open(tmp_path, readonly=True) as reader:
        with pytest.raises(StoreError, match="read-only"):
            reader.add_tasks([spec("t1")], time=0.0)
        with pytest.raises(StoreError, match="read-only"):
            reader.set_meta("k", 1)


def test_file_that_is_not_a_store_is_refused(tmp_path: Path) -> None:
    (tmp_path / Store.FILENAME).write_bytes(b"not a database, just some bytes" * 10)
    with pytest.raises(StoreError, match="cannot open campaign store"):
        Store.open(tmp_path)
    other = tmp_path / "other.db"
    sqlite3.connect(other).close()  # an empty SQLite file has schema version 0
    with pytest.raises(StoreError, match="found version 0"):
        Store(other, readonly=True)


def test_unknown_or_duplicate_tasks_are_refused_before_flush(store: Store) -> None:
    with pytest.raises(KeyError, match="ghost"):
        store.transition("ghost", TaskState.QUEUED, 1.0)
    with pytest.raises(KeyError, match="ghost"):
        store.transition("ghost", TaskState.QUEUED, 1.0, attempt=1)
    store.add_tasks([spec("t1")], time=0.0)
    with pytest.raises(ValueError, match="t1"):
        store.add_tasks([spec("t2"), spec("t1")], time=0.0)  # t1 is buffered already
    store.flush()
    with pytest.raises(ValueError, match="t1"):
        store.add_tasks([spec("t1")], time=0.0)  # t1 is committed
    with pytest.raises(ValueError, match="t3"):
        store.add_tasks([spec("t3"), spec("t3")], time=0.0)
    assert store.flush() == 0  # the refused batches buffered nothing
    assert store.task_ids() == {"t1"}
    with pytest.raises(KeyError, match="ghost"):
        store.history("ghost")


def test_events_filter_by_kind_and_since(store: Store) -> None:
    store.log_event("scale-start", 1.0, scale="a")
    store.log_event("retrain", 2.0, model="m", loss=0.5)
    store.log_event("scale-start", 3.0, scale="b")
    store.flush()
    events = store.events()
    assert [(e[1], e[2], e[3]) for e in events] == [
        (1.0, "scale-start", {"scale": "a"}),
        (2.0, "retrain", {"model": "m", "loss": 0.5}),
        (3.0, "scale-start", {"scale": "b"}),
    ]
    first_seq = events[0][0]
    assert [e[3] for e in store.events(kind="scale-start")] == [{"scale": "a"}, {"scale": "b"}]
    assert [e[2] for e in store.events(since=first_seq)] == ["retrain", "scale-start"]
    assert [e[3] for e in store.events(since=first_seq, kind="scale-start")] == [{"scale": "b"}]


def test_meta_is_committed_immediately(store: Store) -> None:
    assert store.get_meta("spec_hash", default="none") == "none"
    store.set_meta("spec_hash", {"sha": "abc", "n": 3})
    with Store.open(store.path.parent, readonly=True) as reader:
        assert reader.get_meta("spec_hash") == {"sha": "abc", "n": 3}
    store.set_meta("spec_hash", "def")
    assert store.get_meta("spec_hash") == "def"


def test_close_flushes_and_reopen_resumes(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.add_tasks([spec("t1")], time=0.0)
        store.transition("t1", TaskState.QUEUED, 1.0, attempt=1, job_id="j1")
    store.close()  # closing twice is harmless
    with Store.open(tmp_path) as store:
        # A new writer learns the attempt from the database for its history rows.
        store.transition("t1", TaskState.RUNNING, 2.0)
        store.flush()
        assert store.history("t1")[-1] == (TaskState.RUNNING, 1, 2.0, {})
        assert store.get("t1").job_id == "j1"


def test_flushed_data_survives_sigkill(tmp_path: Path) -> None:
    child = textwrap.dedent(
        """
        import os, sys
        from pathlib import Path
        from mummi_like.store import Store
        from mummi_like.tasks import TaskSpec, TaskState
        store = Store.open(Path(sys.argv[1]))
        def spec(i):
            return TaskSpec(id=i, payload={"kind": "callable", "function": "math:sqrt"}, workdir=i)
        store.add_tasks([spec("kept1"), spec("kept2")], time=0.0)
        store.transition("kept1", TaskState.QUEUED, 1.0, attempt=1, job_id="j1")
        store.log_event("tick", 1.0)
        store.flush()
        store.add_tasks([spec("lost")], time=2.0)
        store.transition("kept2", TaskState.QUEUED, 2.0, attempt=1)
        os.kill(os.getpid(), 9)
        """
    )
    proc = subprocess.run([sys.executable, "-c", child, str(tmp_path)], capture_output=True, timeout=60)
    assert proc.returncode == -9, proc.stderr.decode()
    assert (tmp_path / "campaign.db-wal").exists()  # killed before any checkpoint could clean up

    with Store.open(tmp_path, readonly=True) as reader:
        assert reader.task_ids() == {"kept1", "kept2"}
    with Store.open(tmp_path) as store:
        assert store.get("kept1").job_id == "j1"
        assert store.get("kept2").state is TaskState.CREATED  # its transition was only buffered
        assert [e[2] for e in store.events()] == ["tick"]


def test_database_files_follow_the_umask(tmp_path: Path) -> None:
    old = os.umask(0o077)
    try:
        with Store.open(tmp_path) as store:
            store.add_tasks([spec("t1")], time=0.0)
            store.flush()
            modes = {p.name: p.stat().st_mode & 0o777 for p in tmp_path.iterdir()}
    finally:
        os.umask(old)
    assert modes["campaign.db"] == 0o600
    assert all(mode & 0o077 == 0 for mode in modes.values()), modes


def test_task_resources_reads_scale_cores_and_gpus_without_parsing_specs(store: Store) -> None:
    big = spec("big", scale="fine").model_copy(update={"resources": Resources(cores=4, gpus=2)})
    store.add_tasks([spec("small"), big], time=0.0)
    store.flush()
    assert store.task_resources() == {"small": ("s", 1, 0), "big": ("fine", 4, 2)}


def synchronous_pragma(store: Store) -> int:
    """SQLite's synchronous level of the store's own connection (0 OFF, 1 NORMAL, 2 FULL): it is per connection."""
    return store._conn.execute("PRAGMA synchronous").fetchone()[0]


def test_a_store_commits_with_synchronous_full_unless_told_normal(tmp_path: Path) -> None:
    with Store.open(tmp_path / "default") as durable, Store.open(tmp_path / "fast", synchronous="normal") as fast:
        assert (synchronous_pragma(durable), synchronous_pragma(fast)) == (2, 1)
        assert durable._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_a_synchronous_setting_sqlite_would_take_but_the_store_does_not_offer_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="synchronous must be one of normal, full, not 'off'"):
        Store.open(tmp_path, synchronous="off")  # type: ignore[arg-type]
    assert not (tmp_path / Store.FILENAME).exists()


def test_integrity_check_passes_a_sound_store_and_names_each_broken_promise(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.add_tasks([spec("a"), spec("b").model_copy(update={"depends_on": ["a"]})], 1.0)
        store.transition("a", TaskState.QUEUED, 2.0, attempt=1, job_id="j1")
        store.transition("a", TaskState.DONE, 3.0)
        store.flush()
        assert store.check_integrity() == []
    with sqlite3.connect(tmp_path / Store.FILENAME) as conn:  # what a crash must never leave behind
        conn.execute("UPDATE tasks SET state = 'done' WHERE id = 'b'")
        conn.execute("INSERT INTO history (task_id, attempt, state, time) VALUES ('a', 0, 'running', 4.0)")
        conn.execute("INSERT INTO history (task_id, attempt, state, time) VALUES ('ghost', 1, 'done', 4.0)")
        conn.execute("UPDATE tasks SET state = 'running' WHERE id = 'a'")
    with Store.open(tmp_path, readonly=True) as store:
        problems = store.check_integrity()
    assert sorted(problems) == [
        "history rows of unknown task ghost",
        "task a changed state after it ended done",
        "task a has attempts out of order: [0, 1, 1, 0]",
        "task b is done but its dependencies a are not",
        "task b is done but its history ends created",
    ]


def test_a_version_3_store_gains_resource_columns_from_its_specs_and_keeps_everything(tmp_path: Path) -> None:
    big = spec("big", "fine").model_copy(update={"resources": Resources(cores=4, gpus=2)})
    with Store.open(tmp_path) as store:
        store.add_tasks([spec("small"), big], 1.0)
        store.transition("big", TaskState.DONE, 2.0)
    with sqlite3.connect(tmp_path / Store.FILENAME) as conn:  # back to the version-3 layout
        conn.executescript("DROP INDEX tasks_scale_state; ALTER TABLE tasks DROP COLUMN cores; "
                           "ALTER TABLE tasks DROP COLUMN gpus; CREATE INDEX tasks_scale ON tasks(scale); "
                           "PRAGMA user_version=3;")
    with Store.open(tmp_path) as store:
        assert store.task_resources() == {"small": ("s", 1, 0), "big": ("fine", 4, 2)}
        assert store.counts() == {"s": {"created": 1}, "fine": {"done": 1}}
        assert store.check_integrity() == []


def files_and_hashes(folder: Path) -> dict[str, str]:
    """Every file of ``folder`` by name, with a hash of its bytes: what must not change when a store is refused."""
    return {path.name: hashlib.sha256(path.read_bytes()).hexdigest() for path in sorted(folder.iterdir())}


def store_of_version(folder: Path, version: int) -> Path:
    """A closed campaign store with one task whose ``user_version`` says ``version``."""
    with Store.open(folder) as store:
        store.add_tasks([spec("t1")], 1.0)
    with sqlite3.connect(folder / Store.FILENAME) as conn:
        conn.execute(f"PRAGMA user_version={version}")
    conn.close()
    return folder / Store.FILENAME


@pytest.mark.parametrize("readonly", [False, True])
def test_a_store_of_a_newer_version_is_refused_with_the_fix_and_left_byte_for_byte(
    tmp_path: Path, readonly: bool
) -> None:
    path = store_of_version(tmp_path, SCHEMA_VERSION + 1)
    before = files_and_hashes(tmp_path)
    with pytest.raises(StoreError) as refused:
        Store.open(tmp_path, readonly=readonly)
    assert str(refused.value) == (
        f"{path} was written by a newer mummi-like (store schema {SCHEMA_VERSION + 1}; this one reads schema "
        f"{SCHEMA_VERSION} and older): upgrade mummi-like to open it; the store was left as it is")
    assert files_and_hashes(tmp_path) == before, "not migrated, not switched to WAL, no journal left behind"


@pytest.mark.parametrize("readonly", [False, True])
def test_a_store_older_than_any_migration_says_so(tmp_path: Path, readonly: bool) -> None:
    path = store_of_version(tmp_path, 1)
    before = files_and_hashes(tmp_path)
    with pytest.raises(StoreError, match=(
        rf"^{path} was written by an older mummi-like whose store this one cannot read \(store schema 1; this one "
        rf"migrates schemas 2, 3 and reads {SCHEMA_VERSION}\): continue the campaign with the mummi-like that began it$"
    )):
        Store.open(tmp_path, readonly=readonly)
    assert files_and_hashes(tmp_path)[Store.FILENAME] == before[Store.FILENAME]  # a reader may add SQLite's -shm


def test_a_migratable_store_is_migrated_by_a_coordinator_not_by_a_read_only_look(tmp_path: Path) -> None:
    path = store_of_version(tmp_path, SCHEMA_VERSION - 1)
    before = files_and_hashes(tmp_path)
    with pytest.raises(StoreError, match=rf"has store schema {SCHEMA_VERSION - 1}, older than {SCHEMA_VERSION}: a "
                                         rf"coordinator migrates it .*`mummi-like resume {tmp_path}`"):
        Store.open(tmp_path, readonly=True)
    assert files_and_hashes(tmp_path)[path.name] == before[path.name]


def test_another_programs_database_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / Store.FILENAME
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)")
    conn.close()
    before = files_and_hashes(tmp_path)
    with pytest.raises(StoreError, match=r"is not a campaign store \(found version 0 and 1 tables or indexes of "
                                         r"another program\); choose another campaign directory"):
        Store.open(tmp_path)
    assert files_and_hashes(tmp_path) == before
