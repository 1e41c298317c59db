"""The Flower strategy wrapper: a real Flower 1.42 simulation (Ray, three clients, one failing
a round) in .venv-fl logs through SynergosStrategy into a real `synmlops serve`; everything
is read back with MLflow's client and compared point for point with Flower's own Result and
with what each client returned. Three simulations: the one every check reads, whose server is
restarted in the middle of it; one under --auth whose clients report a key MLflow refuses; one
into a store folder."""

from __future__ import annotations

import io
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pytest
import requests
from auth_support import ADMIN, ALICE, bind, create_accounts
from conftest import Server, start_server
from frameworks_support import SCRIPTS, run_in_frameworks_venv, wait_while_running
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

# Each runs a federation in another venv, on a shared 2-core machine: a server and a
# simulation take longer than the suite's default 300 s limit allows for.
pytestmark = pytest.mark.timeout(600)

API = "/api/synergos/v1"
BOOKKEEPING = {"num-examples", "partition-id"}
ROUNDS = 3


class Federation:
    """One finished simulation, logged into ``target`` (a server URL or a store folder):
    Flower's Result and the clients' replies; after ``read_from(server)``, the stored run."""

    def __init__(self, folder: Path, target: str, env: dict[str, str] | None = None) -> None:
        self.collaboration = f"flower {uuid.uuid4().hex[:6]}"
        self.run = "simulation-1"
        bad = (env or {}).get("FLOWER_BAD_KEY")
        self.refused = set() if bad is None else {bad}
        out = folder / "result.json"
        replies = folder / "replies.jsonl"
        run_in_frameworks_venv(
            [str(SCRIPTS / "flower_federation.py"), target, self.collaboration, self.run,
             str(out)],
            log=folder / "flower.log", env={"FLOWER_REPLIES": str(replies), **(env or {})},
        )  # fmt: skip
        self.result: dict[str, Any] = json.loads(out.read_text())
        self.replies = [json.loads(line) for line in replies.read_text().splitlines()]
        self.spool = folder / "spool"

    def read_from(self, server: Server) -> None:
        self.server = server
        self.client = MlflowClient(server.url)
        experiment = self.client.get_experiment_by_name(f"{self.collaboration}/flower/linear")
        assert experiment is not None
        self.runs = {
            r.info.run_name: r for r in self.client.search_runs([experiment.experiment_id])
        }
        self.parent = self.runs[self.run]

    def series(self, run_name: str, key: str) -> dict[int, float]:
        run_id = self.runs[run_name].info.run_id
        history = self.client.get_metric_history(run_id, key)
        steps = [m.step for m in history]
        assert len(steps) == len(set(steps)), f"{key} of {run_name} has a step twice"
        return {m.step: m.value for m in history}


def _federate_through_a_restart(folder: Path, servers: list[Server]) -> Federation:
    """A federation whose tracking server stops after round 1 and starts again (the same
    store, the same address) before round 3: round 2's values wait in the tracker's spool."""
    store = folder / "store"
    servers.append(start_server(store))
    gates = folder / "gates"
    gates.mkdir()
    finished: list[Federation] = []
    failed: list[BaseException] = []

    def federate() -> None:
        try:
            finished.append(Federation(folder, servers[0].url, {"FLOWER_GATES": str(gates)}))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failed.append(exc)

    running = threading.Thread(target=federate, daemon=True)
    running.start()
    wait_while_running("round 2", (gates / "round-2").exists, running)
    servers[0].stop()  # round 1 done; rounds 2's values have nowhere to go
    (gates / "go-2").touch()
    wait_while_running("round 3", (gates / "round-3").exists, running)
    spool = folder / "spool"
    wait_while_running("spooled batch", lambda: any(spool.rglob("*.batch")), running, timeout=60)
    servers.append(start_server(store, port=servers[0].port))
    (gates / "go-3").touch()
    running.join(timeout=540)
    assert not failed, failed
    assert finished, "the federation did not finish"
    federation = finished[0]
    federation.read_from(servers[-1])
    return federation


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """The federation every check below reads: its server was restarted in the middle of it,
    so each check also says that nothing was lost on the way."""
    servers: list[Server] = []
    try:
        yield _federate_through_a_restart(tmp_path_factory.mktemp("flower"), servers)
    finally:
        for server in servers:
            server.stop()


def test_each_client_reply_is_its_partitions_series_point_for_point(
    federation: Federation,
) -> None:
    expected: dict[tuple[str, str], dict[int, float]] = {}
    for reply in federation.replies:
        for key, value in reply["values"].items():
            if key not in BOOKKEEPING | federation.refused:
                participant = str(reply["partition"])
                expected.setdefault((participant, f"{reply['stage']}/{key}"), {})[
                    reply["round"]
                ] = value
    assert {p for p, _ in expected} == {"0", "1", "2"}
    for (participant, key), points in expected.items():
        assert federation.series(participant, key) == points, (participant, key)
    # Partition 2 failed in round 2's training: no value is made up for it.
    assert set(federation.series("2", "train/loss")) == {1, 3}
    for participant in ("0", "1", "2"):
        stored = federation.runs[participant].data.metrics
        assert not BOOKKEEPING & {k.split("/", 1)[1] for k in stored}
        assert set(stored) == {"train/loss", "train/steps", "evaluate/loss", "evaluate/mae"}
        assert federation.runs[participant].data.tags["synergos.participant"] == participant


def test_aggregated_and_server_side_records_equal_flowers_own_result(
    federation: Federation,
) -> None:
    result = federation.result
    for stage, prefix in (
        ("train", "train"),
        ("evaluate", "evaluate"),
        ("server", "evaluate/server"),
    ):
        keys = {k for record in result[stage].values() for k in record}
        keys -= BOOKKEEPING | federation.refused
        assert keys, stage
        for key in keys:
            wanted = {int(r): record[key] for r, record in result[stage].items()}
            assert federation.series(federation.run, f"{prefix}/{key}") == wanted, key
    # Flower averages a reported partition-id into its Result; it is no metric here.
    assert "partition-id" in result["train"]["1"]
    assert not any(
        "partition-id" in k or "num-examples" in k for k in federation.parent.data.metrics
    )
    assert set(federation.series(federation.run, "evaluate/server/loss")) == {0, 1, 2, 3}


def test_clients_sampled_replied_and_failed_are_counted_per_round_and_the_failure_is_an_event(
    federation: Federation,
) -> None:
    run = federation.run
    assert federation.series(run, "train/clients_sampled") == {1: 3, 2: 3, 3: 3}
    assert federation.series(run, "train/clients_replied") == {1: 3, 2: 2, 3: 3}
    assert federation.series(run, "train/clients_failed") == {1: 0, 2: 1, 3: 0}
    assert federation.series(run, "evaluate/clients_replied") == {1: 3, 2: 3, 3: 3}
    assert federation.series(run, "evaluate/clients_failed") == {1: 0, 2: 0, 3: 0}
    for key in ("train/duration_s", "evaluate/duration_s", "round/duration_s"):
        durations = federation.series(run, key)
        assert set(durations) == {1, 2, 3} and all(v > 0 for v in durations.values()), key
    url = f"{federation.server.url}{API}/runs/{federation.collaboration}/flower/linear/{run}/logs"
    response = requests.get(url, timeout=60)
    assert response.status_code == 200, response.text
    records = response.json()["records"]
    assert [(r["level_name"], r["participant"]) for r in records] == [("ERROR", "2")]
    assert records[0]["message"].startswith("round 2 train: participant 2 (node ")
    assert "partition 2 lost its data in round 2" in records[0]["message"]
    assert records[0]["fields"]["round"] == 2 and records[0]["fields"]["stage"] == "train"


def test_run_config_and_strategy_settings_are_hyperparameters(federation: Federation) -> None:
    params = federation.parent.data.params
    assert params["lr"] == "0.3" and params["local-steps"] == "5"
    assert params["num_rounds"] == str(ROUNDS)
    assert params["strategy"] == "FedAvg"
    assert params["strategy/min_train_nodes"] == "3"
    assert params["strategy/weighted_by_key"] == "num-examples"
    assert federation.parent.info.status == "FINISHED"
    assert federation.parent.data.tags["synergos.role"] == "federation"


def test_final_arrays_are_the_global_model_and_a_registered_version_of_the_run(
    federation: Federation, tmp_path: Path
) -> None:
    stored = federation.client.download_artifacts(
        federation.parent.info.run_id, "models/global/global_model.npz", str(tmp_path)
    )
    with np.load(stored) as arrays:
        assert [arrays[k].tolist() for k in arrays.files] == federation.result["arrays"]
    name = f"synergos-{federation.collaboration.replace(' ', '-')}-flower-linear"
    version = federation.client.get_model_version(name, federation.result["model_version"])
    assert version.run_id == federation.parent.info.run_id
    mlflow.set_tracking_uri(federation.server.url)
    try:
        folder = mlflow.artifacts.download_artifacts(version.source, dst_path=str(tmp_path / "v"))
    finally:
        mlflow.set_tracking_uri(None)  # type: ignore[arg-type]
    data = (Path(folder) / "global_model.npz").read_bytes()
    with np.load(io.BytesIO(data)) as arrays:
        assert [arrays[k].tolist() for k in arrays.files] == federation.result["arrays"]


def test_under_auth_a_bound_account_sees_its_client_and_a_refused_key_is_counted(
    server_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    server = server_factory(
        store, extra=["--auth"], env={"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1]}, timeout=300
    )
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ADMIN[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ADMIN[1])
    # The ServerApp logs as admin; every client reports a key MLflow refuses (no "@" in a
    # name) between its good ones.
    bad = "top@5"
    federation = Federation(tmp_path, server.url, {"FLOWER_BAD_KEY": bad})
    federation.read_from(server)
    assert set(federation.runs) == {federation.run, "0", "1", "2"}
    sent = [reply for reply in federation.replies if bad in reply["values"]]
    assert len(sent) == 3 * ROUNDS  # every client's every evaluation, between loss and mae
    assert all(bad in record for record in federation.result["evaluate"].values())
    test_each_client_reply_is_its_partitions_series_point_for_point(federation)
    test_aggregated_and_server_side_records_equal_flowers_own_result(federation)
    for run in federation.runs.values():
        assert f"evaluate/{bad}" not in run.data.metrics
    # 9 client points and the 3 rounds' aggregates: counted, by reason, none silently dropped.
    health = requests.get(f"{server.url}/health", auth=ADMIN, timeout=60).json()
    assert health["refused"] == {"metrics": {"metric key MLflow refuses": 3 * ROUNDS + ROUNDS}}
    named = [line for line in server.output().splitlines() if "not stored" in line]
    assert len(named) == 1 and f"evaluate/{bad}" in named[0], named
    assert federation.parent.info.status == "FINISHED"
    create_accounts(server.url, ALICE)
    bind(store, ALICE[0], federation.collaboration, "1")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", ALICE[0])
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", ALICE[1])
    client = MlflowClient(server.url)
    experiment = federation.parent.info.experiment_id
    assert {r.info.run_name for r in client.search_runs([experiment])} == {federation.run, "1"}
    own = client.get_metric_history(federation.runs["1"].info.run_id, "train/loss")
    assert len(own) == ROUNDS
    total = client.get_metric_history(federation.parent.info.run_id, "train/loss")
    assert len(total) == ROUNDS
    with pytest.raises(MlflowException):
        client.get_metric_history(federation.runs["0"].info.run_id, "train/loss")
    url = f"{server.url}{API}/runs/{federation.collaboration}/flower/linear/{federation.run}/logs"
    logs = requests.get(url, auth=ALICE, timeout=60)
    assert logs.status_code == 200 and logs.json()["records"] == []  # the failure was 2's
    assert len(requests.get(url, auth=ADMIN, timeout=60).json()["records"]) == 1


def test_into_a_store_folder_the_same_run_is_kept_and_a_server_on_it_serves_the_model(
    server_factory: Any, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    # The ServerApp writes the folder itself, with the wrapper's own tracker settings.
    cache = tmp_path / "cache"
    own = {"FLOWER_DEFAULT_CONFIG": "1", "SYNMLOPS_SPOOL": "", "XDG_CACHE_HOME": str(cache)}
    federation = Federation(tmp_path, str(store), env=own)
    assert federation.result["flush_interval"] == 5.0  # a few rounds a send
    assert (cache / "synergos_mlops" / "spool").is_dir()
    federation.read_from(server_factory(store))  # then a server shows it
    assert set(federation.runs) == {federation.run, "0", "1", "2"}
    test_each_client_reply_is_its_partitions_series_point_for_point(federation)
    test_aggregated_and_server_side_records_equal_flowers_own_result(federation)
    test_final_arrays_are_the_global_model_and_a_registered_version_of_the_run(federation, tmp_path)


def test_a_server_restarted_mid_federation_loses_nothing_the_spool_carries_what_it_missed(
    federation: Federation,
) -> None:
    # The checks above read this federation point for point; here: the spool is empty and
    # every run ended.
    assert set(federation.runs) == {federation.run, "0", "1", "2"}
    assert not any(federation.spool.rglob("*.batch"))  # every batch was sent, none refused
    assert federation.parent.info.status == "FINISHED"
    assert all(federation.runs[p].info.status == "FINISHED" for p in ("0", "1", "2"))
