"""Central logs and hardware statistics under `serve --auth`: a participant-bound account
writes log records and samples only for its own participant and reads only the run's global
records and its own participant's, in the routes and the bundles; an admin sees everything.
A participant's bundle holds that participant's log records."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import signal
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import requests
from auth_support import ADMIN, ALICE, bind, create_accounts
from conftest import SYNMLOPS, Server, start_server
from tracking_support import fast_config

from synergos_mlops import FederatedTracker
from synergos_mlops.storage.batch import MetricBatch
from synergos_mlops.storage.log_batch import encode_log_batch
from synergos_mlops.storage.samples import encode_samples, target

# ALICE is bound to w1 of hospitals
API = "/api/synergos/v1"
RUN = f"{API}/runs/hospitals/p/e/r"
CPU = "system/cpu_utilization_percentage"


def credentials(account: tuple[str, str]) -> dict[str, str]:
    return {"MLFLOW_TRACKING_USERNAME": account[0], "MLFLOW_TRACKING_PASSWORD": account[1]}


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


def start_monitor(
    url: str, participant: str, account: tuple[str, str], spool: Path
) -> subprocess.Popen[str]:
    env = {**os.environ, "SYNMLOPS_SPOOL": str(spool), **credentials(account)}
    return subprocess.Popen(
        [*SYNMLOPS, "monitor", "--collaboration", "hospitals", "--participant", participant,
         "--tracking-uri", url, "--interval", "0.5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip


def stop_monitor(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    return process.returncode, out, err


def wire_record(participant: str | None, message: str) -> dict[str, Any]:
    return {
        "id": f"wire-{participant}-{message}", "collaboration": "hospitals", "project": "p",
        "experiment": "e", "run": "r", "participant": participant,
        "timestamp": int(time.time() * 1000), "level": 20,
        "logger": f"WKR_{participant}" if participant else "TTP_main", "message": message,
        "fields": {},
    }  # fmt: skip


def post(server: Server, path: str, body: bytes, auth: tuple[str, str]) -> requests.Response:
    headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
    return requests.post(f"{server.url}{path}", data=body, headers=headers, auth=auth, timeout=60)


def get(server: Server, path: str, auth: tuple[str, str], **params: Any) -> requests.Response:
    return requests.get(f"{server.url}{path}", params=params, auth=auth, timeout=60)


def bundle(server: Server, path: str, auth: tuple[str, str]) -> dict[str, bytes]:
    response = get(server, path, auth)
    assert response.status_code == 200, response.text[:500]
    with zipfile.ZipFile(io.BytesIO(response.content)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def log_lines(files: dict[str, bytes]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in files["logs.jsonl"].decode().splitlines()]


#: The participant's own process, as alice: the library's handler for w1's records.
WORKER = """
import logging, sys
from pathlib import Path
from synergos_mlops import FederatedTracker, TrackerConfig
tracker = FederatedTracker(sys.argv[1], TrackerConfig(spool_dir=Path(sys.argv[2])))
logger = logging.getLogger("WKR_w1")
logger.addHandler(tracker.log_handler("hospitals", "p", "e", "r", participant="w1"))
logger.warning("w1 record")
assert tracker.flush(60)
tracker.close()
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One --auth server; the admin's orchestrator runs `r` with participants w1 and w2 and
    logs a global and a w2 record; alice, bound to w1, logs w1's record through the library's
    handler and runs w1's `synmlops monitor`; the admin's monitor samples w2."""
    folder = tmp_path_factory.mktemp("logs-auth")
    store = folder / "store"
    server = start_server(
        store, extra=["--auth"], env={"MLFLOW_AUTH_ADMIN_PASSWORD": ADMIN[1]}, timeout=300
    )
    try:
        admin_env = mock.patch.dict(os.environ, credentials(ADMIN))
        admin_env.start()  # the tracker's threads take the credentials on their first request
        orchestrator = FederatedTracker(server.url, fast_config(folder / "admin"))
        run = orchestrator.run("hospitals", "p", "e", "r", participants=["w1", "w2"])
        create_accounts(server.url, ALICE)
        bind(store, ALICE[0], "hospitals", "w1")
        monitors = {
            "w1": start_monitor(server.url, "w1", ALICE, folder / "spool-w1"),
            "w2": start_monitor(server.url, "w2", ADMIN, folder / "spool-w2"),
        }
        _logger("TTP_main", run.log_handler()).info("global record")
        _logger("WKR_w2", run.log_handler(participant="w2")).info("w2 record")
        assert run.flush()
        worker = subprocess.run(
            [sys.executable, "-c", WORKER, server.url, str(folder / "alice")],
            capture_output=True, text=True, timeout=120,
            env={**os.environ, **credentials(ALICE)},
        )  # fmt: skip
        assert worker.returncode == 0, worker.stderr[-3000:]
        time.sleep(2.5)  # a few samples each, while the run is going
        for name, monitor in monitors.items():
            code, out, err = stop_monitor(monitor)
            assert code == 0, err
            assert " 0 attached" not in out, (name, out)
        yield server  # the run is still going: a sample of now would be attached to it
        run.end()
        orchestrator.close()
        admin_env.stop()
    finally:
        server.stop()


def test_a_bound_account_writes_log_records_only_of_its_own_participant(
    served: Server,
) -> None:
    for participant in ("w2", None):  # another participant's, and the orchestrator's
        body = encode_log_batch([wire_record(participant, f"forged {participant}")])
        refused = post(served, f"{API}/logs", body, ALICE)
        assert refused.status_code == 403, refused.text
        assert refused.json()["error"]["code"] == "PERMISSION_DENIED"
    # The admin sees every record there is: the forged ones were not stored.
    everything = get(served, f"{RUN}/logs", ADMIN).json()["records"]
    assert sorted(r["message"] for r in everything) == ["global record", "w1 record", "w2 record"]
    [own] = [r for r in everything if r["message"] == "w1 record"]
    assert (own["participant"], own["role"], own["level_name"]) == ("w1", "WKR", "WARNING")


def test_a_bound_account_sends_hardware_samples_only_of_its_own_participant(
    served: Server,
) -> None:
    now = int(time.time() * 1000)
    name = target("hospitals", "w2")
    batch = MetricBatch()
    batch.append(name, CPU, 0, 12345.0, now)  # within the run, which is still going
    refused = post(served, f"{API}/system/samples", encode_samples(batch, {name: {}}), ALICE)
    assert refused.status_code == 403, refused.text
    assert refused.json()["error"]["code"] == "PERMISSION_DENIED"
    # w2's series holds only what the admin's monitor sent, never the forged value.
    series = get(served, f"{RUN}/system", ADMIN).json()["participants"]
    assert set(series) == {"w1", "w2"}
    assert series["w1"]["series"][CPU]["values"]
    assert series["w2"]["series"][CPU]["values"]
    assert 12345.0 not in series["w2"]["series"][CPU]["values"]
    # The same sample from the admin is attached: the refusal was the account's, not the time.
    allowed = post(served, f"{API}/system/samples", encode_samples(batch, {name: {}}), ADMIN)
    assert allowed.status_code == 200 and allowed.json()["attached"] == 1, allowed.text
    series = get(served, f"{RUN}/system", ADMIN).json()["participants"]
    assert 12345.0 in series["w2"]["series"][CPU]["values"]


def test_a_bound_account_reads_only_global_and_its_own_records_and_series(
    served: Server,
) -> None:
    mine = get(served, f"{RUN}/logs", ALICE).json()["records"]
    assert [(r["participant"], r["message"]) for r in mine] == [
        (None, "global record"), ("w1", "w1 record")
    ]  # fmt: skip
    asked = get(served, f"{RUN}/logs", ALICE, participant="w2")
    assert asked.status_code == 404 and asked.json()["error"]["code"] == "NOT_FOUND"
    assert get(served, f"{RUN}/logs", ALICE, q="w2").json()["records"] == []
    assert set(get(served, f"{RUN}/system", ALICE).json()["participants"]) == {"w1"}

    files = bundle(served, f"{RUN}/bundle.zip", ALICE)
    assert {r["participant"] for r in log_lines(files)} == {None, "w1"}
    rows = list(csv.DictReader(io.StringIO(files["system.csv"].decode())))
    assert rows and {row["participant"] for row in rows} == {"w1"}

    files = bundle(served, f"{RUN}/bundle.zip", ADMIN)
    assert {r["participant"] for r in log_lines(files)} == {None, "w1", "w2"}
    rows = list(csv.DictReader(io.StringIO(files["system.csv"].decode())))
    assert {row["participant"] for row in rows} == {"w1", "w2"}


def test_a_participant_bundle_holds_that_participants_log_records_only(
    served: Server,
) -> None:
    own = bundle(served, f"{RUN}/participants/w1/bundle.zip", ALICE)
    assert [(r["participant"], r["message"]) for r in log_lines(own)] == [("w1", "w1 record")]
    assert {row.split(",", 1)[0] for row in own["system.csv"].decode().splitlines()[1:]} == {"w1"}
    other = bundle(served, f"{RUN}/participants/w2/bundle.zip", ADMIN)
    assert [(r["participant"], r["message"]) for r in log_lines(other)] == [("w2", "w2 record")]
    refused = get(served, f"{RUN}/participants/w2/bundle.zip", ALICE)
    assert refused.status_code == 404
