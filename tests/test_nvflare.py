"""The NVIDIA FLARE receiver: a real NVFlare 2.9 simulator job (two sites, the NumPy FedAvg
recipe) in .venv-fl, whose client script logs through nvflare.client.tracking, is logged by
SynergosReceiver into a real `synmlops serve`; read back with MLflow's client and compared
with what each site logged."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from conftest import Server
from frameworks_support import SCRIPTS, run_in_frameworks_venv, wait_while_running
from mlflow import MlflowClient

from synergos_mlops.storage.run_data import REFUSED_BY_MLFLOW, RESERVED_TAG
from synergos_mlops.tracking import TEXT_PATH_REFUSED

# Each runs a federation in another venv, on a shared 2-core machine: a server and a
# simulation take longer than the suite's default 300 s limit allows for.
pytestmark = pytest.mark.timeout(600)

SITES = ("site-1", "site-2")


def refused_counts(server: Server) -> dict[str, dict[str, int]]:
    counts = requests.get(f"{server.url}/health", timeout=30).json()["refused"]
    return {what: dict(counts.get(what, {})) for what in ("params", "tags", "texts")}


class Job:
    """One finished simulator job: what the sites logged and what the server stored."""

    def __init__(self, server: Server, folder: Path, env: dict[str, str] | None = None) -> None:
        self.collaboration = f"nvflare {uuid.uuid4().hex[:6]}"
        self.run = "job-1"
        self.workspace = folder / "workspace"
        logged = folder / "logged.jsonl"
        before = refused_counts(server)
        run_in_frameworks_venv(
            [str(SCRIPTS / "nvflare_job.py"), server.url, self.collaboration, self.run,
             str(self.workspace)],
            log=folder / "nvflare.log", env={"FLARE_LOGGED": str(logged), **(env or {})},
        )  # fmt: skip
        self.logged: list[dict[str, Any]] = [
            json.loads(line) for line in logged.read_text().splitlines()
        ]
        self.read_from(server)
        after = refused_counts(server)
        self.refused = {
            what: {r: n - before[what].get(r, 0) for r, n in after[what].items()
                   if n != before[what].get(r, 0)}
            for what in after
        }  # fmt: skip

    def read_from(self, server: Server) -> None:
        self.client = MlflowClient(server.url)
        experiment = self.client.get_experiment_by_name(f"{self.collaboration}/nvflare/linear")
        assert experiment is not None
        self.runs = {
            r.info.run_name: r for r in self.client.search_runs([experiment.experiment_id])
        }
        self.parent = self.runs[self.run]

    def series(self, run_name: str, key: str) -> dict[int, float]:
        history = self.client.get_metric_history(self.runs[run_name].info.run_id, key)
        steps = [m.step for m in history]
        assert len(steps) == len(set(steps)), f"{key} of {run_name} has a step twice"
        return {m.step: m.value for m in history}


@pytest.fixture(scope="module")
def job(shared_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Job]:
    yield Job(shared_server, tmp_path_factory.mktemp("nvflare"))


def test_each_sites_tracking_calls_are_its_participants_series_point_for_point(job: Job) -> None:
    expected: dict[tuple[str, str], dict[int, float]] = {}
    for line in job.logged:
        if line["kind"] == "metrics":
            for key, value in line["values"].items():
                expected.setdefault((line["site"], key), {})[line["step"]] = value
    assert {site for site, _ in expected} == set(SITES)
    for (site, key), points in expected.items():
        assert set(points) == {0, 1, 2}
        assert job.series(site, key) == points, (site, key)
    for site in SITES:
        stored = set(job.runs[site].data.metrics)
        assert stored == {"train/loss", "train/w", "train/b", "evaluate/loss"}
        assert job.runs[site].data.tags["synergos.participant"] == site
        assert job.runs[site].data.tags["mlflow.parentRunId"] == job.parent.info.run_id
    assert set(job.runs) == {job.run, *SITES}


def test_each_sites_params_and_tags_go_onto_its_participant_run(job: Job) -> None:
    params: dict[str, dict[str, str]] = {site: {} for site in SITES}
    for line in job.logged:
        run = job.runs[line["site"]]
        if line["kind"] == "params":
            params[line["site"]].update({k: str(v) for k, v in line["values"].items()})
        elif line["kind"] == "tags":
            for key, value in line["values"].items():
                assert run.data.tags[key] == value
    assert {site: job.runs[site].data.params for site in SITES} == params


def test_a_sites_text_is_a_file_of_its_participant_run(job: Job, tmp_path: Path) -> None:
    texts = [line for line in job.logged if line["kind"] == "text"]
    assert {line["site"] for line in texts} == set(SITES)
    for line in texts:
        for path, text in line["values"].items():
            run_id = job.runs[line["site"]].info.run_id
            stored = job.client.download_artifacts(run_id, path, str(tmp_path / line["site"]))
            assert Path(stored).read_text() == text


def test_a_refused_param_tag_and_text_cost_only_themselves_and_are_counted(job: Job) -> None:
    for site in SITES:  # beside them, "momentum" and "os" are kept (the test above)
        assert "bad name!" not in job.runs[site].data.params
        assert job.runs[site].data.tags["synergos.participant"] == site
    assert job.refused == {
        "params": {REFUSED_BY_MLFLOW: 2},
        "tags": {RESERVED_TAG: 2},
        "texts": {TEXT_PATH_REFUSED: 2},
    }


def test_the_jobs_meta_are_hyperparameters_and_the_run_finishes(job: Job) -> None:
    params = job.parent.data.params
    assert params["job/name"] == "linear"
    assert params["job/min_clients"] == "2"
    assert json.loads(params["job/deploy_map"]) == {"app": ["@ALL"]}
    assert job.parent.info.status == "FINISHED"
    assert all(job.runs[site].info.status == "FINISHED" for site in SITES)
    assert not job.parent.data.metrics  # nothing global is made up from the sites' values


def test_the_persisted_global_model_is_the_runs_model_and_a_registered_version(
    job: Job, tmp_path: Path
) -> None:
    persisted = np.load(
        job.workspace / "linear" / "server" / "simulate_job" / "models" / "server.npy"
    )
    stored = job.client.download_artifacts(
        job.parent.info.run_id, "models/global/global_model.npz", str(tmp_path)
    )
    with np.load(stored) as arrays:
        assert arrays.files == ["numpy_key"]
        assert arrays["numpy_key"].tolist() == persisted.tolist()
    name = f"synergos-{job.collaboration.replace(' ', '-')}-nvflare-linear"
    versions = job.client.search_model_versions(f"name = '{name}'")
    assert [(v.version, v.run_id) for v in versions] == [("1", job.parent.info.run_id)]


def test_a_server_restarted_mid_job_loses_nothing_the_spool_carries_what_it_missed(
    server_factory: Any, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    server = server_factory(store)
    gates = tmp_path / "gates"
    gates.mkdir()
    spool = tmp_path / "spool"
    finished: list[Job] = []
    failed: list[BaseException] = []

    def run_job() -> None:
        try:
            env = {"FLARE_GATES": str(gates), "SYNMLOPS_SPOOL": str(spool)}
            finished.append(Job(server, tmp_path, env))
        except BaseException as exc:  # noqa: BLE001 - handed to the test's thread
            failed.append(exc)

    running = threading.Thread(target=run_job, daemon=True)
    running.start()
    wait_while_running("round 1", (gates / "round-1").exists, running)
    server.stop()  # round 0 done; round 1's values have nowhere to go
    (gates / "go-1").touch()
    wait_while_running("round 2", (gates / "round-2").exists, running)
    # Site-1 logs round 1 only after go-1, with the server stopped; its events reach the
    # receiver as NVFlare's federated events, which a loaded machine delivered after more than
    # 60 s once (a full CI run): the wait ends as soon as the batch is in the spool.
    wait_while_running("spooled batch", lambda: any(spool.rglob("*.batch")), running, timeout=240)
    server = server_factory(store, port=server.port)  # the same store, the same address
    (gates / "go-2").touch()
    running.join(timeout=540)
    assert not failed, failed
    assert finished, "the job did not finish"
    job = finished[0]
    job.read_from(server)
    assert not any(spool.rglob("*.batch"))  # every batch was sent, none refused
    test_each_sites_tracking_calls_are_its_participants_series_point_for_point(job)
    test_each_sites_params_and_tags_go_onto_its_participant_run(job)
    test_the_jobs_meta_are_hyperparameters_and_the_run_finishes(job)
    test_the_persisted_global_model_is_the_runs_model_and_a_registered_version(job, tmp_path)
