"""The database schema: serve refuses an out-of-date one and `synmlops db upgrade` fixes it."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import requests
from conftest import SYNMLOPS, free_port, start_server
from mlflow import MlflowClient
from sqlalchemy import create_engine
from tracking_support import drop_pg_database


def make_old_schema(uri: str, steps_behind: int = 5) -> str:
    """Give the database MLflow's schema as it was `steps_behind` migrations ago."""
    from alembic import command
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_alembic_config
    from mlflow.store.tracking.dbmodels.initial_models import Base as InitialBase

    engine = create_engine(uri)
    config = _get_alembic_config(uri)
    revisions = [r.revision for r in ScriptDirectory.from_config(config).walk_revisions()]
    old = revisions[steps_behind]
    InitialBase.metadata.create_all(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, old)
    engine.dispose()
    return old


HOLDING_WRITER = """
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1])
connection.execute("PRAGMA journal_mode=WAL")
connection.execute(
    "INSERT INTO experiments (name, artifact_location, lifecycle_stage) "
    "VALUES ('committed by another process', '', 'active')"
)
connection.commit()
print("committed", flush=True)
sys.stdin.read()  # open until told: its commit stays in the write-ahead log
"""


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SYNMLOPS, *args], capture_output=True, text=True, timeout=300)


def test_serve_on_an_old_sqlite_schema_names_db_upgrade_then_upgrade_lets_it_serve(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    old = make_old_schema(uri)

    refused = cli("serve", "--store", str(store), "--port", str(free_port()))
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"Error: database {uri} has schema {old}, this MLflow needs ")
    assert line.endswith(f"upgrade it with: synmlops db upgrade {uri}")

    # Another process has a commit in the write-ahead log and the database open, so nobody
    # copies the log back: a copy of mlflow.db alone would lack that commit.
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDING_WRITER, str(store / "mlflow.db")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "committed\n"
        upgraded = cli("db", "upgrade", uri)
    finally:
        holder.communicate(timeout=60)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "up to date" in upgraded.stdout
    [backup] = store.glob("mlflow.db.before-*")
    with closing(sqlite3.connect(backup)) as copy:  # the copy is whole, the log's commit in it
        assert copy.execute(
            "SELECT name FROM experiments WHERE name = 'committed by another process'"
        ).fetchall() == [("committed by another process",)]
    server = start_server(store)
    try:
        MlflowClient(server.url).create_experiment("after-upgrade")
    finally:
        server.stop()


def test_db_upgrade_creates_a_missing_postgresql_database_and_its_schema(
    postgres_uri: str,
) -> None:
    fresh = postgres_uri + "_new"
    try:
        result = cli("db", "upgrade", fresh)
        assert result.returncode == 0, result.stderr
        assert "created database" in result.stdout
        again = cli("db", "upgrade", fresh)
        assert again.returncode == 0 and "is up to date" in again.stdout
    finally:
        drop_pg_database(fresh)


def test_serve_on_an_old_postgresql_schema_names_db_upgrade_and_hides_the_password(
    postgres_uri: str, tmp_path: Path
) -> None:
    make_old_schema(postgres_uri)
    result = cli(
        "serve", "--store", str(tmp_path / "s"), "--backend-store-uri", postgres_uri,
        "--port", str(free_port()),
    )  # fmt: skip
    assert result.returncode == 1
    assert "synmlops db upgrade postgresql://synmlops:***@127.0.0.1:5432/" in result.stderr
    assert ":synmlops@" not in result.stderr
    assert cli("db", "upgrade", postgres_uri).returncode == 0


def test_serve_on_postgresql_reports_the_backend_in_health(
    postgres_uri: str, tmp_path: Path
) -> None:
    server = start_server(tmp_path / "s", extra=["--backend-store-uri", postgres_uri])
    try:
        assert requests.get(f"{server.url}/health", timeout=10).json()["backend"] == "postgresql"
        client = MlflowClient(server.url)
        run = client.create_run(client.create_experiment("pg"))
        client.log_metric(run.info.run_id, "train/loss", 0.5, step=3)
        assert client.get_metric_history(run.info.run_id, "train/loss")[0].step == 3
    finally:
        server.stop()


def test_serve_on_an_unreachable_database_says_so_in_one_line(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    result = cli(
        "serve", "--store", str(tmp_path / "s"), "--port", str(free_port()),
        "--backend-store-uri", f"postgresql://u:secret@127.0.0.1:{port}/db",
    )  # fmt: skip
    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: cannot reach database postgresql://u:***@127.0.0.1:{port}/db")
    assert "secret" not in line
