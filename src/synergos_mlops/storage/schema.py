"""The tables Synergos MLOps keeps beside MLflow's, in the same database, and their
migrations.

MLflow's schema is MLflow's: its tables and its ``alembic_version`` are changed only by
MLflow's own migrations. Ours are kept the same way, with Alembic, in
``storage/migrations/versions/``, and their revision in the table ``synergos_alembic_version``.
``synmlops db upgrade`` runs MLflow's migrations, then ours; ``synmlops serve`` brings ours to
the latest revision (creating them in a database that has none yet) and refuses a revision it
does not know (written by a newer release).

Tables (Core, so reads and writes need no ORM objects):

- ``synergos_logs``: log records of the orchestrator and every participant (see logs.py).

Indexes of ours on MLflow's tables (revision ``s0003_read_indexes``), named ``synergos_*``:
``runs (experiment_id, lifecycle_stage)`` and ``tags (key, value)`` for the tag keys the reads
look up by value. Our migrations only add; ``synmlops serve`` applies them to a database whose
revision of ours is older, at start.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text

from synergos_mlops.storage.heads import VERSION_TABLE

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "VERSION_TABLE",
    "OurSchema",
    "READ_INDEXES",
    "alembic_config",
    "ensure_read_indexes",
    "gather_missing_statistics",
    "logs",
    "metadata",
    "our_schema",
    "upgrade_ours",
]

_MIGRATIONS = Path(__file__).resolve().parent / "migrations"

metadata = MetaData()

logs = Table(
    "synergos_logs",
    metadata,
    Column("id", BigInteger().with_variant(Integer(), "sqlite"), primary_key=True),
    Column("run_uuid", String(32)),
    Column("collaboration", String(250)),
    Column("participant", String(250)),
    Column("timestamp", BigInteger, nullable=False),
    Column("level", Integer, nullable=False),
    Column("logger", String(250), nullable=False),
    Column("role", String(20)),
    Column("message", Text, nullable=False),
    Column("fields", Text),
    # s0002: the federated ids as text, and the sender's record id (one row per record).
    Column("record_id", String(64)),  # unique index synergos_logs_record_id
    Column("project", String(250)),
    Column("experiment", String(250)),
    Column("run", String(250)),
)


def alembic_config(connection: object) -> object:
    """Alembic's configuration of our migrations, on ``connection``."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@dataclass(frozen=True)
class OurSchema:
    current: str | None  #: None when none of our tables exist yet
    head: str
    known: bool = True  #: False for a revision this release has no migration for (a newer one)

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


#: Our indexes on MLflow's tables: (name, table, columns, PostgreSQL's WHERE or None). See
#: migration ``s0003_read_indexes`` for why each is there.
READ_INDEXES: tuple[tuple[str, str, tuple[str, ...], str | None], ...] = (
    ("synergos_runs_experiment", "runs", ("experiment_id", "lifecycle_stage"), None),
    ("synergos_experiments_name", "experiments", ("name",), None),
    ("synergos_experiment_tags_experiment", "experiment_tags", ("experiment_id",), None),
    ("synergos_tags_value", "tags", ("key", "value"),
     "key IN ('mlflow.parentRunId', 'synergos.participant', 'synergos.role', 'synergos.run', "
     "'synergos.study', 'synergos.trial.request')"),
)  # fmt: skip


def ensure_read_indexes(bind: Any) -> list[str]:
    """Create those of :data:`READ_INDEXES` that are missing on tables that exist (an engine
    or a connection); the names created."""
    from sqlalchemy import Column, Index, MetaData, Table, inspect, text

    found = inspect(bind)
    tables = set(found.get_table_names())
    created = []
    for name, table, columns, where in READ_INDEXES:
        if table not in tables or name in {i["name"] for i in found.get_indexes(table)}:
            continue
        holder = Table(table, MetaData(), *(Column(c) for c in columns))
        index = Index(name, *(holder.c[c] for c in columns),
                      postgresql_where=text(where) if where else None)  # fmt: skip
        index.create(bind, checkfirst=True)
        created.append(name)
    return created


#: MLflow's tables whose planner statistics our reads depend on.
STATISTICS_TABLES = ("runs", "tags", "params", "metrics", "latest_metrics", "experiments",
                     "experiment_tags")  # fmt: skip


def gather_missing_statistics(engine: Engine) -> list[str]:
    """``ANALYZE`` those of :data:`STATISTICS_TABLES` that hold rows but that PostgreSQL has
    never analyzed; the tables analyzed. A store restored or bulk-loaded into a new database
    has no planner statistics until autovacuum comes round, and its planner then reads whole
    tables for questions our indexes answer (the studies list measured 150 ms instead of 20
    on a 10M-point store). Nothing on SQLite, whose planner works without them, nor for a
    table analyzed once (autovacuum keeps it)."""
    from sqlalchemy import text

    if engine.dialect.name != "postgresql":
        return []
    with engine.connect() as connection:
        never = [
            str(name)
            for name in connection.execute(
                text("SELECT relname FROM pg_stat_user_tables WHERE schemaname = "
                     "current_schema() AND relname = ANY(:tables) AND last_analyze IS NULL "
                     "AND last_autoanalyze IS NULL"),
                {"tables": list(STATISTICS_TABLES)},
            ).scalars()
        ]  # fmt: skip
        held = [
            table
            for table in never
            if connection.execute(text(f'SELECT EXISTS (SELECT 1 FROM "{table}")')).scalar()
        ]
    if held:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
            for table in held:
                connection.execute(text(f'ANALYZE "{table}"'))
    return held


@contextlib.contextmanager
def quiet_migrations() -> Iterator[None]:
    """MLflow's and Alembic's loggers at WARNING inside: creating a store is one line of ours
    (the CLI's "New empty store"), not MLflow's log of each of its migrations."""
    loggers = [logging.getLogger(name) for name in ("mlflow", "alembic")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def our_schema(engine: Engine) -> OurSchema:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config(None))  # type: ignore[arg-type]
    head = scripts.get_current_head()
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        current = context.get_current_revision()
    known = current is None or current in {script.revision for script in scripts.walk_revisions()}
    return OurSchema(current=current, head=str(head), known=known)


def upgrade_ours(engine: Engine) -> OurSchema:
    """Bring our tables to the latest revision (creating them in a new database), and our
    indexes onto MLflow's tables where these exist. Under the database's resolution lock, so
    replicas starting together on one new database upgrade it once."""
    from alembic import command

    from synergos_mlops.storage.run_search import ensure_run_search
    from synergos_mlops.storage.runs import resolution_lock

    with resolution_lock(engine):
        if not our_schema(engine).up_to_date:
            with engine.begin() as connection:
                command.upgrade(alembic_config(connection), "head")  # type: ignore[arg-type]
        ensure_read_indexes(engine)
        ensure_run_search(engine)
        gather_missing_statistics(engine)
    return our_schema(engine)
