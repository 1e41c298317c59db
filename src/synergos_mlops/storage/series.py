"""A run's metric series as typed columns, and their decimation to a chart's width.

:func:`metric_lines` reads the points of some keys of some runs in one SQL query (on SQLite
after two that find their rowid and step span) and gives each series (run × key) as two
numpy arrays, steps (int64, ascending, each once) and values (float64, NaN for NaN): no
Python object is kept per point.

On SQLite the runs and keys asked for are written, numbered, into two small temporary tables
of the connection, and every row is numbered by a join with them (one lookup each, no text
fetched per point). MLflow's ``(run_uuid, key, step)`` index first gives the lowest and
highest rowid of the rows asked for and how many there are. A run's points lie among the
other runs' (they are logged round by round, and runs run side by side), and are read in the
table's own (rowid) order, never in the index's, which jumps between pages for every point:
where they fill at least a sixth of that rowid span, the span is read straight through and
the other rows skipped; where they are sparser, the rows are found through the index and
fetched by rowid. Both read each page once; the straight read skips the rowid lookups, about
half the time for 255,000 points of one run. Where the steps asked for span less than 2**32,
a row's series and step come as one number, below 2**53, so that a row is two floats that
numpy takes as one float64 array (a Python integer less per row, and numpy's plain float
conversion rather than a structured row's: together about a fifth of the read). The first
and last step come from two index seeks per series, not from the span's scan. The rows are
then sorted by numpy. PostgreSQL's planner is left to choose (a bitmap heap scan reads the
table in its order too).

:func:`decimate` keeps, of a series longer than twice a number of buckets (a chart's pixel
columns), the lowest and the highest point of each bucket and the series' first and last
points, so that a line drawn through them covers the same pixels as one through every point.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
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
#: The timed read packed (SQLite): the code times :data:`_PACK` plus the step less the first.
_PACKED_TIMED_ROW = np.dtype([("packed", "<i8"), ("value", "<f8"), ("time", "<i8")])
_PACK = 2**32
#: Packed only below this many codes: a packed number then stays below 2**53, so that it and
#: the value can come through one float64 array (exact), a faster read than a structured one.
_CODES = 2**21
#: The first and last step of the series asked for: a seek at each end of each in MLflow's
#: index (the window's bounds are the parameters of each of the two subqueries).
_STEP_SPAN = (
    "SELECT min(f), max(l) FROM (SELECT "
    + ", ".join(
        f"(SELECT {end}(m.step) FROM metrics AS m INDEXED BY {_METRICS_BY_RUN} "
        "WHERE m.run_uuid = r.run_uuid AND m.key = k.key{window}) AS " + name
        for end, name in (("min", "f"), ("max", "l"))
    )
    + " FROM temp.synergos_series_runs AS r CROSS JOIN temp.synergos_series_keys AS k)"
)

Window = tuple[int | None, int | None]  # the first and last step asked for (None: any)


#: The temporary tables that number the runs and keys asked for (one per connection).
_NUMBERED = (
    ("synergos_series_runs", "run_uuid"),
    ("synergos_series_keys", "key"),
)
#: Read the rowid span straight through when the rows asked for fill at least this share of
#: it (measured: at a sixth, both ways cost about the same).
_DENSE = 1 / 6


def _sqlite_number(connection: Any, run_uuids: list[str], keys: list[str]) -> None:
    """Write the runs and keys asked for, numbered from 0, into this connection's temporary
    tables (created on its first read)."""
    for (table, column), items in zip(_NUMBERED, (run_uuids, keys), strict=True):
        connection.exec_driver_sql(
            f"CREATE TEMP TABLE IF NOT EXISTS {table} "
            f"({column} TEXT PRIMARY KEY, number INTEGER NOT NULL) WITHOUT ROWID"
        )
        connection.exec_driver_sql(f"DELETE FROM temp.{table}")
        connection.exec_driver_sql(
            f"INSERT INTO temp.{table} VALUES (?, ?)", [(item, i) for i, item in enumerate(items)]
        )


def _window_sql(window: Window) -> str:
    return "".join(
        f" AND m.step {operator} ?"
        for bound, operator in zip(window, (">=", "<="), strict=True)
        if bound is not None
    )


def _found(window: Window) -> str:
    """The rows asked for, found through MLflow's ``(run_uuid, key, step)`` index (the
    window's bounds are its parameters)."""
    return (
        f"FROM metrics AS m INDEXED BY {_METRICS_BY_RUN} "
        "WHERE m.run_uuid IN (SELECT run_uuid FROM temp.synergos_series_runs) "
        f"AND m.key IN (SELECT key FROM temp.synergos_series_keys){_window_sql(window)}"
    )


def _sqlite_queries(keys: int, window: Window, timed: bool, packed: bool) -> tuple[str, str]:
    """SQLite's two reads of the rows asked for, over the numbered runs and keys: the rowid
    span read straight through (parameters: the rowid bounds, then the window's), and the
    rows found through MLflow's index fetched by rowid (the window's). A ``packed`` row gives
    its series code and step as one number, ``code * 2**32 + step - first``, where ``first``
    (the first parameter of either) is the window's first step."""
    code = f"(r.number * {keys} + k.number) * 2 + m.is_nan"
    head = f"({code}) * {_PACK} + (m.step - ?)" if packed else f"{code}, m.step"
    # CROSS JOIN keeps metrics the outer loop: read in rowid order, each row numbered by a
    # lookup in the small tables' primary keys, the keys' first: a run's span holds its other
    # keys' rows more often than other runs'.
    joined = (
        f"SELECT {head}, m.value{', m.timestamp' if timed else ''} "
        "FROM metrics AS m NOT INDEXED "
        "CROSS JOIN temp.synergos_series_keys AS k CROSS JOIN temp.synergos_series_runs AS r "
        "WHERE k.key = m.key AND r.run_uuid = m.run_uuid"
    )
    straight = f"{joined} AND m.rowid BETWEEN ? AND ?{_window_sql(window)}"
    by_rowid = f"{joined} AND m.rowid IN (SELECT rowid {_found(window)})"
    return straight, by_rowid


def _sqlite_result(
    connection: Any, run_uuids: list[str], keys: list[str], window: Window, timed: bool
) -> tuple[Any, int | None]:
    """The rows asked for as a driver result (None when there are none), and the step that
    packed rows count from (None: not packed, see :func:`_sqlite_queries`).

    MLflow's index first gives the lowest and highest rowid of the rows asked for and how
    many there are, then (two seeks per series) their first and last step. Rows whose steps
    span less than 2**32 come packed (one number less per row to convert), read within those
    steps, so that a row stored in between can never carry its step into its code."""
    _sqlite_number(connection, run_uuids, keys)
    bounds = [bound for bound in window if bound is not None]
    low, high, count = connection.exec_driver_sql(
        "SELECT min(m.rowid), max(m.rowid), count(*) " + _found(window), tuple(bounds)
    ).one()
    if not count:
        return None, None
    # Each series' first and last step are two seeks in the index (one aggregate less per
    # row in the scan above: about a third of it).
    first, last = connection.exec_driver_sql(
        _STEP_SPAN.format(window=_window_sql(window)),
        tuple(bounds) * 2,
    ).one()
    packed = last - first < _PACK and len(run_uuids) * len(keys) * 2 < _CODES
    head: list[int] = []
    if packed:
        window, bounds, head = (first, last), [first, last], [first]
    straight, by_rowid = _sqlite_queries(len(keys), window, timed, packed)
    if count >= _DENSE * (high - low + 1):
        result = connection.exec_driver_sql(straight, (*head, low, high, *bounds))
    else:
        result = connection.exec_driver_sql(by_rowid, (*head, *bounds))
    return result, first if packed else None


def _rows(
    session: Any, run_uuids: list[str], keys: list[str], window: Window, timed: bool
) -> np.ndarray[Any, Any]:
    """The points asked for, unordered, as a structured array (:data:`_ROW`, or
    :data:`_TIMED_ROW` when ``timed``): each row's run and key are numbered by the database
    (a join on SQLite, ``CASE`` on PostgreSQL), so no text is fetched per point, and the
    driver's rows go straight into the array (no SQLAlchemy ``Row`` per point, as few
    columns as will do)."""
    from mlflow.store.tracking.dbmodels.models import SqlMetric
    from sqlalchemy import Integer, case, cast, select

    dtype = _TIMED_ROW if timed else _ROW
    connection = session.connection()
    first = None
    if connection.dialect.name == "sqlite":
        # Through SQLAlchemy all the same, so that its events fire.
        result, first = _sqlite_result(connection, run_uuids, keys, window, timed)
        if result is None:
            return np.zeros(0, dtype=dtype)
    else:
        m = SqlMetric.__table__.c
        runs = case({run: i for i, run in enumerate(run_uuids)}, value=m.run_uuid)
        named = case({key: i for i, key in enumerate(keys)}, value=m.key)
        code = (runs * len(keys) + named) * 2 + cast(m.is_nan, Integer)
        columns = [code, m.step, m.value, *([m.timestamp] if timed else [])]
        query = select(*columns).where(m.run_uuid.in_(run_uuids), m.key.in_(keys))
        low, high = window
        if low is not None:
            query = query.where(m.step >= low)
        if high is not None:
            query = query.where(m.step <= high)
        result = connection.execute(query)
    try:
        # Straight from the driver's cursor into the array: no list of rows in between.
        if first is None:
            return np.fromiter(result.cursor, dtype=dtype)
        if timed:
            packed = np.fromiter(result.cursor, dtype=_PACKED_TIMED_ROW)
            numbers, values = packed["packed"], packed["value"]
        else:
            # Both columns as one float64 array, exact (see _CODES): numpy's plain float
            # conversion, not a structured row's per field.
            pairs = np.fromiter(chain.from_iterable(result.cursor), dtype=np.float64)
            numbers, values = pairs[0::2].astype(np.int64), pairs[1::2]
    finally:
        result.close()
    rows = np.empty(len(numbers), dtype=dtype)
    rows["code"] = numbers >> 32
    rows["step"] = (numbers & (_PACK - 1)) + first
    rows["value"] = values
    if timed:
        rows["time"] = packed["time"]
    return rows


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
    included, when given), in one query (three on SQLite, whatever the number of runs and keys):
    ``{key: {run_uuid: Line}}``, series without a point left out. A step stored more than
    once keeps its latest point by timestamp (of equal timestamps, the one stored last), as
    MLflow's own history ends: only then are the points read a second time, with their
    timestamps (the tracker replaces a step it logs again; stock ``log_batch`` appends)."""
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
