"""The servers a benchmark compares: stock ``mlflow server`` and ``synmlops serve``."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

PG_ADMIN_URI = "postgresql://synmlops:synmlops@127.0.0.1:5432/postgres"
ENV = {"MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONUNBUFFERED": "1"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    name: str
    url: str
    backend_uri: str
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def wait_healthy(server: Server, timeout: float = 300, pause: float = 0.3) -> None:
    """Until ``/health`` answers 200, asking every ``pause`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = server.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{server.name} exited while starting:\n{tail}")
        try:
            if requests.get(f"{server.url}/health", timeout=2).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(pause)
    server.stop()
    raise RuntimeError(f"{server.name} did not become healthy in {timeout:.0f} s")


def start_stock(folder: Path, backend_uri: str | None, workers: int) -> Server:
    """``python -m mlflow server`` as its documentation shows it, on a temporary store."""
    folder.mkdir(parents=True, exist_ok=True)
    backend = backend_uri or f"sqlite:///{folder / 'mlflow.db'}"
    port = free_port()
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", backend,
        "--artifacts-destination", str(folder / "artifacts"),
        "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
    ]  # fmt: skip
    log = folder / f"mlflow-server-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ENV}
        )
    return Server("mlflow server", f"http://127.0.0.1:{port}", backend, process, log)


def start_synergos(folder: Path, backend_uri: str | None, workers: int) -> Server:
    """``synmlops serve`` on a temporary store folder (and database, when given)."""
    port = free_port()
    store = folder / "store"
    command = [sys.executable, "-m", "synergos_mlops", "serve", "--store", str(store),
               "--port", str(port), "--workers", str(workers)]  # fmt: skip
    if backend_uri:
        command += ["--backend-store-uri", backend_uri]
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"synmlops-serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **ENV}
        )
    backend = backend_uri or f"sqlite:///{store / 'mlflow.db'}"
    return Server("synmlops serve", f"http://127.0.0.1:{port}", backend, process, log)


@contextmanager
def running(*starters: Callable[[], Server]) -> Iterator[list[Server]]:
    """Start the servers one after the other (each healthy before the next starts, so a busy
    machine is not asked to boot them all at once); stop them all afterwards."""
    servers: list[Server] = []
    try:
        for start in starters:
            servers.append(start())
            wait_healthy(servers[-1])
        yield servers
    except BaseException:
        for server in servers:
            tail = server.log.read_text(errors="replace")[-2000:]
            print(f"--- {server.name} log ({server.log}), last lines:\n{tail}", file=sys.stderr)
        raise
    finally:
        for server in servers:
            server.stop()


def postgres_available() -> str | None:
    """None when PostgreSQL answers, else the reason."""
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN_URI)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001 - any reason means "skip PostgreSQL"
        return str(getattr(exc, "orig", exc)).strip().splitlines()[0]
    finally:
        engine.dispose()
    return None


@contextmanager
def _created_database(name: str, how: str = "") -> Iterator[None]:
    """``CREATE DATABASE name how``, dropped afterwards (connections and all)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(PG_ADMIN_URI, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"{how}'))
    try:
        yield
    finally:
        with engine.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        engine.dispose()


@contextmanager
def postgres_database(prefix: str) -> Iterator[str]:
    """A throwaway PostgreSQL database; its URI. Dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with _created_database(name):
        yield f"postgresql://synmlops:synmlops@127.0.0.1:5432/{name}"


@contextmanager
def postgres_copy(uri: str, suffix: str) -> Iterator[str]:
    """A copy of the database ``uri`` names (nobody may be connected to it), made by
    PostgreSQL file by file; its URI. Dropped afterwards."""
    base, source = uri.rsplit("/", 1)
    name = f"{source}_{suffix}"
    with _created_database(name, f' TEMPLATE "{source}" STRATEGY FILE_COPY'):
        yield f"{base}/{name}"


def count_points(backend_uri: str) -> int:
    """Rows in MLflow's ``metrics`` table: the points a store holds."""
    from sqlalchemy import create_engine, text

    engine = create_engine(backend_uri)
    try:
        with engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM metrics")).scalar_one())
    finally:
        engine.dispose()
