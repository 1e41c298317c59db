"""Ending a federated run costs one request, whatever its number of participants: the tracker
sends `POST /api/synergos/v1/runs/end` for the run and all its participants' runs, a real
server ends them in one transaction; a deleted participant run costs the others nothing, and
an end that finds the server away is sent again once it is back."""

from __future__ import annotations

import threading
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow import MlflowClient

from synergos_mlops.storage.run_data import RUN_MISSING
from synergos_mlops.tracking import FederatedTracker, HttpTransport, TrackerConfig

API = "/api/synergos/v1"
PARTICIPANTS = [f"worker-{i}" for i in range(40)]


class CountingTransport(HttpTransport):
    """The real HTTP transport, noting what each request was for."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.requests: list[str] = []

    def _call(self, method: str, path: str, *, what: str, **kwargs: Any) -> Any:
        self.requests.append(what)
        return super()._call(method, path, what=what, **kwargs)


def _federation(url: str, tmp_path: Path, **config: Any) -> tuple[FederatedTracker, Any, Any]:
    transport = CountingTransport(url)
    tracker = FederatedTracker(
        config=TrackerConfig(spool_dir=tmp_path / "spool", flush_interval=0.1, **config),
        transport=transport,
    )
    run = tracker.run("c", "p", "e", "r", participants=PARTICIPANTS)
    for participant in PARTICIPANTS:
        run.log_metrics({"train/loss": 0.5}, step=1, participant=participant)
    run.log_metrics({"train/loss": 0.4}, step=1)
    return tracker, run, transport


def _statuses(url: str, run: Any) -> dict[str, tuple[str, int | None]]:
    client = MlflowClient(url)
    found = client.search_runs([run.experiment_id])
    return {r.info.run_name: (r.info.status, r.info.end_time) for r in found}


def test_a_federation_of_40_participants_ends_in_one_request_every_run_finished_at_one_time(
    server_factory: Any, tmp_path: Path
) -> None:
    server = server_factory(tmp_path / "store")
    tracker, run, transport = _federation(server.url, tmp_path)
    with tracker:
        before = len(transport.requests)
        run.end("FINISHED")
        ending = [what for what in transport.requests[before:] if what != "metric batch"]
    assert ending == ["end runs"]
    statuses = _statuses(server.url, run)
    assert set(statuses) == {"r", *PARTICIPANTS}
    assert {status for status, _ in statuses.values()} == {"FINISHED"}
    assert len({end for _, end in statuses.values()}) == 1


def test_a_deleted_participant_run_is_named_and_costs_the_others_nothing(
    server_factory: Any, tmp_path: Path
) -> None:
    server = server_factory(tmp_path / "store")
    tracker, run, _ = _federation(server.url, tmp_path)
    with tracker:
        run.flush()
        deleted = run.participant_run_id("worker-7")
        MlflowClient(server.url).delete_run(deleted)
        with pytest.warns(RuntimeWarning, match=f"1 of its runs no longer exist.*{deleted}"):
            run.end("FAILED")
    statuses = _statuses(server.url, run)  # search_runs leaves out the deleted run
    assert set(statuses) == {"r", *PARTICIPANTS} - {"worker-7"}
    assert {status for status, _ in statuses.values()} == {"FAILED"}


def test_an_end_that_finds_the_server_away_is_sent_again_once_it_is_back(
    server_factory: Any, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    server = server_factory(store)
    tracker, run, _ = _federation(server.url, tmp_path, connect_timeout=240)
    with tracker:
        run.flush()
        server.stop()
        restarted: list[Any] = []

        def restart() -> None:
            time.sleep(2)
            restarted.append(server_factory(store, port=server.port))

        back = threading.Thread(target=restart)
        back.start()
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no "stays RUNNING"
            run.end("FINISHED")
        back.join()
    statuses = _statuses(server.url, run)
    assert {status for status, _ in statuses.values()} == {"FINISHED"}
    assert len(statuses) == 1 + len(PARTICIPANTS)


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"run_ids": ["x"], "status": "DONE", "end_time": 1}, 400, "INVALID_VALUE"),
        ({"run_ids": ["x"], "status": "FINISHED", "end_time": -1}, 400, "INVALID_VALUE"),
        ({"run_ids": "x", "status": "FINISHED", "end_time": 1}, 400, "BAD_REQUEST"),
    ],
)
def test_a_bad_end_request_is_refused_with_one_clear_message(
    shared_server: Any, body: dict[str, Any], status: int, code: str
) -> None:
    response = requests.post(f"{shared_server.url}{API}/runs/end", json=body, timeout=60)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"]


def _ends_refused(url: str) -> int:
    health = requests.get(f"{url}/health", timeout=60).json()
    assert health["status"] == "ok"
    return int(health["refused"].get("run_ends", {}).get(RUN_MISSING, 0))


def test_unknown_runs_are_named_not_ended_and_counted_beside_the_runs_ended(
    shared_server: Any,
) -> None:
    client = MlflowClient(shared_server.url)
    experiment = client.create_experiment(f"ends-{uuid.uuid4().hex}")
    good = [client.create_run(experiment).info.run_id for _ in range(2)]
    before = _ends_refused(shared_server.url)
    body = {"run_ids": [good[0], "no-such-run", good[1]], "status": "FINISHED", "end_time": 1}
    response = requests.post(f"{shared_server.url}{API}/runs/end", json=body, timeout=60)
    assert response.status_code == 200
    assert response.json() == {"ended": 2, "missing": ["no-such-run"]}
    assert [client.get_run(run).info.status for run in good] == ["FINISHED", "FINISHED"]
    assert _ends_refused(shared_server.url) == before + 1
    # And the next end is taken as before.
    later = client.create_run(experiment).info.run_id
    body = {"run_ids": [later], "status": "KILLED", "end_time": 2}
    response = requests.post(f"{shared_server.url}{API}/runs/end", json=body, timeout=60)
    assert response.json() == {"ended": 1, "missing": []}
    assert client.get_run(later).info.status == "KILLED"
    assert _ends_refused(shared_server.url) == before + 1
