"""serve --auth: every route but /health needs an account; MLflow's per-experiment
permissions hold in the Synergos API; participant-bound accounts see the global run and their
own participant's, and nothing of the others', on every route that can show a run."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from unittest import mock

import pytest
import requests
from auth_support import ADMIN, ALICE, bind, create_accounts
from click.testing import CliRunner
from conftest import SYNMLOPS, Server, free_port, start_server
from federated_data import LoggedRun, log_federated_run

# ALICE is bound to worker-1 of collab-a
CAROL = ("carol", "carol-password-123")  # no binding, no permission
TRACKER = ("tracker", "tracker-password-123")  # no binding, creates its own experiments
API = "/api/synergos/v1"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, LoggedRun]]:
    store = tmp_path_factory.mktemp("auth") / "store"
    server = start_server(
        store, extra=["--auth"], env={"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1]}, timeout=300
    )
    try:
        credentials = {"MLFLOW_TRACKING_USERNAME": ADMIN[0], "MLFLOW_TRACKING_PASSWORD": ADMIN[1]}
        with mock.patch.dict(os.environ, credentials):
            logged = log_federated_run(
                server.url, participants=["worker-1", "worker-2", "worker-3"], rounds=3
            )
        create_accounts(server.url, ALICE, CAROL, TRACKER)
        bound = bind(store, ALICE[0], "collab-a", "worker-1")
        assert f"READ granted on experiments {logged.experiment_id}" in bound
        yield server, logged
    finally:
        server.stop()


def get(
    server: Server, path: str, auth: tuple[str, str] | None, **kwargs: object
) -> requests.Response:
    return requests.get(f"{server.url}{path}", auth=auth, timeout=60, **kwargs)  # type: ignore[arg-type]


def post(
    server: Server, path: str, auth: tuple[str, str] | None, body: object
) -> requests.Response:
    return requests.post(f"{server.url}{path}", auth=auth, json=body, timeout=60)


# --- every route ------------------------------------------------------------------------

_LIST_ROUTES = r"""
import json, re, sys
from starlette.routing import Mount
from synergos_mlops.server.app import create_app
app = create_app()
found = []
def fill_fastapi(path):
    return re.sub(r"\{[^}]+\}", "x", path)
def fill_flask(rule):
    return re.sub(r"<(?:(\w+)(?:\([^)]*\))?:)?(\w+)>",
                  lambda m: "1" if m.group(1) in ("int", "float") else "x", rule)
def walk(routes):
    for route in routes:
        if isinstance(route, Mount):
            continue  # MLflow's Flask app: its url_map below
        if hasattr(route, "effective_route_contexts"):  # an included router
            for context in route.effective_route_contexts():
                methods = getattr(context.original_route, "methods", None) or ["GET"]
                for method in sorted(set(methods) - {"HEAD", "OPTIONS"}):
                    found.append([method, fill_fastapi(context.path)])
            continue
        for method in sorted(set(getattr(route, "methods", None) or ["GET"]) - {"HEAD", "OPTIONS"}):
            found.append([method, fill_fastapi(route.path)])
walk(app.routes)
from mlflow.server import app as flask_app
for rule in flask_app.url_map.iter_rules():
    for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
        found.append([method, fill_flask(rule.rule)])
json.dump(found, sys.stdout)
"""

#: MLflow's own open routes: its UI's static assets (/static, /static-files), favicon and
#: server-info (capabilities, no data); MLflow's basic-auth leaves them open on purpose.
_MLFLOW_OPEN = re.compile(
    r"^/(static/|static-files/|favicon\.ico$|(ajax-)?api/\d\.\d/mlflow/server-info$)"
)


def _served_routes(server: Server) -> list[tuple[str, str]]:
    env = {
        **os.environ,
        "_SYNMLOPS_AUTH_APP": "1",
        "_MLFLOW_SGI_NAME": "uvicorn",
        "MLFLOW_AUTH_CONFIG_PATH": str(server.store / "basic_auth.ini"),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "routes",
        "_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED": "true",
        "_MLFLOW_SERVER_FILE_STORE": f"sqlite:///{server.store / 'mlflow.db'}",
        "MLFLOW_TRACKING_URI": f"sqlite:///{server.store / 'mlflow.db'}",
    }
    listed = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", _LIST_ROUTES],
        capture_output=True, text=True, env=env, timeout=240,
    )  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-3000:]
    return sorted({(m, p) for m, p in json.loads(listed.stdout)})


def test_every_route_but_health_answers_401_without_credentials(
    served: tuple[Server, LoggedRun],
) -> None:
    server, _ = served
    routes = _served_routes(server)
    paths = {p for _, p in routes}
    assert f"{API}/collaborations" in paths and "/synergos/" in paths
    assert "/api/2.0/mlflow/runs/search" in paths and "/graphql" in paths
    assert any(p.startswith("/api/2.0/mlflow-artifacts/artifacts/") for p in paths)
    open_, answered = [], {}
    for method, path in routes:
        if path == "/health" or _MLFLOW_OPEN.match(path):
            open_.append(path)
            continue
        response = requests.request(
            method, f"{server.url}{path}", json={} if method != "GET" else None, timeout=60
        )
        answered[f"{method} {path}"] = response.status_code
    assert "/health" in open_
    unprotected = {route: code for route, code in answered.items() if code != 401}
    assert not unprotected, f"answered without credentials: {unprotected}"
    assert len(answered) > 100
    # Wrong passwords are refused as well, on both halves of the app.
    for path in (f"{API}/collaborations", "/api/2.0/mlflow/experiments/search", "/synergos/"):
        assert get(server, path, (ALICE[0], "wrong")).status_code == 401
    assert get(server, "/health", None).status_code == 200


def test_unauthenticated_answer_is_the_api_error_shape_with_a_basic_challenge(
    served: tuple[Server, LoggedRun],
) -> None:
    server, logged = served
    response = get(server, f"{API}/runs/{logged.path}/bundle.zip", None)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"
    assert get(server, "/synergos/static/js/main.js", None).status_code == 401
    assert get(server, "/synergos/static/js/main.js", ALICE).status_code == 200


def test_verified_passwords_are_cached_but_a_wrong_or_changed_one_never_passes(
    served: tuple[Server, LoggedRun],
) -> None:
    server, _ = served
    written = (server.store / "basic_auth.ini").read_text()
    assert "auth_cache_ttl_seconds = 30" in written
    dave = ("dave", "dave-password-123")
    create_accounts(server.url, dave)
    for _ in range(4):  # both workers have verified and cached dave's password
        assert get(server, "/api/2.0/mlflow/experiments/search?max_results=1", dave).ok
    for wrong in ("dave-password-124", "", "dave-password-123 ", "DAVE-PASSWORD-123"):
        refused = get(server, "/api/2.0/mlflow/experiments/search?max_results=1", ("dave", wrong))
        assert refused.status_code == 401, wrong
    assert get(server, f"{API}/collaborations", ("nobody", dave[1])).status_code == 401
    # A new password is checked against the store, never answered from the cache.
    changed = requests.patch(
        f"{server.url}/api/2.0/mlflow/users/update-password",
        json={"username": "dave", "password": "dave-new-password-456"}, auth=ADMIN, timeout=60,
    )  # fmt: skip
    assert changed.status_code == 200, changed.text
    for _ in range(4):
        assert get(server, f"{API}/collaborations", ("dave", "dave-new-password-456")).ok


# --- per-experiment permissions in the Synergos API --------------------------------------


def test_account_without_read_sees_nothing_of_the_experiment(
    served: tuple[Server, LoggedRun],
) -> None:
    server, logged = served
    assert get(server, f"{API}/collaborations", CAROL).json() == {"collaborations": []}
    run = f"{API}/runs/{logged.path}"
    for path in (run, f"{run}/metrics", f"{run}/bundle.zip",
                 f"{run}/participants/worker-1/bundle.zip",
                 f"{run}/artifacts/models/global/global_model.pt"):  # fmt: skip
        response = get(server, path, CAROL)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "NOT_FOUND"
    # The admin sees it; so does an account granted READ through MLflow's permission API.
    assert get(server, f"{API}/collaborations", ADMIN).json()["collaborations"]
    grant = {"username": CAROL[0], "resource_type": "experiment",
             "resource_id": logged.experiment_id, "permission": "READ"}  # fmt: skip
    granted = post(server, "/api/3.0/mlflow/users/permissions/grant", ADMIN, grant)
    assert granted.status_code == 200, granted.text
    try:
        assert get(server, f"{API}/runs/{logged.path}", CAROL).status_code == 200
        body = get(server, f"{API}/runs/{logged.path}", CAROL).json()
        assert [p["id"] for p in body["participants"]] == ["worker-1", "worker-2", "worker-3"]
    finally:
        del grant["permission"]
        revoked = post(server, "/api/3.0/mlflow/users/permissions/revoke", ADMIN, grant)
        assert revoked.status_code == 200, revoked.text
    assert get(server, f"{API}/runs/{logged.path}", CAROL).status_code == 404


def test_tracker_writes_need_edit_and_a_new_experiment_belongs_to_its_creator(
    served: tuple[Server, LoggedRun],
) -> None:
    server, logged = served
    existing = {"collaboration": "collab-a", "project": "project-x", "experiment": "exp-1",
                "run": "run-1", "participants": ["worker-1"]}  # fmt: skip
    refused = post(server, f"{API}/runs/resolve", CAROL, existing)
    assert refused.status_code == 403
    assert post(server, f"{API}/runs/resolve", ALICE, existing).status_code == 403
    assert post(server, f"{API}/runs/resolve", None, existing).status_code == 401
    new = {**existing, "collaboration": "collab-t", "run": "run-t"}
    created = post(server, f"{API}/runs/resolve", TRACKER, new)
    assert created.status_code == 200, created.text
    assert post(server, f"{API}/runs/resolve", TRACKER, new).status_code == 200
    tree = get(server, f"{API}/collaborations", TRACKER).json()["collaborations"]
    assert [c["id"] for c in tree] == ["collab-t"]
    # The tracker itself, with MLflow's credential variables, logs metrics to its run.
    from synergos_mlops.storage.batch import MetricBatch, encode_batch
    from synergos_mlops.tracking._transport import HttpTransport

    batch = MetricBatch()
    batch.append(created.json()["run_id"], "train/loss", 0, 0.5, 1)
    credentials = {"MLFLOW_TRACKING_USERNAME": TRACKER[0], "MLFLOW_TRACKING_PASSWORD": TRACKER[1]}
    with mock.patch.dict(os.environ, credentials):
        transport = HttpTransport(server.url)
        transport.write_metrics(encode_batch(batch))
        transport.close()
    # Another account's experiment: no EDIT, no write.
    other = MetricBatch()
    other.append(logged.parent_run_id, "train/loss", 0, 0.5, 1)
    with mock.patch.dict(os.environ, credentials):
        transport = HttpTransport(server.url)
        with pytest.raises(Exception, match="40[34]"):
            transport.write_metrics(encode_batch(other))
        transport.close()


# --- participant-scoped accounts ---------------------------------------------------------


def test_participant_account_sees_global_and_its_own_participant_in_the_synergos_api(
    served: tuple[Server, LoggedRun],
) -> None:
    server, logged = served
    run = f"{API}/runs/{logged.path}"
    tree = get(server, f"{API}/collaborations", ALICE).json()["collaborations"]
    assert [c["id"] for c in tree] == ["collab-a"]
    [listed] = [
        r for p in tree[0]["projects"] for e in p["experiments"] for r in e["runs"]
        if r["id"] == logged.run
    ]  # fmt: skip
    assert listed["participant_count"] is None  # how many others take part is not shown
    body = get(server, run, ALICE).json()
    assert [p["id"] for p in body["participants"]] == ["worker-1"]
    assert set(body["latest_metrics"]["participants"]) == {"worker-1"}
    assert body["latest_metrics"]["global"]
    assert set(body["artifacts"]["participants"]) == {"worker-1"}
    assert body["hyperparameters"]["algorithm"] == "FedProx"
    series = get(server, f"{run}/metrics", ALICE, params={"keys": "train/loss"}).json()
    line = series["series"]["train/loss"]
    assert line["global"] is not None and set(line["participants"]) == {"worker-1"}
    with zipfile.ZipFile(io.BytesIO(get(server, f"{run}/bundle.zip", ALICE).content)) as zf:
        names = zf.namelist()
        rows = zf.read("metrics.csv").decode().splitlines()[1:]
    # The bundle's data holds the global run's and worker-1's points, no one else's.
    assert {row.split(",", 1)[0] for row in rows} == {"", "worker-1"}
    assert any(n.startswith("global/") for n in names)
    assert {n.split("/")[1] for n in names if n.startswith("participants/")} == {"worker-1"}
    assert get(server, f"{run}/participants/worker-1/bundle.zip", ALICE).status_code == 200
    own = f"{run}/participants/worker-1/artifacts/models/local/local_model.pt"
    assert get(server, own, ALICE).content.startswith(b"local worker-1")
    for other in ("worker-2", "worker-3"):
        for path in (
            f"{run}/participants/{other}/bundle.zip",
            f"{run}/participants/{other}/artifacts/models/local/local_model.pt",
        ):
            response = get(server, path, ALICE)
            assert response.status_code == 404, path
            assert other not in json.dumps(get(server, run, ALICE).json())
    # The admin still sees all three.
    assert len(get(server, run, ADMIN).json()["participants"]) == 3


def _other_runs(logged: LoggedRun) -> list[str]:
    return [logged.participants["worker-2"], logged.participants["worker-3"]]


def test_participant_account_reads_only_its_runs_through_mlflow_rest(
    served: tuple[Server, LoggedRun],
) -> None:
    server, logged = served
    own = logged.participants["worker-1"]
    for run_id in (logged.parent_run_id, own):
        assert get(server, "/api/2.0/mlflow/runs/get", ALICE, params={"run_id": run_id}).ok
        history = get(server, "/api/2.0/mlflow/metrics/get-history", ALICE,
                      params={"run_id": run_id, "metric_key": "train/loss"})  # fmt: skip
        assert history.ok and history.json()["metrics"]
    for run_id in _other_runs(logged):
        for prefix in ("/api/2.0", "/ajax-api/2.0"):
            for path, params in (
                ("/mlflow/runs/get", {"run_id": run_id}),
                ("/mlflow/runs/get", {"run_uuid": run_id}),
                ("/mlflow/metrics/get-history", {"run_id": run_id, "metric_key": "train/loss"}),
                ("/mlflow/artifacts/list", {"run_id": run_id}),
            ):
                response = get(server, prefix + path, ALICE, params=params)
                assert response.status_code == 404, (prefix + path, params)
                assert response.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        bulk = get(server, "/ajax-api/2.0/mlflow/metrics/get-history-bulk-interval", ALICE,
                   params={"run_ids": [own, run_id], "metric_key": "train/loss"})  # fmt: skip
        assert bulk.status_code == 404
        local_model = {"run_id": run_id, "path": "models/local/local_model.pt"}
        artifact = get(server, "/get-artifact", ALICE, params=local_model)
        assert artifact.status_code == 404
        # Writing to another participant's run is refused as well.
        tag = post(server, "/api/2.0/mlflow/runs/set-tag", ALICE,
                   {"run_id": run_id, "key": "k", "value": "v"})  # fmt: skip
        assert tag.status_code in (403, 404)  # MLflow's EDIT check may answer first


def test_participant_account_searches_find_only_its_runs(
    served: tuple[Server, LoggedRun],
) -> None:
    server, logged = served
    visible = {logged.parent_run_id, logged.participants["worker-1"]}
    for prefix in ("/api/2.0", "/ajax-api/2.0"):
        found = post(server, f"{prefix}/mlflow/runs/search", ALICE,
                     {"experiment_ids": [logged.experiment_id]}).json()  # fmt: skip
        assert {r["info"]["run_id"] for r in found["runs"]} == visible
        admin = post(server, f"{prefix}/mlflow/runs/search", ADMIN,
                     {"experiment_ids": [logged.experiment_id]}).json()  # fmt: skip
        assert len(admin["runs"]) == 4
    query = (
        "query($e: [String]) { mlflowSearchRuns(input: {experimentIds: $e}) "
        "{ runs { info { runUuid } data { metrics { key value } } } } }"
    )
    answer = post(
        server, "/graphql", ALICE, {"query": query, "variables": {"e": [logged.experiment_id]}}
    )
    assert answer.ok, answer.text
    runs = answer.json()["data"]["mlflowSearchRuns"]["runs"]
    assert {r["info"]["runUuid"] for r in runs} == visible
    other = logged.participants["worker-2"]
    get_run = 'query { mlflowGetRun(input: {runId: "' + other + '"}) { run { info { runUuid } } } }'
    assert post(server, "/graphql", ALICE, {"query": get_run}).status_code == 404


def test_participant_account_gets_only_its_artifacts_through_the_artifact_proxy(
    served: tuple[Server, LoggedRun],
) -> None:
    server, logged = served
    own = logged.participants["worker-1"]
    base = "/api/2.0/mlflow-artifacts/artifacts"
    file = "artifacts/models/local/local_model.pt"
    mine = get(server, f"{base}/{logged.experiment_id}/{own}/{file}", ALICE)
    assert mine.ok and mine.content.startswith(b"local worker-1")
    for run_id in _other_runs(logged):
        for prefix in ("/api/2.0", "/ajax-api/2.0"):
            path = f"{prefix}/mlflow-artifacts/artifacts/{logged.experiment_id}/{run_id}/{file}"
            assert get(server, path, ALICE).status_code == 404, path
        listing = get(server, base, ALICE, params={"path": f"{logged.experiment_id}/{run_id}"})
        assert listing.status_code == 404
    folders = get(server, base, ALICE, params={"path": logged.experiment_id}).json()
    names = {f["path"] for f in folders.get("files", [])}
    assert own in names and not names & set(_other_runs(logged))


# --- the CLI and start-up ------------------------------------------------------------------


def test_serve_with_auth_refuses_to_start_without_an_admin_password(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_AUTH_ADMIN_PASSWORD"}
    result = subprocess.run(
        [*SYNMLOPS, "serve", "--store", str(tmp_path / "store"), "--auth",
         "--port", str(free_port())],
        capture_output=True, text=True, env=env, timeout=180,
    )  # fmt: skip
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(
        "Error: --auth needs the first admin's password: set MLFLOW_AUTH_ADMIN_PASSWORD"
    )
    assert "Traceback" not in result.stderr


def test_auth_commands_bind_list_and_unbind_accounts(tmp_path: Path) -> None:
    from synergos_mlops.cli import main

    store = str(tmp_path / "store")
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(main, ["auth", *args, "--store", store])
        assert result.exit_code == 0, result.output
        return result.output

    run("add-user", "dora", "--password", "dora-password-123")
    refused = runner.invoke(main, ["auth", "bind", "nobody", "--collaboration", "c",
                                   "--participant", "p", "--store", store])  # fmt: skip
    assert refused.exit_code == 1 and "no account 'nobody'" in refused.output
    run("add-user", "root", "--password", "root-password-123", "--admin")
    refused = runner.invoke(main, ["auth", "bind", "root", "--collaboration", "c",
                                   "--participant", "p", "--store", store])  # fmt: skip
    assert refused.exit_code == 1 and "admin" in refused.output
    run("bind", "dora", "--collaboration", "c1", "--participant", "p1")
    run("bind", "dora", "--collaboration", "c1", "--participant", "p2")
    assert run("list").count("dora") == 2
    assert "removed 1 binding" in run("unbind", "dora", "--participant", "p1")
    assert "participant p2" in run("list", "dora")
    assert "removed 1 binding" in run("unbind", "dora")
    assert "no participant bindings" in run("list")


def test_auth_commands_print_no_warning_of_mlflow_dependencies_on_stderr(tmp_path: Path) -> None:
    store = str(tmp_path / "store")
    commands = [
        ["add-user", "dora", "--password", "dora-password-123"],
        ["bind", "dora", "--collaboration", "c1", "--participant", "p1"],
        ["list"],
    ]
    for command in commands:
        result = subprocess.run(
            [*SYNMLOPS, "auth", *command, "--store", store],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", f"auth {command[0]}: {result.stderr}"
    assert "participant p1" in result.stdout
