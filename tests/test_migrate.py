"""`synmlops migrate`: an old Synergos TTP's MLflow file store becomes a store folder."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import SYNMLOPS, start_server
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag


def write_file_store(folder: Path, scratch: Path) -> dict[str, Any]:
    """Write an MLflow file store with MLflow's own FileStore, as older TTPs did."""
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    try:
        client = MlflowClient(tracking_uri=str(folder))
        expected: dict[str, Any] = {}
        for name in ("collab/proj/exp_a", "collab/proj/exp b ü"):
            experiment_id = client.create_experiment(name, tags={"synergos.project": "proj"})
            for run_index in range(2):
                run = client.create_run(experiment_id, run_name=f"run_{run_index}")
                run_id = run.info.run_id
                client.log_batch(
                    run_id,
                    metrics=[
                        Metric("train/loss", 1.0 / (step + 1), 1_700_000_000_000 + step, step)
                        for step in range(5)
                    ]
                    + [
                        Metric(
                            "evaluate/accuracy/class_1", 0.5 + step / 10, 1_700_000_000_000, step
                        )
                        for step in range(3)
                    ],  # fmt: skip
                    params=[Param("lr", "0.01"), Param("rounds", "5")],
                    tags=[RunTag("synergos.run", f"run_{run_index}")],
                )
                model = scratch / f"{run_id}.pt"
                model.write_bytes(os.urandom(2048))
                client.log_artifact(run_id, str(model), "models/global")
                client.set_terminated(run_id)
                expected[run_id] = {"experiment": name, "model": model.read_bytes()}
        return expected
    finally:
        del os.environ["MLFLOW_ALLOW_FILE_STORE"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SYNMLOPS, *args], capture_output=True, text=True, timeout=300)


def test_serve_on_a_current_file_store_serves_it_live_and_changes_none_of_its_folders(
    tmp_path: Path,
) -> None:
    store = tmp_path / "mlflow"
    expected = write_file_store(store, tmp_path)
    before = {p.relative_to(store): p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}
    server = start_server(store)
    try:
        client = MlflowClient(server.url)

        def all_served() -> bool:
            # a run appears before its points do (the mirror's pass writes them after it):
            # wait for the last point too, or a loaded machine catches the run half-mirrored
            try:
                return all(
                    client.get_run(run_id)
                    and len(client.get_metric_history(run_id, "train/loss")) == 5
                    for run_id in expected
                )
            except Exception:
                return False

        deadline = time.monotonic() + 60
        while not all_served() and time.monotonic() < deadline:
            time.sleep(0.2)
        for run_id, facts in expected.items():
            run = client.get_run(run_id)
            assert run.data.params == {"lr": "0.01", "rounds": "5"}
            assert [m.step for m in client.get_metric_history(run_id, "train/loss")] == [
                0, 1, 2, 3, 4,
            ]  # fmt: skip
            experiment = client.get_experiment(run.info.experiment_id)
            assert experiment.name == facts["experiment"]
            local = client.download_artifacts(run_id, "models/global", str(tmp_path / run_id))
            assert (Path(local) / f"{run_id}.pt").read_bytes() == facts["model"]
    finally:
        server.stop()
    after = {p.relative_to(store): p.stat().st_mtime_ns for p in store.rglob("*") if p.is_file()}
    assert {k: v for k, v in after.items() if k in before} == before
    # What the server added are files in the root, which every MLflow file store client skips.
    assert all(len(path.parts) == 1 for path in set(after) - set(before))


def test_migrate_refuses_a_store_that_has_a_database_and_file_store_experiments(
    tmp_path: Path,
) -> None:
    store = tmp_path / "mlflow"
    write_file_store(store, tmp_path)
    (store / "mlflow.db").touch()
    result = run_cli("migrate", str(store))
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "serve it as it is" in result.stderr and "no longer runs" in result.stderr


def test_migrate_keeps_every_experiment_run_param_metric_tag_and_artifact(
    tmp_path: Path,
) -> None:
    store = tmp_path / "mlflow"
    expected = write_file_store(store, tmp_path)
    result = run_cli("migrate", str(store))
    assert result.returncode == 0, result.stderr
    assert "migrated 3 experiments, 4 runs, 32 metric points" in result.stdout
    backups = list(store.glob("filestore-backup-*"))
    assert len(backups) == 1 and (backups[0] / "0" / "meta.yaml").is_file()

    server = start_server(store)
    try:
        client = MlflowClient(tracking_uri=server.url)
        for run_id, want in expected.items():
            run = client.get_run(run_id)
            experiment = client.get_experiment(run.info.experiment_id)
            assert experiment.name == want["experiment"]
            assert experiment.tags["synergos.project"] == "proj"
            assert run.data.params == {"lr": "0.01", "rounds": "5"}
            assert run.data.tags["synergos.run"] == run.info.run_name
            assert run.info.status == "FINISHED"
            history = client.get_metric_history(run_id, "train/loss")
            assert [(m.step, m.value, m.timestamp) for m in history] == [
                (step, 1.0 / (step + 1), 1_700_000_000_000 + step) for step in range(5)
            ]
            assert len(client.get_metric_history(run_id, "evaluate/accuracy/class_1")) == 3
            assert run.info.artifact_uri.startswith("mlflow-artifacts:/")
            [listed] = client.list_artifacts(run_id, "models/global")
            local = client.download_artifacts(run_id, listed.path, str(tmp_path / run_id))
            assert Path(local).read_bytes() == want["model"]
    finally:
        server.stop()


def test_migrate_refuses_a_folder_that_is_not_a_file_store(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = run_cli("migrate", str(tmp_path / "empty"))
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == f"Error: {tmp_path / 'empty'} holds no MLflow file store to migrate"
    )


@pytest.mark.parametrize("corrupt", ["meta.yaml"])
def test_failed_migration_puts_the_folder_back_as_it_was(tmp_path: Path, corrupt: str) -> None:
    store = tmp_path / "mlflow"
    expected = write_file_store(store, tmp_path)
    run_id = next(iter(expected))
    # A run whose metadata is unreadable makes MLflow's converter fail part-way.
    [meta] = list(store.glob(f"*/{run_id}/{corrupt}"))
    meta.write_text("{{ not: yaml: [")
    before = sorted(str(p.relative_to(store)) for p in store.rglob("*"))
    result = run_cli("migrate", str(store))
    assert result.returncode == 1
    assert "migration of" in result.stderr and "was undone" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert sorted(str(p.relative_to(store)) for p in store.rglob("*")) == before
