"""The real old client, mlflow 1.7.2 on Python 3.7, logging as the original Synergos TTP does.

These pin down the file store layout our server will read while the TTP keeps writing, and
what the old client tolerates in the store root next to its experiments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from legacy_support import legacy_ttp, ttp  # noqa: F401  (legacy_ttp: the fixture)

# Build .venv-ttp (about a minute the first time) in setup, not inside the first test.
pytestmark = pytest.mark.usefixtures("legacy_ttp")

STATISTICS = {
    participant: {
        "train": {"statistics": {"accuracy": [0.5 + i / 10, 0.6 + i / 10], "R2": 0.1 * (i + 1)}},
        "evaluate": {"statistics": {}},
        "predict": {},
    }
    for i, participant in enumerate(["p1", "p2", "p3"])
}


def metric_lines(run_dir: Path, key: str) -> list[tuple[int, float, int]]:
    """`timestamp value step` per line, as 1.7.2 appends them."""
    rows = []
    for line in (run_dir / "metrics" / key).read_text().splitlines():
        timestamp, value, step = line.split(" ")
        rows.append((int(timestamp), float(value), int(step)))
    return rows


def start_cycle(store: Path, *extra: str) -> dict[str, Any]:
    return ttp(
        store,
        "run",
        "--collaboration", "c",
        "--project", "p",
        "--experiment", "e",
        "--run", "r1",
        "--hyperparameters", json.dumps({"rounds": 3, "lr": 0.01, "optimizer": "SGD"}),
        "--participants", "p1,p2,p3",
        "--rounds", "3",
        *extra,
    )  # fmt: skip


def test_ttp_logger_writes_a_file_store_as_mlflow_1_7_2_does(tmp_path: Path) -> None:
    store = tmp_path / "mlflow"
    outputs = tmp_path / "outputs"
    made = start_cycle(
        store, "--artifacts-dir", str(outputs), "--statistics", json.dumps(STATISTICS)
    )
    assert made["experiment_id"] == "1" and made["status"] == "FINISHED"

    experiment = yaml.safe_load((store / "1" / "meta.yaml").read_text())
    assert experiment["name"] == "c_>_p_>_e"
    assert experiment["experiment_id"] == "1"
    assert experiment["artifact_location"] == str(store / "1")  # a plain path, no file://
    assert (store / "0" / "meta.yaml").is_file() and (store / ".trash").is_dir()

    run_dir = store / "1" / made["run_uuid"]
    meta = yaml.safe_load((run_dir / "meta.yaml").read_text())
    assert meta["run_uuid"] == meta["run_id"] == made["run_uuid"]
    assert meta["status"] == 3  # RunStatus.FINISHED as an int
    assert meta["name"] == ""  # the run name is only a tag
    assert isinstance(meta["end_time"], int) and meta["end_time"] >= meta["start_time"]
    assert meta["artifact_uri"] == str(run_dir / "artifacts")
    assert (run_dir / "tags" / "mlflow.runName").read_text() == "r1"

    params = {p.name: p.read_text() for p in (run_dir / "params").iterdir()}
    assert params == {"rounds": "3", "lr": "0.01", "optimizer": "SGD"}

    train = metric_lines(run_dir, "global_train_loss")
    assert [(value, step) for _, value, step in train] == [(1.0, 0), (0.5, 1), (0.333333, 2)]
    assert [step for *_, step in metric_lines(run_dir, "p2_local_loss")] == [0, 1, 2]
    # Per-class statistics: the class index is the step, every participant on the same key.
    by_class = metric_lines(run_dir, "accuracy_class_1")
    assert sorted(value for *_, value, _ in by_class) == [0.6, 0.7, 0.8]
    assert {step for *_, step in by_class} == {2}
    assert {step for *_, step in metric_lines(run_dir, "R2")} == {0}

    expected = {"global_model.pt", "global_loss_history.json"}
    for participant in ("p1", "p2", "p3"):
        expected |= {f"local_model_{participant}.pt", f"local_loss_history_{participant}.json"}
    assert {p.name for p in (run_dir / "artifacts").iterdir()} == expected
    assert {p.name for p in outputs.iterdir()} == expected


def test_a_running_run_stays_running_and_takes_appended_points(tmp_path: Path) -> None:
    store = tmp_path / "mlflow"
    made = start_cycle(store, "--keep-running")
    run_dir = store / made["experiment_id"] / made["run_uuid"]
    meta = yaml.safe_load((run_dir / "meta.yaml").read_text())
    assert made["status"] == "RUNNING"
    assert meta["status"] == 1 and meta["end_time"] is None

    ttp(
        store, "append", "--run-uuid", made["run_uuid"],
        "--key", "global_train_loss", "--step", "3", "--value", "0.25",
    )  # fmt: skip
    assert metric_lines(run_dir, "global_train_loss")[-1][1:] == (0.25, 3)
    listed = ttp(store, "list")
    (run,) = listed["runs"]
    assert run["status"] == "RUNNING" and run["run_name"] == "r1"
    assert run["metrics"]["global_train_loss"] == 0.25

    assert ttp(store, "finish", "--run-uuid", made["run_uuid"])["status"] == "FINISHED"
    meta = yaml.safe_load((run_dir / "meta.yaml").read_text())
    assert meta["status"] == 3 and isinstance(meta["end_time"], int)


def test_old_client_lists_a_store_with_a_database_file_in_its_root_without_warnings(
    tmp_path: Path,
) -> None:
    store = tmp_path / "mlflow"
    made = start_cycle(store)
    (store / "mlflow.db").touch()
    listed = ttp(store, "list")
    assert listed["warnings"] == []
    assert [e["name"] for e in listed["experiments"]] == ["Default", "c_>_p_>_e"]
    assert [r["run_uuid"] for r in listed["runs"]] == [made["run_uuid"]]


def test_old_client_warns_for_a_folder_without_meta_yaml_in_the_store_root(tmp_path: Path) -> None:
    store = tmp_path / "mlflow"
    start_cycle(store)
    (store / "artifacts").mkdir()
    listed = ttp(store, "list")
    assert len(listed["warnings"]) == 1
    assert "Malformed experiment 'artifacts'" in listed["warnings"][0]
    assert [e["name"] for e in listed["experiments"]] == ["Default", "c_>_p_>_e"]


def test_old_client_refuses_a_store_with_a_dot_folder_other_than_trash_in_its_root(
    tmp_path: Path,
) -> None:
    store = tmp_path / "mlflow"
    start_cycle(store)
    (store / ".synmlops").mkdir()
    with pytest.raises(RuntimeError, match=r"Invalid experiment ID: '\.synmlops'"):
        ttp(store, "list")
