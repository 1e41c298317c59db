"""Bad input on every Synergos route: 404 naming what is missing, 400 for malformed input,
one JSON error shape, never a 500."""

from __future__ import annotations

import re
import uuid
from urllib.parse import quote

import pytest
import requests
from federated_data import LoggedRun, log_federated_run

API = "/api/synergos/v1"


@pytest.fixture(scope="module")
def logged(shared_server) -> LoggedRun:  # type: ignore[no-untyped-def]
    return log_federated_run(
        shared_server.url,
        collaboration=f"errors {uuid.uuid4().hex[:6]}",
        participants=["w1", "w2"],
        rounds=2,
        epochs=1,
    )


@pytest.fixture(scope="module")
def run_url(shared_server, logged: LoggedRun) -> str:  # type: ignore[no-untyped-def]
    return f"{shared_server.url}{API}/runs/{logged.path}"


def error_of(response: requests.Response, status: int) -> str:
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) >= {"code", "message"}
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["message"])


@pytest.mark.parametrize(
    ("level", "named"),
    [(0, "collaboration"), (1, "project"), (2, "experiment"), (3, "run")],
)
def test_unknown_ids_answer_404_naming_the_missing_one(
    shared_server, logged: LoggedRun, level: int, named: str
) -> None:
    ids = [logged.collaboration, logged.project, logged.experiment, logged.run]
    ids[level] = "nowhere ü"
    path = "/".join(quote(i, safe="") for i in ids)
    for suffix in ("", "/metrics", "/bundle.zip", "/participants/w1/bundle.zip",
                   "/artifacts/models/global/global_model.pt"):  # fmt: skip
        response = requests.get(f"{shared_server.url}{API}/runs/{path}{suffix}", timeout=30)
        message = error_of(response, 404)
        assert named in message and "nowhere ü" in message


def test_unknown_participant_answers_404_naming_it(run_url: str) -> None:
    for suffix in ("/bundle.zip", "/artifacts/models/local/local_model.pt"):
        response = requests.get(f"{run_url}/participants/w9{suffix}", timeout=30)
        assert "participant 'w9'" in error_of(response, 404)


def test_unknown_metric_answers_404_naming_it(run_url: str) -> None:
    response = requests.get(f"{run_url}/metrics", params={"keys": "train/loss,no/such"}, timeout=30)
    assert "'no/such'" in error_of(response, 404)


def test_unknown_artifact_answers_404_naming_it(run_url: str) -> None:
    response = requests.get(f"{run_url}/artifacts/models/nothing.pt", timeout=30)
    assert "models/nothing.pt" in error_of(response, 404)
    response = requests.get(f"{run_url}/artifacts/models", timeout=30)  # a folder
    error_of(response, 404)


@pytest.mark.parametrize(
    "keys", ["", ",", "train/loss,,evaluate/loss", "bad\u0001key", "a" * 300, "semi;colon"]
)
def test_malformed_metric_keys_answer_400(run_url: str, keys: str) -> None:
    error_of(requests.get(f"{run_url}/metrics", params={"keys": keys}, timeout=30), 400)


@pytest.mark.parametrize(
    "path",
    [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "%2E%2E/%2E%2E/mlflow.db",
        "models/../../../../mlflow.db",
        "models/%2e%2e/%2e%2e/%2e%2e/%2e%2e/mlflow.db",
        "%2Fetc%2Fpasswd",
        "/etc/passwd",
        "models%5C..%5C..%5Cx",
        "models/%2E/global/global_model.pt",
        "models//global/global_model.pt",
        "%252e%252e/%252e%252e/mlflow.db",
        "models/global/global_model.pt%00.txt",
    ],
)
def test_artifact_paths_never_escape_the_runs_artifact_root(run_url: str, path: str) -> None:
    for prefix in ("", "/participants/w1"):
        response = requests.get(f"{run_url}{prefix}/artifacts/{path}", timeout=30)
        assert response.status_code in (400, 404), (path, response.status_code)
        error_of(response, response.status_code)


@pytest.mark.parametrize("bad", ["%01ctl", "%20%20", "a%0Ab"])
def test_malformed_ids_answer_400_naming_the_id(run_url: str, shared_server, bad: str) -> None:
    url = f"{shared_server.url}{API}/runs/c/p/e/{bad}"
    message = error_of(requests.get(url, timeout=30), 400)
    assert "run id" in message


def _fill(path: str, value: str) -> str:
    """Every path parameter set to ``value``; a model version, a number, to one that is not
    there when ``value`` is a printable id (so the answer is the 404 of an unknown id)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "{version}" and value.isprintable():
            return "987654"
        return quote(value, safe="")

    return re.sub(r"\{[^}]+\}", one, path)


def test_every_route_in_the_openapi_document_answers_errors_in_the_one_json_shape(
    shared_server,
) -> None:
    document = requests.get(f"{shared_server.url}{API}/openapi.json", timeout=30).json()
    paths = list(document["paths"])
    assert len(paths) >= 7
    for path in paths:
        assert "get" in document["paths"][path]
        unknown = f"{shared_server.url}{_fill(path, 'nobody here')}"
        error_of(requests.post(unknown, timeout=30), 405)
        if "{" not in path:  # nothing a client can get wrong but the method
            continue
        error_of(requests.get(unknown, timeout=30), 404)
        malformed = f"{shared_server.url}{_fill(path, chr(1))}"  # a control character
        error_of(requests.get(malformed, timeout=30), 400)


def test_unknown_paths_under_the_api_answer_404_json(shared_server, run_url: str) -> None:
    for url in (f"{run_url}/nothing", f"{shared_server.url}{API}/runs/a/b",
                f"{shared_server.url}{API}/collaborations/x", f"{run_url}/artifacts/%0Anewline",
                f"{run_url}/participants/w1/artifacts/%0Ax", f"{shared_server.url}{API}/nothing",
                f"{shared_server.url}{API}/metrics/nothing"):  # fmt: skip
        error_of(requests.get(url, timeout=30), 404)


def test_a_route_asked_with_another_method_answers_405_json(shared_server) -> None:  # type: ignore[no-untyped-def]
    for method, path in (("GET", "/metrics/bulk"), ("DELETE", "/runs/resolve"),
                         ("PUT", "/collaborations")):  # fmt: skip
        response = requests.request(method, f"{shared_server.url}{API}{path}", timeout=30)
        assert method in error_of(response, 405)


def test_no_client_input_produces_a_server_error(shared_server, run_url: str) -> None:
    odd = ["%FF%FE", "%C3%28", "%E2%80%AE", "x" * 5000, "%00", "..", ".", "%2e", "~", "*"]
    for piece in odd:
        for url in (
            f"{shared_server.url}{API}/runs/{piece}/p/e/r",
            f"{run_url}/participants/{piece}/bundle.zip",
            f"{run_url}/artifacts/{piece}",
            f"{run_url}/metrics?keys={piece}",
        ):
            response = requests.get(url, timeout=30)
            assert response.status_code < 500, (url, response.status_code, response.text[:200])


def test_numbers_too_large_for_the_database_answer_400_not_500(shared_server, run_url: str) -> None:  # type: ignore[no-untyped-def]
    too_large = str(2**63)  # one past a 64-bit integer column: the fuzzer found this one
    urls = [f"{shared_server.url}{API}/lineage/models/m/{too_large}"]
    urls += [f"{run_url}/logs?{cursor}={too_large}" for cursor in ("after", "before")]
    for url in urls:
        error_of(requests.get(url, timeout=30), 400)
