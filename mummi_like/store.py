"""The campaign store: one SQLite database that is the campaign's single source of truth.

Every task, its state history, backend job ids, attempts, outputs, and a
campaign-level event log live in ``campaign.db`` in the campaign directory, so a
campaign can be inspected while it runs and resumed after a crash.

The coordinator persists thousands of tasks per second, which a commit per
write cannot sustain. Writes are therefore *buffered* in Python and written by
:meth:`Store.flush` in one transaction with ``executemany``; the campaign loop
calls it once per tick. Whatever a flush committed survives a ``kill -9`` of the
coordinator, and whatever was still buffered is lost, which resume handles by
asking the backend again.

Durability. The store runs with SQLite's ``synchronous=FULL`` by default: each
commit syncs the write-ahead log to disk before the loop goes on, so not even a
power loss or an OS crash loses a committed result. ``synchronous=NORMAL`` syncs
the log only at checkpoints: commits still survive a crash of the coordinator
and the store is never corrupted, but a power loss may roll back the last
commits (whose tasks then run again on resume). FULL costs one ``fsync`` per
commit, and the loop commits at most every ``Campaign.commit_interval`` (20 ms)
whatever the task rate, so it costs at most one sync per 20 ms: measured with
``bench/durability.py``, throughput of persisted no-op tasks and of ``/bin/true``
under FULL was within the run-to-run noise of NORMAL (0.93-1.31x on a 2-core
machine), a commit taking 0.3-0.8 ms longer. A spec may still choose NORMAL
(``store: {synchronous: normal}``) on a file system where a sync is slow.

Selectors keep their candidate pool here too (table ``candidates``, one row per
frame a selector holds, with its vector and score, and ``selector_state``, one
JSON document per selector). Those writes are buffered like task writes, so a
promotion (a candidate marked selected) and the fine task it creates commit in
the same flush: a crash loses both or neither.

The database runs in WAL mode so that other processes (a ``status`` command, a
dashboard) read it with :meth:`Store.open` ``(..., readonly=True)`` while the
coordinator writes, without blocking it or being blocked. The writer is meant to
be one process and one thread: the campaign loop.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple, get_args

from mummi_like.crashpoints import crash_point
from mummi_like.tasks import TaskResult, TaskSpec, TaskState

SCHEMA_VERSION = 4
"""Stored in ``PRAGMA user_version``; a store written by another layout is refused, not misread."""

_MIGRATIONS = {
    2: """
CREATE TABLE candidates (
    selector TEXT NOT NULL,
    id       TEXT NOT NULL,
    seq      INTEGER NOT NULL,
    score    REAL NOT NULL,
    selected INTEGER NOT NULL,
    vector   BLOB NOT NULL,
    PRIMARY KEY (selector, id)
) WITHOUT ROWID;
CREATE TABLE selector_state (
    selector TEXT PRIMARY KEY,
    state    TEXT NOT NULL
);
""",
    3: """
ALTER TABLE tasks ADD COLUMN cores INTEGER NOT NULL DEFAULT 1;
ALTER TABLE tasks ADD COLUMN gpus INTEGER NOT NULL DEFAULT 0;
UPDATE tasks SET
    cores = (SELECT json_extract(spec, '$.resources.cores') FROM specs WHERE specs.id = tasks.id),
    gpus  = (SELECT json_extract(spec, '$.resources.gpus') FROM specs WHERE specs.id = tasks.id);
DROP INDEX tasks_scale;
CREATE INDEX tasks_scale_state ON tasks(scale, state);
""",
}
"""Schema version -> the statements that bring a writable store of that version to the next one.

Version 3 adds the selector tables; version 4 copies each task's cores and GPUs
out of its spec into the tasks table and indexes (scale, state), so that
`status` sums recent busy time and counts tasks without parsing 100,000 specs.
A campaign begun under an older version still resumes (the migration runs once,
when a coordinator opens it for writing).
"""

Synchronous = Literal["normal", "full"]
"""The values of SQLite's ``PRAGMA synchronous`` a writable store may run with (see the module docstring)."""
SYNCHRONOUS: Synchronous = "full"
"""The default :data:`Synchronous` setting: nothing committed is lost, even to a power loss (module docstring)."""

BUSY_TIMEOUT_S = 30.0
"""How long a connection waits for a lock (a checkpoint, another writer) before giving up."""

_SCHEMA = """
CREATE TABLE tasks (
    id        TEXT PRIMARY KEY,
    scale     TEXT NOT NULL,
    state     TEXT NOT NULL,
    attempt   INTEGER NOT NULL,
    failures  INTEGER NOT NULL,
    job_id    TEXT,
    created   REAL NOT NULL,
    updated   REAL NOT NULL,
    started   REAL,
    ended     REAL,
    exit_code INTEGER,
    signal    INTEGER,
    reason    TEXT,
    value     TEXT,
    stdout    TEXT,
    stderr    TEXT
);
CREATE INDEX tasks_state ON tasks(state);
-- Specs apart from the task rows that every transition rewrites: a spec is written once.
CREATE TABLE specs (
    id   TEXT PRIMARY KEY,
    spec TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX tasks_scale ON tasks(scale);
CREATE TABLE history (
    seq     INTEGER PRIMARY KEY,
    task_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    state   TEXT NOT NULL,
    time    REAL NOT NULL,
    info    TEXT
);
CREATE INDEX history_task ON history(task_id);
CREATE TABLE events (
    seq  INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
""" + _MIGRATIONS[2] + _MIGRATIONS[3]

_INSERT_TASK = (
    "INSERT INTO tasks (id, scale, state, attempt, failures, created, updated, cores, gpus) "
    "VALUES (?, ?, ?, 0, 0, ?, ?, ?, ?)"
)
_INSERT_SPEC = "INSERT INTO specs (id, spec) VALUES (?, ?)"

# One statement for every transition, so that a flush runs all of them, in order,
# in a single executemany. Optional fields keep their value when passed NULL
# (COALESCE); the outputs of an attempt are replaced as a whole when ?6 says a
# result came with the transition, so nothing of an earlier attempt lingers.
_UPDATE_TASK = """
UPDATE tasks SET
    state     = ?1,
    updated   = ?2,
    attempt   = COALESCE(?3, attempt),
    failures  = COALESCE(?4, failures),
    job_id    = COALESCE(?5, job_id),
    started   = CASE WHEN ?6 THEN ?7 ELSE started END,
    ended     = CASE WHEN ?6 THEN ?8 ELSE ended END,
    exit_code = CASE WHEN ?6 THEN ?9 ELSE exit_code END,
    signal    = CASE WHEN ?6 THEN ?10 ELSE signal END,
    value     = CASE WHEN ?6 THEN ?11 ELSE value END,
    stdout    = CASE WHEN ?6 THEN ?12 ELSE stdout END,
    stderr    = CASE WHEN ?6 THEN ?13 ELSE stderr END,
    reason    = CASE WHEN ?14 THEN ?15 ELSE reason END
WHERE id = ?16
"""

_INSERT_HISTORY = "INSERT INTO history (task_id, attempt, state, time, info) VALUES (?, ?, ?, ?, ?)"
_INSERT_EVENT = "INSERT INTO events (time, kind, data) VALUES (?, ?, ?)"

# A candidate row is upserted whole, updated (score and flag only: the vector is
# written once) or deleted; the buffer keeps one pending operation per candidate,
# so the three statements may run in any order within a flush.
_UPSERT_CANDIDATE = """
INSERT INTO candidates (selector, id, seq, score, selected, vector) VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (selector, id) DO UPDATE SET
    seq = excluded.seq, score = excluded.score, selected = excluded.selected, vector = excluded.vector
"""
_UPDATE_CANDIDATE = "UPDATE candidates SET score = ?, selected = ? WHERE selector = ? AND id = ?"
_DELETE_CANDIDATE = "DELETE FROM candidates WHERE selector = ? AND id = ?"
_UPSERT_SELECTOR_STATE = (
    "INSERT INTO selector_state (selector, state) VALUES (?, ?) "
    "ON CONFLICT (selector) DO UPDATE SET state = excluded.state"
)

_TASK_COLUMNS = (
    "specs.spec, state, attempt, failures, job_id, created, updated, started, ended, "
    "exit_code, signal, reason, value, stdout, stderr"
)
_TASKS_WITH_SPECS = "tasks JOIN specs ON specs.id = tasks.id"


def _merge_update(earlier: tuple[Any, ...], later: tuple[Any, ...]) -> tuple[Any, ...]:
    """One UPDATE row with the effect of applying ``earlier`` then ``later`` (rows as for ``_UPDATE_TASK``)."""
    state, updated, attempt, failures, job_id = later[:5]
    kept = (
        attempt if attempt is not None else earlier[2],
        failures if failures is not None else earlier[3],
        job_id if job_id is not None else earlier[4],
    )
    outputs = later[5:13] if later[5] else earlier[5:13]
    reason = later[13:15] if later[13] else earlier[13:15]
    return (state, updated, *kept, *outputs, *reason, later[15])


class CandidateRow(NamedTuple):
    """One frame a selector holds: waiting in its pool, or promoted already."""

    id: str
    """The frame's id, unique within its selector (e.g. ``"<file>:<frame>"``)."""
    seq: int
    """Arrival order within the selector; breaks ties between equal scores."""
    score: float
    """The selector's last score; higher is more worth promoting."""
    selected: bool
    """Whether the frame was promoted; kept so that it is never returned again."""
    vector: bytes
    """What the selector keeps of the frame, in its own encoding (the store does not read it)."""


class StoreError(RuntimeError):
    """The campaign store cannot be opened, read or written; the message says what to do."""


@dataclass
class TaskRecord:
    """A task as the store knows it: its spec plus where it stands.

    Fields describing an attempt's outcome (``started`` ... ``stderr``) belong
    to the last attempt that reported a result.
    """

    spec: TaskSpec
    state: TaskState
    attempt: int
    """Number of the current or last attempt; 0 before the first submission."""
    failures: int
    """Failed attempts so far, which the retry policy counts against ``max_retries``."""
    job_id: str | None
    created: float
    updated: float
    started: float | None
    ended: float | None
    exit_code: int | None
    signal: int | None
    reason: str | None
    """Message of the last failure, or ``None``."""
    value: Any
    """JSON result of a callable; ``None`` otherwise."""
    stdout: str | None
    """Path of the attempt's captured standard output."""
    stderr: str | None
    """Path of the attempt's captured standard error."""

    @property
    def id(self) -> str:
        """The task id, from its spec."""
        return self.spec.id


def _header_version(path: Path) -> int:
    """The ``user_version`` in the header of the SQLite file at ``path``; 0 when there is no such file.

    A store in WAL mode may hold a newer value in its WAL until a checkpoint,
    so only a refusal of a newer store may rely on this: the WAL can only be
    newer still.
    """
    try:
        with open(path, "rb") as handle:
            header = handle.read(64)
    except OSError:
        return 0
    if len(header) < 64 or not header.startswith(b"SQLite format 3\x00"):
        return 0
    return int.from_bytes(header[60:64], "big", signed=True)


class Store:
    """Buffered writer and reader of a campaign's ``campaign.db``.

    Parameters
    ----------
    path
        The database file. A writable store creates it and its schema when
        missing; use :meth:`open` to name the campaign directory instead.
    readonly
        Open without write access, for processes that watch a running campaign.
        Such a store never takes a write lock, so it cannot slow the coordinator.
    synchronous
        SQLite's ``synchronous`` setting of a writable store: what a commit
        survives (see the module docstring).

    Raises
    ------
    StoreError
        When a read-only store does not exist, the file is not a campaign
        store of this version, or ``synchronous`` is not a :data:`Synchronous` value.

    Notes
    -----
    Writes (:meth:`add_tasks`, :meth:`transition`, :meth:`log_event`, and the
    selector writes :meth:`save_candidates`, :meth:`update_candidates`,
    :meth:`drop_candidates`, :meth:`save_selector_state`) are only buffered;
    reads see committed data only, i.e. what the last :meth:`flush` wrote.
    :meth:`set_meta` is the exception: it commits at once, because metadata is
    written rarely and must not wait for a loop tick.
    """

    FILENAME = "campaign.db"

    def __init__(self, path: Path, readonly: bool = False, synchronous: Synchronous = SYNCHRONOUS) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if synchronous not in get_args(Synchronous):
            raise StoreError(f"synchronous must be one of {', '.join(get_args(Synchronous))}, not {synchronous!r}")
        self.synchronous = synchronous
        if readonly and not self.path.is_file():
            directory = self.path.parent
            raise StoreError(
                f"no campaign store at {self.path}: is {directory} a campaign directory? "
                "run `mummi-like run SPEC` first"
            )
        # Buffered rows, one list per statement. Rows of different tables do not
        # depend on each other once their values are resolved (see transition),
        # so flushing the lists one after the other, each in its own order,
        # writes the same data as replaying the calls one by one.
        self._new_tasks: list[tuple[Any, ...]] = []
        # One pending UPDATE per task: later transitions of a task within one flush are
        # merged into it, so a task that is queued, runs and ends between two commits costs
        # one row write instead of three (its history keeps every transition).
        self._updates: dict[str, tuple[Any, ...]] = {}
        self._history: list[tuple[Any, ...]] = []
        self._events: list[tuple[Any, ...]] = []
        # The last pending operation per (selector, candidate id), and the last
        # state per selector: a pool rescored many times between two flushes
        # costs one row write per candidate.
        self._candidates: dict[tuple[str, str], tuple[str, tuple[Any, ...]]] = {}
        self._selector_states: dict[str, str] = {}
        # Current attempt of every task this writer has added or moved, buffered
        # changes included, so a history row gets its attempt without a flush.
        self._attempts: dict[str, int] = {}
        self._closed = False
        try:
            self._conn = self._connect()
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"cannot open campaign store {self.path}: {exc}") from exc

    def _connect(self) -> sqlite3.Connection:
        """Open the connection, set it up for WAL, and check or create the schema."""
        header = _header_version(self.path)
        if header > SCHEMA_VERSION:  # refused before SQLite opens it and adds its WAL files
            raise StoreError(self._newer(header))
        if self.readonly:
            uri = f"{self.path.resolve().as_uri()}?mode=ro"
            conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        else:
            conn = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            refusal = self._refusal(conn, version)
            if refusal is not None:  # before anything below writes to the file
                raise StoreError(refusal)
            if not self.readonly:
                mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
                if mode != "wal":
                    raise StoreError(
                        f"{self.path}: SQLite refused WAL mode (got {mode!r}); put the campaign directory "
                        "on a local file system"
                    )
                conn.execute(f"PRAGMA synchronous={self.synchronous.upper()}")
                if version == 0:
                    conn.executescript(f"BEGIN IMMEDIATE;{_SCHEMA}PRAGMA user_version={SCHEMA_VERSION};COMMIT;")
                    version = SCHEMA_VERSION
                while version in _MIGRATIONS:
                    script = _MIGRATIONS[version]
                    version += 1
                    conn.executescript(f"BEGIN IMMEDIATE;{script}PRAGMA user_version={version};COMMIT;")
        except BaseException:
            conn.close()
            raise
        return conn

    def _newer(self, version: int) -> str:
        """The refusal of a store of schema ``version``, newer than this mummi-like's."""
        return (
            f"{self.path} was written by a newer mummi-like (store schema {version}; this one reads schema "
            f"{SCHEMA_VERSION} and older): upgrade mummi-like to open it; the store was left as it is"
        )

    def _refusal(self, conn: sqlite3.Connection, version: int) -> str | None:
        """Why the database cannot be opened as this store, or ``None`` when it can.

        Checked before anything is written to it, so that a store this
        mummi-like must not touch (a newer one above all: migrating it back
        would lose what the newer version keeps) is left byte for byte as it was.
        """
        if version > SCHEMA_VERSION:
            return self._newer(version)
        if version == 0:
            tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if tables:
                return (
                    f"{self.path} is not a campaign store (found version 0 and {tables} tables or indexes of another "
                    "program); choose another campaign directory"
                )
            if self.readonly:
                return f"{self.path} is not a campaign store (found version 0: an empty database)"
            return None
        if version != SCHEMA_VERSION and version not in _MIGRATIONS:
            return (
                f"{self.path} was written by an older mummi-like whose store this one cannot read (store schema "
                f"{version}; this one migrates schemas {', '.join(map(str, sorted(_MIGRATIONS)))} and reads "
                f"{SCHEMA_VERSION}): continue the campaign with the mummi-like that began it"
            )
        if version != SCHEMA_VERSION and self.readonly:
            return (
                f"{self.path} has store schema {version}, older than {SCHEMA_VERSION}: a coordinator migrates it when "
                f"it opens it (`mummi-like resume {self.path.parent}`), which a read-only look cannot do"
            )
        return None

    @classmethod
    def open(cls, campaign_dir: Path, readonly: bool = False, synchronous: Synchronous = SYNCHRONOUS) -> Store:
        """Open the store of a campaign directory, creating both when writable.

        Parameters
        ----------
        campaign_dir
            The campaign directory; the database is ``campaign_dir / FILENAME``.
        readonly, synchronous
            See :class:`Store`.
        """
        campaign_dir = Path(campaign_dir)
        if not readonly:
            campaign_dir.mkdir(parents=True, exist_ok=True)
        return cls(campaign_dir / cls.FILENAME, readonly=readonly, synchronous=synchronous)

    # -- buffered writes -------------------------------------------------------

    def _require_writable(self) -> None:
        if self.readonly:
            raise StoreError(f"campaign store {self.path} is open read-only")

    def _current_attempt(self, task_id: str) -> int:
        """The task's attempt with buffered changes applied; KeyError for an unknown task."""
        attempt = self._attempts.get(task_id)
        if attempt is None:
            row = self._conn.execute("SELECT attempt FROM tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                raise KeyError(f"no task {task_id!r} in campaign store {self.path}")
            attempt = self._attempts[task_id] = row[0]
        return attempt

    def add_tasks(self, specs: Iterable[TaskSpec], time: float) -> None:
        """Buffer new tasks in state ``created``, attempt 0.

        Duplicate ids are refused here rather than at flush, where one bad row
        would roll back the whole tick's writes. Either all ``specs`` are
        buffered or, on error, none.

        Raises
        ------
        ValueError
            When a task id is already in the store or its buffer, or repeats
            within ``specs``.
        """
        self._require_writable()
        batch = list(specs)
        ids: set[str] = set()
        for spec in batch:
            if spec.id in ids or spec.id in self._attempts:
                raise ValueError(f"task {spec.id!r} added twice to campaign store {self.path}")
            ids.add(spec.id)
        # One query for the whole batch: a query per task would cost more than the insert.
        committed = self._conn.execute(
            "SELECT id FROM tasks WHERE id IN (SELECT value FROM json_each(?)) LIMIT 1", (json.dumps(list(ids)),)
        ).fetchone()
        if committed is not None:
            raise ValueError(f"task {committed[0]!r} is already in campaign store {self.path}")
        created = TaskState.CREATED.value
        self._new_tasks.extend((s.id, s.model_dump_json(), s.scale, created, time, time, s.resources.cores,
                                s.resources.gpus) for s in batch)
        self._history.extend((s.id, 0, created, time, None) for s in batch)
        self._attempts.update(dict.fromkeys(ids, 0))

    def transition(
        self,
        task_id: str,
        state: TaskState,
        time: float,
        *,
        attempt: int | None = None,
        job_id: str | None = None,
        failures: int | None = None,
        info: dict[str, Any] | None = None,
        result: TaskResult | None = None,
        reason: str | None = None,
    ) -> None:
        """Buffer a state change of a task and its history row.

        Parameters
        ----------
        task_id
            A task already in the store or added to the buffer.
        state
            The new state.
        time
            When it happened (campaign clock, seconds).
        attempt, job_id, failures
            New values; ``None`` keeps the current one. ``job_id`` defaults to
            ``result.job_id`` when a result is given.
        info
            JSON-able details kept with the history row only.
        result
            An attempt's outcome; replaces ``started``, ``ended``,
            ``exit_code``, ``signal``, ``value``, ``stdout``, ``stderr`` and
            ``reason`` (the failure's message, ``None`` on success).
        reason
            Failure message for a state change without a result (e.g. a
            failed submission or dependency); overrides the result's.

        Raises
        ------
        KeyError
            For an unknown task, now rather than silently at flush.
        TypeError
            When ``info`` or ``result.value`` is not JSON-able.
        """
        self._require_writable()
        state_value = TaskState(state).value
        current = self._current_attempt(task_id)
        history_attempt = current if attempt is None else attempt
        info_json = None if info is None else json.dumps(info)
        if result is None:
            outputs: tuple[Any, ...] = (0, None, None, None, None, None, None, None)
        else:
            if job_id is None:
                job_id = result.job_id
            if reason is None and result.failure is not None:
                reason = result.failure.message
            outputs = (
                1,
                result.started,
                result.ended,
                result.exit_code,
                result.signal,
                json.dumps(result.value),
                result.stdout,
                result.stderr,
            )
        set_reason = int(result is not None or reason is not None)
        row = (state_value, time, attempt, failures, job_id, *outputs, set_reason, reason, task_id)
        earlier = self._updates.get(task_id)
        self._updates[task_id] = row if earlier is None else _merge_update(earlier, row)
        self._history.append((task_id, history_attempt, state_value, time, info_json))
        self._attempts[task_id] = history_attempt

    def log_event(self, kind: str, time: float, **data: Any) -> None:
        """Buffer a campaign-level event (a scale started, a model was retrained, ...).

        Raises
        ------
        TypeError
            When ``data`` is not JSON-able.
        """
        self._require_writable()
        self._events.append((time, kind, json.dumps(data)))

    def pending(self) -> int:
        """Rows buffered and not yet flushed."""
        return (
            len(self._new_tasks) + len(self._updates) + len(self._history) + len(self._events)
            + len(self._candidates) + len(self._selector_states)
        )

    def flush(self) -> int:
        """Write all buffered rows in one transaction and return how many were written.

        On failure the transaction is rolled back and the rows stay buffered, so
        a later flush can retry (e.g. after a lock timeout or a full disk).

        Raises
        ------
        StoreError
            When SQLite cannot write the rows.
        """
        rows = self.pending()
        if not rows:
            return 0
        self._require_writable()
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(_INSERT_TASK, (row[:1] + row[2:] for row in self._new_tasks))
                conn.executemany(_INSERT_SPEC, ((row[0], row[1]) for row in self._new_tasks))
                conn.executemany(_UPDATE_TASK, self._updates.values())
                conn.executemany(_INSERT_HISTORY, self._history)
                conn.executemany(_INSERT_EVENT, self._events)
                for kind, statement in (("upsert", _UPSERT_CANDIDATE), ("update", _UPDATE_CANDIDATE),
                                        ("delete", _DELETE_CANDIDATE)):
                    conn.executemany(statement, (row for op, row in self._candidates.values() if op == kind))
                conn.executemany(_UPSERT_SELECTOR_STATE, self._selector_states.items())
                crash_point("store.commit")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"could not write {rows} rows to {self.path} (they stay buffered): {exc}") from exc
        self._new_tasks.clear()
        self._updates.clear()
        self._history.clear()
        self._events.clear()
        self._candidates.clear()
        self._selector_states.clear()
        return rows

    def set_meta(self, key: str, value: Any) -> None:
        """Store a JSON-able campaign setting (spec hash, start time, ...), committed at once."""
        self._require_writable()
        self._conn.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            (key, json.dumps(value)),
        )

    def get_meta(self, key: str, default: Any = None) -> Any:
        """A value stored with :meth:`set_meta`, or ``default``."""
        row = self._conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return default if row is None else json.loads(row[0])

    # -- selector pools (buffered writes) -------------------------------------

    def save_candidates(self, selector: str, rows: Iterable[CandidateRow]) -> None:
        """Buffer candidates of ``selector``, each inserted or replacing the row of the same id.

        Parameters
        ----------
        selector
            The selector's name (its coupling), which scopes the ids.
        rows
            Whole rows; the vector is written with them and never again
            (:meth:`update_candidates` changes only scores and flags).
        """
        self._require_writable()
        for row in rows:
            self._candidates[selector, row.id] = (
                "upsert", (selector, row.id, row.seq, row.score, int(row.selected), row.vector)
            )

    def update_candidates(self, selector: str, updates: Iterable[tuple[str, float, bool]]) -> None:
        """Buffer new ``(id, score, selected)`` of candidates saved before; ids not in the store are ignored.

        Raises
        ------
        KeyError
            For a candidate dropped in this same buffer: updating it is a
            caller's bug that would otherwise vanish silently.
        """
        self._require_writable()
        for candidate_id, score, selected in updates:
            key = (selector, candidate_id)
            pending = self._candidates.get(key)
            if pending is None or pending[0] == "update":
                self._candidates[key] = ("update", (score, int(selected), selector, candidate_id))
            elif pending[0] == "upsert":
                row = pending[1]
                self._candidates[key] = ("upsert", (*row[:3], score, int(selected), row[5]))
            else:
                raise KeyError(f"candidate {candidate_id!r} of selector {selector!r} was dropped before this update")

    def drop_candidates(self, selector: str, ids: Iterable[str]) -> None:
        """Buffer the removal of candidates of ``selector`` (evicted from a full pool)."""
        self._require_writable()
        for candidate_id in ids:
            self._candidates[selector, candidate_id] = ("delete", (selector, candidate_id))

    def save_selector_state(self, selector: str, state: dict[str, Any]) -> None:
        """Buffer the JSON-able state of ``selector`` (counters, model path), replacing the last one.

        Raises
        ------
        TypeError
            When ``state`` is not JSON-able.
        """
        self._require_writable()
        self._selector_states[selector] = json.dumps(state)

    # -- reads (committed data only) ------------------------------------------

    @staticmethod
    def _record(row: tuple[Any, ...]) -> TaskRecord:
        (spec, state, attempt, failures, job_id, created, updated, started, ended,
         exit_code, signal, reason, value, stdout, stderr) = row  # fmt: skip
        return TaskRecord(
            spec=TaskSpec.model_validate_json(spec),
            state=TaskState(state),
            attempt=attempt,
            failures=failures,
            job_id=job_id,
            created=created,
            updated=updated,
            started=started,
            ended=ended,
            exit_code=exit_code,
            signal=signal,
            reason=reason,
            value=None if value is None else json.loads(value),
            stdout=stdout,
            stderr=stderr,
        )

    def get(self, task_id: str) -> TaskRecord:
        """The committed record of one task.

        Raises
        ------
        KeyError
            When no such task was flushed.
        """
        row = self._conn.execute(
            f"SELECT {_TASK_COLUMNS} FROM {_TASKS_WITH_SPECS} WHERE tasks.id = ?", (task_id,)
        ).fetchone()
        if row is None:
            raise KeyError(f"no task {task_id!r} in campaign store {self.path}")
        return self._record(row)

    def tasks(self, states: Iterable[TaskState] | None = None, scale: str | None = None) -> list[TaskRecord]:
        """Committed tasks in the order they were added, optionally only some states and one scale."""
        clauses: list[str] = []
        params: list[Any] = []
        if states is not None:
            values = [TaskState(s).value for s in states]
            clauses.append(f"state IN ({', '.join('?' * len(values))})")
            params.extend(values)
        if scale is not None:
            clauses.append("scale = ?")
            params.append(scale)
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = self._conn.execute(f"SELECT {_TASK_COLUMNS} FROM {_TASKS_WITH_SPECS}{where} ORDER BY tasks.rowid", params)
        return [self._record(row) for row in rows]

    def task_resources(self) -> dict[str, tuple[str, int, int]]:
        """``(scale, cores, gpus)`` of every committed task, without parsing a spec."""
        rows = self._conn.execute("SELECT id, scale, cores, gpus FROM tasks")
        return {task_id: (scale, cores, gpus) for task_id, scale, cores, gpus in rows}

    def recent_busy(self, since: float, now: float) -> tuple[float, float]:
        """Core-seconds and GPU-seconds the attempts running or ended in ``[since, now]`` spent inside that window.

        One aggregate query over the tasks table alone (a task's last attempt),
        so that `status` costs little even at 100,000 tasks: a running task
        started at its last transition, a finished one at its result's
        ``started``. An earlier attempt of a retried task that also ended in the
        window is not counted.
        """
        overlap = (
            "MAX(0.0, MIN(COALESCE(CASE WHEN state = 'running' THEN NULL ELSE ended END, ?2), ?2) "
            "- MAX(CASE WHEN state = 'running' THEN updated ELSE started END, ?1))"
        )
        cores, gpus = self._conn.execute(
            f"SELECT TOTAL(cores * {overlap}), TOTAL(gpus * {overlap}) FROM tasks "
            "WHERE state = 'running' OR (ended >= ?1 AND started IS NOT NULL)", (since, now)
        ).fetchone()
        return cores, gpus

    def first_start(self) -> float | None:
        """When the first attempt of any task started, as far as the tasks table knows; ``None`` before any."""
        started, running = self._conn.execute(
            "SELECT MIN(started), MIN(CASE WHEN state = 'running' THEN updated END) FROM tasks").fetchone()
        known = [t for t in (started, running) if t is not None]
        return min(known) if known else None

    def task_ids(self) -> set[str]:
        """Ids of all committed tasks."""
        return {row[0] for row in self._conn.execute("SELECT id FROM tasks")}

    def counts(self) -> dict[str, dict[str, int]]:
        """Number of committed tasks per scale and state; states without tasks are absent."""
        counts: dict[str, dict[str, int]] = {}
        for scale, state, n in self._conn.execute("SELECT scale, state, COUNT(*) FROM tasks GROUP BY scale, state"):
            counts.setdefault(scale, {})[state] = n
        return counts

    def history(self, task_id: str) -> list[tuple[TaskState, int, float, dict[str, Any]]]:
        """Committed ``(state, attempt, time, info)`` of a task, oldest first.

        Raises
        ------
        KeyError
            When no such task was flushed.
        """
        rows = self._conn.execute(
            "SELECT state, attempt, time, info FROM history WHERE task_id = ? ORDER BY seq", (task_id,)
        ).fetchall()
        if not rows:
            self.get(task_id)  # raises KeyError for an unknown task
        return [(TaskState(s), a, t, {} if i is None else json.loads(i)) for s, a, t, i in rows]

    def all_history(self) -> list[tuple[str, int, TaskState, float]]:
        """Committed ``(task_id, attempt, state, time)`` of every history row, in the order written.

        One query, so the rows form one consistent snapshot even while a
        coordinator writes; telemetry rebuilds intervals and queue depth from it.
        """
        rows = self._conn.execute("SELECT task_id, attempt, state, time FROM history ORDER BY seq")
        return [(task_id, attempt, TaskState(state), time) for task_id, attempt, state, time in rows]

    def events(self, since: int = 0, kind: str | None = None) -> list[tuple[int, float, str, dict[str, Any]]]:
        """Committed events ``(seq, time, kind, data)`` with ``seq > since``, oldest first.

        A watcher passes the last ``seq`` it saw as ``since`` to get only new events.
        """
        sql = "SELECT seq, time, kind, data FROM events WHERE seq > ?"
        params: list[Any] = [since]
        if kind is not None:
            sql += " AND kind = ?"
            params.append(kind)
        return [(seq, t, k, json.loads(d)) for seq, t, k, d in self._conn.execute(sql + " ORDER BY seq", params)]

    def load_candidates(self, selector: str) -> list[CandidateRow]:
        """Committed candidates of ``selector``, waiting and promoted, in arrival order."""
        rows = self._conn.execute(
            "SELECT id, seq, score, selected, vector FROM candidates WHERE selector = ? ORDER BY seq", (selector,)
        )
        return [CandidateRow(i, seq, score, bool(selected), vector) for i, seq, score, selected, vector in rows]

    def load_selector_state(self, selector: str) -> dict[str, Any] | None:
        """The committed state of ``selector``, or ``None`` when it never saved one."""
        row = self._conn.execute("SELECT state FROM selector_state WHERE selector = ?", (selector,)).fetchone()
        return None if row is None else json.loads(row[0])

    def check_integrity(self) -> list[str]:
        """Problems with the committed store, one sentence each; empty when it is sound.

        Beyond SQLite's own page-level check, this checks what the campaign
        promises after any crash: every task has its spec and a history that
        ends in its current state, a final state is never followed by another
        (nothing runs twice), attempts never go back, no task is done before
        the tasks it depends on, and no history row belongs to an unknown
        task. It reads one snapshot, so it is safe beside a running coordinator.
        """
        problems = [f"SQLite: {row[0]}" for row in self._conn.execute("PRAGMA integrity_check") if row[0] != "ok"]
        if problems:
            return problems
        with self._snapshot():
            specs = {task_id: json.loads(spec) for task_id, spec in self._conn.execute("SELECT id, spec FROM specs")}
            states = dict(self._conn.execute("SELECT id, state FROM tasks").fetchall())
            history: dict[str, list[tuple[int, str]]] = {}
            for task_id, attempt, state in self._conn.execute(
                "SELECT task_id, attempt, state FROM history ORDER BY seq"
            ):
                history.setdefault(task_id, []).append((attempt, state))
        final = {state.value for state in TaskState if state.is_final}
        problems += [f"task {task_id} has no spec" for task_id in states.keys() - specs.keys()]
        problems += [f"spec {task_id} has no task row" for task_id in specs.keys() - states.keys()]
        problems += [f"history rows of unknown task {task_id}" for task_id in history.keys() - states.keys()]
        for task_id, state in states.items():
            rows = history.get(task_id, [])
            if rows and rows[-1][1] != state:
                problems.append(f"task {task_id} is {state} but its history ends {rows[-1][1]}")
            ended = next((i for i, (_, row_state) in enumerate(rows) if row_state in final), None)
            if ended is not None and ended != len(rows) - 1:
                problems.append(f"task {task_id} changed state after it ended {rows[ended][1]}")
            attempts = [attempt for attempt, _ in rows]
            if attempts != sorted(attempts):
                problems.append(f"task {task_id} has attempts out of order: {attempts}")
            if state == TaskState.DONE.value:
                undone = [dep for dep in specs.get(task_id, {}).get("depends_on", [])
                          if states.get(dep) != TaskState.DONE.value]
                if undone:
                    problems.append(f"task {task_id} is done but its dependencies {', '.join(undone)} are not")
                unended = [dep for dep in specs.get(task_id, {}).get("after", []) if states.get(dep) not in final]
                if unended:
                    problems.append(f"task {task_id} is done but {', '.join(unended)}, which it runs after, never ended")
        return problems

    @contextmanager
    def _snapshot(self) -> Iterator[None]:
        """Hold one read transaction, so that several queries see the same committed state."""
        if self._conn.in_transaction:  # a writer's open transaction already is one snapshot
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            self._conn.execute("COMMIT")

    # -- life cycle ------------------------------------------------------------

    def close(self) -> None:
        """Flush (when writable) and close; closing twice is harmless.

        The connection is closed even when the flush fails, whose error is raised.
        """
        if self._closed:
            return
        try:
            if not self.readonly:
                self.flush()
        finally:
            self._conn.close()
            self._closed = True

    def __enter__(self) -> Store:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Flush even when leaving on an exception: what was recorded did happen.
        self.close()
