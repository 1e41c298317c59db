"""The Synergos REST API against a real server holding a federated run."""

from __future__ import annotations

import io
import os
import uuid
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from federated_data import LoggedRun, log_federated_run
from mlflow import MlflowClient

from synergos_mlops.storage import reads
from synergos_mlops.views.federated_runs import Backend, resolve_run
from synergos_mlops.views.run_data import DATA_FILES

API = "/api/synergos/v1"


@pytest.fixture(scope="module")
def logged(shared_server) -> LoggedRun:  # type: ignore[no-untyped-def]
    return log_federated_run(
        shared_server.url,
        collaboration=f"hospitals {uuid.uuid4().hex[:6]}",
        project="cardiac risk",
        experiment="épreuve 1",
        run="run 1 ü",
        participants=["hospital a", "klinik-ü", "clinic-3"],
        rounds=6,
        epochs=3,
        classes=3,
    )


@pytest.fixture(scope="module")
def run_url(shared_server, logged: LoggedRun) -> str:  # type: ignore[no-untyped-def]
    return f"{shared_server.url}{API}/runs/{logged.path}"


def test_collaborations_tree_lists_the_run_with_status_times_and_participant_count(
    shared_server, logged: LoggedRun
) -> None:
    response = requests.get(f"{shared_server.url}{API}/collaborations", timeout=30)
    assert response.status_code == 200
    tree = {c["id"]: c for c in response.json()["collaborations"]}
    project = {p["id"]: p for p in tree[logged.collaboration]["projects"]}["cardiac risk"]
    experiment = {e["id"]: e for e in project["experiments"]}["épreuve 1"]
    assert experiment["mlflow_experiment_id"] == logged.experiment_id
    [run] = experiment["runs"]
    assert run["id"] == "run 1 ü"
    assert run["status"] == "FINISHED"
    assert run["participant_count"] == 3
    assert run["start_time"].endswith("Z") and run["end_time"] >= run["start_time"]
    assert run["mlflow_run_id"] == logged.parent_run_id


def test_run_view_has_hyperparameters_participants_latest_metrics_artifacts_and_links(
    run_url: str, logged: LoggedRun
) -> None:
    body = requests.get(run_url, timeout=30).json()
    assert (body["collaboration"], body["project"], body["experiment"], body["run"]) == (
        logged.collaboration, "cardiac risk", "épreuve 1", "run 1 ü",
    )  # fmt: skip
    assert body["hyperparameters"]["algorithm"] == "FedProx"
    assert body["hyperparameters"]["rounds"] == "6"
    assert [p["id"] for p in body["participants"]] == ["clinic-3", "hospital a", "klinik-ü"]
    assert {p["mlflow_run_id"] for p in body["participants"]} == set(logged.participants.values())
    assert "train/loss" in body["metric_keys"]
    assert "train/epoch/loss" in body["metric_keys"]
    assert "evaluate/accuracy/class_2" in body["metric_keys"]
    latest = body["latest_metrics"]
    assert latest["global"]["train/loss"]["step"] == 5
    assert latest["global"]["train/loss"]["value"] == pytest.approx(1 / 6, abs=1e-5)
    assert latest["participants"]["hospital a"]["train/loss"]["step"] == 5
    assert latest["participants"]["klinik-ü"]["evaluate/accuracy/class_0"]["value"] > 0
    artifacts = body["artifacts"]
    assert [a["path"] for a in artifacts["global"]] == logged.global_files
    assert [a["path"] for a in artifacts["participants"]["klinik-ü"]] == (
        logged.participant_files["klinik-ü"]
    )
    mlflow = body["mlflow"]
    assert mlflow == {
        "experiment_id": logged.experiment_id,
        "run_id": logged.parent_run_id,
        "url": f"/#/experiments/{logged.experiment_id}/runs/{logged.parent_run_id}",
    }
    assert body["links"]["bundle"].endswith(f"/runs/{logged.path}/bundle.zip")
    assert body["links"]["command_station"] == f"/synergos/runs/{logged.path}"


def test_metrics_returns_round_and_epoch_series_of_global_and_every_participant(
    run_url: str, logged: LoggedRun
) -> None:
    response = requests.get(
        f"{run_url}/metrics", params={"keys": "train/loss,train/epoch/loss"}, timeout=30
    )
    assert response.status_code == 200
    series = response.json()["series"]
    rounds = series["train/loss"]
    assert rounds["axis"] == "round"
    assert rounds["global"]["steps"] == list(range(6))
    assert rounds["global"]["values"][0] == pytest.approx(1.0)
    assert set(rounds["participants"]) == set(logged.participants)
    assert rounds["participants"]["hospital a"]["steps"] == list(range(6))
    epochs = series["train/epoch/loss"]
    assert epochs["axis"] == "epoch"
    assert epochs["global"]["steps"] == list(range(6 * 3))
    assert len(epochs["participants"]["klinik-ü"]["values"]) == 18


def test_metrics_take_repeated_keys_and_every_key_when_none_given(run_url: str) -> None:
    repeated = requests.get(
        f"{run_url}/metrics", params=[("keys", "train/loss"), ("keys", "evaluate/loss")], timeout=30
    ).json()
    assert repeated["keys"] == ["train/loss", "evaluate/loss"]
    everything = requests.get(f"{run_url}/metrics", timeout=30).json()
    assert "evaluate/accuracy/class_1" in everything["series"]


def test_series_match_mlflows_own_metric_history(shared_server, logged: LoggedRun) -> None:
    client = MlflowClient(shared_server.url)
    backend = Backend.of_store_folder(shared_server.store)
    run = resolve_run(backend, logged.collaboration, logged.project, logged.experiment, logged.run)
    series = reads.metric_series(backend.session_maker, run.run_uuids, ["evaluate/loss"])
    for run_uuid in run.run_uuids:
        history = client.get_metric_history(run_uuid, "evaluate/loss")
        steps, values = series["evaluate/loss"][run_uuid]
        assert steps == [m.step for m in history]
        assert values == pytest.approx([m.value for m in history])


def test_a_step_logged_twice_reads_as_its_latest_point_as_mlflow_history_ends(
    tmp_path: Path,
) -> None:
    """Stock log_batch appends, so a store may hold a step twice: the series keeps the point
    with the latest timestamp, whatever order the points were logged in; NaN reads as None."""
    from mlflow.entities import Metric
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "mlflow-artifacts:/")
    run = store.create_run("0", "u", 0, [], "r").info.run_id
    other = store.create_run("0", "u", 0, [], "r").info.run_id
    store.log_batch(run, [Metric("a", 3.0, 30, 1), Metric("a", 1.0, 10, 0),
                          Metric("a", 2.0, 20, 1), Metric("a", float("nan"), 40, 2),
                          Metric("a", 5.0, 50, 0), Metric("b", 7.0, 1, 0)], [], [])  # fmt: skip
    store.log_batch(other, [Metric("a", 9.0, 1, 0)], [], [])
    series = reads.metric_series(store.ManagedSessionMaker, [run, other], ["a", "b"])
    assert series == {
        "a": {run: ([0, 1, 2], [5.0, 3.0, None]), other: ([0], [9.0])},
        "b": {run: ([0], [7.0])},
    }
    store.engine.dispose()


def test_series_of_every_run_and_key_are_read_in_as_many_sql_queries_as_one_series(
    shared_server, logged: LoggedRun
) -> None:
    """The global run's and every participant's series of several keys cost the statements
    one series costs: on SQLite the rowid span of the rows asked for, their step span, then
    the rows (the runs and keys go into temporary tables, not one query each)."""
    from sqlalchemy import event

    backend = Backend.of_store_folder(shared_server.store)
    run = resolve_run(backend, logged.collaboration, logged.project, logged.experiment, logged.run)
    with backend.session_maker() as session:
        engine = session.get_bind()

    def selects(run_uuids: list[str], keys: list[str]) -> list[str]:
        statements: list[str] = []

        def count(*args: object) -> None:
            statements.append(str(args[2]))

        event.listen(engine, "before_cursor_execute", count)
        try:
            assert reads.metric_series(backend.session_maker, run_uuids, keys)
        finally:
            event.remove(engine, "before_cursor_execute", count)
        return [s for s in statements if s.lstrip().upper().startswith("SELECT")]

    every = selects(run.run_uuids, ["train/loss", "evaluate/loss", "train/epoch/loss"])
    one = selects(run.run_uuids[:1], ["train/loss"])
    assert len(every) == len(one) == 3 and all("metrics" in s for s in every)


def _zip(response: requests.Response) -> zipfile.ZipFile:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    return zipfile.ZipFile(io.BytesIO(response.content))


def test_bundle_holds_the_global_folder_and_one_folder_per_participant(
    run_url: str, logged: LoggedRun
) -> None:
    response = requests.get(f"{run_url}/bundle.zip", timeout=60)
    assert "attachment" in response.headers["content-disposition"]
    bundle = _zip(response)
    assert bundle.testzip() is None
    expected = [f"global/{f}" for f in logged.global_files]
    for participant, files in logged.participant_files.items():
        expected += [f"participants/{participant}/{f}" for f in files]
    expected += list(DATA_FILES)
    assert sorted(bundle.namelist()) == sorted(expected)
    model = bundle.read("global/models/global/global_model.pt")
    assert model.startswith(b"\x00weights") and len(model) == 2048


def test_participant_bundle_holds_only_that_participants_files(
    run_url: str, logged: LoggedRun
) -> None:
    bundle = _zip(
        requests.get(f"{run_url}/participants/{quote('klinik-ü')}/bundle.zip", timeout=60)
    )
    assert sorted(bundle.namelist()) == logged.participant_files["klinik-ü"]
    assert bundle.read("models/local/local_model.pt") == "local klinik-ü".encode() * 64


def test_one_artifact_downloads_from_the_run_and_from_a_participant(run_url: str) -> None:
    response = requests.get(
        f"{run_url}/artifacts/loss_history/global_loss_history.json", timeout=30
    )
    assert response.status_code == 200
    assert "train" in response.json()
    response = requests.get(
        f"{run_url}/participants/{quote('hospital a')}/artifacts/models/local/local_model.pt",
        timeout=30,
    )
    assert response.content == b"local hospital a" * 64


def test_api_and_page_answer_with_the_servers_x_frame_options(shared_server, run_url: str) -> None:
    for url in (run_url, f"{shared_server.url}/synergos/"):
        assert requests.get(url, timeout=30).headers["x-frame-options"] == "SAMEORIGIN"


def test_openapi_document_covers_just_the_synergos_routes(shared_server) -> None:
    response = requests.get(f"{shared_server.url}{API}/openapi.json", timeout=30)
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert f"{API}/collaborations" in paths
    assert f"{API}/runs/{{collaboration}}/{{project}}/{{experiment}}/{{run}}/bundle.zip" in paths
    assert all(path.startswith(API) for path in paths)


def test_bundle_streams_in_chunks_without_holding_the_run_in_memory(tmp_path: Path) -> None:
    import tracemalloc

    from mlflow.store.artifact.local_artifact_repo import LocalArtifactRepository

    from synergos_mlops.views.bundle import ArtifactFile, iter_zip

    root = tmp_path / "artifacts"
    root.mkdir()
    size = 48 * 1024 * 1024
    with (root / "big.bin").open("wb") as handle:
        for _ in range(size // (1024 * 1024)):
            handle.write(os.urandom(1024 * 1024))
    repo = LocalArtifactRepository(str(root))
    entries = [("global/big.bin", ArtifactFile(repo, "big.bin", "big.bin", size))]
    tracemalloc.start()
    total = 0
    largest = 0
    try:
        for chunk in iter_zip(entries):
            total += len(chunk)
            largest = max(largest, len(chunk))
        _current, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total > size // 2
    assert largest < 4 * 1024 * 1024
    assert peak < 12 * 1024 * 1024
