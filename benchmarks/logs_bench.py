"""Central logs ingestion: log records per second into a real ``synmlops serve`` on SQLite
(``make bench`` runs it; alone: ``.venv/bin/python -m benchmarks.logs_bench [--records N]``).

Measured from the first record logged to the last one stored:

- the tracker's ``FederatedLogHandler`` (HTTP, through its spool), records logged in a loop
  with ``logging`` and ``flush()`` waited for;
- GELF over TCP, as graypy frames them (JSON + null byte), the frames built beforehand and
  sent on one connection, until ``/health`` counts them all stored;
- graypy's own ``GELFTCPHandler`` (what synergos_logger uses), where the sender's Python
  work is part of the time.

Writes the table to ``benchmarks/logs_results.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import requests

from benchmarks._report import Machine
from benchmarks._servers import ENV, Server, free_port, wait_healthy

RESULTS = Path(__file__).resolve().parent / "logs_results.md"


def start(folder: Path, gelf_port: int) -> Server:
    port = free_port()
    store = folder / "store"
    command = [sys.executable, "-m", "synergos_mlops", "serve", "--store", str(store),
               "--port", str(port), "--workers", "2", "--gelf-port", str(gelf_port)]  # fmt: skip
    log = folder / f"synmlops-serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ENV}
        )
    backend = f"sqlite:///{store / 'mlflow.db'}"
    return Server("synmlops serve", f"http://127.0.0.1:{port}", backend, process, log)


def gelf_stored(server: Server) -> int:
    return int(requests.get(f"{server.url}/health", timeout=30).json()["gelf"]["stored"])


def wait_stored(server: Server, target: int, timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while gelf_stored(server) < target:
        if time.monotonic() > deadline:
            raise RuntimeError(f"GELF records not stored within {timeout:.0f} s")
        time.sleep(0.05)


def bench_handler(server: Server, folder: Path, records: int) -> float:
    from synergos_mlops import FederatedTracker, TrackerConfig

    config = TrackerConfig(spool_dir=folder / "spool", flush_timeout=600)
    with FederatedTracker(server.url, config) as tracker:
        run = tracker.run("bench", "logs", "handler", "r1", participants=["w1"])
        logger = logging.getLogger("WKR_w1")
        logger.handlers = [run.log_handler(participant="w1")]
        logger.setLevel(logging.INFO)
        logger.propagate = False
        began = time.perf_counter()
        for n in range(records):
            logger.info("local epoch %d done", n, extra={"round": n // 100, "loss": 0.5})
        if not run.flush():
            raise RuntimeError("the handler's records were not all stored")
        seconds = time.perf_counter() - began
        run.end()
    return seconds


def _frame(n: int) -> bytes:
    message = {
        "version": "1.1", "host": "worker-1", "short_message": f"local epoch {n} done",
        "timestamp": time.time(), "level": 6, "facility": "", "_logger": "WKR_w1",
        "_level_name": "INFO", "_event": f"local epoch {n} done", "_file_path": "/app/x.py",
        "_ID_path": "/app/worker/train.py", "_ID_class": "Trainer", "_ID_function": "fit",
        "_collab_id": "bench", "_project_id": "logs", "_expt_id": "gelf", "_run_id": "r1",
    }  # fmt: skip
    return json.dumps(message).encode() + b"\x00"


def bench_gelf_frames(server: Server, gelf_port: int, records: int) -> float:
    frames = b"".join(_frame(n) for n in range(records))
    before = gelf_stored(server)
    began = time.perf_counter()
    with socket.create_connection(("127.0.0.1", gelf_port)) as tcp:
        tcp.sendall(frames)
    wait_stored(server, before + records)
    return time.perf_counter() - began


def bench_graypy(server: Server, gelf_port: int, records: int) -> float:
    import graypy

    handler = graypy.GELFTCPHandler("127.0.0.1", gelf_port, facility="", level_names=True)
    logger = logging.getLogger("TTP_bench")
    logger.handlers = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    ids = {"collab_id": "bench", "project_id": "logs", "expt_id": "graypy", "run_id": "r1"}
    before = gelf_stored(server)
    began = time.perf_counter()
    for n in range(records):
        logger.info("round %d aggregated", n, extra={"event": "round aggregated", **ids})
    handler.close()
    wait_stored(server, before + records)
    return time.perf_counter() - began


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=50_000)
    args = parser.parse_args(argv)
    machine = Machine.now()
    rows: list[tuple[str, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="synmlops-logs-bench-") as tmp:
        folder = Path(tmp)
        gelf_port = free_port()
        server = start(folder, gelf_port)
        try:
            wait_healthy(server)
            cases: list[tuple[str, int, Callable[[], float]]] = [
                ("FederatedLogHandler (HTTP, spool)", args.records,
                 lambda: bench_handler(server, folder, args.records)),
                ("GELF TCP, frames built beforehand", args.records,
                 lambda: bench_gelf_frames(server, gelf_port, args.records)),
                ("GELF TCP, graypy GELFTCPHandler", args.records // 5,
                 lambda: bench_graypy(server, gelf_port, args.records // 5)),
            ]  # fmt: skip
            for name, count, case in cases:
                seconds = case()
                rows.append((name, count, seconds))
                print(f"{name}: {count} records in {seconds:.2f} s = {count / seconds:,.0f}/s")
        finally:
            server.stop()
    machine = machine.finished()
    lines = [
        "# Central logs: records per second into `synmlops serve` (SQLite)",
        "",
        f"{machine.describe()}. Command: `.venv/bin/python -m benchmarks.logs_bench "
        f"--records {args.records}` (run by `make bench`). Time from the first record logged "
        "to the last one stored (the handler's `flush()` returned, or `/health` counting "
        "every GELF record stored).",
        "",
        "| path | records | seconds | records/s |",
        "| --- | ---: | ---: | ---: |",
        *(
            f"| {name} | {count:,} | {seconds:.2f} | {count / seconds:,.0f} |"
            for name, count, seconds in rows
        ),  # fmt: skip
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(f"written to {RESULTS}")


if __name__ == "__main__":
    main()
