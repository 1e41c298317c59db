"""The tracking database's schema: check it before serving, upgrade it on request.

MLflow keeps its schema with Alembic migrations. A new database is created by the server on
first start; an existing one at an older revision is refused by MLflow with a message that
names ``mlflow db upgrade``. ``synmlops serve`` checks first and says, in one line, to run
``synmlops db upgrade URI``, which runs MLflow's own migrations (after copying a SQLite file
aside, since migrations are not always transactional), then ours (``storage/schema.py``:
the tables we keep beside MLflow's and our indexes on MLflow's, with their own Alembic
version table). ``serve`` applies ours itself at start: they only add.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from synergos_mlops.errors import SchemaOutOfDateError, StoreError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

__all__ = [
    "SchemaStatus",
    "check_schema",
    "ensure_our_tables",
    "redact",
    "schema_status",
    "upgrade",
    "worker_options",
]


#: What a random page read costs PostgreSQL's planner against a sequential one, for a store
#: on SSD or held in memory (about 1.1, PostgreSQL's documentation says; its default, 4, is
#: for spinning disks).
CACHED_PAGES = "random_page_cost=1.1"


def worker_options(options: str | None, *, cached_pages: bool = False) -> str:
    """``PGOPTIONS`` (libpq's options for every connection a process opens) for the workers:
    as given, with :data:`CACHED_PAGES` added when ``cached_pages``
    (:func:`page_cost_is_default`) and the options do not set it. At PostgreSQL's default cost,
    reading 200 trials by id scanned every run and every run's role tag (7.6 ms at 10M points
    against 4.3 on an empty store) where a probe per id reads only those (4.8 ms).

    How statements are planned is left to PostgreSQL and the driver, as stock MLflow has it:
    psycopg prepares a statement once it has run five times, and PostgreSQL may then keep
    one generic plan for it. That saves MLflow's own write routes a fifth of their time; the
    few queries of ours whose plan depends on a value (the run-id search's ``LIKE``) carry
    that value in their text (``storage/reads.federation_runs_matching``)."""
    current = (options or "").strip()
    if cached_pages and "random_page_cost" not in current:
        current = f"{current} -c {CACHED_PAGES}".strip()
    return current


def page_cost_is_default(uri: str) -> bool:
    """Whether a PostgreSQL database's ``random_page_cost`` is PostgreSQL's default, set by no
    one (not its server's configuration, the database, the role or ``PGOPTIONS``): only then
    does ``serve`` choose one. False for any other database, or one that cannot be asked."""
    if not uri.startswith("postgresql"):
        return False
    from sqlalchemy import text

    try:
        engine = _engine(uri)
        try:
            with engine.connect() as connection:
                source = connection.execute(
                    text("SELECT source FROM pg_settings WHERE name = 'random_page_cost'")
                ).scalar()
        finally:
            engine.dispose()
    except Exception:  # noqa: BLE001 - not asked: left as the server has it
        return False
    return source == "default"


def redact(uri: str) -> str:
    """The URI without its password, fit for a message."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(uri).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URI is shown as given, minus userinfo
        head, sep, tail = uri.partition("@")
        return f"{head.split('://')[0]}://***@{tail}" if sep else uri


@dataclass(frozen=True)
class SchemaStatus:
    current: str | None  #: None for an empty database
    head: str

    @property
    def empty(self) -> bool:
        return self.current is None

    @property
    def up_to_date(self) -> bool:
        return self.current == self.head


def _engine(uri: str) -> Engine:
    from sqlalchemy import create_engine

    try:
        return create_engine(uri, pool_pre_ping=True)
    except Exception as exc:  # noqa: BLE001 - unknown dialect, missing driver, bad URI
        raise StoreError(f"database URI {redact(uri)} cannot be used: {exc}") from None


def schema_status(uri: str) -> SchemaStatus:
    from mlflow.store.db.utils import _get_latest_schema_revision, _get_schema_version
    from sqlalchemy import inspect

    engine = _engine(uri)
    try:
        tables = inspect(engine).get_table_names()
        current = _get_schema_version(engine) if "experiments" in tables else None
    except Exception as exc:  # noqa: BLE001 - any driver error means "cannot reach"
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise StoreError(f"cannot reach database {redact(uri)}: {reason}") from None
    finally:
        engine.dispose()
    return SchemaStatus(current=current, head=_get_latest_schema_revision())


def check_schema(uri: str) -> None:
    """Raise SchemaOutOfDateError when the database needs ``synmlops db upgrade``."""
    from synergos_mlops.storage.heads import remember_mlflow_head

    status = schema_status(uri)
    remember_mlflow_head(status.head)  # a later start on a current SQLite store skips this
    if not status.empty and not status.up_to_date:
        raise SchemaOutOfDateError(
            f"database {redact(uri)} has schema {status.current}, this MLflow needs "
            f"{status.head}; upgrade it with: synmlops db upgrade {redact(uri)}"
        )


def _create_mlflow_tables(engine: Engine) -> None:
    """MLflow's tables in a database that has none yet, as its server would create them on
    first start (our indexes need them). Under the resolution lock: replicas starting
    together on one new database create them once."""
    from mlflow.store.db.utils import _initialize_tables
    from sqlalchemy import inspect

    from synergos_mlops.storage.runs import resolution_lock
    from synergos_mlops.storage.schema import quiet_migrations

    with resolution_lock(engine):
        if "experiments" not in inspect(engine).get_table_names():
            with quiet_migrations():  # serve's first lines are its own
                _initialize_tables(engine)


def ensure_our_tables(uri: str) -> None:
    """Bring our tables and indexes to this release's revision (creating them in a database
    that has none yet; our migrations only add, so this is safe at every start); refuse a
    revision this release does not know, written by a newer one."""
    from synergos_mlops.storage.schema import our_schema, upgrade_ours

    engine = _engine(uri)
    try:
        status = our_schema(engine)
        if not status.known:
            raise SchemaOutOfDateError(
                f"database {redact(uri)} has Synergos tables at {status.current}, which this "
                f"release does not know (it needs {status.head}): a newer release of synergos-"
                "mlops wrote it; serve it with that release"
            )
        _create_mlflow_tables(engine)
        upgrade_ours(engine)  # also our indexes on MLflow's tables: cheap when they exist
    except SchemaOutOfDateError:
        raise
    except Exception as exc:  # noqa: BLE001 - any driver error means "cannot use"
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise StoreError(f"cannot create the Synergos tables in {redact(uri)}: {reason}") from None
    finally:
        engine.dispose()


def _missing_postgresql_database(uri: str) -> bool:
    if not uri.startswith(("postgresql://", "postgresql+")):
        return False
    try:
        schema_status(uri)
    except StoreError as exc:
        return "does not exist" in str(exc) and "database" in str(exc)
    return False


def _create_postgresql_database(uri: str) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.engine import make_url

    url = make_url(uri)
    name = url.database or ""
    engine = create_engine(url.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            quoted = '"' + name.replace('"', '""') + '"'
            connection.execute(text(f"CREATE DATABASE {quoted}"))
    except Exception as exc:  # noqa: BLE001 - e.g. no CREATEDB right
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise StoreError(f"cannot create database {redact(uri)}: {reason}") from None
    finally:
        engine.dispose()


def _copy_sqlite(path: Path, copy: Path) -> None:
    """A whole copy of the SQLite database at ``path``, through SQLite's backup: the file
    alone lacks the commits still in its write-ahead log (``mlflow.db-wal``) while another
    process holds the database open, and a bulk writer lets that log grow to 64 MiB)."""
    copy.unlink(missing_ok=True)
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(copy)) as target:
        source.backup(target)


def upgrade(uri: str, *, say: Callable[[str], None] = print) -> SchemaStatus:
    """Create (with the PostgreSQL database itself, when missing) or upgrade the schema to
    MLflow's latest revision; return the new status."""
    from mlflow.store.db.utils import _initialize_tables, _upgrade_db

    if _missing_postgresql_database(uri):
        _create_postgresql_database(uri)
        say(f"created database {redact(uri)}")
    before = schema_status(uri)
    if not before.empty and before.up_to_date:
        _upgrade_ours(uri, say)
        say(f"database {redact(uri)} is up to date (schema {before.head})")
        return before
    if uri.startswith("sqlite:///") and not before.empty:
        path = Path(uri.removeprefix("sqlite:///"))
        backup = path.with_name(f"{path.name}.before-{before.head}")
        _copy_sqlite(path, backup)
        say(f"copied {path} to {backup}")
    engine = _engine(uri)
    try:
        if before.empty:
            say(f"creating the MLflow schema in {redact(uri)}")
            _initialize_tables(engine)
        else:
            say(f"upgrading {redact(uri)} from schema {before.current} to {before.head}")
            _upgrade_db(engine)
    except Exception as exc:  # noqa: BLE001 - report the migration's own reason
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise StoreError(f"upgrade of {redact(uri)} failed: {reason}") from None
    finally:
        engine.dispose()
    _upgrade_ours(uri, say)
    return schema_status(uri)


def _upgrade_ours(uri: str, say: Callable[[str], None]) -> None:
    from synergos_mlops.storage.schema import our_schema, upgrade_ours

    engine = _engine(uri)
    try:
        before = our_schema(engine)
        if not before.up_to_date:
            say(f"upgrading the Synergos tables from {before.current or 'none'} to {before.head}")
        upgrade_ours(engine)  # also our indexes on MLflow's tables, where one is missing
    except Exception as exc:  # noqa: BLE001 - report the migration's own reason
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        raise StoreError(
            f"upgrade of the Synergos tables in {redact(uri)} failed: {reason}"
        ) from None
    finally:
        engine.dispose()
