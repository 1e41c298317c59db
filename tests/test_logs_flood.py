"""A GELF flood as issue 15 states it, against a real `synmlops serve --gelf-port`: a sender
process offers about 50,000 records a second for 10 seconds on loopback (at most 500,000
records), over TCP (lossless: the server's reading paces the sender) and over UDP (the
sender is not paced; the kernel drops what the server does not read in time), while the
server's memory, `/health` and a run API request are watched, and every record counted as
accepted is found in the database exactly once.

HEAVY: about 40 s per transport on two cores (the flood is bounded to 10 s and 500,000
records; the rest is starting the server and storing what it accepted). On the two shared
cores this was written on, the sender alone reaches 50,000/s into a discarding socket; over
TCP the server read 24,000-47,000/s depending on the cores' other load, refusing the excess
as backlog_full once its 200,000-record backlog was full (the assertion messages print the
rate achieved and what was refused; see docs/logs.md).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import start_server, wait_for

from synergos_mlops import FederatedTracker, TrackerConfig

API = "/api/synergos/v1"
RATE = 50_000  # records a second, as the issue states
SECONDS = 10.0
TOTAL = int(RATE * SECONDS)
#: The serve process's resident memory may grow by at most this during the flood: its GELF
#: backlog is bounded at 200,000 records, its TCP buffers at one message a connection.
RSS_CAP_MIB = 400
#: /health and the run API answer within this during the flood.
ANSWER_WITHIN = 5.0

#: The sender process: GELF frames (null-terminated, as graypy's TCP handler sends them) at
#: RATE a second, paced in 10 ms steps, until TOTAL or SECONDS; prints what it sent.
SENDER = r"""
import json, socket, sys, time
port, rate, total = (int(a) for a in sys.argv[1:4])
seconds, udp = float(sys.argv[4]), sys.argv[5] == "udp"
template = (b'{"version":"1.1","host":"node-1","short_message":"flood %d","timestamp":%.3f,'
            b'"level":6,"_logger":"WKR_w1","_collab_id":"c","_project_id":"p",'
            b'"_expt_id":"e","_run_id":"flood","_round":%d}\x00')
if udp:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.connect(("127.0.0.1", port))
else:
    sock = socket.create_connection(("127.0.0.1", port))
sent, began = 0, time.monotonic()
while sent < total:
    elapsed = time.monotonic() - began
    if elapsed >= seconds:
        break
    due = min(total, int(rate * (elapsed + 0.01)))
    if due <= sent:
        time.sleep(0.002)
        continue
    now = time.time()
    step = min(due, sent + 5000)
    if udp:  # one datagram a record, without its null byte
        for n in range(sent, step):
            sock.send((template % (n, now, n))[:-1])
    else:
        sock.sendall(b"".join(template % (n, now, n) for n in range(sent, step)))
    sent = step
took = time.monotonic() - began
sock.close()
print(json.dumps({"sent": sent, "seconds": took}))
"""


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_a_gelf_flood_of_50000_records_a_second_keeps_memory_bounded_answers_and_stores_each_accepted_record_once(  # noqa: E501
    tmp_path: Path, transport: str
) -> None:
    from conftest import free_port

    port = free_port()
    server = start_server(tmp_path / "store", workers=2, extra=["--gelf-port", str(port)])
    try:
        with FederatedTracker(server.url, TrackerConfig(spool_dir=tmp_path / "spool")) as tracker:
            tracker.run("c", "p", "e", "flood", participants=["w1"]).end()

        def health() -> dict[str, Any]:
            return dict(requests.get(f"{server.url}/health", timeout=30).json())

        before = health()["gelf"]
        baseline = _rss_mib(server.process.pid)
        peak = baseline
        slowest = {"health": 0.0, "run": 0.0}
        answers = {"health": 0, "run": 0}
        failures: list[str] = []
        stop = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _rss_mib(server.process.pid))
                for name, path in (("health", "/health"), ("run", f"{API}/runs/c/p/e/flood")):
                    asked = time.monotonic()
                    try:
                        code = requests.get(f"{server.url}{path}", timeout=30).status_code
                    except requests.RequestException as exc:
                        failures.append(f"{name}: {exc}")
                        continue
                    slowest[name] = max(slowest[name], time.monotonic() - asked)
                    if code != 200:
                        failures.append(f"{name}: {code}")
                    answers[name] += 1
                stop.wait(0.25)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            sender = subprocess.run(
                [sys.executable, "-c", SENDER, str(port), str(RATE), str(TOTAL), str(SECONDS),
                 transport],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert sender.returncode == 0, sender.stderr
            report = json.loads(sender.stdout)
            sent, took = int(report["sent"]), float(report["seconds"])
            rate = sent / took

            seen: list[int] = []

            def settled() -> bool:
                now = health()["gelf"]
                offered = now["accepted"] - before["accepted"]
                offered += sum(now["rejected"].values()) - sum(before["rejected"].values())
                seen.append(offered)
                if now["stored"] != now["accepted"] or now["backlog"]:
                    return False
                if transport == "tcp":
                    return offered == sent
                time.sleep(1.0)  # UDP: nothing more arrives (the status file: every 0.5 s)
                return len(seen) > 1 and seen[-2] == offered

            assert wait_for(settled, timeout=90), (health(), sent)
        finally:
            stop.set()
            watcher.join()
        after = health()["gelf"]
        accepted = after["accepted"] - before["accepted"]
        rejected = {k: v - before["rejected"].get(k, 0) for k, v in after["rejected"].items()}
        achieved = (
            f"{transport}: sent {sent} records in {took:.1f} s ({rate:,.0f}/s; aim {RATE:,}/s), "
            f"accepted {accepted}, rejected {rejected}, RSS {baseline:.0f} -> peak "
            f"{peak:.0f} MiB, slowest answers {slowest}"
        )
        print(achieved)

        with sqlite3.connect(tmp_path / "store" / "mlflow.db") as db:
            count, distinct = db.execute(
                "SELECT COUNT(*), COUNT(DISTINCT message) FROM synergos_logs WHERE run = 'flood'"
            ).fetchone()
        assert count == distinct == accepted == after["stored"] - before["stored"], achieved
        if transport == "tcp":  # nothing lost: every record sent is accepted or counted
            assert accepted + sum(rejected.values()) == sent, achieved
        else:  # the kernel drops datagrams the server has no time for, as UDP does
            assert 0 < accepted + sum(rejected.values()) <= sent, achieved
        assert sent == TOTAL or took >= SECONDS - 0.1, achieved
        assert peak - baseline < RSS_CAP_MIB, achieved
        assert not failures, (failures, achieved)
        assert answers["health"] >= 10 and answers["run"] >= 10, achieved
        assert max(slowest.values()) < ANSWER_WITHIN, achieved
    finally:
        server.stop()
