"""The tracker on a store folder and on a PostgreSQL-backed server; importing it is cheap."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from conftest import Server
from mlflow import MlflowClient
from tracking_support import fast_config

from synergos_mlops import FederatedTracker


def test_importing_the_package_and_the_tracker_loads_no_server_code() -> None:
    code = (
        "import sys, json, synergos_mlops, synergos_mlops.tracking\n"
        "synergos_mlops.FederatedTracker\n"
        "heavy = ('mlflow', 'fastapi', 'flask', 'pandas', 'sqlalchemy', 'synergos_mlops.server')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in heavy\n"
        "                        or m.startswith('synergos_mlops.server'))))\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert json.loads(output) == []


def test_a_store_folder_run_is_served_by_a_server_started_later(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    tracker = FederatedTracker(store, fast_config(tmp_path))
    assert tracker.tracking_uri == f"sqlite:///{store.resolve() / 'mlflow.db'}"
    with tracker.run("c", "p", "folder", "r", hyperparameters={"epochs": 2},
                     participants=["w1"]) as run:  # fmt: skip
        run.log_metrics({"train/loss": math.inf}, step=0, participant="w1")
        run.log_metrics({"train/loss": 0.5}, step=1, participant="w1")
        run.log_metrics({"train/loss": 0.25}, step=1, participant="w1")
        run.log_model(b"global weights", name="global_model.pt")
    tracker.close()
    local = MlflowClient(run.tracking_uri)
    assert local.get_experiment(run.experiment_id).artifact_location == (
        f"mlflow-artifacts:/{run.experiment_id}"
    )
    server = server_factory(store)
    client = MlflowClient(server.url)
    child = run.participant_run_id("w1")
    assert [(m.step, m.value) for m in client.get_metric_history(child, "train/loss")] == [
        (0, 1.7976931348623157e308),
        (1, 0.25),
    ]
    assert client.get_run(run.run_id).info.status == "FINISHED"
    downloaded = client.download_artifacts(run.run_id, "models/global", str(tmp_path / "dl"))
    assert (Path(downloaded) / "global_model.pt").read_bytes() == b"global weights"


def test_a_postgresql_backed_server_keeps_one_point_per_step(
    server_factory: Callable[..., Server], tmp_path: Path, postgres_uri: str
) -> None:
    server = server_factory(extra=["--backend-store-uri", postgres_uri])
    for attempt in range(2):
        with (
            FederatedTracker(server.url, fast_config(tmp_path)) as tracker,
            tracker.run("c", "p", "pg", "r", participants=["w1", "w2"]) as run,
        ):
            for step in range(100):
                run.log_metrics({"train/loss": step + attempt}, step=step, participant="w1")
                run.log_statistics(
                    {"w2": {"accuracy": [0.5, 0.5 + attempt]}}, stage="evaluate", step=step
                )
    client = MlflowClient(server.url)
    w1 = client.get_metric_history(run.participant_run_id("w1"), "train/loss")
    assert sorted((m.step, m.value) for m in w1) == [(s, s + 1.0) for s in range(100)]
    w2 = client.get_run(run.participant_run_id("w2"))
    assert w2.data.metrics == {"evaluate/accuracy/class_0": 0.5, "evaluate/accuracy/class_1": 1.5}
    assert len(client.search_runs([run.experiment_id])) == 3
