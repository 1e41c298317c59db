"""A run's metric series as typed columns, and their decimation to a chart's width.

:func:`metric_lines` reads the points of some keys of some runs in one SQL query and gives
each series (run × key) as two numpy arrays, steps (int64, ascending, each once) and values
(float64, NaN for NaN): no Python object is kept per point. On SQLite the rows are found
through MLflow's ``(run_uuid, key, step)`` index but fetched in the table's own (rowid)
order, ``WHERE rowid IN (SELECT rowid ... INDEXED BY ...)``: a run's points lie scattered
among the other runs' (they are logged round by round), and visiting them in index order
jumps between pages for every point, about three times slower for 255,000 points. The rows
are then sorted by numpy. PostgreSQL's planner is left to choose (a bitmap heap scan reads
the table in its order too).

:func:`decimate` keeps, of a series longer than twice a number of buckets (a chart's pixel
columns), the lowest and the highest point of each bucket and the series' first and last
points, so that a line drawn through them covers the same pixels as one through every point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Line", "decimate", "metric_lines", "step_span"]

_METRICS_BY_RUN = "index_metrics_run_uuid_key_step"  # MLflow's own index on metrics


@dataclass(frozen=True)
class Line:
    """One series: ``steps`` (int64, ascending, unique) and ``values`` (float64, NaN kept),
    and whether points were left out by :func:`decimate`."""

    steps: np.ndarray[Any, np.dtype[np.int64]]
    values: np.ndarray[Any, np.dtype[np.float64]]
    decimated: bool = False

    def __len__(self) -> int:
        return len(self.steps)


#: One row as read: its code (the series, run index × keys + key index, times two, plus one
#: for NaN), step and value; and its timestamp, read only when a step is stored twice.
_ROW = np.dtype([("code", "<i8"), ("step", "<i8"), ("value", "<f8")])
_TIMED_ROW = np.dtype([("code", "<i8"), ("step", "<i8"), ("value", "<f8"), ("time", "<i8")])

Window = tuple[int | None, int | None]  # the first and last step asked for (None: any)


def _sqlite_query(
    run_uuids: list[str], keys: list[str], window: Window, timed: bool
) -> tuple[str, Any]:
    """SQLite's query (and its parameters): the rows found through MLflow's index, read in
    the table's order (see the module's docstring)."""

    def numbered(column: str, items: list[str]) -> str:
        return f"CASE {column} " + " ".join(["WHEN ? THEN ?"] * len(items)) + " END"

    numbers = [
        *(x for i, run in enumerate(run_uuids) for x in (run, i)),
        *(x for i, key in enumerate(keys) for x in (key, i)),
    ]
    where = (
        f"run_uuid IN ({','.join('?' * len(run_uuids))}) AND key IN ({','.join('?' * len(keys))})"
    )
    params: list[Any] = [*numbers, *run_uuids, *keys]
    for bound, operator in zip(window, (">=", "<="), strict=True):
        if bound is not None:
            where += f" AND step {operator} ?"
            params.append(bound)
    code = f"({numbered('run_uuid', run_uuids)} * {len(keys)} + {numbered('key', keys)}) * 2"
    sql = (
        f"SELECT {code} + is_nan, step, value{', timestamp' if timed else ''} FROM metrics "
        f"WHERE rowid IN (SELECT rowid FROM metrics INDEXED BY {_METRICS_BY_RUN} WHERE {where})"
    )
    return sql, tuple(params)


def _rows(
    session: Any, run_uuids: list[str], keys: list[str], window: Window, timed: bool
) -> np.ndarray[Any, Any]:
    """The points asked for, unordered, as a structured array (:data:`_ROW`, or
    :data:`_TIMED_ROW` when ``timed``): each row's run and key are numbered by the database
    (``CASE``), so no text is fetched per point, and the driver's rows go straight into the
    array (no SQLAlchemy ``Row`` per point, as few columns as will do)."""
    from mlflow.store.tracking.dbmodels.models import SqlMetric
    from sqlalchemy import Integer, case, cast, select

    connection = session.connection()
    if connection.dialect.name == "sqlite":
        # Through SQLAlchemy all the same, so that its events fire.
        result = connection.exec_driver_sql(*_sqlite_query(run_uuids, keys, window, timed))
    else:
        m = SqlMetric.__table__.c
        runs = case({run: i for i, run in enumerate(run_uuids)}, value=m.run_uuid)
        named = case({key: i for i, key in enumerate(keys)}, value=m.key)
        code = (runs * len(keys) + named) * 2 + cast(m.is_nan, Integer)
        columns = [code, m.step, m.value, *([m.timestamp] if timed else [])]
        query = select(*columns).where(m.run_uuid.in_(run_uuids), m.key.in_(keys))
        first, last = window
        if first is not None:
            query = query.where(m.step >= first)
        if last is not None:
            query = query.where(m.step <= last)
        result = connection.execute(query)
    try:
        return np.array(result.cursor.fetchall(), dtype=_TIMED_ROW if timed else _ROW)
    finally:
        result.close()


def _repeats(owner: np.ndarray[Any, Any], steps: np.ndarray[Any, Any]) -> bool:
    """Whether a (series, step) comes twice in rows sorted by series and step."""
    return bool(np.any((owner[1:] == owner[:-1]) & (steps[1:] == steps[:-1])))


def metric_lines(
    session_maker: Any,
    run_uuids: Sequence[str],
    keys: Sequence[str],
    *,
    first: int | None = None,
    last: int | None = None,
) -> dict[str, dict[str, Line]]:
    """Every point of these keys for these runs (steps from ``first`` to ``last``, both
    included, when given), in one query: ``{key: {run_uuid: Line}}``, series without a point
    left out. A step stored more than once keeps its latest point by timestamp (of equal
    timestamps, the one stored last), as MLflow's own history ends: only then are the points
    read a second time, with their timestamps (the tracker replaces a step it logs again;
    stock ``log_batch`` appends)."""
    runs, wanted = list(dict.fromkeys(run_uuids)), list(dict.fromkeys(keys))
    if not runs or not wanted:
        return {}
    with session_maker() as session:
        rows = _rows(session, runs, wanted, (first, last), timed=False)
        owner = rows["code"] >> 1
        order = np.lexsort((rows["step"], owner))
        if _repeats(owner[order], rows["step"][order]):
            rows = _rows(session, runs, wanted, (first, last), timed=True)
            owner = rows["code"] >> 1
            # Stable: of equal (series, step, timestamp), the row read later is last.
            order = np.lexsort((rows["time"], rows["step"], owner))
    if not len(rows):
        return {}
    owner, steps = owner[order], rows["step"][order]
    values = np.where(rows["code"] & 1, np.nan, rows["value"])[order]
    keep = np.ones(len(order), dtype=bool)
    keep[:-1] = (owner[1:] != owner[:-1]) | (steps[1:] != steps[:-1])
    owner, steps, values = owner[keep], steps[keep], values[keep]
    bounds = np.flatnonzero(np.diff(owner)) + 1
    found: dict[str, dict[str, Line]] = {}
    for start, end in zip(np.r_[0, bounds], np.r_[bounds, len(owner)], strict=True):
        run_i, key_i = divmod(int(owner[start]), len(wanted))
        found.setdefault(wanted[key_i], {})[runs[run_i]] = Line(steps[start:end], values[start:end])
    return found


def step_span(lines: Sequence[Line]) -> tuple[int, int] | None:
    """The first and last step of these series together (None when they hold no point)."""
    held = [line for line in lines if len(line)]
    if not held:
        return None
    return min(int(line.steps[0]) for line in held), max(int(line.steps[-1]) for line in held)


def decimate(line: Line, buckets: int, first: int, last: int) -> Line:
    """At most about two points per bucket: steps ``first`` to ``last`` are cut into
    ``buckets`` equal spans (a chart's pixel columns), and of each span the lowest and the
    highest point are kept (NaN points only where a span holds nothing else), with the
    series' first and last points. A series of at most ``2 * buckets`` points, or a single
    bucket, is given whole."""
    count = len(line)
    if buckets < 1 or count <= 2 * buckets:
        return line
    width = (last - first + 1) / buckets
    bucket = np.clip(((line.steps - first) / width).astype(np.int64), 0, buckets - 1)
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], count] - 1
    nan = np.isnan(line.values)
    # Within each bucket (buckets ascend with the steps), points by value: NaN last for the
    # lowest, first for the highest, so that a value is always preferred to NaN.
    lowest = np.lexsort((np.where(nan, np.inf, line.values), bucket))[starts]
    highest = np.lexsort((np.where(nan, -np.inf, line.values), bucket))[ends]
    kept = np.unique(np.r_[0, lowest, highest, count - 1])
    return Line(line.steps[kept], line.values[kept], decimated=len(kept) < count)
