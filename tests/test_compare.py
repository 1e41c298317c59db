"""Comparing runs: GET /api/synergos/v1/compare on a real server, across two experiments."""

from __future__ import annotations

import uuid
from pathlib import Path
from urllib.parse import quote

import requests
from conftest import Server
from tracking_support import fast_config

from synergos_mlops import FederatedTracker

API = "/api/synergos/v1"


def ref(*ids: str) -> str:
    return "/".join(quote(i, safe="") for i in ids)


def test_compare_shows_differing_hyperparameters_final_metrics_and_series_of_two_experiments(
    shared_server: Server, tmp_path: Path
) -> None:
    c = f"Compare {uuid.uuid4().hex[:6]}"
    runs = [("exp a", "r 1", 0.1, "FedAvg"), ("exp b&c", "r 2", 0.01, "FedAvg")]
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        for experiment, run_id, lr, algorithm in runs:
            hyperparameters = {"lr": lr, "algorithm": algorithm}
            with tracker.run(c, "p", experiment, run_id, participants=["w1", "w2"],
                             hyperparameters=hyperparameters) as run:  # fmt: skip
                for step in range(3):
                    run.log_metrics({"train/loss": lr * (3 - step)}, step=step)
                    run.log_metrics({"train/loss": lr * (4 - step)}, step=step, participant="w1")
                if experiment == "exp a":
                    run.log_metrics({"evaluate/accuracy": 0.8}, step=2)
    response = requests.get(
        f"{shared_server.url}{API}/compare",
        params={"run": [f"{c}/p/exp a/r 1", f"{c}/p/exp b&c/r 2"]},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["ref"] for r in body["runs"]] == [f"{c}/p/exp a/r 1", f"{c}/p/exp b&c/r 2"]
    assert body["hyperparameters"] == {"differing": {"lr": [0.1, 0.01]},
                                       "common": {"algorithm": "FedAvg"}}  # fmt: skip
    assert body["metrics"]["global"]["train/loss"] == [0.1, 0.01]
    assert body["metrics"]["global"]["evaluate/accuracy"] == [0.8, None]
    assert body["metrics"]["participants"]["w1"]["train/loss"] == [0.2, 0.02]
    assert list(body["series"]) == ["train/loss"]  # the keys every run has
    lines = body["series"]["train/loss"]["runs"]
    assert lines[1]["global"] == {"steps": [0, 1, 2], "values": [0.03, 0.02, 0.01]}
    assert lines[0]["participants"]["w1"]["values"] == [0.4, 0.30000000000000004, 0.2]
    chosen = requests.get(
        f"{shared_server.url}{API}/compare",
        params={"run": [f"{c}/p/exp a/r 1", f"{c}/p/exp b&c/r 2"], "keys": "evaluate/accuracy"},
        timeout=60,
    ).json()
    assert chosen["series"]["evaluate/accuracy"]["runs"][1] == {"global": None, "participants": {}}
    assert body["runs"][0]["links"]["command_station"].endswith(ref(c, "p", "exp a", "r 1"))


def test_compare_refuses_too_few_too_many_malformed_and_unknown_runs(
    shared_server: Server, tmp_path: Path
) -> None:
    c = f"Refuse {uuid.uuid4().hex[:6]}"
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        for run_id in ("a", "b"):
            with tracker.run(c, "p", "e", run_id) as run:
                run.log_metrics({"train/loss": 1.0}, step=0)
    url = f"{shared_server.url}{API}/compare"
    for params, status, words in (
        ({"run": [f"{c}/p/e/a"]}, 400, "2 to 10 runs"),
        ({"run": [f"{c}/p/e/a"] * 11}, 400, "2 to 10 runs"),
        ({}, 400, "run"),
        ({"run": [f"{c}/p/e/a", f"{c}/p/e"]}, 400, "collaboration/project/experiment/run"),
        ({"run": [f"{c}/p/e/a", f"{c}/p/e/a"]}, 400, "named twice"),
        ({"run": [f"{c}/p/e/a", f"{c}/p/e/zz"]}, 404, "run 'zz' not found"),
        ({"run": [f"{c}/p/e/a", f"{c}/p/e/b"], "keys": "no/such"}, 404, "'no/such' not found"),
    ):
        response = requests.get(url, params=params, timeout=60)
        assert response.status_code == status, (params, response.text)
        assert words in response.json()["error"]["message"], response.text
