"""The wrapper for Flower's older strategy API (flwr.server.strategy, still in Flower 1.42): a
real simulation (Ray, three NumPyClients, one failing a round) under a legacy ServerApp logs
through SynergosLegacyStrategy into a real `synmlops serve`; every value is read back with
MLflow's client and compared with what each client, FedAvg's aggregation functions and the
centralized evaluation returned."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from conftest import Server, start_server
from frameworks_support import SCRIPTS, run_in_frameworks_venv
from mlflow import MlflowClient

pytestmark = pytest.mark.timeout(600)

ROUNDS = 3


#: Every client's evaluation also reports this key, which MLflow refuses (no "@" in a name).
BAD = "top@5"


class LegacyFederation:
    def __init__(self, folder: Path, server: Server) -> None:
        self.collaboration = f"legacy {uuid.uuid4().hex[:6]}"
        self.run = "legacy-1"
        out, replies = folder / "result.json", folder / "replies.jsonl"
        run_in_frameworks_venv(
            [str(SCRIPTS / "flower_legacy.py"), server.url, self.collaboration, self.run,
             str(out)],
            log=folder / "flower.log", env={"FLOWER_REPLIES": str(replies), "FLOWER_BAD_KEY": BAD},
        )  # fmt: skip
        self.result: dict[str, Any] = json.loads(out.read_text())
        self.replies = [json.loads(line) for line in replies.read_text().splitlines()]
        self.server = server
        self.client = MlflowClient(server.url)
        experiment = self.client.get_experiment_by_name(f"{self.collaboration}/flower/legacy")
        assert experiment is not None
        self.runs = {
            r.info.run_name: r for r in self.client.search_runs([experiment.experiment_id])
        }
        self.parent = self.runs[self.run]

    def series(self, run_name: str, key: str) -> dict[int, float]:
        history = self.client.get_metric_history(self.runs[run_name].info.run_id, key)
        assert len(history) == len({m.step for m in history}), f"{key}: a step twice"
        return {m.step: m.value for m in history}


@pytest.fixture(scope="module")
def legacy(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LegacyFederation]:
    """A server of its own: its /health counts this federation's refused values alone."""
    folder = tmp_path_factory.mktemp("legacy")
    server = start_server(folder / "store")
    try:
        yield LegacyFederation(folder, server)
    finally:
        server.stop()


def expected_series(replies: list[dict[str, Any]]) -> Iterator[tuple[str, str, int, float]]:
    """(run name, key, round, value) of every value a client or the server returned."""
    prefixes = {"train": "train", "evaluate": "evaluate", "aggregate-train": "train",
                "aggregate-evaluate": "evaluate", "server": "evaluate/server"}  # fmt: skip
    for reply in replies:
        run = "legacy-1" if reply["partition"] < 0 else str(reply["partition"])
        for key, value in reply["values"].items():
            if key not in ("partition-id", BAD):
                yield run, f"{prefixes[reply['stage']]}/{key}", reply["round"], value


def test_every_client_aggregated_and_centralized_value_is_stored_point_for_point(
    legacy: LegacyFederation,
) -> None:
    expected: dict[tuple[str, str], dict[int, float]] = {}
    for run, key, server_round, value in expected_series(legacy.replies):
        expected.setdefault((run, key), {})[server_round] = value
    # FedAvg's aggregated loss: the clients' losses weighted by their examples (20 + 10 p).
    for server_round in range(1, ROUNDS + 1):
        losses = [(20 + 10 * r["partition"], r["values"]["loss"]) for r in legacy.replies
                  if r["stage"] == "evaluate" and r["round"] == server_round]  # fmt: skip
        weighted = sum(n * v for n, v in losses) / sum(n for n, _ in losses)
        expected.setdefault(("legacy-1", "evaluate/loss"), {})[server_round] = weighted
    assert {run for run, _ in expected} == {"legacy-1", "0", "1", "2"}
    for (run, key), points in expected.items():
        stored = legacy.series(run, key)
        assert stored.keys() == points.keys(), (run, key)
        assert all(np.isclose(stored[s], points[s], rtol=1e-12) for s in points), (run, key)
    assert set(legacy.series("2", "train/loss")) == {1, 3}  # failed in round 2: nothing made up
    assert set(legacy.series("legacy-1", "evaluate/server/loss")) == {0, 1, 2, 3}
    assert not any(
        "partition-id" in key for run in legacy.runs.values() for key in run.data.metrics
    )


def test_counts_the_failure_hyperparameters_and_the_end_of_the_run(
    legacy: LegacyFederation,
) -> None:
    assert legacy.series("legacy-1", "train/clients_sampled") == {1: 3, 2: 3, 3: 3}
    assert legacy.series("legacy-1", "train/clients_replied") == {1: 3, 2: 2, 3: 3}
    assert legacy.series("legacy-1", "train/clients_failed") == {1: 0, 2: 1, 3: 0}
    assert legacy.series("legacy-1", "evaluate/clients_failed") == {1: 0, 2: 0, 3: 0}
    url = (f"{legacy.server.url}/api/synergos/v1/runs/{legacy.collaboration}/flower/legacy/"
           f"{legacy.run}/logs")  # fmt: skip
    records = requests.get(url, timeout=60).json()["records"]
    assert [r["level_name"] for r in records] == ["ERROR"]
    assert records[0]["message"].startswith("round 2 train: participant ")
    assert records[0]["fields"]["round"] == 2
    params = legacy.parent.data.params
    assert params["lr"] == "0.3" and params["num_rounds"] == str(ROUNDS)
    assert params["strategy"] == "FedAvg" and params["strategy/min_fit_clients"] == "3"
    assert legacy.parent.info.status == "FINISHED"
    assert {legacy.runs[p].info.status for p in ("0", "1", "2")} == {"FINISHED"}


def test_the_last_parameters_are_the_global_model_and_a_registered_version(
    legacy: LegacyFederation, tmp_path: Path
) -> None:
    stored = legacy.client.download_artifacts(
        legacy.parent.info.run_id, "models/global/global_model.npz", str(tmp_path)
    )
    with np.load(stored) as arrays:
        assert [arrays[k].tolist() for k in arrays.files] == legacy.result["arrays"]
    name = f"synergos-{legacy.collaboration.replace(' ', '-')}-flower-legacy"
    version = legacy.client.get_model_version(name, legacy.result["model_version"])
    assert version.run_id == legacy.parent.info.run_id


def test_a_key_mlflow_refuses_is_counted_in_health_and_costs_no_other_value(
    legacy: LegacyFederation,
) -> None:
    sent = [r for r in legacy.replies if r["stage"] == "evaluate" and BAD in r["values"]]
    assert len(sent) == 3 * ROUNDS  # every client's every evaluation, between mae and its id
    aggregated = [r for r in legacy.replies if r["stage"] == "aggregate-evaluate"]
    assert len(aggregated) == ROUNDS and all(BAD in r["values"] for r in aggregated)
    for run in legacy.runs.values():
        assert f"evaluate/{BAD}" not in run.data.metrics
    for partition in ("0", "1", "2"):  # the values beside it, every round
        assert set(legacy.series(partition, "evaluate/mae")) == set(range(1, ROUNDS + 1))
    # The clients' 9 points and the 3 rounds' aggregates: counted by reason, none silently.
    health = requests.get(f"{legacy.server.url}/health", timeout=60).json()
    assert health["refused"] == {"metrics": {"metric key MLflow refuses": 3 * ROUNDS + ROUNDS}}
    named = [line for line in legacy.server.output().splitlines() if "not stored" in line]
    assert len(named) == 1 and f"evaluate/{BAD}" in named[0], named
