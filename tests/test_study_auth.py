"""Studies under `serve --auth`: anonymous requests get 401; an account without READ on the
experiment finds no study; an unbound reader sees every participant's figures; an account
bound to a participant sees the global values and only its own participant's final values,
spread and hardware, and may not add trials."""

from __future__ import annotations

import os
import time
from pathlib import Path
from unittest import mock

import requests
from auth_support import ADMIN, ALICE, bind, create_accounts
from conftest import start_server
from mlflow import MlflowClient
from test_studies import SPACE, post_hardware, study_url
from tracking_support import fast_config

from synergos_mlops import FederatedTracker

# ALICE is bound to w1 of hospitals
BOB = ("bob", "bob-password-123")  # unbound, granted READ on the experiment
CAROL = ("carol", "carol-password-123")  # unbound, no permission
API = "/api/synergos/v1"
CPU = "system/process_cpu_utilization_percentage"
MEMORY = "system/process_memory_rss_megabytes"


def test_studies_under_auth_show_a_bound_account_only_its_own_participants_figures(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    server = start_server(store, extra=["--auth"], timeout=300,
                          env={"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1]})  # fmt: skip
    credentials = {"MLFLOW_TRACKING_USERNAME": ADMIN[0], "MLFLOW_TRACKING_PASSWORD": ADMIN[1]}
    try:
        client = MlflowClient(server.url)
        with (
            mock.patch.dict(os.environ, credentials),
            FederatedTracker(server.url, fast_config(tmp_path)) as tracker,
        ):
            study = tracker.study("hospitals", "p", "e", "s", SPACE, "evaluate/accuracy",
                                  "maximize")  # fmt: skip
            for number, lr in enumerate((0.01, 0.001), start=1):
                hp = {"lr": lr, "mu": 0.1, "rounds": 3}
                with study.trial(hp, participants=["w1", "w2"]) as run:
                    run.log_metrics({"evaluate/accuracy": 0.8 - number / 10}, step=0)
                    run.log_metrics({"evaluate/accuracy": 0.9}, step=0, participant="w1")
                    run.log_metrics({"evaluate/accuracy": 0.5}, step=0, participant="w2")
                    run.flush()
                    if number == 1:
                        children = {p: run.participant_run_id(p) for p in ("w1", "w2")}
                        experiment_id = run.experiment_id
                        starts = {p: client.get_run(c).info.start_time
                                  for p, c in children.items()}  # fmt: skip
                        stamps = {p: [s + 100, s + 1100] for p, s in starts.items()}
                        time.sleep(1.5)
                        post_hardware(server.url, "hospitals", {
                            "w1": {CPU: [100, 100], MEMORY: [100, 200]},
                            "w2": {CPU: [400, 400], MEMORY: [5000, 6000]},
                        }, stamps, {}, auth=ADMIN)  # fmt: skip
        create_accounts(server.url, ALICE, BOB, CAROL)
        bind(store, ALICE[0], "hospitals", "w1")
        grant = {"username": BOB[0], "resource_type": "experiment",
                 "resource_id": experiment_id, "permission": "READ"}  # fmt: skip
        granted = requests.post(f"{server.url}/api/3.0/mlflow/users/permissions/grant",
                                auth=ADMIN, json=grant, timeout=60)  # fmt: skip
        assert granted.status_code == 200, granted.text

        url = study_url(server, "hospitals", "p", "e", "s")
        listing = f"{server.url}{API}/studies"
        for path in (url, listing):
            anonymous = requests.get(path, timeout=60)
            assert anonymous.status_code == 401
            assert anonymous.json()["error"]["code"] == "UNAUTHENTICATED"
        hidden = requests.get(url, auth=CAROL, timeout=60)
        assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "NOT_FOUND"
        assert requests.get(listing, auth=CAROL, timeout=60).json() == {"studies": []}

        everyone = requests.get(url, auth=BOB, timeout=60).json()
        assert everyone == requests.get(url, auth=ADMIN, timeout=60).json()
        assert everyone["scoped"] is False
        first = everyone["trials"][0]
        assert set(first["participants"]) == {"w1", "w2"}
        assert first["spread"]["worst"] == {"participant": "w2", "value": 0.5}
        assert set(first["hardware"]["participants"]) == {"w1", "w2"}
        assert first["hardware"]["memory_peak_megabytes"] == 6200
        assert first["hardware"]["costliest"]["participant"] == "w2"

        own = requests.get(url, auth=ALICE, timeout=60).json()
        assert own["scoped"] is True
        assert [s["study"] for s in requests.get(listing, auth=ALICE, timeout=60).json()[
            "studies"]] == ["s"]  # fmt: skip
        for mine, theirs in zip(own["trials"], everyone["trials"], strict=True):
            assert mine["value"] == theirs["value"]  # the global run's: visible by design
            assert mine["participants"] == {"w1": 0.9}
            assert mine["spread"] == {"min": 0.9, "max": 0.9,
                                      "worst": {"participant": "w1", "value": 0.9}}  # fmt: skip
        cost = own["trials"][0]["hardware"]
        assert set(cost["participants"]) == {"w1"}
        assert cost["memory_peak_megabytes"] == 200  # w1's alone: no total that includes w2
        assert cost["costliest"]["participant"] == "w1"
        assert own["trials"][1]["hardware"] is None
        assert own["best"]["number"] == 1 and own["history"] == everyone["history"]
        assert "w2" not in requests.get(url, auth=ALICE, timeout=60).text

        body = {"collaboration": "hospitals", "project": "p", "experiment": "e", "study": "s"}
        refused = requests.post(f"{server.url}{API}/studies/trials/resolve", auth=ALICE,
                                json=body, timeout=60)  # fmt: skip
        assert refused.status_code == 403
    finally:
        server.stop()
