"""Helpers for the tracking tests: an in-memory transport (the library's own protocol, so the
buffering client is tested without a server) and small readers."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

from synergos_mlops.errors import InvalidValueError, ServerUnavailableError
from synergos_mlops.federation import ExperimentIds
from synergos_mlops.storage.batch import decode_batch
from synergos_mlops.tracking import Resolved, TrackerConfig


def fast_config(tmp_path: Path, **overrides: object) -> TrackerConfig:
    values: dict[str, object] = {
        "spool_dir": tmp_path / "spool",
        "flush_interval": 0.05,
        "flush_timeout": 10.0,
        "connect_timeout": 10.0,
        "retry_interval": 0.1,
    }
    values.update(overrides)
    return TrackerConfig(**values)  # type: ignore[arg-type]


class MemoryTransport:
    """Stores what a server would, in memory; can be switched off to play an absent server."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.down = False
        self.refuse_runs: set[str] = set()
        self.requests = 0
        self.resolves = 0
        self.points: dict[tuple[str, str, int], float] = {}
        self.params: dict[str, dict[str, str]] = {}
        self.statuses: dict[str, str] = {}
        self.artifacts: dict[str, bytes] = {}
        self.runs: dict[tuple[str, str | None], str] = {}
        self._lock = threading.Lock()

    @property
    def tracking_uri(self) -> str:
        return f"memory://{self.name}"

    @property
    def destination_id(self) -> str:
        return f"memory-{self.name}"

    def _check(self) -> None:
        if self.down:
            raise ServerUnavailableError("memory transport is down")

    def resolve(
        self, ids: ExperimentIds, run: str, participants: Sequence[str], user: str | None
    ) -> Resolved:
        self._check()
        with self._lock:
            self.resolves += 1
            parent = self.runs.setdefault((run, None), f"run-{run}")
            children = {p: self.runs.setdefault((run, p), f"run-{run}-{p}") for p in participants}
        return Resolved(
            {
                "experiment_id": "1",
                "run_id": parent,
                "artifact_uri": f"mlflow-artifacts:/1/{parent}/artifacts",
                "participants": children,
                "participant_artifact_uris": {
                    p: f"mlflow-artifacts:/1/{c}/artifacts" for p, c in children.items()
                },
            }
        )

    def write_metrics(self, body: bytes) -> None:
        self._check()
        batch = decode_batch(body)
        refused = self.refuse_runs.intersection(batch.run_ids)
        if refused:
            raise InvalidValueError(f"run {sorted(refused)[0]!r} does not exist")
        with self._lock:
            self.requests += 1
            for run_id, key, step, value in zip(
                batch.run_ids, batch.keys, batch.steps, batch.values, strict=True
            ):
                self.points[(run_id, key, step)] = value

    def log_params(self, run_id: str, params: Mapping[str, str]) -> None:
        self._check()
        self.params.setdefault(run_id, {}).update(params)

    def log_inputs(self, run_id: str, datasets: Sequence[Mapping[str, object]]) -> None:
        self._check()

    def set_status(self, run_id: str, status: str, end_time: int) -> None:
        self._check()
        self.statuses[run_id] = status

    def log_artifact(self, artifact_uri: str, local_path: Path, artifact_path: str) -> None:
        self._check()
        key = "/".join(x for x in (artifact_uri, artifact_path, local_path.name) if x)
        self.artifacts[key] = local_path.read_bytes()

    def close(self) -> None:
        pass


PG_ADMIN_URI = "postgresql://synmlops:synmlops@127.0.0.1:5432/postgres"


def create_pg_database(prefix: str, template: str | None = None) -> str:
    """A new, empty PostgreSQL database (a copy of database ``template`` when given); its URI.
    Fails with the reason when PostgreSQL is not running (start it with
    `bash scripts/services.sh`)."""
    import uuid

    import pytest
    from sqlalchemy import create_engine, text
    from sqlalchemy.exc import OperationalError

    worker = os.environ.get("PYTEST_XDIST_WORKER", "")  # gw0, gw1, ... under pytest-xdist
    name = f"{prefix}_{worker + '_' if worker else ''}{uuid.uuid4().hex[:10]}"
    engine = create_engine(PG_ADMIN_URI, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            copy = f' TEMPLATE "{template}"' if template else ""
            connection.execute(text(f'CREATE DATABASE "{name}"{copy}'))
    except OperationalError as exc:
        pytest.fail(f"PostgreSQL is not available (bash scripts/services.sh): {exc}")
    finally:
        engine.dispose()
    return f"postgresql://synmlops:synmlops@127.0.0.1:5432/{name}"


def drop_pg_database(uri: str) -> None:
    from sqlalchemy import create_engine, text

    name = uri.rsplit("/", 1)[1]
    engine = create_engine(PG_ADMIN_URI, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()
