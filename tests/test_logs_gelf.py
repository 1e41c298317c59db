"""GELF into central logs: graypy (what the original synergos_logger sends through) over TCP
and UDP against a real `synmlops serve --gelf-port`, malformed and oversized input from raw
sockets, a bounded flood on loopback; and the mapping functions on their own."""

from __future__ import annotations

import gzip
import json
import logging
import os
import socket
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import graypy
import pytest
import requests
from conftest import Server, free_port, start_server

from synergos_mlops import FederatedTracker, TrackerConfig
from synergos_mlops.server.services.gelf import (
    ChunkAssembler,
    GelfRejected,
    decode_payload,
    record_from_gelf,
    system_samples_from_gelf,
)

API = "/api/synergos/v1"


@pytest.fixture(scope="module")
def gelf_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    folder = tmp_path_factory.mktemp("gelf")
    port = free_port()
    server = start_server(folder / "store", workers=2, extra=["--gelf-port", str(port)])
    with FederatedTracker(server.url, TrackerConfig(spool_dir=folder / "spool")) as tracker:
        for run in ("tcp", "udp", "flood", "bad"):
            tracker.run("c", "p", "e", run, participants=["w1"]).end()
    yield server, port
    server.stop()


def health(server: Server) -> dict[str, Any]:
    response = requests.get(f"{server.url}/health", timeout=10)
    assert response.status_code == 200
    return dict(response.json())


def records(server: Server, run: str, **params: Any) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        response = requests.get(
            f"{server.url}{API}/runs/c/p/e/{run}/logs",
            params={"after": after, "limit": 5000, **params},
            timeout=30,
        )
        page = response.json()
        found += page["records"]
        if not page["more"]:
            return found
        after = page["last_id"]


def wait_for(check: Callable[[], bool], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


def synergos_logger(name: str, handler: logging.Handler) -> Callable[..., None]:
    """Log as synergos_logger does: a stdlib logger with a graypy handler, the structlog
    event dict given as ``extra``."""
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False

    def log(level: int, event: str, **fields: Any) -> None:
        event_dict = {
            "event": event, "logger": name, "level": logging.getLevelName(level).lower(),
            "level_number": level, "timestamp": "2021-03-01 10:00.00", "file_path": "/app/x.py",
            "ID_path": "/app/rest_rpc/training/core.py", "ID_class": "Trainer",
            "ID_function": "start_proc", **fields,
        }  # fmt: skip
        logger.log(level, event, extra=event_dict)

    return log


def test_graypy_over_tcp_lands_on_the_run_with_role_participant_and_fields(
    gelf_server: tuple[Server, int],
) -> None:
    server, port = gelf_server
    handler = graypy.GELFTCPHandler("127.0.0.1", port, facility="", level_names=True)
    ids = {"collab_id": "c", "project_id": "p", "expt_id": "e", "run_id": "tcp"}
    try:
        synergos_logger("TTP_main", handler)(logging.INFO, "Federated cycle started", **ids)
        worker = synergos_logger("WKR_w1", handler)
        worker(logging.WARNING, "Local loss diverging", **ids)
        sysmetrics = synergos_logger("SYS_w1", handler)
        sysmetrics(logging.DEBUG, "Probed system's hardware usage successfully.",
                   cpu_percent=37.5, memory_used=2_000_000, net_bytes_sent=10, **ids)  # fmt: skip
    finally:
        handler.close()
    wait_for(lambda: len(records(server, "tcp")) == 3)
    ttp, wkr, sys_ = records(server, "tcp")
    assert (ttp["role"], ttp["participant"], ttp["level_name"]) == ("TTP", None, "INFO")
    assert ttp["message"] == "Federated cycle started"
    assert ttp["fields"]["ID_function"] == "start_proc"
    assert ttp["fields"]["event"] == "Federated cycle started"
    assert (wkr["role"], wkr["participant"], wkr["level"]) == ("WKR", "w1", 30)
    assert (sys_["role"], sys_["participant"]) == ("SYS", "w1")
    assert [r["message"] for r in records(server, "tcp", role="SYS")] == [sys_["message"]]
    wait_for(lambda: health(server)["gelf"]["stored"] >= 3)  # the status file: every 0.5 s


def test_graypy_over_udp_chunked_and_compressed_is_put_back_together(
    gelf_server: tuple[Server, int],
) -> None:
    server, port = gelf_server
    chunker = graypy.handler.GELFWarningChunker(chunk_size=1024)
    handler = graypy.GELFUDPHandler("127.0.0.1", port, gelf_chunker=chunker, compress=True)
    big = os.urandom(20_000).hex()  # does not compress below many chunks
    try:
        log = synergos_logger("WKR_w1", handler)
        log(logging.INFO, "a large event", collab_id="c", project_id="p", expt_id="e",
            run_id="udp", payload=big)  # fmt: skip
        log(logging.ERROR, "a small event", collab_id="c", project_id="p", expt_id="e",
            run_id="udp")  # fmt: skip
    finally:
        handler.close()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    message = {"version": "1.1", "host": "h", "short_message": "gzip datagram",
               "_logger": "DIR_main", "_collaboration": "c", "_project": "p",
               "_experiment": "e", "_run": "udp"}  # fmt: skip
    udp.sendto(gzip.compress(json.dumps(message).encode()), ("127.0.0.1", port))
    udp.close()
    wait_for(lambda: len(records(server, "udp")) == 3)
    by_message = {r["message"]: r for r in records(server, "udp")}
    assert by_message["a large event"]["fields"]["payload"] == big
    assert by_message["a small event"]["level_name"] == "ERROR"
    assert by_message["gzip datagram"]["role"] == "DIR"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_malformed_and_oversize_gelf_is_counted_never_kept_and_the_server_stays_up(
    gelf_server: tuple[Server, int],
) -> None:
    server, port = gelf_server
    before = health(server)["gelf"]["rejected"]
    good = json.dumps({"version": "1.1", "host": "h", "short_message": "still listening",
                       "_logger": "TTP_x", "_collab_id": "c", "_project_id": "p",
                       "_expt_id": "e", "_run_id": "bad"}).encode()  # fmt: skip
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for datagram in (
        b"not json at all",
        json.dumps({"host": "h"}).encode(),  # no short_message
        json.dumps([1, 2]).encode(),
        zlib.compress(b"{" * 10) + b"",
        b"\x1e\x0f" + b"12345678" + bytes([0, 0]) + b"x",  # a chunk of 0 chunks
        b"\x1e\x0f" + b"abcdefgh" + bytes([0, 3]) + b"{",  # first of 3, never finished
        zlib.compress(b" " * (2 << 20)),  # 2 MiB once inflated
    ):
        udp.sendto(datagram, ("127.0.0.1", port))
    udp.close()

    rss = _rss_kib(server.process.pid)
    answered: list[float] = []
    stop = threading.Event()

    def poll() -> None:
        while not stop.is_set():
            started = time.monotonic()
            health(server)
            answered.append(time.monotonic() - started)
            time.sleep(0.2)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        with socket.create_connection(("127.0.0.1", port)) as tcp:
            tcp.sendall(b"{broken json\x00")
            line = b"a" * (1 << 20)
            for _ in range(100):  # a ~100 MB line
                tcp.sendall(line)
            tcp.sendall(b"\x00" + good + b"\x00")
        wait_for(lambda: [r["message"] for r in records(server, "bad")] == ["still listening"])
    finally:
        stop.set()
        poller.join()
    assert answered and max(answered) < 5
    assert _rss_kib(server.process.pid) - rss < 64 * 1024  # the line was never held whole

    def rejected() -> dict[str, int]:
        now = health(server)["gelf"]["rejected"]
        return {k: now.get(k, 0) - before.get(k, 0) for k in now}

    wait_for(lambda: rejected().get("incomplete", 0) >= 1, timeout=30)  # after its 5 s
    counts = rejected()
    assert counts["not_json"] >= 4 and counts["missing_field"] == 1
    assert counts["oversize"] == 2 and counts["bad_chunk"] == 1


def test_a_flood_on_loopback_is_stored_once_while_health_answers(
    gelf_server: tuple[Server, int],
) -> None:
    server, port = gelf_server
    total = 50_000
    start = health(server)["gelf"]
    frames = b"".join(
        json.dumps({"version": "1.1", "host": "h", "short_message": f"flood {n}",
                    "timestamp": time.time(), "level": 6, "_logger": "WKR_w1",
                    "_collab_id": "c", "_project_id": "p", "_expt_id": "e",
                    "_run_id": "flood", "_round": n}).encode() + b"\x00"
        for n in range(total)
    )  # fmt: skip
    slowest = 0.0
    began = time.monotonic()
    with socket.create_connection(("127.0.0.1", port)) as tcp:
        for offset in range(0, len(frames), 1 << 20):
            tcp.sendall(frames[offset : offset + (1 << 20)])
            if offset % (4 << 20) == 0:
                asked = time.monotonic()
                health(server)
                slowest = max(slowest, time.monotonic() - asked)
    assert time.monotonic() - began < 60
    assert slowest < 5

    def settled() -> bool:
        now = health(server)["gelf"]
        return now["accepted"] - start["accepted"] == total and now["stored"] == now["accepted"]

    wait_for(settled, timeout=120)
    stored = records(server, "flood")
    assert len(stored) == total
    assert len({r["message"] for r in stored}) == total


def test_serve_refuses_a_gelf_port_that_is_taken(tmp_path: Path) -> None:
    import subprocess
    import sys

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "synergos_mlops", "serve", "--store", str(tmp_path / "s"),
             "--port", str(free_port()), "--gelf-port", str(port)],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
    assert result.returncode == 1
    assert f"cannot take GELF on 127.0.0.1:{port}" in result.stderr


# The mapping on its own -----------------------------------------------------------------


def test_a_sysmetric_event_gives_its_hardware_sample() -> None:
    gelf = {"version": "1.1", "host": "h", "short_message": "Probed", "timestamp": 1.5,
            "level": 7, "_logger": "SYS_w1", "_cpu_percent": 12.5, "_memory_used": 100,
            "_run_id": "r", "_expt_id": "e", "_project_id": "p", "_collab_id": "c"}  # fmt: skip
    sample = system_samples_from_gelf(record_from_gelf(gelf))
    assert sample == {
        "participant": "w1", "timestamp": 1500, "collaboration": "c", "project": "p",
        "experiment": "e", "run": "r", "values": {"cpu_percent": 12.5, "memory_used": 100.0},
    }  # fmt: skip
    assert system_samples_from_gelf(gelf) == sample
    assert system_samples_from_gelf({**gelf, "_logger": "TTP_x"}) is None
    assert record_from_gelf(gelf).level == 10


def test_chunks_are_bounded_by_count_and_bytes() -> None:
    assembler = ChunkAssembler(max_messages=3, timeout=5)

    def chunk(message: int, sequence: int, count: int, data: bytes = b"x") -> bytes:
        return b"\x1e\x0f" + struct.pack(">Q", message) + bytes([sequence, count]) + data

    for message in range(10):
        assert assembler.add(chunk(message, 0, 2), now=0.0) is None
    assert assembler.dropped == {"chunk_flood": 7}
    assert assembler.add(chunk(9, 1, 2, b"y"), now=1.0) == b"xy"
    assembler.expire(now=10.0)
    assert assembler.dropped == {"chunk_flood": 7, "incomplete": 2}
    assert assembler.held_bytes == 0
    with pytest.raises(GelfRejected, match="bad_chunk"):
        assembler.add(chunk(1, 5, 2))
    with pytest.raises(GelfRejected, match="oversize"):
        decode_payload(gzip.compress(b" " * (2 << 20)))


def test_sysmetric_events_over_gelf_become_the_participants_hardware_statistics(
    gelf_server: tuple[Server, int], tmp_path: Path
) -> None:
    from mlflow import MlflowClient

    server, port = gelf_server
    with FederatedTracker(server.url, TrackerConfig(spool_dir=tmp_path / "spool")) as tracker:
        run = tracker.run("c", "p", "e", "hardware", participants=["w7"])  # still running
        ids = {"collab_id": "c", "project_id": "p", "expt_id": "e", "run_id": "hardware"}
        handler = graypy.GELFTCPHandler("127.0.0.1", port, facility="", level_names=True)
        try:
            sysmetrics = synergos_logger("SYS_w7", handler)
            for second, cpu in enumerate((20.0, 40.0, 60.0)):
                sysmetrics(logging.DEBUG, "Probed system's hardware usage successfully.",
                           cpu_percent=cpu, memory_used=2e9, memory_total=8e9,
                           net_bytes_recv=1e6 * (1 + second), **ids)  # fmt: skip
                time.sleep(1.1)  # one sample a second, as SysmetricLogger sends them
        finally:
            handler.close()
        child = run.participant_run_id("w7")
        client = MlflowClient(server.url)

        def cpu_history() -> list[float]:
            history = client.get_metric_history(child, "system/cpu_utilization_percentage")
            return [m.value for m in sorted(history, key=lambda m: m.timestamp)]

        wait_for(lambda: len(cpu_history()) == 3)
        assert cpu_history() == [20.0, 40.0, 60.0]
        memory = client.get_metric_history(child, "system/system_memory_usage_percentage")
        assert {m.value for m in memory} == {25.0}
        received = client.get_metric_history(child, "system/network_receive_megabytes")
        assert sorted(m.value for m in received) == [0.0, 1.0, 2.0]  # since the first sample
        run.end()
    wait_for(lambda: health(server)["gelf"]["hardware_samples"]["attached"] >= 3)
