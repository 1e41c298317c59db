"""The ingester's command line: exit codes and one-line errors, before any tracker is used."""

from __future__ import annotations

import subprocess
from pathlib import Path

from conftest import SYNMLOPS, free_port


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SYNMLOPS, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_cli_ingest_with_outputs_missing_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = run_cli("ingest", str(tmp_path / "missing"), "--tracking-uri", "http://127.0.0.1:9")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: OUTPUTS folder '{tmp_path / 'missing'}' does not exist"
    ]


def test_cli_ingest_with_an_unreachable_server_is_one_line_and_exit_1(tmp_path: Path) -> None:
    result = run_cli("ingest", str(tmp_path), "--tracking-uri", f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cannot be reached" in result.stderr


def test_cli_ingest_with_an_ambiguous_worker_outputs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "w=x").mkdir()
    (tmp_path / "x").mkdir()
    result = run_cli(
        "ingest", str(tmp_path), "--tracking-uri", "http://127.0.0.1:9",
        "--worker-outputs", "w=x", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 1
    assert "ambiguous" in result.stderr


def test_serve_watch_with_a_missing_folder_is_refused_before_starting(tmp_path: Path) -> None:
    result = run_cli(
        "serve", "--store", str(tmp_path / "store"), "--port", "9", "--watch", str(tmp_path / "x")
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: OUTPUTS folder '{tmp_path / 'x'}' does not exist"
    ]


def _imported(result: subprocess.CompletedProcess[str]) -> set[str]:
    """The modules a ``python -X importtime`` run loaded."""
    return {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:")}  # fmt: skip


def test_an_unchanged_tree_is_reported_unchanged_without_loading_mlflow(tmp_path: Path) -> None:
    import sys

    from ingest_trees import write_run

    outputs, store = tmp_path / "outputs", tmp_path / "store"
    for i in range(2):
        write_run(outputs, "collab", "proj", "exp", f"run_{i}", rounds=2, epochs=1,
                  model_bytes=1024)  # fmt: skip
    first = run_cli("ingest", str(outputs), "--tracking-uri", str(store))
    assert first.returncode == 0, first.stderr
    assert "runs: 2 new, 0 updated, 0 unchanged, 0 skipped" in first.stdout
    command = [sys.executable, "-X", "importtime", "-m", "synergos_mlops", "ingest", str(outputs),
               "--tracking-uri", str(store)]  # fmt: skip
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0
    assert "runs: 0 new, 0 updated, 2 unchanged, 0 skipped" in again.stdout
    loaded = _imported(again)
    assert "synergos_mlops.ingest" in loaded
    assert not {m for m in loaded if m.split(".")[0] in ("mlflow", "sqlalchemy", "rich")}


def test_a_touched_file_or_a_deleted_run_takes_the_ordinary_pass(tmp_path: Path) -> None:
    import sqlite3

    from ingest_trees import write_global, write_run

    outputs, store = tmp_path / "outputs", tmp_path / "store"
    folders = [write_run(outputs, "collab", "proj", "exp", f"run_{i}", rounds=2, epochs=1,
                         model_bytes=1024) for i in range(2)]  # fmt: skip
    assert run_cli("ingest", str(outputs), "--tracking-uri", str(store)).returncode == 0
    write_global(folders[0], rounds=3)
    touched = run_cli("ingest", str(outputs), "--tracking-uri", str(store))
    assert "runs: 0 new, 1 updated, 1 unchanged, 0 skipped" in touched.stdout
    with sqlite3.connect(store / "mlflow.db") as connection:
        connection.execute(
            "UPDATE runs SET lifecycle_stage = 'deleted' WHERE run_uuid IN (SELECT run_uuid "
            "FROM tags WHERE key = 'synergos.run' AND value = 'run_1')"
        )
    deleted = run_cli("ingest", str(outputs), "--tracking-uri", str(store))
    assert "runs: 1 new, 0 updated, 1 unchanged, 0 skipped" in deleted.stdout
