"""`synmlops serve --log-retention-days N` through a real server: records older than N days
are deleted when it starts, in chunks, and the recent ones are kept."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import requests
from conftest import Server, start_server, wait_for

from synergos_mlops import FederatedTracker, TrackerConfig
from synergos_mlops.storage.log_batch import encode_log_batch

API = "/api/synergos/v1"
DAY_MS = 86_400_000


def wire(number: int, age_days: float, participant: str | None = None) -> dict[str, Any]:
    return {
        "id": f"ret-{number}", "collaboration": "c", "project": "p", "experiment": "e",
        "run": "kept", "participant": participant,
        "timestamp": int(time.time() * 1000 - age_days * DAY_MS), "level": 20,
        "logger": f"WKR_{participant}" if participant else "TTP_main",
        "message": f"{age_days:g} days old #{number}", "fields": {},
    }  # fmt: skip


def messages(server: Server) -> list[str]:
    found: list[str] = []
    after = 0
    while True:
        page = requests.get(
            f"{server.url}{API}/runs/c/p/e/kept/logs",
            params={"after": after, "limit": 5000}, timeout=60,
        ).json()  # fmt: skip
        found += [r["message"] for r in page["records"]]
        if not page["more"]:
            return found
        after = page["last_id"]


def test_serve_with_log_retention_days_deletes_older_records_and_keeps_recent_ones(
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    server = start_server(store)
    try:
        config = TrackerConfig(spool_dir=tmp_path / "spool")
        with FederatedTracker(server.url, config) as tracker:
            tracker.run("c", "p", "e", "kept", participants=["w1"]).end()
        # 12,000 records 40 days old (more than one deletion chunk of 10,000), global and
        # w1's; a few 31 days old; recent ones 29 days, 1 day and 0 days old.
        old = [wire(n, 40, "w1" if n % 2 else None) for n in range(12_000)]
        edge = [wire(20_000 + n, 31) for n in range(3)]
        recent = [wire(30_000, 29), wire(30_001, 1, "w1"), wire(30_002, 0)]
        headers = {"Content-Type": "application/json", "Content-Encoding": "gzip"}
        posted = requests.post(
            f"{server.url}{API}/logs", data=encode_log_batch(old + edge + recent),
            headers=headers, timeout=120,
        )  # fmt: skip
        assert posted.json() == {"stored": 12_006}, posted.text
        assert len(messages(server)) == 12_006
    finally:
        server.stop()

    server = start_server(store, extra=["--log-retention-days", "30"])
    try:
        expected = sorted(r["message"] for r in recent)
        assert wait_for(lambda: sorted(messages(server)) == expected, timeout=60), (
            f"{len(messages(server))} records left; serve said: {server.output()[-2000:]}"
        )
        assert wait_for(lambda: "logs: deleted 12003 records older than 30 days" in server.output())
        health = requests.get(f"{server.url}/health", timeout=30).json()
        assert health["status"] == "ok"
        assert health["log_retention"]["deleted"] == 12_003
        assert health["log_retention"]["last_error"] is None
    finally:
        server.stop()


def test_a_failing_retention_pass_is_said_in_health_and_tried_again_until_it_works(
    tmp_path: Path,
) -> None:
    from sqlalchemy import create_engine, text

    from synergos_mlops.server.database import upgrade
    from synergos_mlops.server.services.log_service import (
        LogRetention,
        read_status,
        retention_health_problem,
    )
    from synergos_mlops.storage.log_batch import decode_log_batch
    from synergos_mlops.storage.logs import count_records, insert_records

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    upgrade(uri)
    engine = create_engine(uri)
    old = [wire(n, 40) for n in range(30)] + [wire(100, 1)]
    insert_records(engine, decode_log_batch(encode_log_batch(old)))
    with engine.begin() as connection:  # the table is gone: every pass fails
        connection.execute(text("ALTER TABLE synergos_logs RENAME TO moved_away"))
    said: list[str] = []
    status_path = tmp_path / "retention.json"
    retention = LogRetention(uri, 30, retry=0.2, status_path=status_path, echo=said.append)
    retention.start()
    try:
        assert wait_for(lambda: (read_status(status_path) or {}).get("failed_passes", 0) >= 2)
        failing = read_status(status_path)
        assert failing is not None and "synergos_logs" in failing["last_error"]
        problem = retention_health_problem(failing)
        assert problem is not None and problem.startswith("log retention failed (")
        assert any("retention pass failed" in line for line in said)
        with engine.begin() as connection:
            connection.execute(text("ALTER TABLE moved_away RENAME TO synergos_logs"))
        assert wait_for(lambda: (read_status(status_path) or {}).get("last_error", 1) is None)
    finally:
        retention.stop()
    recovered = read_status(status_path)
    assert recovered is not None and retention_health_problem(recovered) is None
    assert recovered["deleted"] == 30 and count_records(engine) == 1
    engine.dispose()
