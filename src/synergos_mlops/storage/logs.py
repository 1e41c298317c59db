"""Central logs: the log records of the orchestrator and every participant, kept with the run.

One row of ``synergos_logs`` (``storage/schema.py``) per record::

    id            the row's number: ascending, the cursor of a live tail
    record_id     the sender's id of the record (the tracker's handler makes one); a record
                  sent twice is stored once. NULL for GELF input, which is never resent.
    collaboration, project, experiment, run
                  the federated run the record belongs to, as text: a record that arrives
                  before its run exists is shown with the run once it is there
    run_uuid      the MLflow id of the federation (parent) run, when known at write time
    participant   the participant whose process logged it; NULL for the orchestrator's
    timestamp     ms since the epoch (the record's own time)
    level         Python's level number (DEBUG 10 ... CRITICAL 50)
    logger        the logger's name (``TTP_…``, ``WKR_<participant>``, ``DIR_…``, ``SYS_<p>``
                  from the original synergos_logger; any name from the handler)
    role          TTP, WKR, DIR or SYS (from the logger's name), else NULL
    message, fields
                  the text, and every other field as a JSON object

Writes are one ``executemany`` per batch in one transaction; reads are one SQLAlchemy Core
query over the index (collaboration, project, experiment, run, id).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import and_, delete, func, select, text
from sqlalchemy.engine import Connection, Engine

from synergos_mlops.storage.schema import logs

__all__ = [
    "MAX_LIMIT",
    "ROLES",
    "LogQuery",
    "LogRecord",
    "count_records",
    "delete_older_than",
    "insert_records",
    "iter_run_records",
    "participant_of_logger",
    "read_records",
    "record_json",
    "role_of_logger",
    "run_uuid_for",
]

#: The roles of the original synergos_logger, from its logger name prefixes.
ROLES = ("TTP", "WKR", "DIR", "SYS")
#: Most records one read returns.
MAX_LIMIT = 5000
_TEXT_LIMIT = 250

_COLUMNS = (
    "record_id", "collaboration", "project", "experiment", "run", "run_uuid", "participant",
    "timestamp", "level", "logger", "role", "message", "fields",
)  # fmt: skip


def role_of_logger(logger: str) -> str | None:
    """``TTP_x`` -> ``TTP``; None for a name without one of the four prefixes."""
    prefix, sep, _ = logger.partition("_")
    return prefix if sep and prefix in ROLES else None


def participant_of_logger(logger: str) -> str | None:
    """The participant a ``WKR_<p>`` or ``SYS_<p>`` logger speaks for, else None."""
    prefix, sep, rest = logger.partition("_")
    return rest if sep and rest and prefix in ("WKR", "SYS") else None


@dataclass(frozen=True)
class LogRecord:
    """One record as stored (``fields`` JSON-serialisable)."""

    timestamp: int
    level: int
    logger: str
    message: str
    collaboration: str | None = None
    project: str | None = None
    experiment: str | None = None
    run: str | None = None
    participant: str | None = None
    role: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)
    record_id: str | None = None
    run_uuid: str | None = None

    def row(self) -> tuple[Any, ...]:
        fields = json.dumps(self.fields, default=str, ensure_ascii=False) if self.fields else None
        return (
            self.record_id, self.collaboration, self.project, self.experiment, self.run,
            self.run_uuid, self.participant, self.timestamp, self.level, self.logger[:_TEXT_LIMIT],
            self.role, self.message, fields,
        )  # fmt: skip


def _statement(connection: Connection) -> str:
    names = ", ".join(_COLUMNS)
    if connection.dialect.name == "sqlite":
        marks = ", ".join("?" * len(_COLUMNS))
        return f"INSERT OR IGNORE INTO synergos_logs ({names}) VALUES ({marks})"
    marks = ", ".join(["%s"] * len(_COLUMNS))
    postgresql = connection.dialect.name == "postgresql"
    conflict = " ON CONFLICT (record_id) DO NOTHING" if postgresql else ""
    return f"INSERT INTO synergos_logs ({names}) VALUES ({marks}){conflict}"


def insert_records(engine: Engine, records: Sequence[LogRecord]) -> int:
    """Store ``records`` in one transaction; a record whose ``record_id`` is stored already is
    left out. Returns how many rows were added."""
    if not records:
        return 0
    rows = [record.row() for record in records]
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("PRAGMA busy_timeout = 20000")
        result = connection.exec_driver_sql(_statement(connection), rows)
        added = result.rowcount
    return int(added) if added is not None and added >= 0 else len(rows)


@dataclass(frozen=True)
class LogQuery:
    """Which records of one federated run to read.

    ``participants``: only these participants' records (None: the run's global records and
    every participant's). ``visible``: when not None, the participants an account may see;
    global records stay visible, others are left out. Cursors: ``after`` reads forward from
    a row id (a live tail), ``before`` backward; with neither, the newest ``limit`` records.
    Records always come oldest first.
    """

    collaboration: str
    project: str
    experiment: str
    run: str
    participants: Sequence[str] | None = None
    visible: Sequence[str] | None = None
    min_level: int | None = None
    role: str | None = None
    contains: str | None = None
    after: int | None = None
    before: int | None = None
    limit: int = 500


def _like(text_: str) -> str:
    escaped = text_.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def read_records(engine: Engine, query: LogQuery) -> tuple[list[dict[str, Any]], bool]:
    """The records ``query`` selects, oldest first, as :func:`record_json` shows them, and
    whether more lie beyond the limit in the direction read."""
    t = logs.c
    conditions = [
        t.collaboration == query.collaboration,
        t.project == query.project,
        t.experiment == query.experiment,
        t.run == query.run,
    ]
    if query.participants is not None:
        conditions.append(t.participant.in_(list(query.participants)))
    if query.visible is not None:
        conditions.append(t.participant.is_(None) | t.participant.in_(list(query.visible)))
    if query.min_level is not None:
        conditions.append(t.level >= query.min_level)
    if query.role is not None:
        conditions.append(t.role == query.role)
    if query.contains:
        conditions.append(t.message.ilike(_like(query.contains), escape="\\"))
    if query.after is not None:
        conditions.append(t.id > query.after)
    if query.before is not None:
        conditions.append(t.id < query.before)
    limit = max(1, min(query.limit, MAX_LIMIT))
    forward = query.after is not None
    statement: Any = select(
        t.id, t.timestamp, t.level, t.logger, t.role, t.participant, t.message, t.fields
    ).where(and_(*conditions))
    statement = statement.order_by(t.id if forward else t.id.desc()).limit(limit + 1)
    with engine.connect() as connection:
        rows = list(connection.execute(statement))
    more = len(rows) > limit
    rows = rows[:limit]
    if not forward:
        rows.reverse()
    return [record_json(row) for row in rows], more


def _level_name(level: int) -> str:
    name = logging.getLevelName(level)
    return name if isinstance(name, str) and not name.startswith("Level ") else f"LEVEL{level}"


def _iso(millis: int) -> str:
    moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_json(row: Any) -> dict[str, Any]:
    """A stored row as the API shows it."""
    identifier, stamp, level, logger, role, participant, message, fields = row
    try:
        extra = json.loads(fields) if fields else {}
    except ValueError:
        extra = {"raw": fields}
    return {
        "id": int(identifier),
        "timestamp": int(stamp),
        "time": _iso(int(stamp)),
        "level": int(level),
        "level_name": _level_name(int(level)),
        "logger": logger,
        "role": role,
        "participant": participant,
        "message": message,
        "fields": extra,
    }


def iter_run_records(
    engine: Engine,
    ids: tuple[str, str, str, str],
    *,
    visible: Sequence[str] | None = None,
    participants: Sequence[str] | None = None,
    page: int = MAX_LIMIT,
) -> Iterable[dict[str, Any]]:
    """Every record of a run (or only ``participants``' records), oldest first, a page at a
    time (for the run's and a participant's bundle)."""
    after = 0
    while True:
        query = LogQuery(*ids, participants=participants, visible=visible, after=after, limit=page)
        records, more = read_records(engine, query)
        yield from records
        if not more or not records:
            return
        after = records[-1]["id"]


def delete_older_than(engine: Engine, cutoff_ms: int, *, chunk: int = 10_000) -> int:
    """Delete records timestamped before ``cutoff_ms``, ``chunk`` rows per transaction (so
    writers wait at most one chunk); return how many."""
    t = logs.c
    deleted = 0
    while True:
        oldest = select(t.id).where(t.timestamp < cutoff_ms).limit(chunk)
        with engine.begin() as connection:
            if connection.dialect.name == "sqlite":
                connection.exec_driver_sql("PRAGMA busy_timeout = 20000")
            result = connection.execute(delete(logs).where(t.id.in_(oldest)))
        count = int(result.rowcount or 0)
        deleted += count
        if count < chunk:
            return deleted


def count_records(engine: Engine) -> int:
    with engine.connect() as connection:
        return int(connection.execute(select(func.count()).select_from(logs)).scalar_one())


def run_uuid_for(
    engine: Engine, collaboration: str, project: str, experiment: str, run: str
) -> str | None:
    """The MLflow id of federation run ``run`` of experiment ``c/p/e``, or None."""
    statement = text(
        "SELECT r.run_uuid FROM runs r "
        "JOIN experiments e ON e.experiment_id = r.experiment_id "
        "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'synergos.run' AND t.value = :run "
        "JOIN tags o ON o.run_uuid = r.run_uuid AND o.key = 'synergos.role' "
        "AND o.value = 'federation' "
        "WHERE e.name = :name AND e.lifecycle_stage = 'active' AND r.lifecycle_stage = 'active' "
        "ORDER BY r.start_time DESC LIMIT 1"
    )
    name = f"{collaboration}/{project}/{experiment}"
    with engine.connect() as connection:
        found = connection.execute(statement, {"run": run, "name": name}).scalar()
    return None if found is None else str(found)
