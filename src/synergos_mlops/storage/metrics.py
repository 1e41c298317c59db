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
   point that was the latest, the latest is recomputed from the stored points.

All of it runs in one transaction. On PostgreSQL, concurrent writers to the same run are
serialized by transaction-level advisory locks taken in run-id order; on SQLite a first
(empty) write statement takes the database's write lock, so the reads that follow see every
committed write and nothing changes them before the commit.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any, TypeVar

from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun
from sqlalchemy import bindparam, delete, insert, select, text, update
from sqlalchemy.engine import Connection, Engine

from synergos_mlops.errors import InvalidValueError, SynergosError
from synergos_mlops.storage.batch import MetricBatch

__all__ = ["RunNotActiveError", "WriteResult", "sanitize_value", "write_metrics"]

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


def _rows(batch: MetricBatch) -> list[dict[str, Any]]:
    """The batch as ``metrics`` rows, the last point of each (run, key, step) kept."""
    last: dict[tuple[str, str, int], int] = {}
    for position, identity in enumerate(zip(batch.run_ids, batch.keys, batch.steps, strict=True)):
        last[identity] = position
    rows = []
    for (run_id, key, step), position in last.items():
        if len(key) > _MAX_KEY_LENGTH:
            raise InvalidValueError(f"metric key {key[:60]!r}... exceeds {_MAX_KEY_LENGTH} chars")
        is_nan, value = sanitize_value(batch.values[position])
        rows.append(
            {
                "run_uuid": run_id,
                "key": key,
                "step": step,
                "value": value,
                "timestamp": batch.timestamps[position],
                "is_nan": is_nan,
            }
        )
    return rows


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


def _sort_key(row: Any) -> tuple[int, int, float]:
    return (row["step"], row["timestamp"], row["value"])


def _existing_latest(
    connection: Connection, run_ids: list[str], pairs: set[tuple[str, str]]
) -> dict[tuple[str, str], dict[str, Any]]:
    """The ``latest_metrics`` rows of the batch's (run, key) pairs."""
    columns = SqlLatestMetric.__table__.c
    found: dict[tuple[str, str], dict[str, Any]] = {}
    for chunk in _chunks(run_ids):
        query: Any = select(
            columns.run_uuid, columns.key, columns.step, columns.timestamp, columns.value,
            columns.is_nan,
        ).where(columns.run_uuid.in_(chunk))  # fmt: skip
        for row in connection.execute(query).mappings():
            pair = (row["run_uuid"], row["key"])
            if pair in pairs:
                found[pair] = dict(row)
    return found


def _delete_stored(
    connection: Connection,
    rows: list[dict[str, Any]],
    existing: dict[tuple[str, str], dict[str, Any]],
) -> int:
    """Delete stored points at the batch's (run, key, step); return how many points of the
    batch may have replaced one.

    ``latest_metrics`` holds the largest stored step of each (run, key), so a point with a
    larger step replaces nothing: appending (the usual case) deletes nothing.
    """
    candidates = [
        {"b_run_uuid": row["run_uuid"], "b_key": row["key"], "b_step": row["step"]}
        for row in rows
        if (old := existing.get((row["run_uuid"], row["key"]))) is not None
        and row["step"] <= old["step"]
    ]
    if candidates:
        table = SqlMetric.__table__
        statement = delete(table).where(
            table.c.run_uuid == bindparam("b_run_uuid"),
            table.c.key == bindparam("b_key"),
            table.c.step == bindparam("b_step"),
        )
        connection.execute(statement, candidates)
    return len(candidates)


_COLUMNS = ("key", "value", "timestamp", "run_uuid", "step", "is_nan")
#: SQLite page cache for a bulk write (KiB, as ``PRAGMA cache_size`` takes it when negative):
#: the metrics table's three indexes no longer spill out of the default 2 MiB mid-batch.
_SQLITE_CACHE_KIB = 65536


def _insert_points(connection: Connection, rows: list[dict[str, Any]]) -> None:
    """Insert the batch's points into ``metrics`` below the ORM and SQL compiler: PostgreSQL's
    ``COPY`` through psycopg, else one prepared ``INSERT`` run by the driver's ``executemany``
    (the compiler's per-row parameter handling costs more than the insert itself). Points go
    in the primary key's order (key, timestamp, step, run), so index pages are touched once."""
    tuples = list(map(itemgetter(*_COLUMNS), rows))
    tuples.sort(key=itemgetter(0, 2, 4, 3))
    names = ", ".join(_COLUMNS)
    dialect = connection.dialect
    if dialect.name == "postgresql" and dialect.driver == "psycopg":
        driver: Any = connection.connection.driver_connection
        with driver.cursor() as cursor, cursor.copy(f"COPY metrics ({names}) FROM STDIN") as copy:
            for values in tuples:
                copy.write_row(values)
        return
    marks = ", ".join(["?" if dialect.paramstyle == "qmark" else "%s"] * len(_COLUMNS))
    statement = f"INSERT INTO metrics ({names}) VALUES ({marks})"
    if dialect.name != "sqlite":
        connection.exec_driver_sql(statement, tuples)
        return
    cache = int(connection.exec_driver_sql("PRAGMA cache_size").scalar_one())
    connection.exec_driver_sql(f"PRAGMA cache_size = {-_SQLITE_CACHE_KIB}")
    try:
        connection.exec_driver_sql(statement, tuples)
    finally:
        connection.exec_driver_sql(f"PRAGMA cache_size = {cache}")


def _update_latest(
    connection: Connection,
    rows: list[dict[str, Any]],
    existing: dict[tuple[str, str], dict[str, Any]],
) -> None:
    latest_table = SqlLatestMetric.__table__
    candidates: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        pair = (row["run_uuid"], row["key"])
        best = candidates.get(pair)
        if best is None or _sort_key(row) > _sort_key(best):
            candidates[pair] = row

    # The stored latest point was replaced by a point at its own step: the latest is the
    # best stored point at the largest step, which now includes the batch's points.
    recompute = sorted(
        pair for pair, old in existing.items() if candidates[pair]["step"] == old["step"]
    )
    recomputed: dict[tuple[str, str], dict[str, Any]] = {}
    mc = SqlMetric.__table__.c
    for run_id, key in recompute:
        query: Any = select(mc.run_uuid, mc.key, mc.step, mc.timestamp, mc.value, mc.is_nan)
        query = query.where(
            mc.run_uuid == run_id, mc.key == key, mc.step == candidates[(run_id, key)]["step"]
        )
        for found in connection.execute(query).mappings():
            best = recomputed.get((run_id, key))
            if best is None or _sort_key(found) > _sort_key(best):
                recomputed[(run_id, key)] = dict(found)

    inserts: list[dict[str, Any]] = []
    updates: list[dict[str, Any]] = []
    for pair, candidate in candidates.items():
        old = existing.get(pair)
        if old is None:
            inserts.append(candidate)
        elif pair in recomputed:
            if recomputed[pair] != old:
                updates.append(recomputed[pair])
        elif _sort_key(candidate) > _sort_key(old):
            updates.append(candidate)
    if inserts:
        connection.execute(insert(latest_table), inserts)
    if updates:
        statement = (
            update(latest_table)
            .where(
                latest_table.c.run_uuid == bindparam("b_run_uuid"),
                latest_table.c.key == bindparam("b_key"),
            )
            .values(
                step=bindparam("b_step"),
                timestamp=bindparam("b_timestamp"),
                value=bindparam("b_value"),
                is_nan=bindparam("b_is_nan"),
            )
        )
        connection.execute(statement, [{f"b_{k}": v for k, v in row.items()} for row in updates])


def write_metrics(engine: Engine, batch: MetricBatch) -> WriteResult:
    """Store ``batch`` idempotently in one transaction (see the module docstring).

    Raises :class:`RunNotActiveError` when a run is missing or deleted and
    :class:`InvalidValueError` for a key MLflow's schema cannot hold; nothing is written then.
    """
    if not len(batch):
        return WriteResult(0, 0)
    rows = _rows(batch)
    run_ids = sorted({row["run_uuid"] for row in rows})
    pairs = {(row["run_uuid"], row["key"]) for row in rows}
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            # As MLflow's own sessions; then take the write lock before reading anything, so
            # what is read below cannot change before this transaction commits.
            connection.execute(text("PRAGMA foreign_keys = ON"))
            connection.execute(text("PRAGMA busy_timeout = 20000"))
            connection.execute(delete(SqlLatestMetric.__table__).where(text("0 = 1")))
        _lock_runs(connection, run_ids)
        _check_runs(connection, run_ids)
        existing = _existing_latest(connection, run_ids, pairs)
        replaced = _delete_stored(connection, rows, existing)
        _insert_points(connection, rows)
        _update_latest(connection, rows, existing)
    return WriteResult(stored=len(rows), replaced=replaced)
