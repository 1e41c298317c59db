"""Whether a SQLite store is at this release's schema, known without importing MLflow or
Alembic.

``synmlops serve`` checks a store's schema at every start: MLflow's revision against MLflow's
latest, ours against ours. Asking MLflow and Alembic for their heads means importing them, about
2 s of CPU in a process that serves nothing (the server's workers import MLflow themselves).
The heads depend only on the installed MLflow and on this package's migrations, so:

- MLflow's head is read once by importing its migrations and kept in the user's cache, under
  MLflow's installed version (``$XDG_CACHE_HOME/synergos_mlops/stores/mlflow-head-<version>``);
- ours is :data:`OUR_HEAD` (a test holds it to Alembic's head of our migrations).

:func:`sqlite_store_is_current` reads a store's two revisions, our indexes and the run search's
table and triggers (``run_search``) with ``sqlite3``;
only when all match (and MLflow's head is known) does it say True. Anything else (a store at
another revision, a head not yet cached, a file it cannot read) is False, and the caller takes
the full path through MLflow and Alembic, which also records MLflow's head for next time.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import sqlite3
import tempfile
from pathlib import Path

from synergos_mlops.storage.run_search import SEARCH_OBJECTS
from synergos_mlops.store import user_cache

__all__ = [
    "OUR_HEAD",
    "READ_INDEX_NAMES",
    "VERSION_TABLE",
    "cached_mlflow_head",
    "mlflow_version",
    "remember_mlflow_head",
    "sqlite_store_is_current",
]

#: The latest revision of our migrations (``storage/migrations/versions``).
OUR_HEAD = "s0004_run_search"
#: The table of our migrations' revision (MLflow's is ``alembic_version``).
VERSION_TABLE = "synergos_alembic_version"
#: The names of our indexes on MLflow's tables (``schema.READ_INDEXES``).
READ_INDEX_NAMES = (
    "synergos_runs_experiment",
    "synergos_experiments_name",
    "synergos_experiment_tags_experiment",
    "synergos_tags_value",
)


def mlflow_version() -> str:
    """The installed MLflow's version, from its metadata (MLflow is not imported)."""
    return importlib.metadata.version("mlflow")


def _head_file() -> Path:
    return user_cache("stores") / f"mlflow-head-{mlflow_version()}"


def cached_mlflow_head() -> str | None:
    """MLflow's latest schema revision as recorded for the installed version; None when not
    recorded yet or unreadable."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        head = _head_file().read_text().strip()
        return head or None
    return None


def remember_mlflow_head(head: str) -> None:
    """Record MLflow's latest revision for the installed version (whole or not at all; a cache
    that cannot be written is no error)."""
    if cached_mlflow_head() == head:
        return
    path = _head_file()
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=".head-")
        try:
            with os.fdopen(handle, "w") as out:
                out.write(head)
            os.replace(name, path)
        finally:
            Path(name).unlink(missing_ok=True)


def sqlite_store_is_current(db_path: Path) -> bool:
    """True when the SQLite file holds MLflow's latest revision (as cached), ours, our indexes
    and the run search's table and triggers; False for anything else, including a file that
    cannot be read."""
    head = cached_mlflow_head()
    if head is None or not db_path.is_file():
        return False
    try:
        with contextlib.closing(
            sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, timeout=5)
        ) as connection:
            mlflow_revisions = connection.execute("SELECT version_num FROM alembic_version")
            ours = connection.execute(f"SELECT version_num FROM {VERSION_TABLE}")  # noqa: S608
            revisions = ([r for (r,) in mlflow_revisions], [r for (r,) in ours])
            indexes = {
                name
                for (name,) in connection.execute(
                    "SELECT name FROM sqlite_master WHERE type IN ('index', 'table', 'trigger')"
                )
            }
    except sqlite3.Error:
        return False
    return revisions == ([head], [OUR_HEAD]) and set(READ_INDEX_NAMES + SEARCH_OBJECTS) <= indexes
