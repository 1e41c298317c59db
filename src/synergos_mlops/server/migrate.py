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
4. the runs, metric points and params in the database are counted against the file store:
   MLflow's converter skips a run whose metadata it cannot read, and we refuse to lose it.

If any step fails, the database and copied artifacts are removed and the original entries
move back: the folder is as it was.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from synergos_mlops.errors import StoreError
from synergos_mlops.store import StoreFolder, holds_file_store, is_file_store

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


_RUN_DIR = re.compile(r"^[0-9a-f]{32}$")


def _count_source(source: Path) -> dict[str, int]:
    """Count what the file store holds, to check that the conversion kept all of it."""
    counts = {"runs": 0, "metrics": 0, "params": 0}
    experiment_dirs = [d for d in source.iterdir() if d.is_dir() and d.name.isdigit()]
    trash = source / ".trash"
    if trash.is_dir():
        experiment_dirs += [d for d in trash.iterdir() if d.is_dir() and d.name.isdigit()]
    for experiment in experiment_dirs:
        for run in experiment.iterdir():
            if not (run.is_dir() and _RUN_DIR.match(run.name)):
                continue
            counts["runs"] += 1
            metrics = run / "metrics"
            if metrics.is_dir():
                for series in metrics.rglob("*"):
                    if series.is_file():
                        with series.open("rb") as lines:
                            counts["metrics"] += sum(1 for line in lines if line.strip())
            params = run / "params"
            if params.is_dir():
                counts["params"] += sum(1 for p in params.rglob("*") if p.is_file())
    return counts


@contextlib.contextmanager
def _collect_mlflow_warnings() -> Iterator[list[str]]:
    """Keep what MLflow's converter warns about (a run it skips) for our own message."""
    collected: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            collected.append(record.getMessage().splitlines()[0])

    logger = logging.getLogger("mlflow")
    handler, propagate = Collect(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    saved = [(h, h.level) for h in logger.handlers if h is not handler]
    for other, _level in saved:
        other.setLevel(logging.CRITICAL + 1)
    try:
        yield collected
    finally:
        for other, level in saved:
            other.setLevel(level)
        logger.removeHandler(handler)
        logger.propagate = propagate


def _verify(source: dict[str, int], converted: dict[str, int], warned: list[str]) -> None:
    lost = [
        f"{source[kind] - converted[kind]} of {source[kind]} {kind}"
        for kind in ("runs", "metrics", "params")
        if converted[kind] < source[kind]
    ]
    if lost:
        cause = f" ({warned[0]})" if warned else ""
        raise StoreError(f"the conversion would lose {', '.join(lost)}{cause}")


def migrate_file_store(
    directory: str | Path, *, progress: Callable[[str], None] | None = None
) -> MigrationReport:
    from sqlalchemy import create_engine, text

    folder = StoreFolder.at(directory)
    root = folder.path
    if not root.is_dir():
        raise StoreError(f"{root} is not a folder")
    if not is_file_store(root):
        if holds_file_store(root):
            raise StoreError(
                f"{root} holds a database and file-store experiments written beside it; serve "
                f"it as it is (synmlops serve --store {root} shows both), migrate is for a file "
                "store alone whose TTP no longer runs"
            )
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

        with contextlib.redirect_stdout(io.StringIO()), _collect_mlflow_warnings() as warned:
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
        _verify(_count_source(source), counts, warned)
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
