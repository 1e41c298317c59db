"""The client commands (demo, ingest, watch, export) agree: one default destination
(--tracking-uri, else MLFLOW_TRACKING_URI, else the store folder ./mlflow), one message for a
destination that is not there, and `--help` says so."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SYNMLOPS, free_port

from synergos_mlops.cli import main

CLIENT_COMMANDS = ("demo", "ingest", "watch", "export")


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "SYNMLOPS_STORE")}  # fmt: skip
    return subprocess.run(
        [*SYNMLOPS, *args], capture_output=True, text=True, timeout=300, cwd=cwd, env=env
    )


@pytest.mark.parametrize("command", CLIENT_COMMANDS)
def test_every_client_command_help_names_the_default_destination(command: str) -> None:
    result = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "MLFLOW_TRACKING_URI" in text
    assert "else ./mlflow" in text


def test_ingest_without_a_tracking_uri_logs_into_the_store_folder_as_demo_does(
    tmp_path: Path,
) -> None:
    from ingest_trees import write_run

    write_run(tmp_path / "outputs", "c", "p", "e", "r", rounds=1, checkpoints=False)
    result = run_cli("ingest", "outputs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "mlflow" / "mlflow.db").is_file()
    # one line of ours for the new store; not MLflow's "Creating initial ... tables" log
    assert result.stderr.strip().splitlines() == [
        f"New empty store: created {tmp_path.resolve() / 'mlflow' / 'mlflow.db'}"
    ]
    again = run_cli("ingest", "outputs", cwd=tmp_path)
    assert again.returncode == 0 and again.stderr.strip() == ""  # an existing store: no word


def test_ingest_of_a_tree_without_runs_writes_nothing_and_creates_no_store(
    tmp_path: Path,
) -> None:
    (tmp_path / "outputs").mkdir()
    result = run_cli("ingest", "outputs", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["outputs"]


@pytest.mark.parametrize("command", [["serve", "--store"], ["db", "upgrade"]])
def test_a_store_under_a_missing_parent_folder_is_refused_and_nothing_is_created(
    tmp_path: Path, command: list[str]
) -> None:
    store = tmp_path / "typo" / "deep" / "store"
    result = run_cli(*command, str(store), cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: store {store} cannot be created: its parent folder {store.parent} does not "
        "exist (create it first, or check the path)"
    ]
    assert list(tmp_path.iterdir()) == []


def test_ingest_without_runs_names_the_expected_layout(tmp_path: Path) -> None:
    (tmp_path / "outputs").mkdir()
    result = run_cli("ingest", "outputs", "--tracking-uri", str(tmp_path / "store"), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == "runs: 0 new, 0 updated, 0 unchanged, 0 skipped"
    assert lines[1].startswith("no run folder in outputs: ingest looks for ")
    for expected in (
        "<outputs>/<collaboration>/<project>/<experiment>/<run>/",
        "global_model.pt",
        "global_loss_history.json",
        "local_model_<participant>.pt",
        "local_loss_history_<participant>.json",
        "checkpoints/round_<r>/epoch_<e>/",
    ):
        assert expected in lines[1]


def test_export_without_a_store_says_how_to_name_one(tmp_path: Path) -> None:
    result = run_cli("export", "c", "p", "e", "r", "-o", "run.zip", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        "Error: store folder ./mlflow does not exist: pass --tracking-uri (a server URL or a "
        "store folder) or set MLFLOW_TRACKING_URI"
    ]


def test_every_client_command_says_the_same_about_an_unreachable_server(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    (tmp_path / "outputs").mkdir()
    commands = {
        "demo": ["demo", "--rounds", "1"],
        "ingest": ["ingest", "outputs"],
        "watch": ["watch", "outputs"],
        "export": ["export", "c", "p", "e", "r", "-o", "run.zip"],
    }
    assert set(commands) == set(CLIENT_COMMANDS)
    for args in commands.values():
        result = run_cli(*args, "--tracking-uri", url, cwd=tmp_path)
        assert result.returncode == 1, args
        assert result.stderr.strip().splitlines() == [
            f"Error: the tracking server at {url} cannot be reached (ConnectionError)"
        ], args


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuch"], "Error: No such command 'nosuch'."),
        (["demo", "--round-seconds", "-1"], "-1.0 is not in the range 0<=x<=60."),
        (["demo", "--rounds", "x"], "'x' is not a valid integer."),
        (["serve", "--bogus"], "No such option '--bogus'"),
        (["auth", "nosuch"], "Error: No such command 'nosuch'."),
    ],
)
def test_a_usage_error_is_one_line_on_stderr_and_exit_2(
    args: list[str], message: str, tmp_path: Path
) -> None:
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], lines
    assert list(tmp_path.iterdir()) == []  # nothing created
