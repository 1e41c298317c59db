"""A trigram index of the runs' Synergos ids, so that the tree's search box ("the runs whose
ids hold this text") costs the same on a store of ten runs and of ten thousand.

A search for text inside an id cannot use a b-tree: ``LIKE '%run-3%'`` reads every run's
``synergos.run`` tag. A trigram index finds the ids holding a text through the three-letter
pieces of it:

- **SQLite**: ``synergos_run_search``, an FTS5 table with the ``trigram`` tokenizer (ids
  folded to one case) holding each ``synergos.run`` tag's value and run, kept by three
  triggers on MLflow's ``tags`` table (insert, update, delete; ``synergos_run_search_*``);
- **PostgreSQL**: ``synergos_tags_run_trigram``, a GIN index on ``lower(value)`` of the
  ``synergos.run`` tags (``gin_trgm_ops``, without GIN's pending list: ``fastupdate=off``),
  which needs the ``pg_trgm`` extension (trusted since PostgreSQL 13: the database's owner
  may create it).

:func:`ensure_run_search` creates what is missing, at every ``serve`` start and in migration
``s0004_run_search``. A rebuild of ``tags`` by a later MLflow migration drops the triggers:
the next start finds them missing and fills the table again from ``tags``. A text of fewer
than three characters has no trigram: it is looked up by reading the tags, as it is where the
index cannot be created (a SQLite without FTS5, a PostgreSQL without ``pg_trgm``, said once in
the server's log).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

__all__ = [
    "SEARCH_OBJECTS",
    "SEARCH_TABLE",
    "TRIGRAM_INDEX",
    "ensure_run_search",
    "fts_phrase",
    "has_run_search",
]

_logger = logging.getLogger(__name__)

#: The tag whose value the index holds.
RUN_TAG = "synergos.run"
#: SQLite's FTS5 table of the runs' ids.
SEARCH_TABLE = "synergos_run_search"
#: The triggers on ``tags`` that keep it.
_TRIGGERS = {
    f"{SEARCH_TABLE}_insert": (
        f"AFTER INSERT ON tags WHEN new.key = '{RUN_TAG}' BEGIN "
        f"INSERT INTO {SEARCH_TABLE} (value, run_uuid) VALUES (new.value, new.run_uuid); END"
    ),
    f"{SEARCH_TABLE}_update": (
        f"AFTER UPDATE ON tags WHEN old.key = '{RUN_TAG}' OR new.key = '{RUN_TAG}' BEGIN "
        f"DELETE FROM {SEARCH_TABLE} WHERE old.key = '{RUN_TAG}' AND run_uuid = old.run_uuid; "
        f"INSERT INTO {SEARCH_TABLE} (value, run_uuid) SELECT new.value, new.run_uuid "
        f"WHERE new.key = '{RUN_TAG}'; END"
    ),
    f"{SEARCH_TABLE}_delete": (
        f"AFTER DELETE ON tags WHEN old.key = '{RUN_TAG}' BEGIN "
        f"DELETE FROM {SEARCH_TABLE} WHERE run_uuid = old.run_uuid; END"
    ),
}
#: Every SQLite object of the index (the table and its triggers), for the schema check.
SEARCH_OBJECTS = (SEARCH_TABLE, *_TRIGGERS)
#: PostgreSQL's trigram index.
TRIGRAM_INDEX = "synergos_tags_run_trigram"

_said: set[str] = set()


def _say_once(what: str, message: str) -> None:
    if what not in _said:
        _said.add(what)
        _logger.warning(message)


def ensure_run_search(bind: Any) -> bool:
    """Create the index where it is missing on a database whose ``tags`` table exists (an
    engine or a connection); True when the database has it afterwards."""
    from sqlalchemy import inspect

    if "tags" not in inspect(bind).get_table_names():
        return False
    if bind.dialect.name == "sqlite":
        return _ensure_sqlite(bind)
    if bind.dialect.name == "postgresql":
        return _ensure_postgresql(bind)
    return False


@contextlib.contextmanager
def _begin(bind: Any) -> Iterator[Any]:
    """A connection in a transaction on ``bind``: its own on an engine; inside a connection's
    (a migration's), a savepoint on PostgreSQL, where a failed statement spoils the
    transaction, and the connection as it is on SQLite, where it does not (and pysqlite's
    savepoints are not to be trusted)."""
    from sqlalchemy.engine import Connection

    if not isinstance(bind, Connection):
        with bind.begin() as connection:
            yield connection
    elif bind.dialect.name == "postgresql":
        with bind.begin_nested():
            yield bind
    else:
        yield bind


def _ensure_sqlite(bind: Any) -> bool:
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    with _begin(bind) as connection:
        found = {
            name for (name,) in connection.execute(
                text("SELECT name FROM sqlite_master WHERE name LIKE 'synergos_run_search%'")
            )
        }  # fmt: skip
        if set(SEARCH_OBJECTS) <= found:
            return True
    try:
        with _begin(bind) as connection:
            # Whatever part is there is made again: triggers missing means writes were missed.
            for trigger in _TRIGGERS:
                connection.execute(text(f"DROP TRIGGER IF EXISTS {trigger}"))
            connection.execute(text(f"DROP TABLE IF EXISTS {SEARCH_TABLE}"))
            connection.execute(text(
                f"CREATE VIRTUAL TABLE {SEARCH_TABLE} USING fts5(value, run_uuid UNINDEXED, "
                "tokenize = 'trigram')"
            ))  # fmt: skip
            connection.execute(text(
                f"INSERT INTO {SEARCH_TABLE} (value, run_uuid) "
                f"SELECT value, run_uuid FROM tags WHERE key = '{RUN_TAG}'"
            ))  # fmt: skip
            for trigger, body in _TRIGGERS.items():
                connection.execute(text(f"CREATE TRIGGER {trigger} {body}"))
    except OperationalError as exc:  # a SQLite built without FTS5 or its trigram tokenizer
        _say_once("sqlite", f"searching run ids reads every run: no FTS5 trigram index ({exc})")
        return False
    return True


#: A GIN index's pending list takes inserts until VACUUM merges them, and every search reads
#: it whole: on a store bulk-loaded with 10,000 runs, 49 ms a search instead of 8. A run's id
#: is inserted once, so the index takes each one at once.
_NO_PENDING_LIST = "fastupdate=off"


def _ensure_postgresql(bind: Any) -> bool:
    from sqlalchemy import text
    from sqlalchemy.exc import DBAPIError

    with _begin(bind) as connection:
        options = connection.execute(
            text("SELECT coalesce(c.reloptions, '{}') FROM pg_class c JOIN pg_namespace n "
                 "ON n.oid = c.relnamespace WHERE c.relname = :name AND n.nspname = "
                 "current_schema()"), {"name": TRIGRAM_INDEX},
        ).first()  # fmt: skip
    if options is not None:
        if _NO_PENDING_LIST not in options[0]:  # made by an earlier release
            try:
                with _begin(bind) as connection:
                    connection.execute(
                        text(f"ALTER INDEX {TRIGRAM_INDEX} SET ({_NO_PENDING_LIST})")
                    )
                    connection.execute(text(f"SELECT gin_clean_pending_list('{TRIGRAM_INDEX}')"))
            except DBAPIError as exc:  # not the index's owner: it works, only slower
                first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
                _say_once("pending", f"the run-id index keeps its pending list ({first})")
        return True
    try:
        with _begin(bind) as connection:
            connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            connection.execute(text(
                f"CREATE INDEX IF NOT EXISTS {TRIGRAM_INDEX} ON tags "
                f"USING gin (lower(value) gin_trgm_ops) WITH ({_NO_PENDING_LIST}) "
                f"WHERE key = '{RUN_TAG}'"
            ))  # fmt: skip
    except DBAPIError as exc:  # pg_trgm not installed, or not ours to create
        first = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
        _say_once("postgresql", f"searching run ids reads every run: no pg_trgm index ({first})")
        return False
    return True


def has_run_search(connection: Any) -> bool:
    """Whether this SQLite database has the trigram table (PostgreSQL's index is the
    planner's to use, so there it is not asked)."""
    from sqlalchemy import text

    return (
        connection.execute(
            text("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = :name"),
            {"name": SEARCH_TABLE},
        ).first()
        is not None
    )


def fts_phrase(text: str) -> str:
    """``text`` as one FTS5 phrase (a quoted string), which the trigram tokenizer matches as a
    substring of the indexed value, any case."""
    return '"' + text.replace('"', '""') + '"'
