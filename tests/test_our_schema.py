"""Our own tables and indexes beside MLflow's: created by `db upgrade` and by `serve`,
versioned apart from MLflow's schema; `serve` brings an older revision of ours up to date and
refuses one it does not know."""

from __future__ import annotations

import subprocess
import threading
from pathlib import Path
from typing import Any

from conftest import SYNMLOPS, free_port
from sqlalchemy import create_engine, inspect, text

from synergos_mlops.storage.schema import VERSION_TABLE, our_schema, upgrade_ours


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SYNMLOPS, *args], capture_output=True, text=True, timeout=300)


def test_db_upgrade_creates_our_tables_and_leaves_mlflows_version_to_mlflow(
    tmp_path: Path,
) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    done = cli("db", "upgrade", uri)
    assert done.returncode == 0, done.stderr
    engine = create_engine(uri)
    tables = set(inspect(engine).get_table_names())
    assert {"experiments", "alembic_version", VERSION_TABLE, "synergos_logs"} <= tables
    with engine.connect() as connection:
        mlflow_versions = connection.execute(text("SELECT version_num FROM alembic_version"))
        assert [row[0] for row in mlflow_versions] != [our_schema(engine).head]
    assert our_schema(engine).up_to_date
    again = cli("db", "upgrade", uri)
    assert again.returncode == 0 and "up to date" in again.stdout


def test_serve_refuses_a_database_whose_synergos_revision_it_does_not_know(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    assert cli("db", "upgrade", uri).returncode == 0
    engine = create_engine(uri)
    with engine.begin() as connection:
        connection.execute(text(f"UPDATE {VERSION_TABLE} SET version_num = 's9999_newer'"))
    done = cli("serve", "--store", str(store), "--port", str(free_port()))
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert "Synergos tables at s9999_newer" in line and "does not know" in line


def test_serve_brings_an_existing_store_at_an_older_revision_of_ours_up_to_date(
    tmp_path: Path, server_factory: Any
) -> None:
    from alembic import command

    from synergos_mlops.storage.schema import alembic_config

    store = tmp_path / "store"
    store.mkdir()
    uri = f"sqlite:///{store / 'mlflow.db'}"
    assert cli("db", "upgrade", uri).returncode == 0
    engine = create_engine(uri)
    with engine.begin() as connection:
        command.downgrade(alembic_config(connection), "s0002_logs_ids")  # type: ignore[arg-type]
    assert "synergos_tags_value" not in {i["name"] for i in inspect(engine).get_indexes("tags")}
    server_factory(store)
    assert our_schema(engine).up_to_date
    assert "synergos_tags_value" in {i["name"] for i in inspect(engine).get_indexes("tags")}
    engine.dispose()


def test_replicas_upgrading_one_new_postgresql_database_at_once_create_our_tables_once(
    postgres_uri: str,
) -> None:
    engine = create_engine(postgres_uri)
    errors: list[BaseException] = []

    def upgrade() -> None:
        try:
            upgrade_ours(engine)
        except BaseException as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert our_schema(engine).up_to_date
    engine.dispose()
