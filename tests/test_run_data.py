"""Params and tags of runs through the tracker (``FederatedRun.log_params``/``set_tags``, what
the NVFlare receiver logs a site's with): spooled with the points, so a server that is away
loses none; one refused item costs no other, and each refused one is counted by reason in
/health (``params``, ``tags``) and never a server error."""

from __future__ import annotations

import json
import logging
import signal
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Server
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient
from tracking_support import fast_config

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.storage.run_data import (
    PARAM_CHANGED,
    REFUSED_BY_MLFLOW,
    RESERVED_TAG,
    RUN_MISSING,
    write_run_data,
)
from synergos_mlops.tracking import TEXT_PATH_REFUSED, FederatedTracker

API = "/api/synergos/v1"


def refused(server: Server) -> dict[str, dict[str, int]]:
    body = requests.get(f"{server.url}/health", timeout=30).json()
    assert body["status"] == "ok"
    counts: dict[str, dict[str, int]] = body["refused"]
    return {what: dict(counts.get(what, {})) for what in ("params", "tags")}


def grown(before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]) -> dict[str, Any]:
    return {
        what: {r: n - before[what].get(r, 0) for r, n in after[what].items()
               if n != before[what].get(r, 0)}
        for what in after
    }  # fmt: skip


def test_a_bad_param_and_tag_between_good_ones_cost_only_themselves(
    shared_server: Server, tmp_path: Path
) -> None:
    before = refused(shared_server)
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        run = tracker.run(f"c{uuid.uuid4().hex[:6]}", "p", "e", "r", participants=["site-1"])
        run.log_params({"lr": 0.1, "layers": [8, 4]}, participant="site-1")
        run.log_params({"bad name!": 1, "seed": 7, "lr": 0.2}, participant="site-1")
        run.set_tags({"hardware": "cpu", "synergos.participant": "site-2",
                      "mlflow.parentRunId": "x", "site": "one"}, participant="site-1")  # fmt: skip
        run.set_tags({"site": "first"}, participant="site-1")  # the last value is kept
        run.log_params({"global_lr": "0.5"})
        assert tracker.flush() is True
        run.log_params({"after": 1}, participant="site-1")  # still writing afterwards
        assert tracker.flush() is True
        site, parent = run.participant_run_id("site-1"), run.run_id
    client = MlflowClient(shared_server.url)
    data = client.get_run(site).data
    assert data.params == {"lr": "0.1", "layers": "[8, 4]", "seed": "7", "after": "1"}
    assert data.tags["hardware"] == "cpu" and data.tags["site"] == "first"
    assert data.tags["synergos.participant"] == "site-1"
    assert data.tags["mlflow.parentRunId"] == parent
    assert client.get_run(parent).data.params["global_lr"] == "0.5"
    assert grown(before, refused(shared_server)) == {
        "params": {REFUSED_BY_MLFLOW: 1, PARAM_CHANGED: 1},
        "tags": {RESERVED_TAG: 2},
    }


def test_on_sqlite_and_postgresql_each_refused_item_costs_only_itself(sql_store: Any) -> None:
    experiment = sql_store.create_experiment("e")
    run = sql_store.create_run(experiment, "u", 0, [], "r").info.run_id
    deleted = sql_store.create_run(experiment, "u", 0, [], "d").info.run_id
    sql_store.delete_run(deleted)
    items = [
        (run, "param", "lr", "0.1"),
        (run, "param", "k" * 300, "x"),  # a name beyond MLflow's 250 characters
        (run, "tag", "mlflow.runName", "renamed"),
        (deleted, "param", "lr", "0.1"),
        (run, "param", "lr", "0.2"),
        (run, "tag", "note", "a"),
        (run, "param", "seed", "7"),
        (run, "tag", "note", "b"),
    ]
    result = write_run_data(sql_store, items)
    assert (result.stored, result.refused) == (3, {
        "params": {REFUSED_BY_MLFLOW: 1, RUN_MISSING: 1, PARAM_CHANGED: 1},
        "tags": {RESERVED_TAG: 1},
    })  # fmt: skip
    again = write_run_data(sql_store, items)  # sent twice: nothing new, the same refusals
    assert (again.stored, again.refused) == (result.stored, result.refused)
    data = sql_store.get_run(run).data
    assert data.params == {"lr": "0.1", "seed": "7"}
    assert data.tags["note"] == "b" and data.tags["mlflow.runName"] == "r"
    # Beyond MLflow's 100 params a log_batch: a refused one in the second hundred.
    many = [(run, "param", f"p{i:03d}" if i != 120 else "bad name!", str(i)) for i in range(250)]
    found = write_run_data(sql_store, many)
    assert (found.stored, found.refused) == (249, {"params": {REFUSED_BY_MLFLOW: 1}})
    assert len(sql_store.get_run(run).data.params) == 2 + 249


def test_what_a_sender_left_out_is_counted_with_the_items(
    shared_server: Server, tmp_path: Path
) -> None:
    before = refused(shared_server)
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        run = tracker.run(f"c{uuid.uuid4().hex[:6]}", "p", "e", "r")
        run.log_params({"a": 1})
        run.count_left_out("texts", TEXT_PATH_REFUSED)
        run.count_left_out("texts", TEXT_PATH_REFUSED, 2)
        run.log_params({"b": 2})
        with pytest.raises(InvalidValueError, match="not one of texts"):
            run.count_left_out("points", "why")
        assert tracker.flush() is True
    assert MlflowClient(shared_server.url).get_run(run.run_id).data.params == {"a": "1", "b": "2"}
    body = requests.get(f"{shared_server.url}/health", timeout=30).json()["refused"]
    assert body["texts"][TEXT_PATH_REFUSED] >= 3
    assert grown(before, refused(shared_server)) == {"params": {}, "tags": {}}


class _OlderServer:
    """A real server seen through a proxy that answers as a server from before ``runs/data``
    does: that route is missing (404, as the API's fallback route answers), every other
    request goes through unchanged."""

    MISSING = f"{API}/runs/data"

    def __init__(self, upstream: str) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        asked: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                asked.append(f"{self.command} {self.path.split('?')[0]}")
                if self.path.split("?")[0] == _OlderServer.MISSING:
                    status, kind = 404, "application/json"
                    message = f"no API route answers {_OlderServer.MISSING!r}"
                    error = {"code": "NOT_FOUND", "message": message}
                    content = json.dumps({"error": error}).encode()
                else:
                    headers = {
                        k: v
                        for k, v in self.headers.items()
                        if k.lower() not in ("host", "content-length", "connection")
                    }
                    answer = requests.request(self.command, upstream + self.path, data=body,
                                              headers=headers, timeout=60)  # fmt: skip
                    status, content = answer.status_code, answer.content
                    kind = answer.headers.get("Content-Type", "application/octet-stream")
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.asked = asked
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def test_a_server_from_before_runs_data_gets_params_and_tags_through_mlflows_api(
    shared_server: Server, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A tracker newer than its server: params and tags go through MLflow's REST API by the
    same rules, a refused item costs only itself and is said in the tracker's log (the server
    cannot count it), and nothing is rejected."""
    older = _OlderServer(shared_server.url)
    before = refused(shared_server)
    try:
        with caplog.at_level(logging.WARNING, logger="synergos_mlops.tracking"):
            with FederatedTracker(older.url, fast_config(tmp_path)) as tracker:
                run = tracker.run(f"c{uuid.uuid4().hex[:6]}", "p", "e", "r",
                                  participants=["site-1"])  # fmt: skip
                run.log_params({"lr": 0.1, "layers": [8, 4]}, participant="site-1")
                run.log_params({"bad name!": 1, "seed": 7, "lr": 0.2}, participant="site-1")
                run.set_tags({"hardware": "cpu", "mlflow.parentRunId": "x"},
                             participant="site-1")  # fmt: skip
                run.log_params({"global_lr": "0.5"})
                assert tracker.flush() is True
                run.log_params({"after": 1}, participant="site-1")  # still writing afterwards
                assert tracker.flush() is True
                site, parent = run.participant_run_id("site-1"), run.run_id
            assert not list(tmp_path.rglob("rejected/*"))
    finally:
        older.close()
    assert older.asked.count(f"POST {_OlderServer.MISSING}") == 1  # asked once, then not
    client = MlflowClient(shared_server.url)
    data = client.get_run(site).data
    assert data.params == {"lr": "0.1", "layers": "[8, 4]", "seed": "7", "after": "1"}
    assert data.tags["hardware"] == "cpu" and data.tags["mlflow.parentRunId"] == parent
    assert client.get_run(parent).data.params["global_lr"] == "0.5"
    said = caplog.text
    assert "param(s) not stored" in said and PARAM_CHANGED in said and REFUSED_BY_MLFLOW in said
    assert "tag(s) not stored" in said and RESERVED_TAG in said
    assert grown(before, refused(shared_server)) == {"params": {}, "tags": {}}


def test_items_of_a_missing_run_are_counted_and_the_others_stored(
    shared_server: Server, tmp_path: Path
) -> None:
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        run = tracker.run(f"c{uuid.uuid4().hex[:6]}", "p", "e", "r")
    before = refused(shared_server)
    items = [
        {"run_id": run.run_id, "kind": "param", "key": "a", "value": "1"},
        {"run_id": "0" * 32, "kind": "param", "key": "b", "value": "2"},
        {"run_id": "0" * 32, "kind": "tag", "key": "c", "value": "3"},
        {"run_id": run.run_id, "kind": "tag", "key": "d", "value": "4"},
    ]
    for _ in range(2):  # sent twice (a tracker that retries): stored once, counted each time
        answer = requests.post(f"{shared_server.url}{API}/runs/data", json={"items": items},
                               timeout=30)  # fmt: skip
        assert answer.status_code == 200, answer.text
        assert answer.json() == {
            "stored": 2,
            "refused": {"params": {RUN_MISSING: 1}, "tags": {RUN_MISSING: 1}},
        }
    data = MlflowClient(shared_server.url).get_run(run.run_id).data
    assert data.params == {"a": "1"} and data.tags["d"] == "4"
    assert grown(before, refused(shared_server)) == {
        "params": {RUN_MISSING: 2},
        "tags": {RUN_MISSING: 2},
    }


@pytest.mark.parametrize(
    "body",
    [{}, {"items": "x"}, {"items": [{"run_id": "r", "kind": "metric", "key": "k", "value": "v"}]},
     {"items": [{"run_id": "r", "kind": "param", "key": "k"}]},
     {"items": [{"run_id": "r", "kind": "param", "key": "k", "value": "v" * 1_000_001}]},
     {"items": [{"run_id": "r", "kind": "tag", "key": "k", "value": "v"}] * 10_001},
     {"items": [], "refused": {"texts": {"why": 0}}},
     {"items": [], "refused": {"points": {"why": 1}}},
     {"items": [], "refused": {"texts": {"": 1}}},
     {"items": [], "refused": {"texts": {f"why {i}": 1 for i in range(17)}}}],
)  # fmt: skip
def test_a_malformed_request_is_one_4xx_naming_the_problem(
    shared_server: Server, body: dict[str, Any]
) -> None:
    answer = requests.post(f"{shared_server.url}{API}/runs/data", json=body, timeout=60)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.json()["error"]["message"]


_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=300)


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=list(HealthCheck))  # fmt: skip
@given(odd=st.lists(st.tuples(st.sampled_from(["param", "tag"]), _text, _text), max_size=6))
def test_whatever_sits_between_good_items_they_are_stored_and_nothing_is_a_5xx(
    shared_server: Server, odd: list[tuple[str, str, str]]
) -> None:
    run_id = _hypothesis_run(shared_server)
    good = uuid.uuid4().hex[:8]
    items = [
        {"run_id": run_id, "kind": "param", "key": f"before {good}", "value": good},
        *({"run_id": run_id, "kind": k, "key": key, "value": v} for k, key, v in odd),
        {"run_id": run_id, "kind": "tag", "key": f"after {good}", "value": good},
    ]
    answer = requests.post(f"{shared_server.url}{API}/runs/data", json={"items": items},
                           timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    body = answer.json()
    counted = sum(n for counts in body["refused"].values() for n in counts.values())
    assert body["stored"] + counted <= len(items)
    data = MlflowClient(shared_server.url).get_run(run_id).data
    assert data.params[f"before {good}"] == good and data.tags[f"after {good}"] == good


_runs: dict[str, str] = {}


def _hypothesis_run(server: Server) -> str:
    """One run for every example (a new one per example would cost a resolve each)."""
    if server.url not in _runs:
        client = MlflowClient(server.url)
        experiment = client.create_experiment(f"run-data-{uuid.uuid4().hex[:6]}")
        _runs[server.url] = client.create_run(experiment).info.run_id
    return _runs[server.url]


def test_params_logged_while_the_server_is_away_arrive_when_it_is_back(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    store = tmp_path / "store"
    server = server_factory(store)
    config = fast_config(tmp_path, flush_timeout=1.0)
    tracker = FederatedTracker(server.url, config)
    run = tracker.run("c", "p", "e", "r", participants=["site-1"])
    assert tracker.flush() is True
    server.stop(signal.SIGTERM)
    run.log_metrics({"train/loss": 0.5}, step=1, participant="site-1")
    run.log_params({"lr": 0.3}, participant="site-1")
    run.set_tags({"hardware": "gpu"}, participant="site-1")
    with pytest.warns(RuntimeWarning, match="3 metric points, params and tags are not stored"):
        assert tracker.flush() is False  # away: kept in the spool
        tracker.close(timeout=1.0)

    server = server_factory(store, port=server.port)
    with FederatedTracker(server.url, fast_config(tmp_path)) as again:  # adopts the spool
        assert again.flush() is True
    data = MlflowClient(server.url).get_run(run.participant_run_id("site-1")).data
    assert data.params == {"lr": "0.3"} and data.tags["hardware"] == "gpu"
    assert data.metrics == {"train/loss": 0.5}


def test_into_a_store_folder_the_refused_ones_are_left_out_with_one_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, "synergos_mlops.tracking"),
        FederatedTracker(tmp_path / "store", fast_config(tmp_path)) as tracker,
    ):
        run = tracker.run("c", "p", "e", "r")
        run.log_params({"lr": 1, "bad name!": 2})
        run.set_tags({"synergos.role": "participant", "note": "kept"})
        assert tracker.flush() is True
        data = MlflowClient(tracker.tracking_uri).get_run(run.run_id).data
    assert data.params == {"lr": "1"} and data.tags["note"] == "kept"
    assert data.tags["synergos.role"] == "federation"
    said = [r.getMessage() for r in caplog.records]
    assert any("1 param(s) not stored" in m and REFUSED_BY_MLFLOW in m for m in said), said
    assert any("1 tag(s) not stored" in m and RESERVED_TAG in m for m in said), said


def test_a_name_that_is_no_text_or_a_value_beyond_the_bound_is_refused_at_the_call(
    tmp_path: Path,
) -> None:
    with FederatedTracker(tmp_path / "store", fast_config(tmp_path)) as tracker:
        run = tracker.run("c", "p", "e", "r")
        with pytest.raises(InvalidValueError, match="must be a string"):
            run.log_params({1: "x"})  # type: ignore[dict-item]
        with pytest.raises(InvalidValueError, match="mapping"):
            run.set_tags(["x"])  # type: ignore[arg-type]
        with pytest.raises(InvalidValueError, match="beyond 1,000,000 characters"):
            run.set_tags({"ok": "x", "long": "v" * 1_000_001})
        assert tracker.flush() is True
        assert "ok" not in MlflowClient(tracker.tracking_uri).get_run(run.run_id).data.tags


def test_many_params_in_one_call_are_all_stored(shared_server: Server, tmp_path: Path) -> None:
    values = {f"p{i:05d}": i for i in range(2500)}  # more than one request carries
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        run = tracker.run(f"c{uuid.uuid4().hex[:6]}", "p", "e", "r")
        run.log_params(values)
        assert tracker.flush() is True
    stored = MlflowClient(shared_server.url).get_run(run.run_id).data.params
    assert stored == {k: str(v) for k, v in values.items()}


@pytest.mark.parametrize(
    "raw",
    ["x", [["r", "param", "k"]], [["r", "metric", "k", "v"]], [["r", "tag", "k", 5]], [None]],
)
def test_a_spool_file_with_a_malformed_item_is_refused_naming_it(raw: object) -> None:
    from synergos_mlops.storage.run_data import as_items

    with pytest.raises(InvalidValueError, match="list of items|is not \\[run id"):
        as_items(raw)
