"""Lineage on a real `synmlops serve`: datasets → participant runs → the federated run → a
logged model → its registered model version, asked from each end, and exported as
OpenLineage run events."""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from conftest import SYNMLOPS, Server
from mlflow import MlflowClient
from test_catalog import HEADERS, IMAGE, SCHEMA, TABULAR
from tracking_support import fast_config

from synergos_mlops import FederatedTracker

API = "/api/synergos/v1"


def test_lineage_leads_from_datasets_to_a_registered_model_version_and_back(
    shared_server: Server, tmp_path: Path
) -> None:
    check_lineage(shared_server, tmp_path)


def test_lineage_reads_the_same_from_postgresql(
    server_factory: Any, postgres_uri: str, tmp_path: Path
) -> None:
    check_lineage(server_factory(extra=["--backend-store-uri", postgres_uri]), tmp_path)


def check_lineage(shared_server: Server, tmp_path: Path) -> None:
    """Datasets → runs → logged model → registered version, asked from each end, then
    exported as OpenLineage events; the same on every backend."""
    c = f"lineage-{uuid.uuid4().hex[:6]}"
    with (
        FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker,
        tracker.run(c, "heart", "fedavg", "r1", participants=["site-a", "site-b"]) as run,
    ):
        a = run.log_dataset("site-a", "train", TABULAR, schema=SCHEMA, headers=HEADERS)
        b = run.log_dataset("site-b", "train", IMAGE)
        run_id, experiment_id = run.run_id, run.experiment_id
    client = MlflowClient(shared_server.url)
    logged = client.create_logged_model(experiment_id, name="global_model", source_run_id=run_id)
    name = f"synergos-{c}"
    client.create_registered_model(name)
    version = client.create_model_version(
        name, source=f"models:/{logged.model_id}", run_id=run_id, model_id=logged.model_id
    )

    path = "/".join(quote(x, safe="") for x in (c, "heart", "fedavg", "r1"))
    answer = requests.get(f"{shared_server.url}{API}/lineage/runs/{path}", timeout=60)
    assert answer.status_code == 200, answer.text
    lineage = answer.json()
    assert {(d["participant"], d["digest"]) for d in lineage["datasets"]} == {
        ("site-a", a), ("site-b", b)
    }  # fmt: skip
    assert [m["model_id"] for m in lineage["models"]] == [logged.model_id]
    assert [(v["name"], v["version"]) for v in lineage["model_versions"]] == [
        (name, str(version.version))
    ]  # fmt: skip
    edges = {tuple(e) for e in lineage["edges"]}
    assert (f"run:{run_id}", f"model:{logged.model_id}") in edges
    assert (f"model:{logged.model_id}", f"model_version:{name}/{version.version}") in edges

    # "Which data trained model version 1?"
    trained = requests.get(
        f"{shared_server.url}{API}/lineage/models/{quote(name, safe='')}/{version.version}",
        timeout=60,
    ).json()
    assert trained["model_version"]["model_id"] == logged.model_id
    assert trained["run"]["run"] == "r1"
    assert {d["digest"] for d in trained["datasets"]} == {a, b}
    unknown = requests.get(f"{shared_server.url}{API}/lineage/models/{name}/99", timeout=60)
    assert unknown.status_code == 404 and "no version 99" in unknown.json()["error"]["message"]

    # "Which models did site-a's data reach?"
    reached = requests.get(
        f"{shared_server.url}{API}/lineage/datasets/{quote(c)}/site-a/{a}", timeout=60
    ).json()
    assert [r["run"] for r in reached["runs"]] == ["r1"]
    assert [v["uri"] for v in reached["model_versions"]] == [f"models:/{name}/{version.version}"]

    paths = requests.get(f"{shared_server.url}{API}/openapi.json", timeout=60).json()["paths"]
    for route in ("/lineage/runs/{collaboration}/{project}/{experiment}/{run}",
                  "/lineage/models/{name}/{version}",
                  "/lineage/datasets/{collaboration}/{participant}/{digest}",
                  "/catalogue", "/catalogue/{collaboration}/{participant}/{digest}"):  # fmt: skip
        assert API + route in paths

    # OpenLineage export: every job run (the federated run's and each participant's) has
    # its START, then its COMPLETE, under one run id.
    output = tmp_path / "lineage.jsonl"
    result = subprocess.run(
        [*SYNMLOPS, "lineage", "export", c, "heart", "fedavg", "r1", "-o", str(output),
         "--tracking-uri", shared_server.url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in output.read_text().splitlines()]
    assert [e["eventType"] for e in events] == ["START"] * 3 + ["COMPLETE"] * 3
    by_run: dict[str, list[str]] = {}
    for event in events:
        by_run.setdefault(event["run"]["runId"], []).append(event["eventType"])
    assert list(by_run.values()) == [["START", "COMPLETE"]] * 3
    complete = events[-1]
    assert complete["run"]["runId"] == str(uuid.UUID(run_id))
    assert (complete["job"]["namespace"], complete["job"]["name"]) == (
        f"synergos://{c}", "heart/fedavg"
    )  # fmt: skip
    assert {o["name"] for o in complete["outputs"]} == {
        f"models:/{logged.model_id}", f"models:/{name}/{version.version}"
    }  # fmt: skip
    site_a = next(i for i in complete["inputs"] if i["name"] == f"heart/site-a/train@{a}")
    assert [f["name"] for f in site_a["facets"]["schema"]["fields"]] == HEADERS
    child = events[1]
    assert child["job"]["name"] == "heart/fedavg/site-a"
    assert child["run"]["facets"]["parent"]["run"]["runId"] == str(uuid.UUID(run_id))
    assert [i["name"] for i in child["inputs"]] == [f"heart/site-a/train@{a}"]

    refused = subprocess.run(
        [*SYNMLOPS, "lineage", "export", c, "heart", "fedavg", "nope", "-o", str(output),
         "--tracking-uri", shared_server.url],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert refused.returncode == 1 and "run 'nope' not found" in refused.stderr


def lineage_of(statuses: dict[str, str]) -> dict[str, Any]:
    """A run's lineage as the API answers it, with participants in the given states."""
    run_id = uuid.uuid4().hex
    return {
        "run": {"collaboration": "c", "project": "p", "experiment": "e", "run": "r",
                "mlflow_run_id": run_id, "status": "FAILED",
                "start_time": "2026-01-01T00:00:00Z", "end_time": "2026-01-01T01:00:00Z"},
        "participants": [
            {"id": name, "mlflow_run_id": uuid.uuid4().hex, "status": status,
             "start_time": "2026-01-01T00:00:01Z",
             "end_time": None if status == "RUNNING" else "2026-01-01T00:59:00Z"}
            for name, status in statuses.items()
        ],
        "datasets": [], "models": [], "model_versions": [],
    }  # fmt: skip


def test_each_participant_run_is_exported_as_start_then_its_end_with_one_run_id() -> None:
    """OpenLineage pairs a job run's START with its COMPLETE (FAIL, ABORT) by run id; a
    participant that failed ends in FAIL, one still running has only its START."""
    from openlineage.client.serde import Serde

    from synergos_mlops.lineage import openlineage_events

    lineage = lineage_of({"a": "FINISHED", "b": "FAILED", "c": "KILLED", "d": "RUNNING"})
    events = [json.loads(Serde.to_json(e)) for e in openlineage_events(lineage)]
    by_job: dict[str, list[tuple[str, str]]] = {}
    for event in events:
        by_job.setdefault(event["job"]["name"], []).append(
            (event["eventType"], event["run"]["runId"])
        )
    states = {job: [state for state, _ in seen] for job, seen in by_job.items()}
    assert states == {
        "p/e": ["START", "FAIL"],
        "p/e/a": ["START", "COMPLETE"],
        "p/e/b": ["START", "FAIL"],
        "p/e/c": ["START", "ABORT"],
        "p/e/d": ["START"],
    }
    for seen in by_job.values():
        assert len({run for _, run in seen}) == 1  # one run id per job run
    kinds = [e["eventType"] for e in events]
    assert kinds.index("COMPLETE") > max(i for i, k in enumerate(kinds) if k == "START")
    assert events[0]["job"]["name"] == "p/e" and events[-1]["job"]["name"] == "p/e"
