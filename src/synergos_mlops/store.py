"""The store folder: one directory that holds the whole state of a Synergos MLOps server.

::

    <store>/mlflow.db        MLflow's SQLite database (WAL mode)
    <store>/artifacts/       artifacts, served by the server's artifact proxy (runs'
                             artifact URIs: ``mlflow-artifacts:/<experiment>/<run>/artifacts``)

Mounting that folder into a container, or sharing it with the orchestrator, is all it takes.

The folder may also be an MLflow *file store* that the original Synergos TTP (mlflow 1.7.2)
keeps writing (numbered experiment folders with ``meta.yaml``). The server then mirrors it
live (``synergos_mlops.legacy``) and adds only *files* to its root, which mlflow 1.7.2
ignores: ``mlflow.db`` (and SQLite's ``-wal``/``-shm``), the resolve lock and
``synergos-mlops-sync.json``. A folder in the root would make the old client warn on every
listing, so artifacts logged through the server go to the sibling folder
``<store>.artifacts/`` unless the store already has its ``artifacts/`` folder.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from dataclasses import dataclass
from pathlib import Path

from synergos_mlops.errors import StoreError

__all__ = [
    "ARTIFACTS_NAME",
    "DB_NAME",
    "SYNC_STATUS_ENV",
    "SYNC_STATUS_NAME",
    "WATCH_STATUS_ENV",
    "StoreFolder",
    "holds_file_store",
    "is_file_store",
    "user_cache",
]

DB_NAME = "mlflow.db"
ARTIFACTS_NAME = "artifacts"
SYNC_STATUS_NAME = "synergos-mlops-sync.json"
#: The variable that tells a server's workers where the file-store mirror writes its status.
SYNC_STATUS_ENV = "SYNMLOPS_SYNC_STATUS"
#: Likewise for the watch of an outputs folder (``serve --watch``).
WATCH_STATUS_ENV = "SYNMLOPS_WATCH_STATUS"


def user_cache(name: str) -> Path:
    """``$XDG_CACHE_HOME/synergos_mlops/<name>``, else ``~/.cache/synergos_mlops/<name>``: what
    this package keeps for the user on this machine (the spool, ingest manifests, the empty
    store), never inside a store folder or an orchestrator's outputs."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "synergos_mlops" / name


def holds_file_store(folder: Path) -> bool:
    """True when ``folder`` holds file-store experiment folders (``<id>/meta.yaml``)."""
    if not folder.is_dir():
        return False
    for child in folder.iterdir():
        if not child.name.startswith(".") and (child / "meta.yaml").is_file():
            return True
    return False


def is_file_store(folder: Path) -> bool:
    """True when ``folder`` holds an MLflow file store (and no SQLite database yet)."""
    if not folder.is_dir() or (folder / DB_NAME).exists():
        return False
    if (folder / "mlruns").is_dir():
        return True
    for child in folder.iterdir():
        if child.is_dir() and child.name.isdigit() and (child / "meta.yaml").is_file():
            return True
    return False


@dataclass(frozen=True)
class StoreFolder:
    """A store folder and the URIs MLflow needs to use it."""

    path: Path

    @classmethod
    def at(cls, folder: str | os.PathLike[str]) -> StoreFolder:
        return cls(Path(folder).expanduser().resolve())

    @property
    def db_path(self) -> Path:
        return self.path / DB_NAME

    @property
    def artifacts_path(self) -> Path:
        """``<store>/artifacts``; beside the folder (``<store>.artifacts``) when the folder is a
        file store without it, so the old client sees no folder it cannot read."""
        inside = self.path / ARTIFACTS_NAME
        if inside.exists() or not holds_file_store(self.path):
            return inside
        return self.path.with_name(f"{self.path.name}.artifacts")

    @property
    def sync_status_path(self) -> Path:
        return self.path / SYNC_STATUS_NAME

    @property
    def backend_store_uri(self) -> str:
        return f"sqlite:///{self.db_path}"

    def check(self, *, create: bool = True) -> bool:
        """Make sure the folder can hold a store, creating it when asked; raise StoreError.

        Only the last folder of the path is created: a missing parent is more likely a typo
        than a wish for a tree of new folders. True when the folder was created here.
        """
        path = self.path
        created = False
        if path.exists() and not path.is_dir():
            raise StoreError(f"store {path} is a file, not a folder")
        if not path.exists():
            if not create:
                raise StoreError(f"store {path} does not exist")
            if not path.parent.is_dir():
                raise StoreError(
                    f"store {path} cannot be created: its parent folder {path.parent} does not "
                    "exist (create it first, or check the path)"
                )
            try:
                path.mkdir()
            except OSError as exc:
                raise StoreError(f"cannot create store {path}: {exc.strerror}") from None
            created = True
        try:  # a real write: permission bits alone say nothing for root or read-only mounts
            with tempfile.TemporaryFile(dir=path):
                pass
        except OSError:
            raise StoreError(f"store {path} is not writable") from None
        if self.db_path.exists() and not os.access(self.db_path, os.W_OK):
            raise StoreError(f"database {self.db_path} is not writable")
        try:
            self.artifacts_path.mkdir(exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {self.artifacts_path}: {exc.strerror}") from None
        return created

    def enable_wal(self) -> None:
        """Put the SQLite database in WAL mode (persistent in the file), so readers never
        wait for the writer and several server workers share it well."""
        connection = sqlite3.connect(self.db_path)
        try:
            connection.execute("PRAGMA journal_mode=WAL")
        finally:
            connection.close()
