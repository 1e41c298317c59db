"""``synmlops demo`` end to end: a real federated cycle logged into a real server or store
folder, read back with MLflow's plain client, and its registered model loaded back."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import mlflow
import numpy as np
import pytest
import requests
from conftest import SYNMLOPS, Server, free_port
from mlflow import MlflowClient

from synergos_mlops.demo import DemoConfig, TrainingConfig, run_demo
from synergos_mlops.demo.data import load_federated_data
from synergos_mlops.demo.registry import registered_name
from synergos_mlops.federation import CLASS_STATISTICS
from synergos_mlops.tracking import FederatedTracker, TrackerConfig

ROUNDS, EPOCHS, PARTICIPANTS = 3, 2, 3


@pytest.fixture(autouse=True)
def _own_spool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNMLOPS_SPOOL", str(tmp_path / "spool"))


def run_cli(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYNMLOPS_SPOOL": str(tmp_path / "spool")}
    return subprocess.run(
        [*SYNMLOPS, "demo", *args], capture_output=True, text=True, timeout=300, env=env
    )


def _config(**training: object) -> DemoConfig:
    settings = {"rounds": ROUNDS, "epochs": EPOCHS, "participants": PARTICIPANTS, **training}
    return DemoConfig(
        training=TrainingConfig(**settings),  # type: ignore[arg-type]
        collaboration=f"demo-{uuid.uuid4().hex[:8]}",
        run="e2e",
        round_seconds=0,  # no hardware is read here
    )


def _test_set() -> tuple[np.ndarray, np.ndarray]:
    data = load_federated_data(PARTICIPANTS, seed=0)
    return data.x_test, data.y_test


def test_demo_through_a_server_reads_back_with_the_plain_mlflow_client(
    shared_server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _config()
    with FederatedTracker(shared_server.url, TrackerConfig(flush_interval=0.2)) as tracker:
        result = run_demo(tracker, config)
    client = MlflowClient(tracking_uri=shared_server.url)

    # The parent run: one federated run in the experiment named by the ids.
    experiment = client.get_experiment_by_name(config.ids.name)
    assert experiment is not None and experiment.experiment_id == result.experiment_id
    parent = client.get_run(result.run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags["synergos.run"] == "e2e"
    assert parent.data.tags["synergos.role"] == "federation"
    assert parent.data.params["algorithm"] == "FedProx"
    assert parent.data.params["rounds"] == str(ROUNDS)
    assert parent.data.params["mu"] == "0.1"

    # One child run per participant.
    children = client.search_runs(
        [result.experiment_id], filter_string=f"tags.mlflow.parentRunId = '{result.run_id}'"
    )
    assert {c.data.tags["synergos.participant"]: c.info.run_id for c in children} == (
        result.participant_run_ids
    )
    assert sorted(result.participant_run_ids) == ["worker_1", "worker_2", "worker_3"]

    # Round-level, epoch-level and per-class keys, globally and locally.
    class_keys = {f"evaluate/{s}/class_{i}" for s in CLASS_STATISTICS for i in range(10)}
    common = {"train/loss", "evaluate/loss", "train/epoch/loss"} | class_keys
    assert common | {"evaluate/accuracy"} <= set(parent.data.metrics)
    for child in children:
        assert common <= set(child.data.metrics)
        assert child.info.status == "FINISHED"
    history = client.get_metric_history(result.run_id, "evaluate/loss")
    assert sorted(m.step for m in history) == list(range(ROUNDS))
    epochs = client.get_metric_history(children[0].info.run_id, "train/epoch/loss")
    assert sorted(m.step for m in epochs) == list(range(ROUNDS * EPOCHS))
    accuracy = client.get_metric_history(result.run_id, "evaluate/accuracy")
    assert max(accuracy, key=lambda m: m.step).value == pytest.approx(result.test_accuracy)
    # Every participant: the global model evaluated on its own data at every round (the
    # Command Station's participant table shows evaluate/accuracy).
    for child in children:
        local = client.get_metric_history(child.info.run_id, "evaluate/accuracy")
        assert sorted(m.step for m in local) == list(range(ROUNDS))
        assert all(0.0 <= m.value <= 1.0 for m in local)
    # The central logs: the orchestrator's and every participant's records, a line a round.
    import requests

    logs_url = f"{shared_server.url}/api/synergos/v1/runs/{'/'.join(config.ids.name.split('/'))}"
    records = requests.get(f"{logs_url}/e2e/logs", params={"limit": 5000}, timeout=60).json()
    roles = {(r["role"], r["participant"]) for r in records["records"]}
    assert roles == {("TTP", None)} | {("WKR", p) for p in result.participant_run_ids}
    worker_lines = [r for r in records["records"] if r["participant"] == "worker_1"]
    assert len(worker_lines) == ROUNDS
    tps = client.get_metric_history(result.run_id, "evaluate/TPs/class_0")
    assert [m.step for m in tps] == list(range(ROUNDS))  # the class index is never the step

    # The catalogue: every participant's train and evaluate data, sized as partitioned.
    datasets = requests.get(f"{logs_url}/e2e/datasets", timeout=60).json()["datasets"]
    partition_sizes = {
        (shard.participant, split): len(labels)
        for shard in load_federated_data(
            PARTICIPANTS, seed=config.training.seed, alpha=config.training.alpha
        ).shards
        for split, labels in (("train", shard.y_train), ("evaluate", shard.y_evaluate))
    }
    assert {(d["participant"], d["split"]): d["rows"] for d in datasets} == partition_sizes
    assert {d["kind"] for d in datasets} == {"image"}

    # Checkpoints per round, final models, loss history, the data partition.
    def files(run_id: str, path: str) -> list[str]:
        return [f.path for f in client.list_artifacts(run_id, path)]

    assert files(result.run_id, "checkpoints/round_0") == ["checkpoints/round_0/model.npz"]
    assert files(result.run_id, "models/global") == ["models/global/model.npz"]
    assert "loss_history/global_loss_history.json" in files(result.run_id, "loss_history")
    local = result.participant_run_ids["worker_1"]
    assert files(local, f"checkpoints/round_{ROUNDS - 1}") == [
        f"checkpoints/round_{ROUNDS - 1}/model.npz"
    ]
    assert files(local, "models/local") == ["models/local/model.npz"]
    partition = json.loads(
        Path(client.download_artifacts(result.run_id, "data/partition.json")).read_text()
    )
    assert set(partition["participants"]) == set(result.participant_run_ids)

    # The registered model: its version comes from the federated run and predicts exactly
    # as the federated model did in memory.
    assert result.registered.name == registered_name(config.ids)
    version = client.get_model_version(result.registered.name, result.registered.version)
    assert version.run_id == result.run_id
    assert version.source == f"models:/{result.registered.model_id}"
    assert [o.model_id for o in parent.outputs.model_outputs] == [result.registered.model_id]
    x_test, y_test = _test_set()
    expected = result.model.predict(x_test)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", shared_server.url)
    loaded = mlflow.pyfunc.load_model(result.registered.uri)
    assert np.array_equal(np.asarray(loaded.predict(x_test)), expected)
    estimator = mlflow.sklearn.load_model(result.registered.uri)
    assert np.array_equal(estimator.predict(x_test), expected)
    assert np.mean(expected == y_test) > result.baseline_accuracy + 0.5


def test_fedavg_and_fedprox_demos_log_different_trajectories(shared_server: Server) -> None:
    curves = {}
    for algorithm in ("fedavg", "fedprox"):
        config = _config(algorithm=algorithm)
        with FederatedTracker(shared_server.url) as tracker:
            result = run_demo(tracker, config)
        client = MlflowClient(tracking_uri=shared_server.url)
        history = client.get_metric_history(result.run_id, "evaluate/loss")
        curves[algorithm] = [m.value for m in sorted(history, key=lambda m: m.step)]
        params = client.get_run(result.run_id).data.params
        assert ("mu" in params) == (algorithm == "fedprox")
    assert len(curves["fedavg"]) == len(curves["fedprox"]) == ROUNDS
    assert not np.allclose(curves["fedavg"], curves["fedprox"], rtol=1e-3)


def test_demo_command_ends_with_links_to_the_run_on_the_server(
    shared_server: Server, tmp_path: Path
) -> None:
    run = f"cli run {uuid.uuid4().hex[:6]}"  # a space, to see the id encoded in the URL
    result = run_cli(
        "--tracking-uri", shared_server.url, "--rounds", "2", "--participants", "2",
        "--algorithm", "FedAvg", "--run", run, tmp_path=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    station = f"{shared_server.url}/synergos/runs/demo/digits/softmax-regression/{quote(run)}"
    assert station in last
    client = MlflowClient(tracking_uri=shared_server.url)
    experiment = client.get_experiment_by_name("demo/digits/softmax-regression")
    (parent,) = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`synergos.run` = '{run}' and tags.`synergos.role` = 'federation'",
    )
    mlflow_ui = f"{shared_server.url}/#/experiments/{experiment.experiment_id}/runs/"
    assert f"{mlflow_ui}{parent.info.run_id}" in last
    assert parent.data.params["algorithm"] == "FedAvg"
    assert requests.get(station, timeout=30).status_code == 200


def test_demo_into_a_store_folder_then_served_gives_the_registered_model(
    tmp_path: Path, server_factory: Callable[..., Server], monkeypatch: pytest.MonkeyPatch
) -> None:
    store = tmp_path / "store"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    before = mlflow.get_tracking_uri()
    config = _config()
    with FederatedTracker(store) as tracker:
        result = run_demo(tracker, config)
    # The process-wide MLflow state is as it was.
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert mlflow.get_tracking_uri() == before

    server = server_factory(store)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    client = MlflowClient(tracking_uri=server.url)
    version = client.get_model_version(result.registered.name, result.registered.version)
    assert version.run_id == result.run_id
    x_test, _ = _test_set()
    loaded = mlflow.pyfunc.load_model(result.registered.uri)
    assert np.array_equal(np.asarray(loaded.predict(x_test)), result.model.predict(x_test))
    assert client.list_artifacts(result.run_id, "models/global")


def test_if_empty_adds_no_second_demo_run(tmp_path: Path) -> None:
    store = tmp_path / "store"
    first = run_cli("--tracking-uri", str(store), "--rounds", "2", "--if-empty", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    assert f"synmlops serve --store {store}" in first.stdout.strip().splitlines()[-1]
    second = run_cli("--tracking-uri", str(store), "--rounds", "2", "--if-empty", tmp_path=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "already holds runs" in second.stdout
    client = MlflowClient(tracking_uri=f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("demo/digits/softmax-regression")
    parents = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`synergos.role` = 'federation'"
    )
    assert len(parents) == 1
    versions = client.search_model_versions("name = 'synergos-demo-digits-softmax-regression'")
    assert len(versions) == 1


def test_no_serve_hint_ends_the_demo_without_the_serve_command(tmp_path: Path) -> None:
    store = tmp_path / "store"
    result = run_cli("--tracking-uri", str(store), "--rounds", "1", "--no-serve-hint",
                     tmp_path=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "synmlops serve" not in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("Registered model: models:/")


def test_if_empty_on_a_server_that_holds_runs_trains_nothing(
    shared_server: Server, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=shared_server.url)
    experiment = client.create_experiment(f"if-empty-{uuid.uuid4().hex[:8]}")
    client.create_run(experiment)
    result = run_cli("--tracking-uri", shared_server.url, "--if-empty", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        f"{shared_server.url} already holds runs; no demo run added (--if-empty)."
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--participants", "0"], "participants must be between 1 and 20, not 0"),
        (["--participants", "21"], "participants must be between 1 and 20, not 21"),
        (["--rounds", "0"], "rounds must be between 1 and 10000, not 0"),
        (["--algorithm", "fedsgd"], "algorithm must be one of fedavg, fedprox, not 'fedsgd'"),
        (["--mu", "-1"], "mu must be a number of at least 0, not -1.0"),
        (["--run", "a/b"], "run id 'a/b' must not contain '/'"),
    ],
)
def test_bad_input_is_one_line_on_stderr_and_nothing_is_written(
    tmp_path: Path, args: list[str], message: str
) -> None:
    store = tmp_path / "store"
    result = run_cli("--tracking-uri", str(store), *args, tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [f"Error: {message}"]
    assert not store.exists()


def test_an_unreachable_server_is_one_line_before_any_training(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    result = run_cli("--tracking-uri", url, tmp_path=tmp_path)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: the tracking server at {url} cannot be reached (ConnectionError)"
    ]


def test_every_demo_option_is_documented() -> None:
    from synergos_mlops.cli import main

    documented = (Path(__file__).parent.parent / "docs" / "demo.md").read_text()
    command = main.commands["demo"]
    options = [flag for p in command.params for flag in p.opts if flag.startswith("--")]
    assert options, "the demo command has options"
    for option in options:
        assert f"`{option}`" in documented, f"{option} is missing from docs/demo.md"
