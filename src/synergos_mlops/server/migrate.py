"""``synmlops migrate DIR``: turn an MLflow file store into the SQLite store folder, in place.

Older Synergos TTPs wrote an MLflow file store into the shared folder; current MLflow refuses
it. MLflow ships the converter (``mlflow.store.fs2db``); we run it and then make the folder a
regular store folder:

1. every top-level entry of DIR moves into ``DIR/filestore-backup-<UTC time>/`` (a rename:
   nothing is copied, nothing deleted; the backup stays);
2. MLflow's converter reads the backup and writes ``DIR/mlflow.db``;
3. artifacts of runs kept in the file store's default place are copied to
   ``DIR/artifacts/<experiment>/<run>/artifacts`` and their URIs become
   ``mlflow-artifacts:/...``, the form the server's artifact proxy serves to every client;
4. the row counts of the database are checked against the backup.

If any step fails, the database and copied artifacts are removed and the original entries
move back: the folder is as it was.
"""

from __future__ import annotations

import contextlib
import io
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from synergos_mlops.errors import StoreError
from synergos_mlops.store import StoreFolder, is_file_store

__all__ = ["MigrationReport", "migrate_file_store"]


@dataclass
class MigrationReport:
    backup: Path
    experiments: int
    runs: int
    metrics: int
    params: int
    tags: int
    artifact_files: int


def _local_path(uri: str | None) -> Path | None:
    if not uri:
        return None
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(uri)
    return None


def _relocate(original: Path | None, old_root: Path, backup: Path) -> Path | None:
    """Where a path under the old store root now is, inside the backup."""
    if original is None:
        return None
    try:
        return backup / original.relative_to(old_root)
    except ValueError:
        return original if original.exists() else None


def migrate_file_store(
    directory: str | Path, *, progress: Callable[[str], None] | None = None
) -> MigrationReport:
    from sqlalchemy import create_engine, text

    folder = StoreFolder.at(directory)
    root = folder.path
    if not root.is_dir():
        raise StoreError(f"{root} is not a folder")
    if not is_file_store(root):
        raise StoreError(f"{root} holds no MLflow file store to migrate")
    say = progress or (lambda _message: None)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    backup = root / f"filestore-backup-{stamp}"
    entries = [entry for entry in root.iterdir()]
    backup.mkdir()
    for entry in entries:
        entry.rename(backup / entry.name)
    say(f"moved the file store into {backup}")
    source = backup / "mlruns" if (backup / "mlruns").is_dir() else backup
    old_root = root / "mlruns" if source.name == "mlruns" else root

    try:
        from mlflow.store.fs2db import migrate

        with contextlib.redirect_stdout(io.StringIO()):
            migrate(source, folder.backend_store_uri, progress=False)
        say(f"converted it into {folder.db_path}")
        folder.enable_wal()
        engine = create_engine(folder.backend_store_uri)
        copied = 0
        with engine.begin() as connection:
            for exp_id, location in connection.execute(
                text("SELECT experiment_id, artifact_location FROM experiments")
            ).all():
                if _local_path(location) is not None:
                    connection.execute(
                        text(
                            "UPDATE experiments SET artifact_location=:loc WHERE experiment_id=:id"
                        ),
                        {"loc": f"mlflow-artifacts:/{exp_id}", "id": exp_id},
                    )
            runs = connection.execute(
                text("SELECT run_uuid, experiment_id, artifact_uri FROM runs")
            ).all()
            for run_id, exp_id, artifact_uri in runs:
                found = source / str(exp_id) / run_id / "artifacts"
                if not found.is_dir():
                    found = _relocate(_local_path(artifact_uri), old_root, source)
                if found is None:
                    continue
                target = folder.artifacts_path / str(exp_id) / run_id / "artifacts"
                if found.is_dir():
                    shutil.copytree(found, target, dirs_exist_ok=True)
                    copied += sum(1 for p in target.rglob("*") if p.is_file())
                else:
                    target.mkdir(parents=True, exist_ok=True)
                connection.execute(
                    text("UPDATE runs SET artifact_uri=:uri WHERE run_uuid=:id"),
                    {"uri": f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts", "id": run_id},
                )
            counts = {
                table: int(connection.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar() or 0)
                for table in ("experiments", "runs", "metrics", "params", "tags")
            }
        engine.dispose()
        say(f"copied {copied} artifact files into {folder.artifacts_path}")
    except Exception as exc:
        for created in (folder.db_path, folder.artifacts_path):
            if created.is_dir():
                shutil.rmtree(created)
            elif created.exists():
                created.unlink()
        for suffix in ("-wal", "-shm"):
            Path(f"{folder.db_path}{suffix}").unlink(missing_ok=True)
        for entry in backup.iterdir():
            entry.rename(root / entry.name)
        backup.rmdir()
        raise StoreError(f"migration of {root} failed and was undone: {exc}") from exc
    return MigrationReport(
        backup=backup,
        experiments=counts["experiments"],
        runs=counts["runs"],
        metrics=counts["metrics"],
        params=counts["params"],
        tags=counts["tags"],
        artifact_files=copied,
    )
