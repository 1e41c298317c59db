"""serve --auth with two hospitals' accounts, each bound to its own participant of one
federated run: on every route MLflow serves and on the Synergos lineage, hospital A's account
sees the global run and its own participant, and never hospital B's run id, model, model
weights, dataset names or digests. Every route MLflow's app serves is classified (allowed,
filtered or refused for bound accounts); one that is not fails here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import quote

import pytest
import requests
from auth_support import ADMIN, bind, create_accounts
from conftest import Server, start_server
from mlflow import MlflowClient
from mlflow.entities import LoggedModelOutput, LoggedModelStatus
from mlflow.exceptions import MlflowException
from test_catalog import IMAGE, TABULAR
from tracking_support import fast_config

from synergos_mlops import FederatedTracker
from synergos_mlops.server.auth import REFUSED, classify, route_class

HOSPITAL_A = ("hospital-a-owner", "hospital-a-password-1")  # bound to hospital-a
HOSPITAL_B = ("hospital-b-owner", "hospital-b-password-1")  # bound to hospital-b
API = "/api/synergos/v1"
PREFIXES = ("/api", "/ajax-api")
#: MLflow serves this one under /api without the slash after the version (and its basic-auth
#: then lets only admins through: no permission check of its own knows the path).
_ODD_PATHS = {
    "/api/2.0/mlflow/experiments/search-datasets": "/api/2.0mlflow/experiments/search-datasets"
}


@dataclass
class Federation:
    """What was logged: the global run and each hospital's run, model, weights, dataset."""

    server: Server
    experiment_id: str
    parent: str
    runs: dict[str, str] = field(default_factory=dict)  # participant -> MLflow run id
    models: dict[str, str] = field(default_factory=dict)  # "global" / participant -> model id
    digests: dict[str, str] = field(default_factory=dict)  # participant -> dataset digest
    traces: dict[str, str] = field(default_factory=dict)  # participant -> trace id

    def secrets(self, participant: str) -> list[str]:
        """Strings that show a participant's data: run id, model id, weights, dataset name
        and digest, trace id."""
        return [
            self.runs[participant], self.models[participant], f"weights of {participant}",
            f"{participant}/train", self.digests[participant], self.traces[participant],
        ]  # fmt: skip


def _log_model(client: MlflowClient, experiment_id: str, run_id: str, owner: str) -> str:
    """A logged model of ``run_id`` holding ``weights of <owner>``, READY, as the run's output."""
    logged = client.create_logged_model(experiment_id, name=f"{owner}-model", source_run_id=run_id)
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "weights.bin").write_bytes(f"weights of {owner}".encode() * 8)
        client.log_model_artifacts(logged.model_id, folder)
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    return logged.model_id


def _log_trace(client: MlflowClient, experiment_id: str, run_id: str, owner: str) -> str:
    span = client.start_trace(f"{owner}-inference", experiment_id=experiment_id,
                              inputs={"who": owner})  # fmt: skip
    client.end_trace(span.trace_id, outputs={"score": 0.5})
    client.link_traces_to_run([span.trace_id], run_id)
    return str(span.trace_id)


def start_federation(root: Path) -> Federation:
    """A real `serve --auth`; one federated run of hospital-a and hospital-b logged through
    the tracker (datasets, local model files), a logged model and a trace on each run, the
    global and local models registered; both hospitals' accounts bound and granted READ on
    the registered models (MLflow's own permissions)."""
    store = root / "store"
    server = start_server(store, extra=["--auth"], timeout=300,
                          env={"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1]})  # fmt: skip
    credentials = {
        "MLFLOW_TRACKING_USERNAME": ADMIN[0],
        "MLFLOW_TRACKING_PASSWORD": ADMIN[1],
        "MLFLOW_ENABLE_ASYNC_TRACE_LOGGING": "false",
        "MLFLOW_TRACKING_URI": server.url,
    }  # fmt: skip  (where tracing sends traces)
    try:
        with (
            mock.patch.dict(os.environ, credentials),
            FederatedTracker(server.url, fast_config(root)) as tracker,
            tracker.run(
                "hospitals", "heart", "fedavg", "r1", participants=["hospital-a", "hospital-b"]
            ) as run,  # fmt: skip
        ):
            logged = Federation(server, run.experiment_id, run.run_id)
            run.log_metrics({"train/loss": 0.5}, step=0)
            for participant, summary in (("hospital-a", TABULAR), ("hospital-b", IMAGE)):
                logged.runs[participant] = run.participant_run_id(participant)
                logged.digests[participant] = run.log_dataset(participant, "train", summary)
                run.log_metrics({"train/loss": 0.4}, step=0, participant=participant)
                weights = f"weights of {participant}".encode() * 8
                run.log_model(weights, participant=participant, name="local.pt")
            run.log_model(b"weights of the federation" * 8, name="global.pt")
        with mock.patch.dict(os.environ, credentials):
            client = MlflowClient(server.url)
            sources = {"global": logged.parent, **logged.runs}
            for owner, run_id in sources.items():
                logged.models[owner] = _log_model(client, logged.experiment_id, run_id, owner)
                logged.traces[owner] = _log_trace(client, logged.experiment_id, run_id, owner)
            for name, owners in (("federated-global", ["global"]),
                                 ("hospital-models", ["hospital-a", "hospital-b"]),
                                 ("hospital-b-only", ["hospital-b"])):  # fmt: skip
                client.create_registered_model(name)
                for owner in owners:
                    model_id = logged.models[owner]
                    client.create_model_version(
                        name, source=f"models:/{model_id}", run_id=sources[owner],
                        model_id=model_id,
                    )  # fmt: skip
        create_accounts(server.url, HOSPITAL_A, HOSPITAL_B)
        bind(store, HOSPITAL_A[0], "hospitals", "hospital-a")
        bind(store, HOSPITAL_B[0], "hospitals", "hospital-b")
        # The operator shares the registry with both hospitals (MLflow's own permissions).
        for account in (HOSPITAL_A, HOSPITAL_B):
            for name in ("federated-global", "hospital-models", "hospital-b-only"):
                grant = {"username": account[0], "resource_type": "registered_model",
                         "resource_id": name, "permission": "READ"}  # fmt: skip
                granted = requests.post(f"{server.url}/api/3.0/mlflow/users/permissions/grant",
                                        json=grant, auth=ADMIN, timeout=60)  # fmt: skip
                assert granted.status_code == 200, granted.text
    except BaseException:
        server.stop()
        raise
    return logged


@pytest.fixture(scope="module")
def federation(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    logged = start_federation(tmp_path_factory.mktemp("privacy"))
    try:
        yield logged
    finally:
        logged.server.stop()


def call(
    fed: Federation, method: str, path: str, account: tuple[str, str], *,
    params: dict[str, Any] | None = None, body: dict[str, Any] | None = None,
) -> requests.Response:  # fmt: skip
    return requests.request(method, f"{fed.server.url}{path}", params=params, json=body,
                            auth=account, timeout=60)  # fmt: skip


def assert_hides(response: requests.Response, fed: Federation, other: str, where: str) -> None:
    """No secret of ``other`` in the answer, but those the request named itself (a 404 may
    repeat the id it was asked for)."""
    from urllib.parse import unquote

    text = response.content.decode("utf-8", "replace")
    body = response.request.body or b""
    asked = unquote(str(response.request.url)) + (
        body.decode("utf-8", "replace") if isinstance(body, bytes) else str(body)
    )
    leaked = [s for s in fed.secrets(other) if s in text and s not in asked]
    assert not leaked, f"{where} answered {response.status_code} showing {leaked}: {text[:300]}"


def _routes_table(fed: Federation, me: str, other: str) -> list[tuple[Any, ...]]:
    """(method, path under the prefix, params, body, what must show for ``me`` or None)."""
    e, mine, theirs = fed.experiment_id, fed.models[me], fed.models[other]
    exp_ids = {"experiment_ids": [e]}
    return [
        ("GET", "/2.0/mlflow/registered-models/search", None, None, "federated-global"),
        # Its latest version is the other hospital's: left out.
        ("GET", "/2.0/mlflow/registered-models/get", {"name": "hospital-models"}, None,
         "hospital-models"),
        ("GET", "/2.0/mlflow/registered-models/get", {"name": "hospital-b-only"}, None, None),
        ("POST", "/2.0/mlflow/registered-models/get-latest-versions", None,
         {"name": "hospital-models"}, None),
        ("GET", "/2.0/mlflow/model-versions/search", None, None, fed.runs[me]),
        ("GET", "/2.0/mlflow/model-versions/search", {"filter": "name='hospital-models'"}, None,
         mine),
        ("GET", "/2.0/mlflow/model-versions/get", {"name": "hospital-models", "version": "2"},
         None, None),
        ("GET", "/2.0/mlflow/model-versions/get", {"name": "hospital-b-only", "version": "1"},
         None, None),
        ("GET", "/2.0/mlflow/model-versions/get-download-uri",
         {"name": "hospital-models", "version": "2"}, None, None),
        ("POST", "/2.0/mlflow/logged-models/search", None, exp_ids, mine),
        ("GET", f"/2.0/mlflow/logged-models/{theirs}", None, None, None),
        ("GET", f"/2.0/mlflow/logged-models/{theirs}/artifacts/directories", None, None, None),
        ("GET", f"/2.0/mlflow/logged-models/{theirs}/artifacts/files",
         {"artifact_file_path": "weights.bin"}, None, None),
        ("POST", "/2.0/mlflow/experiments/search-datasets", None, exp_ids, f"{me}/train"),
        ("POST", "/2.0/mlflow/runs/search", None, exp_ids, fed.runs[me]),
        ("GET", "/2.0/mlflow/runs/get", {"run_id": fed.parent}, None, fed.models["global"]),
        ("GET", "/2.0/mlflow-artifacts/artifacts", {"path": f"{e}/models"}, None, mine),
        ("GET", f"/2.0/mlflow-artifacts/artifacts/{e}/models/{theirs}/artifacts/weights.bin",
         None, None, None),
        ("GET", f"/2.0/mlflow-artifacts/artifacts/{e}/traces", None, None, None),
        ("GET", "/2.0/mlflow-artifacts/artifacts", {"path": f"{e}/traces"}, None, None),
        ("GET", "/2.0/mlflow/traces", {"experiment_ids": e}, None, None),
        ("GET", f"/2.0/mlflow/traces/{fed.traces[other]}/info", None, None, None),
        ("POST", "/3.0/mlflow/traces/search", None,
         {"locations": [{"type": "MLFLOW_EXPERIMENT", "mlflow_experiment": {"experiment_id": e}}]},
         None),
        ("GET", f"/3.0/mlflow/traces/{fed.traces[other]}", None, None, None),
        ("GET", "/3.0/mlflow/traces/batchGet", {"trace_ids": fed.traces[other]}, None, None),
    ]  # fmt: skip


def test_a_hospital_sees_no_other_hospitals_models_datasets_or_traces_on_mlflow_routes(
    federation: Federation,
) -> None:
    fed = federation
    for me, other, account in (("hospital-a", "hospital-b", HOSPITAL_A),
                               ("hospital-b", "hospital-a", HOSPITAL_B)):  # fmt: skip
        for method, path, params, body, shows in _routes_table(fed, me, other):
            for prefix in PREFIXES:
                full = _ODD_PATHS.get(prefix + path, prefix + path)
                where = f"{method} {full} {params or body or ''}"
                response = call(fed, method, full, account, params=params, body=body)
                assert response.status_code in (200, 403, 404), (where, response.text[:300])
                assert_hides(response, fed, other, where)
                if full in _ODD_PATHS.values():
                    assert response.status_code == 403, where
                elif shows is not None:
                    assert response.status_code == 200, (where, response.text[:300])
                    assert shows in response.text, where
                if response.status_code >= 400 and "json" in response.headers["content-type"]:
                    assert response.json()["error_code"] in (
                        "RESOURCE_DOES_NOT_EXIST", "PERMISSION_DENIED"
                    ), where  # fmt: skip
                # The admin still gets the other hospital's things on the same route.
                if shows is not None and full not in _ODD_PATHS.values():
                    admin = call(fed, method, full, ADMIN, params=params, body=body)
                    assert admin.ok, where
    # Traces are refused to bound accounts with a 403; the admin reads them.
    traces = call(fed, "GET", "/api/2.0/mlflow/traces", HOSPITAL_A,
                  params={"experiment_ids": fed.experiment_id})  # fmt: skip
    assert traces.status_code == 403 and traces.json()["error_code"] == "PERMISSION_DENIED"
    admin = call(fed, "GET", "/api/2.0/mlflow/traces", ADMIN,
                 params={"experiment_ids": fed.experiment_id})  # fmt: skip
    assert admin.ok and fed.traces["hospital-b"] in admin.text


def test_a_hospital_downloads_only_its_own_and_the_global_model_weights(
    federation: Federation,
) -> None:
    fed = federation
    e = fed.experiment_id
    weights = {
        owner: [
            (
                "/model-versions/get-artifact",
                {"name": name, "version": version, "path": "weights.bin"},
            ),
            (
                f"/ajax-api/2.0/mlflow/logged-models/{fed.models[owner]}/artifacts/files",
                {"artifact_file_path": "weights.bin"},
            ),
            (
                f"/api/2.0/mlflow-artifacts/artifacts/{e}/models/{fed.models[owner]}/artifacts/"
                "weights.bin",
                None,
            ),
            (
                f"/ajax-api/2.0/mlflow-artifacts/artifacts/{e}/models/{fed.models[owner]}/"
                "artifacts/weights.bin",
                None,
            ),
        ]  # fmt: skip
        for owner, name, version in (
            ("global", "federated-global", "1"),
            ("hospital-a", "hospital-models", "1"),
            ("hospital-b", "hospital-models", "2"),
        )  # fmt: skip
    }
    for owner, routes in weights.items():
        for path, params in routes:
            got = call(fed, "GET", path, HOSPITAL_A, params=params)
            if owner == "hospital-b":
                assert got.status_code == 404, (path, got.status_code)
                assert_hides(got, fed, "hospital-b", path)
            else:
                assert got.status_code == 200, (path, got.text[:200])
                assert got.content.startswith(f"weights of {owner}".encode()), path
            assert call(fed, "GET", path, ADMIN, params=params).ok, path
    b_only = {"name": "hospital-b-only", "version": "1", "path": "weights.bin"}
    refused = call(fed, "GET", "/model-versions/get-artifact", HOSPITAL_A, params=b_only)
    assert refused.status_code == 404
    # Hospital B, symmetrically, gets its own but not A's.
    mine = call(fed, "GET", "/model-versions/get-artifact", HOSPITAL_B, params=b_only)
    assert mine.ok and mine.content.startswith(b"weights of hospital-b")
    a_version = {"name": "hospital-models", "version": "1", "path": "weights.bin"}
    assert call(fed, "GET", "/model-versions/get-artifact", HOSPITAL_B,
                params=a_version).status_code == 404  # fmt: skip


def test_a_hospital_reads_the_registry_and_logged_models_through_the_mlflow_client(
    federation: Federation,
) -> None:
    fed = federation
    mine, theirs = fed.models["hospital-a"], fed.models["hospital-b"]
    env = {"MLFLOW_TRACKING_USERNAME": HOSPITAL_A[0], "MLFLOW_TRACKING_PASSWORD": HOSPITAL_A[1]}
    with mock.patch.dict(os.environ, env):
        client = MlflowClient(fed.server.url)
        names = {m.name for m in client.search_registered_models()}
        assert names == {"federated-global", "hospital-models"}
        shared = client.get_registered_model("hospital-models")
        assert [v.version for v in shared.latest_versions] in ([], ["1"])
        versions = client.search_model_versions("name='hospital-models'")
        assert [(v.version, v.run_id) for v in versions] == [("1", fed.runs["hospital-a"])]
        assert client.get_model_version("federated-global", "1").run_id == fed.parent
        for name, version in (("hospital-models", "2"), ("hospital-b-only", "1")):
            with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found"):
                client.get_model_version(name, version)
        with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found"):
            client.get_registered_model("hospital-b-only")
        models = client.search_logged_models(experiment_ids=[fed.experiment_id])
        assert {m.model_id for m in models} == {mine, fed.models["global"]}
        assert client.get_logged_model(mine).source_run_id == fed.runs["hospital-a"]
        with pytest.raises(MlflowException, match="RESOURCE_DOES_NOT_EXIST|not found"):
            client.get_logged_model(theirs)
        with tempfile.TemporaryDirectory() as folder:
            got = client.download_artifacts(fed.runs["hospital-a"], "models/local", folder)
            assert (Path(got) / "local.pt").read_bytes().startswith(b"weights of hospital-a")
            with pytest.raises(MlflowException):
                client.download_artifacts(fed.runs["hospital-b"], "models/local", folder)
    with mock.patch.dict(os.environ, {"MLFLOW_TRACKING_USERNAME": ADMIN[0],
                                      "MLFLOW_TRACKING_PASSWORD": ADMIN[1]}):  # fmt: skip
        admin = MlflowClient(fed.server.url)
        assert len(admin.search_model_versions("name='hospital-models'")) == 2
        assert len(admin.search_logged_models(experiment_ids=[fed.experiment_id])) == 3


def test_a_hospital_sees_no_other_hospitals_datasets_or_models_in_graphql(
    federation: Federation,
) -> None:
    fed = federation
    queries = [
        "mutation($e: [String]) { mlflowSearchDatasets(input: {experimentIds: $e}) "
        "{ datasetSummaries { experimentId name digest context } } }",
        "query { mlflowSearchModelVersions(input: {filter: \"name='hospital-models'\"}) "
        "{ modelVersions { name version runId source } } }",
        "query { mlflowSearchModelVersions(input: {}) { modelVersions { name version runId } } }",
        "query($r: String) { mlflowGetRun(input: {runId: $r}) { run { info { runUuid } "
        "outputs { modelOutputs { modelId } } modelVersions { name version runId } } } }",
    ]
    for query in queries:
        variables = {"e": [fed.experiment_id], "r": fed.parent}
        answer = call(fed, "POST", "/graphql", HOSPITAL_A,
                      body={"query": query, "variables": variables})  # fmt: skip
        assert answer.ok, answer.text
        assert_hides(answer, fed, "hospital-b", query)
        admin = call(fed, "POST", "/graphql", ADMIN, body={"query": query, "variables": variables})
        assert admin.ok, admin.text
    datasets = call(fed, "POST", "/graphql", HOSPITAL_A, body={
        "query": queries[0], "variables": {"e": [fed.experiment_id]}
    }).json()["data"]["mlflowSearchDatasets"]["datasetSummaries"]  # fmt: skip
    assert [d["name"] for d in datasets] == ["hospital-a/train"]
    assert datasets[0]["digest"] == fed.digests["hospital-a"]


def test_a_hospital_asks_the_lineage_of_only_its_own_and_the_global_model_versions(
    federation: Federation,
) -> None:
    fed = federation

    def lineage(name: str, version: int) -> requests.Response:
        return call(fed, "GET", f"{API}/lineage/models/{quote(name)}/{version}", HOSPITAL_A)

    hidden = [lineage("hospital-models", 2), lineage("hospital-b-only", 1)]
    for response in hidden:
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "NOT_FOUND"
        assert_hides(response, fed, "hospital-b", "lineage")
    for name, version, run_id in (("federated-global", 1, fed.parent),
                                  ("hospital-models", 1, fed.runs["hospital-a"])):  # fmt: skip
        shown = lineage(name, version)
        assert shown.status_code == 200, shown.text
        assert shown.json()["model_version"]["run_id"] == run_id
        assert_hides(shown, fed, "hospital-b", f"lineage of {name}")
    run = call(fed, "GET", f"{API}/lineage/runs/hospitals/heart/fedavg/r1", HOSPITAL_A)
    assert_hides(run, fed, "hospital-b", "run lineage")
    assert {(v["name"], v["version"]) for v in run.json()["model_versions"]} == {
        ("federated-global", "1"), ("hospital-models", "1")
    }  # fmt: skip
    admin = call(fed, "GET", f"{API}/lineage/models/hospital-models/2", ADMIN)
    assert admin.ok and admin.json()["model_version"]["run_id"] == fed.runs["hospital-b"]


# --- every route MLflow serves ----------------------------------------------------------

_LIST_MLFLOW_ROUTES = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import mlflow.server.fastapi_app
from mlflow.server import app as flask_app
from mlflow.server import auth as mlflow_auth
from synergos_mlops.server.auth import mlflow_routes
json.dump(mlflow_routes(flask_app, mlflow_auth.create_app(flask_app)), sys.stdout)
"""


def _mlflow_routes(fed: Federation) -> list[tuple[str, str]]:
    store = fed.server.store
    env = {
        **os.environ,
        "_MLFLOW_SGI_NAME": "uvicorn",
        "MLFLOW_AUTH_CONFIG_PATH": str(store / "basic_auth.ini"),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "routes",
        "_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED": "true",
        "_MLFLOW_SERVER_FILE_STORE": f"sqlite:///{store / 'mlflow.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
    }
    listed = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _LIST_MLFLOW_ROUTES],
        capture_output=True, text=True, env=env, timeout=240,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-3000:]
    return sorted({(m, r) for m, r in json.loads(listed.stdout)})


def _filled(fed: Federation, rule: str) -> str:
    """A route's path with the other hospital's ids in its parameters."""
    import re

    b_run, b_model = fed.runs["hospital-b"], fed.models["hospital-b"]
    values = {
        "model_id": b_model, "request_id": fed.traces["hospital-b"],
        "trace_id": fed.traces["hospital-b"],
        "artifact_path": f"{fed.experiment_id}/{b_run}/artifacts/models/local/local.pt",
        "path": f"{fed.experiment_id}/models/{b_model}/artifacts/weights.bin",
    }  # fmt: skip

    def value(match: re.Match[str]) -> str:
        return values.get(match.group(1), "x")

    rule = re.sub(r"<(?:\w+(?:\([^)]*\))?:)?(\w+)>", value, rule)
    return re.sub(r"\{(\w+)(?::\w+)?\}", value, rule)


@pytest.mark.timeout(1800)  # some 500 requests, each with a password check
def test_every_route_mlflow_serves_is_classified_and_none_shows_another_hospital(
    federation: Federation,
) -> None:
    fed = federation
    routes = _mlflow_routes(fed)
    assert len(routes) > 250
    unclassified = [f"{m} {r}" for m, r in routes if classify(m, r) is None]
    assert not unclassified, f"classify these routes for bound accounts: {unclassified}"
    # Both halves of the app are there, and each API version and alias.
    rules = {r for _, r in routes}
    for expected in ("/api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}",
                     "/ajax-api/2.0/mlflow/logged-models/<model_id>/artifacts/files",
                     "/api/3.0/mlflow/traces/search", "/model-versions/get-artifact",
                     "/api/2.0mlflow/experiments/search-datasets", "/graphql"):  # fmt: skip
        assert expected in rules
    # A route a later MLflow adds is refused to bound accounts until it is classified.
    assert route_class("GET", "/api/2.0/mlflow/runs/new-way-to-read") == (
        REFUSED, "a route not yet classified for them"
    )  # fmt: skip
    # Every route, asked by hospital A with hospital B's ids wherever it takes an id.
    b_ids = {"run_id": fed.runs["hospital-b"], "run_uuid": fed.runs["hospital-b"],
             "name": "hospital-b-only", "version": "1", "model_id": fed.models["hospital-b"],
             "path": f"{fed.experiment_id}/{fed.runs['hospital-b']}",
             "artifact_file_path": "weights.bin", "trace_id": fed.traces["hospital-b"],
             "experiment_ids": [fed.experiment_id]}  # fmt: skip
    statuses: dict[str, int] = {}
    for method, rule in routes:
        if rule.startswith(("/static-files/", "/build/")):
            continue
        path = _filled(fed, rule)
        query = {k: v for k, v in b_ids.items() if k != "experiment_ids"}
        response = requests.request(
            method, f"{fed.server.url}{path}", auth=HOSPITAL_A, timeout=60,
            params=query if method == "GET" else None,
            json=b_ids if method != "GET" else None,
        )  # fmt: skip
        assert_hides(response, fed, "hospital-b", f"{method} {rule}")
        statuses[f"{method} {rule}"] = response.status_code
    refused = [r for r, code in statuses.items() if code == 403]
    assert len(refused) > 150
    for asked in ("GET /api/2.0/mlflow/runs/get", "GET /ajax-api/2.0/mlflow/runs/get",
                  "GET /model-versions/get-artifact",
                  "GET /api/2.0/mlflow/logged-models/<model_id>/artifacts/directories",
                  "GET /api/2.0/mlflow-artifacts/artifacts/{artifact_path:path}"):  # fmt: skip
        assert statuses[asked] == 404, asked
    assert statuses["GET /version"] == 200


def test_a_hospital_cannot_put_params_or_tags_on_another_hospitals_run(
    federation: Federation,
) -> None:
    other = federation.runs["hospital-b"]
    items = [{"run_id": other, "kind": "param", "key": "planted", "value": "x"},
             {"run_id": other, "kind": "tag", "key": "planted", "value": "x"}]  # fmt: skip
    answer = call(federation, "POST", "/api/synergos/v1/runs/data", HOSPITAL_A,
                  body={"items": items})  # fmt: skip
    assert answer.status_code == 404, answer.text
    assert_hides(answer, federation, "hospital-b", "runs/data")
    own = [{"run_id": federation.runs["hospital-a"], "kind": "param", "key": "planted",
            "value": "x"}]  # fmt: skip
    mine = call(federation, "POST", "/api/synergos/v1/runs/data", HOSPITAL_A,
                body={"items": own})  # fmt: skip
    assert mine.status_code == 403, mine.text  # a bound account reads; it writes nothing
    for run_id in (other, federation.runs["hospital-a"]):
        data = call(federation, "GET", "/api/2.0/mlflow/runs/get", ADMIN,
                    params={"run_id": run_id}).json()["run"]["data"]  # fmt: skip
        assert "planted" not in {p["key"] for p in data.get("params", [])}
        assert "planted" not in {t["key"] for t in data.get("tags", [])}
