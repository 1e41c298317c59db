"""serve --auth: an account bound to one participant sees its own datasets and the run's
global lineage, never another participant's dataset or profile."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import requests
from auth_support import ADMIN, ALICE, bind, create_accounts
from mlflow import MlflowClient
from test_catalog import IMAGE, TABULAR
from tracking_support import fast_config

from synergos_mlops import FederatedTracker

# ALICE is bound to worker-1 of collab-a
API = "/api/synergos/v1"


def test_participant_account_sees_its_own_datasets_and_the_global_lineage_only(
    server_factory: Any, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    server = server_factory(
        store, extra=["--auth"], env={"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1]}, timeout=300
    )
    credentials = {"MLFLOW_TRACKING_USERNAME": ADMIN[0], "MLFLOW_TRACKING_PASSWORD": ADMIN[1]}
    with (
        mock.patch.dict(os.environ, credentials),
        FederatedTracker(server.url, fast_config(tmp_path)) as tracker,
        tracker.run("collab-a", "p", "e", "r1", participants=["worker-1", "worker-2"]) as run,
    ):
        mine = run.log_dataset("worker-1", "train", TABULAR)
        theirs = run.log_dataset("worker-2", "train", IMAGE)
        run_id, experiment_id = run.run_id, run.experiment_id
    with mock.patch.dict(os.environ, credentials):
        client = MlflowClient(server.url)
        logged = client.create_logged_model(experiment_id, name="global", source_run_id=run_id)
        client.create_registered_model("global-a")
        client.create_model_version(
            "global-a", source=f"models:/{logged.model_id}", run_id=run_id, model_id=logged.model_id
        )  # fmt: skip
    create_accounts(server.url, ALICE)
    bind(store, ALICE[0], "collab-a", "worker-1")

    def get(path: str, auth: tuple[str, str] | None = ALICE) -> requests.Response:
        return requests.get(f"{server.url}{API}{path}", auth=auth, timeout=60)

    assert get("/catalogue", auth=None).status_code == 401
    (collab,) = get("/catalogue").json()["collaborations"]
    assert [p["id"] for p in collab["participants"]] == ["worker-1"]
    admin_view = get("/catalogue", auth=ADMIN).json()["collaborations"][0]
    assert [p["id"] for p in admin_view["participants"]] == ["worker-1", "worker-2"]

    assert get(f"/catalogue/collab-a/worker-1/{mine}").status_code == 200
    hidden = get(f"/catalogue/collab-a/worker-2/{theirs}")
    assert hidden.status_code == 404 and "worker-2" in hidden.json()["error"]["message"]
    assert get(f"/lineage/datasets/collab-a/worker-2/{theirs}").status_code == 404

    lineage = get("/lineage/runs/collab-a/p/e/r1").json()
    assert [d["participant"] for d in lineage["datasets"]] == ["worker-1"]
    assert [p["id"] for p in lineage["participants"]] == ["worker-1"]
    assert [v["name"] for v in lineage["model_versions"]] == ["global-a"]
    trained = get(f"/lineage/models/{quote('global-a')}/1").json()
    assert {d["digest"] for d in trained["datasets"]} == {mine}
    datasets = get("/runs/collab-a/p/e/r1/datasets").json()
    assert [d["participant"] for d in datasets["datasets"]] == ["worker-1"]
