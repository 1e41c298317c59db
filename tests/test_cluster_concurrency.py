"""The Cluster tier under load: many federated cycles (hyperparameter tuning) logging to one
server at once, and a server worker killed in the middle of a stream.

Every cycle is a real orchestrator process (tests/cluster_cycle.py) with its own
FederatedTracker. What the stores hold is read straight from MLflow's tables and from the
artifacts destination (a folder, or the bucket of an S3-compatible server), so a point stored
twice or lost, or a missing checkpoint, cannot hide behind an API.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cluster_support import (
    Cycle,
    S3Server,
    check_cycle_points,
    checkpoint_path,
    finish_cycle,
    finished_runs,
    model_bytes,
    start_cycle,
)
from conftest import Server

CYCLES = 8  # concurrent federated cycles: 8 x 6 runs x 20 rounds x 20 keys = 19,200 points
#: Rounds of each concurrent cycle, each with a checkpoint: 160 uploads beside the points.
ROUNDS = 20
BUCKET = "synergos-cluster"
PREFIX = "mlops"


@pytest.fixture
def s3(s3: S3Server) -> S3Server:
    """conftest's S3 server, with the bucket the cycles write to."""
    s3.create_bucket(BUCKET)
    return s3


def run_cycles(
    server: Server, workdir: Path, cycles: list[Cycle]
) -> tuple[list[dict[str, Any]], float]:
    """Start every cycle at once, wait for all; their reports and the seconds it took."""
    started = time.monotonic()
    running = [start_cycle(server.url, cycle, workdir) for cycle in cycles]
    reports = [finish_cycle(process, report, timeout=900) for process, report in running]
    return reports, time.monotonic() - started


def say(line: str) -> None:
    """A measurement, shown with ``pytest -s`` and kept in the test's log."""
    print(f"\n[cluster] {line}")


def check_all(
    server: Server,
    backend_uri: str,
    cycles: list[Cycle],
    reports: list[dict[str, Any]],
    read_checkpoint: Callable[[str], bytes | None],
) -> None:
    for cycle, report in zip(cycles, reports, strict=True):
        assert report["flushed"], f"{cycle.run}: points left unsent"
        check_cycle_points(backend_uri, cycle, report)
        for round_ in range(cycle.rounds if cycle.models else 0):
            path = checkpoint_path(report, round_)
            assert read_checkpoint(path) == model_bytes(cycle.run, round_), f"{path} is missing"
    statuses = finished_runs(server.url, "cluster")
    assert {cycle.run: statuses.get(cycle.run) for cycle in cycles} == {
        cycle.run: "FINISHED" for cycle in cycles
    }


def report_load(label: str, reports: list[dict[str, Any]], seconds: float) -> None:
    points = sum(r["points"] for r in reports)
    retries = sum(r["retries"] for r in reports)
    say(
        f"{label}: {len(reports)} cycles, {points} points and "
        f"{len(reports) * ROUNDS} checkpoints in {seconds:.1f} s "
        f"({points / seconds:.0f} points/s with checkpoints); client retries: {retries}"
    )


def test_eight_concurrent_cycles_on_the_sqlite_store_with_four_workers_store_everything_once(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    store = tmp_path / "store"
    server = server_factory(store, workers=4)
    cycles = [Cycle(f"sqlite-{i}", rounds=ROUNDS) for i in range(CYCLES)]
    reports, seconds = run_cycles(server, tmp_path / "cycles", cycles)
    report_load("SQLite, 4 workers", reports, seconds)

    def read(path: str) -> bytes | None:
        file = store / "artifacts" / path
        return file.read_bytes() if file.is_file() else None

    check_all(server, f"sqlite:///{store / 'mlflow.db'}", cycles, reports, read)


def test_eight_concurrent_cycles_on_postgresql_and_s3_with_four_workers_store_everything_once(
    tmp_path: Path,
    server_factory: Callable[..., Server],
    postgres_uri: str,
    s3: S3Server,
) -> None:
    server = server_factory(
        tmp_path / "store",
        workers=4,
        extra=["--backend-store-uri", postgres_uri,
               "--artifacts-destination", f"s3://{BUCKET}/{PREFIX}"],
        env=s3.env,
    )  # fmt: skip
    cycles = [Cycle(f"pg-{i}", rounds=ROUNDS) for i in range(CYCLES)]
    reports, seconds = run_cycles(server, tmp_path / "cycles", cycles)
    report_load("PostgreSQL + S3, 4 workers", reports, seconds)

    objects = s3.keys(BUCKET, f"{PREFIX}/")

    def read(path: str) -> bytes | None:
        key = f"{PREFIX}/{path}"
        return s3.read(BUCKET, key) if key in objects else None

    check_all(server, postgres_uri, cycles, reports, read)
    checkpoints = CYCLES * ROUNDS
    assert len(objects) == checkpoints, f"{len(objects)} objects in the bucket, not {checkpoints}"


# A worker killed mid-stream ----------------------------------------------------------------


def _processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process we can see."""
    found: dict[int, tuple[int, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        found[int(entry.name)] = (parent, command)
    return found


def uvicorn_workers(server: Server) -> list[int]:
    """The worker processes of the server's uvicorn (children of its supervisor)."""
    table = _processes()
    descendants: set[int] = set()
    frontier = {server.process.pid}
    while frontier:
        descendants |= frontier
        frontier = {pid for pid, (parent, _) in table.items() if parent in frontier} - descendants
    supervisors = {pid for pid in descendants if " -m uvicorn " in table[pid][1]}
    return sorted(
        pid
        for pid in descendants
        if table[pid][0] in supervisors and "multiprocessing.spawn" in table[pid][1]
    )


def _established_inodes(port: int) -> set[str]:
    inodes: set[str] = set()
    for name in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(name).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local_port = int(fields[1].rsplit(":", 1)[1], 16)
            if local_port == port and fields[3] == "01":  # ESTABLISHED, server side
                inodes.add(fields[9])
    return inodes


def worker_holding_a_connection(server: Server, workers: list[int]) -> int | None:
    """The worker that holds a client's open connection right now, if one does."""
    inodes = _established_inodes(server.port)
    for pid in workers:
        try:
            links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
        except OSError:
            continue
        if any(link.startswith("socket:[") and link[8:-1] in inodes for link in links):
            return pid
    return None


def test_a_worker_killed_mid_stream_loses_nothing_the_tracker_logged(
    tmp_path: Path, server_factory: Callable[..., Server]
) -> None:
    store = tmp_path / "store"
    backend = f"sqlite:///{store / 'mlflow.db'}"
    server = server_factory(store, workers=2)
    workers = uvicorn_workers(server)
    assert len(workers) == 2, f"expected two uvicorn workers, found {workers}"

    # Small batches sent often, a checkpoint per round: a request is nearly always in flight.
    cycle = Cycle("killed", participants=3, rounds=240, keys=10, pace=0.02)
    process, report_path = start_cycle(
        server.url, cycle, tmp_path / "cycles",
        extra=["--batch-size", "400", "--flush-interval", "0.05"],
    )  # fmt: skip
    deadline = time.monotonic() + 300
    while not store.joinpath("mlflow.db").is_file() or not _any_points(backend):
        assert process.poll() is None, report_path.with_suffix(".log").read_text()[-3000:]
        assert time.monotonic() < deadline, "the tracker stored nothing within 300 s"
        time.sleep(0.05)
    victim = worker_holding_a_connection(server, workers) or workers[0]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()

    report = finish_cycle(process, report_path, timeout=900)
    assert process.returncode == 0
    assert report["flushed"]
    check_cycle_points(backend, cycle, report)
    for round_ in range(cycle.rounds):
        path = store / "artifacts" / checkpoint_path(report, round_)
        assert path.read_bytes() == model_bytes(cycle.run, round_)
    say(
        f"worker {victim} killed; the cycle ended {time.monotonic() - killed_at:.0f} s later; "
        f"{report['points']} points stored once; client retries: {report['retries']}"
    )

    # uvicorn's supervisor starts a new worker in place of the killed one.
    deadline = time.monotonic() + 300
    while True:
        now = uvicorn_workers(server)
        if len(now) == 2 and victim not in now:
            break
        assert time.monotonic() < deadline, f"no new worker replaced {victim}: {now}"
        time.sleep(0.5)
    assert finished_runs(server.url, "cluster") == {"killed": "FINISHED"}
    assert "died" in server.output()


def _any_points(backend_uri: str) -> bool:
    from sqlalchemy import create_engine, text

    engine = create_engine(backend_uri)
    try:
        with engine.connect() as connection:
            return bool(connection.execute(text("SELECT 1 FROM metrics LIMIT 1")).first())
    except Exception:  # noqa: BLE001 - the schema is not there yet
        return False
    finally:
        engine.dispose()
