"""The idempotent bulk write of metric points into MLflow's own tables.

A metric point is identified by its run, key and step (the participant is the run: each
participant has its own child run). Writing a batch:

1. keeps, inside the batch, the last point of each (run, key, step);
2. deletes the points already stored at those (run, key, step) (only where ``latest_metrics``
   shows that step may be stored: appending deletes nothing) and inserts the batch's points in
   bulk (multi-row ``INSERT`` / ``executemany``), so a retry, a re-run of validation or a
   re-ingest leaves one point per step holding the latest value;
3. keeps ``latest_metrics`` exactly as MLflow's ``SqlAlchemyStore._log_metrics`` would: values
   stored as MLflow stores them (NaN as 0 with ``is_nan``, ±inf as ±1.7976931348623157e308) and
   the latest point chosen by the largest (step, timestamp, value). When a batch replaces the
   point that was the latest, the latest is recomputed from the stored points. On SQLite, a
   series whose steps all lie above its stored latest step (round after round) has its latest
   point upserted without the stored one being read first.

All of it runs in one transaction. On PostgreSQL, concurrent writers to the same run are
serialized by transaction-level advisory locks taken in run-id order. On SQLite, where one
writer at a time holds the database anyway, bulk writers queue on an exclusive ``flock``
of ``<database>.synergos-bulk.lock`` (across threads and server workers): a waiting writer
starts the moment the one before commits, instead of polling SQLite's lock in growing sleeps.
The batches that reach one process while it waits for that turn are written together, in one
transaction, by the thread whose turn it is: each commit writes the pages it changed once, so
8 cycles flushing at once cost fewer, larger commits (a third less time, in-process and served).
A batch never shares a transaction with an earlier one of the same run, so each run's batches
are written in the order they came; when the shared transaction fails (a batch names a deleted
run), each batch is written again in its own, and one batch's error is its own alone. Everything
that needs no database (decoding, keeping the last point of each step, sorting,
choosing each series' latest point) is done before queuing. Inside, a first (empty) write
statement takes the database's write lock, so the reads that follow see every committed write
and nothing changes them before the commit. Every commit is flushed to the disk before the
writer is answered (SQLite's default ``synchronous``, never lowered here): a tracker drops
from its spool only what a power cut cannot take back.
"""

from __future__ import annotations

import fcntl
import math
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, TypeVar

import numpy as np
from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun
from sqlalchemy import delete, select, text
from sqlalchemy.engine import Connection, Engine

from synergos_mlops.errors import InvalidValueError, SynergosError
from synergos_mlops.storage.batch import MetricBatch

__all__ = [
    "SQLITE_WRITE_SETTINGS",
    "RunNotActiveError",
    "WriteResult",
    "append_metrics",
    "bulk_writer_turn",
    "sanitize_value",
    "take_write_lock",
    "write_metrics",
]

_MAX_DOUBLE = 1.7976931348623157e308
_MAX_KEY_LENGTH = 250
# Rows per IN (...) clause: 3 parameters each, well under SQLite's and PostgreSQL's limits.
_CHUNK = 2000

_T = TypeVar("_T")


class RunNotActiveError(SynergosError):
    """A batch names a run that does not exist or is deleted."""


@dataclass(frozen=True)
class WriteResult:
    stored: int
    """Points written (after keeping the last one of each (run, key, step) in the batch)."""
    replaced: int
    """Points at a step that was already stored (their earlier points were replaced)."""


def sanitize_value(value: float) -> tuple[bool, float]:
    """``(is_nan, stored value)`` as ``SqlAlchemyStore.sanitize_metric_value`` computes it."""
    if math.isnan(value):
        return True, 0.0
    if math.isinf(value):
        return False, _MAX_DOUBLE if value > 0 else -_MAX_DOUBLE
    return False, value


def _chunks(items: Sequence[_T], size: int = _CHUNK) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


#: A point as stored: a ``metrics`` row, these columns in this order.
_COLUMNS = ("key", "value", "timestamp", "run_uuid", "step", "is_nan")
_KEY, _VALUE, _TIMESTAMP, _RUN, _STEP, _IS_NAN = range(6)
_PRIMARY_KEY = itemgetter(_KEY, _TIMESTAMP, _STEP, _RUN)
Point = tuple[str, float, int, str, int, bool]
#: A ``latest_metrics`` entry of a (run, key): (step, timestamp, stored value, is_nan).
Latest = tuple[int, int, float, bool]


@dataclass(frozen=True)
class _Rows:
    """A batch as ``metrics`` rows, and each of its series' first step and latest point."""

    rows: list[Point]
    best: dict[tuple[str, str], Latest]
    """Each (run, key)'s latest point in the batch: at its largest step."""
    first: dict[tuple[str, str], int]
    """Each (run, key)'s smallest step in the batch."""


def _rows(batch: MetricBatch) -> _Rows:
    """The batch as ``metrics`` rows, values stored as MLflow stores them, the last point of
    each (run, key, step) kept, in the primary key's order (key, timestamp, step, run), so
    the insert touches index pages once; and each series' first step and latest point, read
    off the order the sorting passes through. Column-wise, so no Python work per point beyond
    building its tuple."""
    longest = max(map(len, set(batch.keys)), default=0)
    if longest > _MAX_KEY_LENGTH:
        key = next(k for k in batch.keys if len(k) == longest)
        raise InvalidValueError(f"metric key {key[:60]!r}... exceeds {_MAX_KEY_LENGTH} chars")
    values = batch.values
    if np.isfinite(np.asarray(values, dtype=float)).all():  # the usual case
        stored, is_nan = values, [False] * len(values)
    else:  # NaN and ±inf fail the range test; everything else is stored as it is
        stored = [v if -_MAX_DOUBLE <= v <= _MAX_DOUBLE else sanitize_value(v)[1] for v in values]
        is_nan = [v != v for v in values]
    columns = (batch.keys, stored, batch.timestamps, batch.run_ids, batch.steps, is_nan)
    rows = list(zip(*columns, strict=True))
    if len(dict.fromkeys(zip(batch.run_ids, batch.keys, batch.steps, strict=True))) < len(rows):
        # A later position overwrites an earlier one.
        identities = zip(batch.run_ids, batch.keys, batch.steps, strict=True)
        last = dict(zip(identities, range(len(rows)), strict=True))
        rows = [rows[position] for position in last.values()]
    # The primary key's order, (key, timestamp, step, run), by stable sorts on one column at
    # a time from the last: the same order as one sort on the four (ties kept as they came),
    # in a third of its time (no key tuple per row; each pass finds the runs the last left).
    rows.sort(key=itemgetter(_RUN))
    rows.sort(key=itemgetter(_STEP))
    # In step order now: a series' last row is its latest point (one row a step), its first
    # row its first step; dicts built in C keep the last row of each series they are given.
    series = list(zip(map(itemgetter(_RUN), rows), map(itemgetter(_KEY), rows), strict=True))
    best = {
        pair: (row[_STEP], row[_TIMESTAMP], row[_VALUE], row[_IS_NAN])
        for pair, row in dict(zip(series, rows, strict=True)).items()
    }
    first = dict(zip(reversed(series), map(itemgetter(_STEP), reversed(rows)), strict=True))
    rows.sort(key=itemgetter(_TIMESTAMP))
    rows.sort(key=itemgetter(_KEY))
    return _Rows(rows, best, first)


def _marks(connection: Connection, count: int) -> str:
    mark = "?" if connection.dialect.paramstyle == "qmark" else "%s"
    return ", ".join([mark] * count)


def _lock_runs(connection: Connection, run_ids: list[str]) -> None:
    if connection.dialect.name == "postgresql":
        for run_id in run_ids:  # sorted: every writer locks in the same order
            connection.execute(
                text("SELECT pg_advisory_xact_lock(hashtext(:name))"),
                {"name": f"synergos.metrics.{run_id}"},
            )


def _check_runs(connection: Connection, run_ids: list[str]) -> None:
    found: dict[str, str] = {}
    for chunk in _chunks(run_ids):
        query: Any = select(SqlRun.run_uuid, SqlRun.lifecycle_stage)
        query = query.where(SqlRun.run_uuid.in_(chunk))
        found.update({row[0]: row[1] for row in connection.execute(query)})
    for run_id in run_ids:
        if run_id not in found:
            raise RunNotActiveError(f"run {run_id!r} does not exist")
        if found[run_id] != "active":
            raise RunNotActiveError(f"run {run_id!r} is deleted")


def _existing_latest(
    connection: Connection, run_ids: list[str], pairs: set[tuple[str, str]]
) -> dict[tuple[str, str], Latest]:
    """The ``latest_metrics`` entries of the batch's (run, key) pairs: the rows of the batch's
    runs and keys (a run may hold many more keys than a batch names), fetched by the driver
    (SQLAlchemy's per-row handling cost more than the read)."""
    keys = sorted({key for _, key in pairs})
    found: dict[tuple[str, str], Latest] = {}
    for run_chunk in _chunks(run_ids, _CHUNK // 2):
        for key_chunk in _chunks(keys, _CHUNK // 2):
            statement = (
                "SELECT run_uuid, key, step, timestamp, value, is_nan FROM latest_metrics "
                f"WHERE run_uuid IN ({_marks(connection, len(run_chunk))}) "
                f"AND key IN ({_marks(connection, len(key_chunk))})"
            )
            rows = connection.exec_driver_sql(statement, (*run_chunk, *key_chunk)).fetchall()
            for run_id, key, step, stamp, value, is_nan in rows:
                if (run_id, key) in pairs:
                    found[(run_id, key)] = (step, stamp, value, bool(is_nan))
    return found


def _not_appending(
    connection: Connection, first: dict[tuple[str, str], int]
) -> set[tuple[str, str]]:
    """The (run, key) pairs that do not simply append: whose first step in the batch
    (``first``) is at or below the latest step stored for them. The database compares them."""
    items = [(*pair, step) for pair, step in first.items()]
    found: set[tuple[str, str]] = set()
    for chunk in _chunks(items, _CHUNK):
        values = ", ".join([f"({_marks(connection, 3)})"] * len(chunk))
        statement = (
            f"WITH b (run_uuid, key, first) AS (VALUES {values}) "
            "SELECT b.run_uuid, b.key FROM latest_metrics AS l JOIN b "
            "ON l.run_uuid = b.run_uuid AND l.key = b.key WHERE l.step >= b.first"
        )
        flat = [value for item in chunk for value in item]
        found.update(
            (run_id, key) for run_id, key in connection.exec_driver_sql(statement, tuple(flat))
        )
    return found


def _delete_stored(
    connection: Connection, rows: list[Point], existing: dict[tuple[str, str], Latest]
) -> list[tuple[str, str, int]]:
    """Delete stored points at the batch's (run, key, step); return the (run, key, step) of
    the batch's points that may have replaced one.

    ``latest_metrics`` holds the largest stored step of each (run, key), so a point with a
    larger step replaces nothing: appending (the usual case) deletes nothing, and is told
    from the smallest step of the batch without a look at each point.
    """
    if not existing or min(map(itemgetter(_STEP), rows)) > max(o[0] for o in existing.values()):
        return []
    candidates = [
        (run_id, key, step)
        for key, _, _, run_id, step, _ in rows
        if (old := existing.get((run_id, key))) is not None and step <= old[0]
    ]
    if candidates:
        marks = _marks(connection, 1)
        connection.exec_driver_sql(
            f"DELETE FROM metrics WHERE run_uuid = {marks} AND key = {marks} AND step = {marks}",
            candidates,
        )
    return candidates


#: SQLite settings of a bulk write, restored afterwards:
#:
#: - a 64 MiB page cache (negative: KiB), so the metrics table's three indexes no longer
#:   spill out of the default 2 MiB mid-batch;
#: - the write-ahead log copied back into the database (checkpointed) once it holds 16,384
#:   pages (64 MiB), not SQLite's 1,000: a round of 100 participants x 40 keys puts one point
#:   on each of 4,000 series, so its commit rewrites some 3,500 pages of MLflow's
#:   (run, key, step) index, and at 1,000 pages every such commit also copied them all back
#:   at once. Deferred, one checkpoint copies the pages that several commits rewrote once.
#:
#: ``synchronous`` stays as it is: ``NORMAL`` would answer a writer before its commit is on
#: the disk, and a power cut could then take back points the tracker has already dropped
#: from its spool.
SQLITE_WRITE_SETTINGS: dict[str, int] = {"cache_size": -65536, "wal_autocheckpoint": 16384}


def _insert_points(connection: Connection, ordered: list[Point]) -> None:
    """Insert points, given in the primary key's order, into ``metrics`` below the ORM and SQL
    compiler: PostgreSQL's ``COPY`` through psycopg, else one prepared ``INSERT`` run by the
    driver's ``executemany`` (the compiler's per-row parameter handling costs more than the
    insert itself)."""
    names = ", ".join(_COLUMNS)
    dialect = connection.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        driver: Any = connection.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(f"COPY metrics ({names}) FROM STDIN") as copy:
            for values in ordered:
                copy.write_row(values)
        return
    statement = f"INSERT INTO metrics ({names}) VALUES ({_marks(connection, len(_COLUMNS))})"
    connection.exec_driver_sql(statement, ordered)


def _recompute(
    connection: Connection, steps: dict[tuple[str, str], int]
) -> dict[tuple[str, str], Latest]:
    """The best stored point of each (run, key) at its step in ``steps`` (the batch's points
    included)."""
    mc = SqlMetric.__table__.c
    recomputed: dict[tuple[str, str], Latest] = {}
    for (run_id, key), step in sorted(steps.items()):
        query: Any = select(mc.step, mc.timestamp, mc.value, mc.is_nan).where(
            mc.run_uuid == run_id, mc.key == key, mc.step == step
        )
        found: list[Latest] = [(a, b, c, d) for a, b, c, d in connection.execute(query)]
        recomputed[(run_id, key)] = max(found, key=itemgetter(0, 1, 2))
    return recomputed


def _best_points(rows: list[Point]) -> dict[tuple[str, str], Latest]:
    """The latest point of each (run, key) among ``rows``: the largest (step, timestamp,
    value), as MLflow chooses it."""
    ranks: dict[tuple[str, str], tuple[int, int, float]] = {}
    nan: dict[tuple[str, str], bool] = {}
    for key, value, stamp, run_id, step, is_nan in rows:
        pair = (run_id, key)
        rank = (step, stamp, value)
        best = ranks.get(pair)
        if best is None or rank > best:
            ranks[pair] = rank
            nan[pair] = is_nan
    return {pair: (*rank, nan[pair]) for pair, rank in ranks.items()}


def _update_latest(
    connection: Connection,
    candidates: dict[tuple[str, str], Latest],
    existing: dict[tuple[str, str], Latest],
) -> None:

    # The stored latest point was replaced by a point at its own step: the latest is the
    # best stored point at the largest step, which now includes the batch's points.
    recomputed = _recompute(
        connection,
        {pair: old[0] for pair, old in existing.items() if candidates[pair][0] == old[0]},
    )

    inserts: list[tuple[Any, ...]] = []
    updates: list[tuple[Any, ...]] = []
    for pair, candidate in candidates.items():
        old = existing.get(pair)
        if old is None:
            inserts.append((*candidate, *pair))
        elif pair in recomputed:
            if recomputed[pair] != old:
                updates.append((*recomputed[pair], *pair))
        elif candidate[:3] > old[:3]:
            updates.append((*candidate, *pair))
    _write_latest(connection, inserts, updates)


_LATEST_COLUMNS = "step, timestamp, value, is_nan, run_uuid, key"
#: PostgreSQL array types of _LATEST_COLUMNS, for one set-based statement per batch.
_LATEST_ARRAYS = "%s::bigint[], %s::bigint[], %s::float8[], %s::boolean[], %s::text[], %s::text[]"


def _write_latest(
    connection: Connection, inserts: list[tuple[Any, ...]], updates: list[tuple[Any, ...]]
) -> None:
    """Insert and update ``latest_metrics`` rows given as (step, timestamp, value, is_nan,
    run_uuid, key). PostgreSQL takes each list as one statement over ``unnest`` of arrays
    (a statement per row costs a round of the executor each); SQLite, which has no round
    trip, takes the driver's ``executemany``."""
    if connection.dialect.name == "postgresql":
        if inserts:
            connection.exec_driver_sql(
                f"INSERT INTO latest_metrics ({_LATEST_COLUMNS}) "
                f"SELECT * FROM unnest({_LATEST_ARRAYS})",
                tuple(map(list, zip(*inserts, strict=True))),
            )
        if updates:
            connection.exec_driver_sql(
                "UPDATE latest_metrics AS l SET step = v.step, timestamp = v.timestamp, "
                "value = v.value, is_nan = v.is_nan "
                f"FROM unnest({_LATEST_ARRAYS}) AS v({_LATEST_COLUMNS}) "
                "WHERE l.run_uuid = v.run_uuid AND l.key = v.key",
                tuple(map(list, zip(*updates, strict=True))),
            )
        return
    if inserts:
        connection.exec_driver_sql(
            f"INSERT INTO latest_metrics ({_LATEST_COLUMNS}) VALUES ({_marks(connection, 6)})",
            inserts,
        )
    if updates:
        mark = _marks(connection, 1)
        connection.exec_driver_sql(
            f"UPDATE latest_metrics SET step = {mark}, timestamp = {mark}, value = {mark}, "
            f"is_nan = {mark} WHERE run_uuid = {mark} AND key = {mark}",
            updates,
        )


_UPSERT_LATEST = (
    "ON CONFLICT (key, run_uuid) DO UPDATE SET step = excluded.step, "
    "timestamp = excluded.timestamp, value = excluded.value, is_nan = excluded.is_nan"
)


def _upsert_latest(connection: Connection, latest: list[tuple[Any, ...]]) -> None:
    """Insert, or replace where one is stored, SQLite's ``latest_metrics`` rows given as
    (step, timestamp, value, is_nan, run_uuid, key), each (run, key) once."""
    if latest:
        connection.exec_driver_sql(
            f"INSERT INTO latest_metrics ({_LATEST_COLUMNS}) VALUES ({_marks(connection, 6)}) "
            f"{_UPSERT_LATEST}",
            latest,
        )


@contextmanager
def bulk_writer_turn(engine: Engine) -> Iterator[None]:
    """Wait for this SQLite database's bulk writers before this one (across threads and
    processes: an exclusive ``flock``, released by the kernel if its holder dies)."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database.startswith(":memory:"):
        yield
        return
    with open(f"{database}.synergos-bulk.lock", "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def take_write_lock(connection: Connection) -> None:
    """Take SQLite's write lock at once, with a write that changes nothing: a transaction
    that reads first and writes later may find, at its first write, that another writer
    committed since its read, and fail instead of waiting."""
    connection.execute(delete(SqlLatestMetric.__table__).where(text("0 = 1")))


@contextmanager
def _sqlite_settings(connection: Connection) -> Iterator[None]:
    """SQLITE_WRITE_SETTINGS on ``connection`` (outside a transaction), restored afterwards
    for the pool's other users."""
    if connection.dialect.name != "sqlite":
        yield
        return
    before = {
        name: int(connection.exec_driver_sql(f"PRAGMA {name}").scalar_one())
        for name in SQLITE_WRITE_SETTINGS
    }
    for name, value in SQLITE_WRITE_SETTINGS.items():
        connection.exec_driver_sql(f"PRAGMA {name} = {value}")
    connection.commit()  # SQLAlchemy's autobegun transaction; SQLite began none
    try:
        yield
    finally:
        if connection.in_transaction():  # the commit failed; end the transaction first
            connection.rollback()
        for name, value in before.items():
            connection.exec_driver_sql(f"PRAGMA {name} = {value}")
        connection.commit()


@contextmanager
def _locked(engine: Engine, run_ids: list[str]) -> Iterator[Connection]:
    """A transaction that holds these runs for writing (the caller has its bulk writer's
    turn), its connection. Raises RunNotActiveError for a missing or deleted run."""
    with engine.connect() as connection, _sqlite_settings(connection), connection.begin():
        if connection.dialect.name == "sqlite":
            # As MLflow's own sessions; then take the write lock before reading anything, so
            # what is read below cannot change before this transaction commits.
            connection.execute(text("PRAGMA foreign_keys = ON"))
            connection.execute(text("PRAGMA busy_timeout = 20000"))
            take_write_lock(connection)
        elif connection.dialect.name == "postgresql":
            # A session told to plan every statement for its values (an operator's
            # PGOPTIONS with plan_cache_mode=force_custom_plan; the served workers had it
            # once) plans the check of MLflow's foreign key to ``runs`` that PostgreSQL runs
            # for every inserted point, a cached query, again for each one: 110,000 points
            # took 3.1 s to COPY instead of 1.6. Here every statement is ours and bound to
            # its values; the setting ends with the transaction.
            connection.exec_driver_sql("SET LOCAL plan_cache_mode = auto")
        _lock_runs(connection, run_ids)
        _check_runs(connection, run_ids)
        yield connection


@dataclass(eq=False)
class _Waiting:
    """A batch waiting for its bulk writer's turn (its rows and their latest points made
    before), and, once written, what came of it."""

    rows: list[Point]
    best: dict[tuple[str, str], Latest]
    first: dict[tuple[str, str], int]
    runs: frozenset[str]
    result: WriteResult | None = None
    error: BaseException | None = None

    @property
    def finished(self) -> bool:
        return self.result is not None or self.error is not None

    def outcome(self) -> WriteResult:
        """The result, or the batch's error raised."""
        if self.error is not None:
            raise self.error
        if self.result is None:
            raise RuntimeError("a batch's outcome was asked before it was written")
        return self.result


@dataclass(eq=False)
class _Writers:
    """One engine's batches waiting for its bulk writer, in the order they came, and the
    turn that one thread at a time takes to write them."""

    turn: threading.Lock = field(default_factory=threading.Lock)
    mutex: threading.Lock = field(default_factory=threading.Lock)
    waiting: list[_Waiting] = field(default_factory=list)


_WRITERS: weakref.WeakKeyDictionary[Engine, _Writers] = weakref.WeakKeyDictionary()
_WRITERS_MUTEX = threading.Lock()
#: At most this many points are written in one transaction of several batches.
GROUP_POINTS = 200_000


def _writers(engine: Engine) -> _Writers:
    with _WRITERS_MUTEX:
        found = _WRITERS.get(engine)
        if found is None:
            found = _WRITERS[engine] = _Writers()
        return found


def _take(waiting: list[_Waiting]) -> list[_Waiting]:
    """The batches to write in one transaction, taken off ``waiting``: the first, then each
    later one whose runs no batch before it (taken or left) names, so that two batches of a
    run are always written in the order they came, while the group holds at most
    :data:`GROUP_POINTS` points."""
    taken: list[_Waiting] = []
    named: set[str] = set()
    points = 0
    for item in waiting:
        fits = not taken or points + len(item.rows) <= GROUP_POINTS
        if fits and named.isdisjoint(item.runs):
            taken.append(item)
            points += len(item.rows)
        named.update(item.runs)
    waiting[:] = [item for item in waiting if item not in taken]
    return taken


def _store(
    connection: Connection,
    rows: list[Point],
    best: dict[tuple[str, str], Latest],
    first: dict[tuple[str, str], int],
) -> list[tuple[str, str, int]]:
    """Write ``rows`` and their series' latest points (``best``; ``first``: their first
    steps) in the locked transaction; return the (run, key, step) of the points that may have
    replaced one.

    On SQLite, a series whose first step in the batch lies above its stored latest step (a
    federation logging round after round) can replace nothing, and its latest is simply the
    batch's: it is upserted without reading the stored entry into Python first (for 100 runs
    × 40 keys of one round, that reading and comparing took a third of the write). Only the
    other series are read, cleared at the batch's steps and compared. PostgreSQL reads every
    entry in one statement and updates them in another, as fast there as the upsert measured,
    and its planner joined a list of series to ``latest_metrics`` by reading the whole table
    while it held few rows: every series takes that path."""
    sqlite = connection.dialect.name == "sqlite"
    others = _not_appending(connection, first) if sqlite else set(best)
    replaced: list[tuple[str, str, int]] = []
    existing: dict[tuple[str, str], Latest] = {}
    if others:
        existing = _existing_latest(connection, sorted({run for run, _ in others}), others)
        some = len(others) < len(best)
        replaced = _delete_stored(
            connection,
            [row for row in rows if (row[_RUN], row[_KEY]) in others] if some else rows,
            existing,
        )
    _insert_points(connection, rows)
    _upsert_latest(
        connection, [(*latest, *pair) for pair, latest in best.items() if pair not in others]
    )
    if others:
        _update_latest(connection, {pair: best[pair] for pair in others}, existing)
    return replaced


def _write_one(engine: Engine, item: _Waiting) -> None:
    runs = sorted(item.runs)
    with _locked(engine, runs) as connection:
        replaced = _store(connection, item.rows, item.best, item.first)
    item.result = WriteResult(stored=len(item.rows), replaced=len(replaced))


def _write_together(engine: Engine, items: list[_Waiting]) -> None:
    """Write batches of distinct runs in one transaction; when that fails (one names a
    deleted run, say), each in its own, so one batch's error is its own alone."""
    if len(items) > 1:
        rows = [row for item in items for row in item.rows]
        best = {pair: latest for item in items for pair, latest in item.best.items()}
        first = {pair: step for item in items for pair, step in item.first.items()}
        runs = sorted(set().union(*(item.runs for item in items)))
        try:
            with _locked(engine, runs) as connection:
                replaced = _store(connection, rows, best, first)
        except Exception:  # noqa: BLE001 - written again one by one, each error its own
            pass
        else:
            by_run: dict[str, int] = {}
            for run_id, _, _ in replaced:
                by_run[run_id] = by_run.get(run_id, 0) + 1
            for item in items:
                count = sum(by_run.get(run_id, 0) for run_id in item.runs)
                item.result = WriteResult(stored=len(item.rows), replaced=count)
            return
    for item in items:
        try:
            _write_one(engine, item)
        except Exception as exc:  # noqa: BLE001 - handed to the batch's own caller
            item.error = exc


def write_metrics(engine: Engine, batch: MetricBatch) -> WriteResult:
    """Store ``batch`` idempotently in one transaction (see the module docstring).

    Raises :class:`RunNotActiveError` when a run is missing or deleted and
    :class:`InvalidValueError` for a key MLflow's schema cannot hold; nothing is written then.
    Batches of other runs that wait for the same SQLite database meanwhile may share the
    transaction (each still stored whole or not at all).
    """
    if not len(batch):
        return WriteResult(0, 0)
    prepared = _rows(batch)
    item = _Waiting(prepared.rows, prepared.best, prepared.first, frozenset(batch.run_ids))
    if engine.dialect.name != "sqlite":
        # Writers of other runs go side by side: nothing to gain by waiting for each other.
        _write_one(engine, item)
        return item.outcome()
    writers = _writers(engine)
    with writers.mutex:
        writers.waiting.append(item)
    while not item.finished:
        with writers.turn:
            if item.finished:
                break
            with bulk_writer_turn(engine):
                # Taken once the database is ours: whatever came while waiting goes along.
                with writers.mutex:
                    taken = _take(writers.waiting)
                try:
                    _write_together(engine, taken)
                except BaseException as exc:
                    for other in taken:
                        if not other.finished:
                            other.error = exc
                    raise
    return item.outcome()


def _insert_new_points(connection: Connection, rows: list[Point]) -> list[Point]:
    """Insert the rows whose primary key (key, timestamp, step, run, value) is not stored yet;
    return them."""
    mc = SqlMetric.__table__.c
    stored: set[tuple[Any, ...]] = set()
    earliest = min(row[_TIMESTAMP] for row in rows)
    for run_id in sorted({row[_RUN] for row in rows}):
        keys = sorted({row[_KEY] for row in rows if row[_RUN] == run_id})
        for chunk in _chunks(keys):
            query: Any = select(mc.key, mc.value, mc.timestamp, mc.run_uuid, mc.step).where(
                mc.run_uuid == run_id, mc.key.in_(chunk), mc.timestamp >= earliest
            )
            stored.update(tuple(found) for found in connection.execute(query))
    fresh = [row for row in dict.fromkeys(rows) if row[:5] not in stored]
    if fresh:
        _insert_points(connection, sorted(fresh, key=_PRIMARY_KEY))
    return fresh


def append_metrics(engine: Engine, batch: MetricBatch) -> WriteResult:
    """Store ``batch`` as MLflow's ``log_batch`` does, every point kept even where several
    share a step, but idempotently: a point already stored with the same key, timestamp,
    step and value is not stored again. ``latest_metrics`` is kept as MLflow keeps it.

    For points whose history is the record itself (an old logger's values that share one
    step); :func:`write_metrics` is the tracker's path.
    """
    if not len(batch):
        return WriteResult(0, 0)
    values = batch.values
    stored = [v if -_MAX_DOUBLE <= v <= _MAX_DOUBLE else sanitize_value(v)[1] for v in values]
    is_nan = [v != v for v in values]
    columns = (batch.keys, stored, batch.timestamps, batch.run_ids, batch.steps, is_nan)
    rows: list[Point] = list(zip(*columns, strict=True))
    run_ids = sorted(set(batch.run_ids))
    pairs = set(zip(batch.run_ids, batch.keys, strict=True))
    with bulk_writer_turn(engine), _locked(engine, run_ids) as connection:
        existing = _existing_latest(connection, run_ids, pairs)
        fresh = _insert_new_points(connection, rows)
        if fresh:
            touched = {(row[_RUN], row[_KEY]) for row in fresh}
            latest = {p: v for p, v in existing.items() if p in touched}
            _update_latest(connection, _best_points(fresh), latest)
    return WriteResult(stored=len(fresh), replaced=0)
