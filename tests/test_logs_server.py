"""Central logs through real `synmlops serve` processes: the tracker's handler (with the
server away mid-way), the API's filters and cursor, the bundle, and the POST route's refusals."""

from __future__ import annotations

import io
import json
import logging
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import Server, free_port, start_server

from synergos_mlops import FederatedLogHandler, FederatedTracker, TrackerConfig
from synergos_mlops.storage.log_batch import encode_log_batch

API = "/api/synergos/v1"


def tracker_for(url: str, spool: Path, **config: Any) -> FederatedTracker:
    options: dict[str, Any] = dict(
        spool_dir=spool, flush_interval=0.2, retry_interval=0.5, flush_timeout=60
    )
    options.update(config)
    return FederatedTracker(url, TrackerConfig(**options))


def run_logs(server: Server, run: str, **params: Any) -> dict[str, Any]:
    response = requests.get(f"{server.url}{API}/runs/c/p/e/{run}/logs", params=params, timeout=30)
    assert response.status_code == 200, response.text
    return dict(response.json())


def all_records(server: Server, run: str, **params: Any) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    after = 0
    while True:
        page = run_logs(server, run, after=after, limit=5000, **params)
        records += page["records"]
        if not page["more"]:
            return records
        after = page["last_id"]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    started = start_server(tmp_path_factory.mktemp("logs") / "store", workers=2)
    yield started
    started.stop()


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def test_handler_records_reach_the_run_with_level_fields_and_participant(
    server: Server, tmp_path: Path
) -> None:
    tracker = tracker_for(server.url, tmp_path / "spool")
    with tracker.run("c", "p", "e", "handler", participants=["w1", "w2"]) as run:
        ttp = _logger("TTP_main", run.log_handler())
        worker = _logger("WKR_w1", run.log_handler(participant="w1"))
        assert isinstance(run.log_handler(), FederatedLogHandler)
        ttp.info("round %d starts", 1, extra={"round": 1})
        worker.debug("local epoch done")
        try:
            raise ValueError("bad batch")
        except ValueError:
            worker.exception("training failed")
    tracker.close()
    records = run_logs(server, "handler")["records"]
    assert [r["message"].splitlines()[0] for r in records] == [
        "round 1 starts", "local epoch done", "training failed",
    ]  # fmt: skip
    first, _, failed = records
    assert first["participant"] is None and first["role"] == "TTP"
    assert first["fields"]["round"] == 1 and first["fields"]["function"]
    assert failed["level_name"] == "ERROR" and "ValueError: bad batch" in failed["message"]
    assert failed["participant"] == "w1" and failed["role"] == "WKR"


def test_the_api_filters_records_and_tails_them_with_the_after_cursor(
    server: Server, tmp_path: Path
) -> None:
    tracker = tracker_for(server.url, tmp_path / "spool")
    with tracker.run("c", "p", "e", "filters", participants=["w1", "w2"]) as run:
        ttp = _logger("TTP_filters", run.log_handler())
        w1 = _logger("WKR_w1", run.log_handler(participant="w1"))
        w2 = _logger("SYS_w2", run.log_handler(participant="w2"))
        ttp.info("aggregating round 0")
        w1.warning("Loss is NaN at round 0")
        w2.info("cpu sample", extra={"cpu_percent": 12.5})
        run.flush()

        def messages(**params: Any) -> list[str]:
            return [r["message"] for r in run_logs(server, "filters", **params)["records"]]

        assert messages(participant="w1") == ["Loss is NaN at round 0"]
        assert messages(participant="w1,w2") == ["Loss is NaN at round 0", "cpu sample"]
        assert messages(level="WARNING") == ["Loss is NaN at round 0"]
        assert messages(level="30") == ["Loss is NaN at round 0"]
        assert messages(role="sys") == ["cpu sample"]
        assert messages(q="loss IS") == ["Loss is NaN at round 0"]
        page = run_logs(server, "filters", limit=2)
        assert [r["message"] for r in page["records"]] == ["Loss is NaN at round 0", "cpu sample"]
        assert page["more"]
        tail = run_logs(server, "filters", after=page["last_id"])
        assert tail["records"] == [] and tail["last_id"] == page["last_id"]
        ttp.info("aggregating round 1")
        run.flush()
        tail = run_logs(server, "filters", after=page["last_id"])
        assert [r["message"] for r in tail["records"]] == ["aggregating round 1"]
    tracker.close()

    bundle = requests.get(f"{server.url}{API}/runs/c/p/e/filters/bundle.zip", timeout=60)
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as archive:
        lines = archive.read("logs.jsonl").decode().splitlines()
    assert [json.loads(line)["message"] for line in lines][-1] == "aggregating round 1"
    assert len(lines) == 4


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"level": "LOUD"}, 400),
        ({"role": "BOSS"}, 400),
        ({"after": 1, "before": 5}, 400),
        ({"limit": 0}, 400),
        ({"after": -1}, 400),
    ],
)
def test_bad_log_queries_are_400s_in_the_api_error_shape(
    server: Server, tmp_path: Path, params: dict[str, Any], code: int
) -> None:
    with tracker_for(server.url, tmp_path / "spool") as tracker, tracker.run("c", "p", "e", "q"):
        pass
    response = requests.get(f"{server.url}{API}/runs/c/p/e/q/logs", params=params, timeout=30)
    assert response.status_code == code
    assert set(response.json()["error"]) == {"code", "message"}


def _wire(run: str, number: int, **changes: Any) -> dict[str, Any]:
    record = {
        "id": f"{run}-{number}", "collaboration": "c", "project": "p", "experiment": "e",
        "run": run, "participant": None, "timestamp": 1_700_000_000_000 + number, "level": 20,
        "logger": "TTP_main", "message": f"record {number}", "fields": {},
    }  # fmt: skip
    record.update(changes)
    return record


def _post(server: Server, body: bytes) -> requests.Response:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    return requests.post(f"{server.url}{API}/logs", data=body, headers=headers, timeout=60)


def test_a_batch_posted_twice_is_stored_once_and_a_bad_batch_stores_nothing(
    server: Server, tmp_path: Path
) -> None:
    with tracker_for(server.url, tmp_path / "spool") as tracker, tracker.run("c", "p", "e", "post"):
        pass
    body = encode_log_batch([_wire("post", n) for n in range(100)])
    assert _post(server, body).json() == {"stored": 100}
    assert _post(server, body).json() == {"stored": 0}
    bad = encode_log_batch([_wire("post", 200), _wire("post", 201, level="loud")])
    refused = _post(server, bad)
    assert refused.status_code == 400
    assert "log record 1" in refused.json()["error"]["message"]
    missing = _post(server, encode_log_batch([_wire("no-such-run", 1)]))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "RUN_NOT_FOUND"
    assert _post(server, b"not gzip").status_code == 400
    assert len(all_records(server, "post")) == 100


def test_records_logged_while_the_server_is_away_arrive_once_after_it_returns(
    tmp_path: Path,
) -> None:
    store, port, spool = tmp_path / "store", free_port(), tmp_path / "spool"
    server = start_server(store, port=port)
    try:
        tracker = tracker_for(server.url, spool, flush_timeout=1.0, connect_timeout=5)
        run = tracker.run("c", "p", "e", "away", participants=["w1"])
        logger = _logger("WKR_w1", run.log_handler(participant="w1"))
        for n in range(100):
            logger.info("before %d", n)
        assert run.flush()
        server.stop()
        for n in range(100):
            logger.info("during %d", n)
        with pytest.warns(RuntimeWarning, match="log records are not stored yet"):
            tracker.close()  # this process's tracker is gone; its spool is left
        assert list((spool / "logs").rglob("*.batch"))
        server = start_server(store, port=port)
        successor = tracker_for(server.url, spool)  # adopts what the first one left
        assert successor.flush()
        successor.close()
        messages = [r["message"] for r in all_records(server, "away")]
        expected = [f"before {n}" for n in range(100)] + [f"during {n}" for n in range(100)]
        assert sorted(messages) == sorted(expected)
        assert not list((spool / "logs").rglob("*.batch"))
    finally:
        server.stop()


def test_the_handler_leaves_out_what_the_sender_thread_itself_logs(
    server: Server, tmp_path: Path
) -> None:
    tracker = tracker_for(server.url, tmp_path / "spool")
    with tracker.run("c", "p", "e", "quiet") as run:
        handler = run.log_handler()
        root = logging.getLogger()
        root.addHandler(handler)
        previous = root.level
        root.setLevel(logging.DEBUG)  # urllib3 speaks at DEBUG on every request the sender makes
        try:
            logging.getLogger("TTP_quiet").info("one record")
            run.flush()
            time.sleep(1.0)
            run.flush()
        finally:
            root.removeHandler(handler)
            root.setLevel(previous)
    tracker.close()
    messages = [r["message"] for r in all_records(server, "quiet")]
    assert messages == ["one record"]
