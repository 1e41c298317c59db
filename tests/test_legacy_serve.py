"""`synmlops serve --store` on a folder an original Synergos TTP writes as an MLflow file
store: served live, through MLflow's REST API, the Synergos API and the downloads."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from conftest import Server, wait_for
from legacy_store import append_points, write_experiment, write_run
from mlflow.tracking import MlflowClient

RUN_URL = "/api/synergos/v1/runs/hospitals/sepsis/mlp"


def _tree(server: Server) -> list[dict[str, Any]]:
    body = requests.get(f"{server.url}/api/synergos/v1/collaborations", timeout=30).json()
    return list(body["collaborations"])


def _run(server: Server, run: str) -> dict[str, Any] | None:
    response = requests.get(f"{server.url}{RUN_URL}/{run}", timeout=30)
    return dict(response.json()) if response.status_code == 200 else None


def test_serve_shows_a_file_store_as_federated_runs_and_serves_its_files_in_place(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    store = tmp_path / "mlflow"
    write_experiment(store, "0", "Default")
    write_experiment(store, "1", "hospitals_>_sepsis_>_mlp")
    run_uuid, folder = write_run(
        store, "1", "run-1", params={"rounds": 2},
        metrics={
            "global_train_loss": [(1, 0.9, 0), (2, 0.8, 1)],
            "w1_local_loss": [(1, 0.7, 0), (2, 0.6, 1)],
            "accuracy_class_0": [(3, 0.5, 1), (4, 0.4, 1)],
        },
        artifacts={"global_model.pt": b"global weights", "local_model_w2.pt": b"w2 weights"},
        status=1,
    )  # fmt: skip
    server = server_factory(store)

    def complete() -> bool:
        found = _run(server, "run-1")
        return bool(found and len(found["participants"]) == 2 and found["unattributed"])

    assert wait_for(complete)
    tree = _tree(server)
    assert tree[0]["id"] == "hospitals"
    assert tree[0]["projects"][0]["experiments"][0]["runs"][0]["id"] == "run-1"
    detail = _run(server, "run-1")
    assert detail is not None
    assert [p["id"] for p in detail["participants"]] == ["w1", "w2"]
    assert detail["unattributed"]["statistics"][0]["key"] == "accuracy_class_0"
    assert [a["path"] for a in detail["artifacts"]["global"]] == ["global_model.pt"]
    [w2_file] = detail["artifacts"]["participants"]["w2"]
    assert w2_file["path"] == "local_model_w2.pt"
    assert requests.get(server.url + w2_file["url"], timeout=30).content == b"w2 weights"

    bundle = requests.get(f"{server.url}{RUN_URL}/run-1/bundle.zip", timeout=30)
    names = zipfile.ZipFile(io.BytesIO(bundle.content)).namelist()
    assert "global/global_model.pt" in names
    assert "participants/w2/local_model_w2.pt" in names

    # MLflow's own API and artifact proxy see the same run, its files where the TTP put them.
    client = MlflowClient(server.url)
    assert client.get_run(run_uuid).data.params == {"rounds": "2"}
    listed = [f.path for f in client.list_artifacts(run_uuid)]
    assert listed == ["global_model.pt", "local_model_w2.pt"]
    downloaded = Path(client.download_artifacts(run_uuid, "global_model.pt", str(tmp_path)))
    assert downloaded.read_bytes() == b"global weights"

    # The TTP appends to the running run: the point shows within 5 s.
    append_points(folder, "global_train_loss", [(5, 0.7, 2)])

    def third_round() -> bool:
        series = requests.get(
            f"{server.url}{RUN_URL}/run-1/metrics", params={"keys": "train/loss"}, timeout=30
        ).json()["series"]["train/loss"]
        return bool(series["global"]["steps"] == [0, 1, 2])

    assert wait_for(third_round)
    # The server added only files to the TTP's folder; mlflow 1.7.2 lists folders only.
    assert sorted(p.name for p in store.iterdir() if p.is_dir()) == ["0", "1"]
    assert not (store / "artifacts").exists()


def test_health_names_what_the_file_store_sync_skipped(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    store = tmp_path / "mlflow"
    write_experiment(store, "1", "hospitals_>_sepsis_>_mlp")
    _, folder = write_run(store, "1", "run-1", metrics={"global_train_loss": [(1, 0.9, 0)]})
    (folder / "meta.yaml").write_text("artifact_uri: /mlflow/1/")  # truncated by a crash
    server = server_factory(store)

    def skipped() -> list[dict[str, str]]:
        body = requests.get(f"{server.url}/health", timeout=30).json()
        return list(body.get("file_store", {}).get("skipped", []))

    found = wait_for(skipped)
    assert found and found[0]["path"] == str(folder)
    assert "no run_uuid" in found[0]["reason"]
    assert "skipped" in server.output()


def test_a_bad_run_and_a_bad_line_between_good_ones_cost_only_themselves(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    """Run folders 1 and 3 are whole, 2's meta.yaml was cut short by a crash, and run-1's loss
    file holds one line that is no point between good ones: every good point is served once,
    each bad item is named with its reason in /health (which stays 200), no request answers
    5xx, and the mirror keeps writing: a later append arrives, and run-2 once it is whole."""
    store = tmp_path / "mlflow"
    write_experiment(store, "1", "hospitals_>_sepsis_>_mlp")
    losses = [(1, 0.9, 0), (2, 0.8, 1)]
    first_uuid, first = write_run(store, "1", "run-1", metrics={"global_train_loss": losses})
    with (first / "metrics" / "global_train_loss").open("a") as handle:
        handle.write("not a point\n3 0.7 2\n")
    _, broken = write_run(store, "1", "run-2", metrics={"global_train_loss": losses})
    whole = (broken / "meta.yaml").read_text()
    (broken / "meta.yaml").write_text(whole[:30])
    third_uuid, third = write_run(store, "1", "run-3", metrics={"global_train_loss": losses},
                                  status=1)  # fmt: skip
    server = server_factory(store)

    def steps(run: str) -> list[int] | None:
        response = requests.get(
            f"{server.url}{RUN_URL}/{run}/metrics", params={"keys": "train/loss"}, timeout=30
        )
        assert response.status_code < 500, response.text
        if response.status_code != 200:
            return None
        return list(response.json()["series"]["train/loss"]["global"]["steps"])

    assert wait_for(lambda: steps("run-1") == [0, 1, 2] and steps("run-3") == [0, 1])
    client = MlflowClient(server.url)
    assert [m.step for m in client.get_metric_history(first_uuid, "train/loss")] == [0, 1, 2]
    assert steps("run-2") is None  # not there yet, and not a 5xx
    health = requests.get(f"{server.url}/health", timeout=30)
    assert health.status_code == 200
    mirror = health.json()["file_store"]
    assert [(s["path"], "incomplete or still being written" in s["reason"])
            for s in mirror["skipped"]] == [(str(broken), True)]  # fmt: skip
    assert any("not a point" in event for event in mirror["events"])

    append_points(third, "global_train_loss", [(3, 0.7, 2)])
    (broken / "meta.yaml").write_text(whole)
    assert wait_for(lambda: steps("run-3") == [0, 1, 2] and steps("run-2") == [0, 1])
    assert [m.step for m in client.get_metric_history(third_uuid, "train/loss")] == [0, 1, 2]
    assert wait_for(
        lambda: (
            requests.get(f"{server.url}/health", timeout=30).json()["file_store"]["skipped"] == []
        )
    )


def test_ingest_of_the_ttp_outputs_and_the_live_store_make_one_run(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    import subprocess

    from conftest import SYNMLOPS
    from ingest_trees import write_run as write_outputs

    store = tmp_path / "mlflow"
    write_experiment(store, "1", "hospitals_>_sepsis_>_mlp")
    run_uuid, folder = write_run(
        store, "1", "run-1", params={"rounds": 3, "algorithm": "FedAvg"},
        metrics={"global_train_loss": [(1, 0.9, 0)]},
        artifacts={"global_model.pt": b"the TTP's weights"},
    )  # fmt: skip
    before = sorted(p.name for p in (folder / "artifacts").iterdir())
    server = server_factory(store)
    assert wait_for(lambda: _run(server, "run-1"))
    outputs = tmp_path / "outputs"
    write_outputs(outputs, "hospitals", "sepsis", "mlp", "run-1", participants=("w1", "w2"))
    done = subprocess.run(
        [*SYNMLOPS, "ingest", str(outputs), "--tracking-uri", server.url],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr

    tree = _tree(server)
    experiments = [e for c in tree for p in c["projects"] for e in p["experiments"]]
    assert [(e["id"], [r["id"] for r in e["runs"]]) for e in experiments] == [("mlp", ["run-1"])]
    detail = _run(server, "run-1")
    assert detail is not None
    assert detail["mlflow"]["run_id"] == run_uuid
    assert detail["hyperparameters"] == {"algorithm": "FedAvg", "rounds": "3"}
    assert [p["id"] for p in detail["participants"]] == ["w1", "w2"]
    # Ingest's uploads went through the server; the TTP's folder holds what the TTP wrote.
    assert sorted(p.name for p in (folder / "artifacts").iterdir()) == before
    assert (folder / "artifacts" / "global_model.pt").read_bytes() == b"the TTP's weights"
    paths = {a["path"] for a in detail["artifacts"]["global"]}
    assert {"global_model.pt", "ingest/manifest.json"} <= paths


def test_the_command_station_shows_a_ttp_run_with_its_unattributed_statistics(
    tmp_path: Path, server_factory: Callable[..., Server], browser: Any
) -> None:
    store = tmp_path / "mlflow"
    write_experiment(store, "1", "hospitals_>_sepsis_>_mlp")
    write_run(
        store, "1", "run-1",
        metrics={
            "global_train_loss": [(1, 0.9, 0), (2, 0.8, 1)],
            "w1_local_loss": [(1, 0.7, 0), (2, 0.6, 1)],
            "accuracy_class_0": [(3, 0.5, 1), (4, 0.25, 1)],
        },
        artifacts={"local_model_w1.pt": b"w1"},
    )  # fmt: skip
    server = server_factory(store)
    assert wait_for(lambda: (_run(server, "run-1") or {}).get("unattributed"))
    page = browser.new_page()
    page.goto(f"{server.url}/synergos/runs/hospitals/sepsis/mlp/run-1")
    page.wait_for_selector("#unattributed-table")
    rows = page.locator("#unattributed-table tbody tr")
    assert rows.count() == 2
    assert "accuracy_class_0" in rows.nth(0).inner_text()
    assert "0.25" in rows.nth(1).inner_text()
    page.wait_for_selector("#artifacts")
    assert "local_model_w1.pt" in page.locator("#artifacts").inner_text()
    page.close()
