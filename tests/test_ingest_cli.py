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
