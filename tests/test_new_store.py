"""A new SQLite store is a copy of an empty database the migrations built once: the same
schema, revisions and behaviour as a database the migrations built in place."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
from pathlib import Path

import pytest

from synergos_mlops.storage.heads import (
    OUR_HEAD,
    READ_INDEX_NAMES,
    cached_mlflow_head,
    remember_mlflow_head,
    sqlite_store_is_current,
)
from synergos_mlops.storage.new_store import _migrate, create_sqlite_store, template_path


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(folder))
    return folder


def schema(db: Path) -> tuple[set[tuple[object, ...]], list[tuple[str, ...]]]:
    """Every table with its columns (name, type, not null, default, key) and every index with
    its table, columns and uniqueness; and the revisions MLflow's and our migrations wrote.
    (Not the SQL text: MLflow words one CHECK constraint differently depending on which of its
    modules the process had imported, for the same constraint.)"""
    with contextlib.closing(sqlite3.connect(db)) as connection:
        found: set[tuple[object, ...]] = set()
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )]  # fmt: skip
        for table in tables:
            columns = connection.execute(f'PRAGMA table_info("{table}")').fetchall()
            found.add(("table", table, tuple(tuple(c[1:]) for c in columns)))
            for _, index, unique, *_ in connection.execute(f'PRAGMA index_list("{table}")'):
                names = tuple(r[2] for r in connection.execute(f'PRAGMA index_info("{index}")'))
                found.add(("index", table, index, unique, names))
        versions = [
            tuple(row)
            for table in sorted(t for t in tables if "version" in t)
            for row in connection.execute(f'SELECT * FROM "{table}"').fetchall()
        ]
    return found, versions


def test_a_copied_store_has_the_schema_and_revisions_the_migrations_give(
    tmp_path: Path, cache: Path
) -> None:
    migrated = tmp_path / "migrated.db"
    _migrate(migrated)
    copied = tmp_path / "store" / "mlflow.db"
    copied.parent.mkdir()
    assert create_sqlite_store(copied)
    assert template_path().is_file() and template_path().is_relative_to(cache)
    objects, versions = schema(copied)
    assert (objects, versions) == schema(migrated)
    assert {o[1] for o in objects if o[0] == "table"} >= {"experiments", "runs", "metrics"}
    assert len(versions) == 2  # MLflow's head and ours
    second = tmp_path / "second" / "mlflow.db"
    second.parent.mkdir()
    assert create_sqlite_store(second)  # from the template now kept in the cache
    assert schema(second) == (objects, versions)
    assert not [p for p in copied.parent.iterdir() if p.name != "mlflow.db"], "no leftovers"


def test_mlflow_and_our_writes_work_on_a_copied_store(tmp_path: Path, cache: Path) -> None:
    from mlflow import MlflowClient

    from synergos_mlops.tracking import FederatedTracker

    store = tmp_path / "store"
    with (
        FederatedTracker(str(store)) as tracker,
        tracker.run(collaboration="c", project="p", experiment="e", run="r",
                    participants=["w1"]) as run,
    ):  # fmt: skip
        run.log_metrics({"train/loss": 0.5}, step=1, participant="w1")
        run_id = run.participant_run_id("w1")
    assert template_path().is_file()  # the tracker's new store folder came from it
    client = MlflowClient(f"sqlite:///{store / 'mlflow.db'}")
    assert [m.value for m in client.get_metric_history(run_id, "train/loss")] == [0.5]
    assert client.get_experiment("0").name == "Default"  # MLflow's own first-use row


def test_an_existing_database_is_never_touched(tmp_path: Path, cache: Path) -> None:
    db = tmp_path / "mlflow.db"
    db.write_bytes(b"someone else's bytes")
    assert not create_sqlite_store(db)
    assert db.read_bytes() == b"someone else's bytes"


def test_of_starts_racing_on_one_new_folder_exactly_one_creates_it(
    tmp_path: Path, cache: Path
) -> None:
    db = tmp_path / "mlflow.db"
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.append(create_sqlite_store(db)))
               for _ in range(4)]  # fmt: skip
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, False, False, True]
    assert len(schema(db)[1]) == 2
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == ["mlflow.db"]


def test_without_a_usable_cache_the_store_is_migrated_in_place(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocked))
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    assert create_sqlite_store(db)
    migrated = tmp_path / "migrated.db"
    _migrate(migrated)
    assert schema(db) == schema(migrated)


def test_the_heads_known_without_importing_mlflow_are_the_migrations_own(
    tmp_path: Path, cache: Path
) -> None:
    from alembic.script import ScriptDirectory
    from mlflow.store.db.utils import _get_latest_schema_revision

    from synergos_mlops.storage.schema import READ_INDEXES, alembic_config

    scripts = ScriptDirectory.from_config(alembic_config(None))  # type: ignore[arg-type]
    assert scripts.get_current_head() == OUR_HEAD
    assert tuple(name for name, *_ in READ_INDEXES) == READ_INDEX_NAMES
    assert cached_mlflow_head() is None  # a new cache
    db = tmp_path / "store" / "mlflow.db"
    db.parent.mkdir()
    assert create_sqlite_store(db)  # builds the template, which records MLflow's head
    assert cached_mlflow_head() == _get_latest_schema_revision()
    assert sqlite_store_is_current(db)


def _edited(db: Path, statement: str) -> Path:
    with contextlib.closing(sqlite3.connect(db)) as connection, connection:
        connection.execute(statement)
    return db


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE alembic_version SET version_num = 'an older one'",
        "UPDATE synergos_alembic_version SET version_num = 's0002_logs_ids'",
        "DELETE FROM synergos_alembic_version",
        "INSERT INTO alembic_version VALUES ('a second revision')",
        "DROP INDEX synergos_tags_value",
        "DROP TRIGGER synergos_run_search_insert",
        "DROP TABLE synergos_run_search",
        "DROP TABLE synergos_alembic_version",
    ],
)
def test_a_store_not_at_this_releases_schema_is_never_taken_for_current(
    tmp_path: Path, cache: Path, statement: str
) -> None:
    db = tmp_path / "mlflow.db"
    assert create_sqlite_store(db)
    assert sqlite_store_is_current(db)
    assert not sqlite_store_is_current(_edited(db, statement))


def test_without_mlflows_head_recorded_or_a_readable_file_the_answer_is_no(
    tmp_path: Path, cache: Path
) -> None:
    db = tmp_path / "mlflow.db"
    assert create_sqlite_store(db)
    for head in cache.rglob("mlflow-head-*"):
        head.unlink()
    assert not sqlite_store_is_current(db)  # then serve asks MLflow, and records it
    remember_mlflow_head(cached_mlflow_head() or "x")
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"not a database" * 100)
    assert not sqlite_store_is_current(garbage)
    assert not sqlite_store_is_current(tmp_path / "missing.db")


def test_serve_prepares_a_current_store_without_importing_mlflow_or_alembic(
    tmp_path: Path, cache: Path
) -> None:
    """serve's own process serves nothing: on a store at this release's schema it checks the
    file with sqlite3 alone (its workers import MLflow themselves)."""
    import subprocess
    import sys

    store = tmp_path / "store"
    script = (
        "import sys; from pathlib import Path\n"
        "from synergos_mlops.server.serve import ServeConfig, prepare\n"
        f"prepare(ServeConfig(store=Path({str(store)!r}), port=0), echo=print)\n"
        "print(sorted(m for m in ('mlflow', 'alembic') if m in sys.modules))\n"
    )
    env = {**os.environ, "XDG_CACHE_HOME": str(cache)}

    def prepare() -> list[str]:
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                              env=env, timeout=300)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()

    assert "New empty store" in prepare()[0]
    assert prepare()[-1] == "[]"
    _edited(store / "mlflow.db", "DROP INDEX synergos_tags_value")
    assert prepare()[-1] == "['alembic', 'mlflow']"
    assert sqlite_store_is_current(store / "mlflow.db")  # the index made again
