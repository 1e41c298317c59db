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
    finally:
        server.stop()
