"""Schemathesis against the Synergos API's own OpenAPI document, on a real server holding a
logged federated run: generated ids, paths and parameters never cause a server error, and
every refusal is the one JSON error shape."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from conftest import Server, start_server
from federated_data import log_federated_run
from hypothesis import HealthCheck, given, settings

API = "/api/synergos/v1"


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "secret.txt").write_text("FUZZ-SECRET")
    server = start_server(root / "store", workers=1)
    try:
        log_federated_run(server.url, collaboration="fuzz", project="p", experiment="e",
                          run="r", rounds=2)  # fmt: skip
        yield server
    finally:
        server.stop()


def check(case: schemathesis.Case) -> None:
    response = case.call(timeout=60)
    where = (case.method, case.formatted_path, case.path_parameters, case.query)
    assert response.status_code < 500, (where, response.text[:300])
    assert b"FUZZ-SECRET" not in response.content
    if response.status_code >= 400:
        headers = {k.lower(): v for k, v in response.headers.items()}
        content_type = " ".join(headers.get("content-type", []))
        assert content_type.startswith("application/json"), (where, response.text[:300])
        error = response.json()["error"]
        assert isinstance(error["code"], str) and isinstance(error["message"], str), where


def test_no_generated_request_causes_a_server_error(fuzz_server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzz_server.url}{API}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 6
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=40, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        def run(case: schemathesis.Case) -> None:
            check(case)

        run()


def test_the_fuzzed_run_is_there(fuzz_server: Server) -> None:
    import requests

    response = requests.get(f"{fuzz_server.url}{API}/runs/fuzz/p/e/r", timeout=60)
    assert response.status_code == 200
