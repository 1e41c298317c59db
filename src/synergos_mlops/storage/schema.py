"""The tables Synergos MLOps keeps beside MLflow's, in the same database, and their
migrations.

MLflow's schema is MLflow's: its tables and its ``alembic_version`` are changed only by
MLflow's own migrations. Ours are kept the same way, with Alembic, in
``storage/migrations/versions/``, and their revision in the table ``synergos_alembic_version``.
``synmlops db upgrade`` runs MLflow's migrations, then ours; ``synmlops serve`` creates ours in
a database that has none yet and refuses one that is behind, as it does for MLflow's.

Tables (Core, so reads and writes need no ORM objects):

- ``synergos_logs``: log records of the orchestrator and every participant (see logs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, Text

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = ["VERSION_TABLE", "OurSchema", "logs", "metadata", "our_schema", "upgrade_ours"]

VERSION_TABLE = "synergos_alembic_version"
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


def _config(connection: object) -> object:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@dataclass(frozen=True)
class OurSchema:
    current: str | None  #: None when none of our tables exist yet
    head: str

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def our_schema(engine: Engine) -> OurSchema:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_config(None)).get_current_head()  # type: ignore[arg-type]
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        current = context.get_current_revision()
    return OurSchema(current=current, head=str(head))


def upgrade_ours(engine: Engine) -> OurSchema:
    """Bring our tables to the latest revision (creating them in a new database). Under the
    database's resolution lock, so replicas starting together on one new database upgrade
    it once."""
    from alembic import command

    from synergos_mlops.storage.runs import resolution_lock

    with resolution_lock(engine):
        if our_schema(engine).up_to_date:
            return our_schema(engine)
        with engine.begin() as connection:
            command.upgrade(_config(connection), "head")  # type: ignore[arg-type]
    return our_schema(engine)
