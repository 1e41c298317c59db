"""A new SQLite store database, copied from an empty one built once by the migrations.

MLflow creates a new database by running its whole migration history (about 60 revisions),
then ours: 1.5 to 2.5 s of CPU for every new store folder that ``serve``, ``ingest``, ``demo``
or a tracker in folder mode starts. The result depends only on the MLflow release and our
migrations, so it is built once into the user's cache
(``$XDG_CACHE_HOME/synergos_mlops/stores/empty-<mlflow version>-<our head>.db``, by the same
migrations) and a new store gets a copy, in milliseconds. The copy holds tables and revisions
only; MLflow's store adds its default experiment on first use, as on a database it created.

Nothing here is trusted blindly: a template is written under a temporary name and renamed
when complete, and one that cannot be built or read (no cache folder, a full disk) is no
error: the store is then created by the migrations, as before.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import tempfile
import threading
from pathlib import Path

from synergos_mlops.storage.heads import OUR_HEAD, mlflow_version, remember_mlflow_head
from synergos_mlops.store import user_cache

__all__ = ["create_sqlite_store", "template_path"]

#: Alembic's migration context is one per process: one migration at a time in a process.
_MIGRATING = threading.Lock()


def template_path() -> Path:
    """Where this release's empty store database is kept (MLflow's version, our head)."""
    return user_cache("stores") / f"empty-{mlflow_version()}-{OUR_HEAD}.db"


def _migrate(db_path: Path) -> None:
    """MLflow's tables and ours in a new SQLite file, by the migrations, quietly."""
    from mlflow.store.db.utils import _get_latest_schema_revision, _initialize_tables
    from sqlalchemy import create_engine

    from synergos_mlops.storage.schema import quiet_migrations, upgrade_ours

    with _MIGRATING:
        engine = create_engine(f"sqlite:///{db_path}")
        try:
            with quiet_migrations():
                _initialize_tables(engine)
            upgrade_ours(engine)
        finally:
            engine.dispose()
    remember_mlflow_head(_get_latest_schema_revision())


def _template() -> Path | None:
    """This release's template, built now when missing; None when it cannot be."""
    path = template_path()
    if path.is_file():
        return path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, name = tempfile.mkstemp(dir=path.parent, prefix=".building-", suffix=".db")
        os.close(handle)
        building = Path(name)
        try:
            _migrate(building)
            with contextlib.closing(sqlite3.connect(building)) as check:
                if check.execute("PRAGMA integrity_check").fetchone() != ("ok",):
                    return None
            os.replace(building, path)  # whole, or not at all
        finally:
            building.unlink(missing_ok=True)
    except OSError:
        return None
    return path


def create_sqlite_store(db_path: Path) -> bool:
    """Create ``db_path`` with this release's tables, from the template; False when a
    database is already there (nothing is touched then). The file appears whole: a copy is
    made beside it and linked into place, so a concurrent start never sees half of one, and
    of two starts on one new folder exactly one creates it."""
    if db_path.exists():
        return False
    template = _template()
    handle, name = tempfile.mkstemp(dir=db_path.parent, prefix=".new-", suffix=".db")
    os.close(handle)
    copy = Path(name)
    try:
        if template is not None:
            try:
                shutil.copyfile(template, copy)
            except OSError:
                template = None
        if template is None:  # no usable template: the migrations, into the copy
            copy.unlink()
            _migrate(copy)
        try:
            os.link(copy, db_path)
        except FileExistsError:
            return False
        return True
    finally:
        copy.unlink(missing_ok=True)
