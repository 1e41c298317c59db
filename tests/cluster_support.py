"""Helpers for the Cluster-tier tests: an S3-compatible server (moto, as a child process),
federated cycles run as real orchestrator processes, and readers that count what the stores
hold, straight from the database and the bucket."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from conftest import die_with_pytest, free_port

CYCLE_SCRIPT = Path(__file__).resolve().parent / "cluster_cycle.py"

#: Credentials of the test S3 server (moto accepts any); never real ones.
S3_KEY_ID = "synergos-test"
S3_SECRET = "synergos-test-secret"


@dataclass
class S3Server:
    """``python -m moto.server`` on a free port: an S3-compatible endpoint for the tests."""

    endpoint: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def env(self) -> dict[str, str]:
        """The environment a server or client needs for this endpoint, as MLflow users set it."""
        return {
            "MLFLOW_S3_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": S3_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET,
            "AWS_DEFAULT_REGION": "us-east-1",
        }

    def client(self) -> Any:
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=S3_KEY_ID,
            aws_secret_access_key=S3_SECRET,
            region_name="us-east-1",
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every object under ``prefix``: key -> size."""
        found: dict[str, int] = {}
        paginator = self.client().get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", []):
                found[item["Key"]] = int(item["Size"])
        return found

    def read(self, bucket: str, key: str) -> bytes:
        return bytes(self.client().get_object(Bucket=bucket, Key=key)["Body"].read())


@contextmanager
def s3_server(tmp_path: Path, timeout: float = 120) -> Iterator[S3Server]:
    port = free_port()
    log = tmp_path / f"moto-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out, stderr=subprocess.STDOUT, preexec_fn=die_with_pytest(),
        )  # fmt: skip
    server = S3Server(f"http://127.0.0.1:{port}", process, log)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto exited: {log.read_text(errors='replace')[-2000:]}")
            try:
                requests.get(f"{server.endpoint}/moto-api/", timeout=2)
                break
            except requests.RequestException:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto did not start") from None
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# Federated cycles as orchestrator processes ------------------------------------------------


@dataclass(frozen=True)
class Cycle:
    """One federated cycle's shape; values are a function of (participant, key, step) so a
    stored point can be checked, not only counted."""

    run: str
    participants: int = 5
    rounds: int = 50
    keys: int = 20
    models: bool = True  #: a small checkpoint per round (log_model)
    pace: float = 0.0  #: seconds between rounds

    @property
    def participant_ids(self) -> list[str]:
        return [f"worker_{i}" for i in range(self.participants)]

    @property
    def key_names(self) -> list[str]:
        return [f"evaluate/metric_{k:02d}" for k in range(self.keys)]

    @property
    def points(self) -> int:
        return (self.participants + 1) * self.rounds * self.keys

    def args(self) -> list[str]:
        return [
            "--run", self.run, "--participants", str(self.participants),
            "--rounds", str(self.rounds), "--keys", str(self.keys), "--pace", str(self.pace),
            *([] if self.models else ["--no-models"]),
        ]  # fmt: skip


def value_of(participant: int, key: int, step: int) -> float:
    """The value a cycle logs; participant -1 is the global (parent) run."""
    return round((participant + 2) * 1000 + key + step / 1000, 6)


def model_bytes(run: str, round_: int) -> bytes:
    return f"weights of {run} at round {round_}".encode()


def start_cycle(
    url: str, cycle: Cycle, workdir: Path, *, extra: list[str] | None = None
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start one orchestrator process; it writes a JSON report to the returned path."""
    workdir.mkdir(parents=True, exist_ok=True)
    report = workdir / f"{cycle.run}.json"
    log = workdir / f"{cycle.run}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(CYCLE_SCRIPT), url, str(report), "--spool",
             str(workdir / f"spool-{cycle.run}"), *cycle.args(), *(extra or [])],
            stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    return process, report


def finish_cycle(process: subprocess.Popen[bytes], report: Path, timeout: float) -> dict[str, Any]:
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
    log = report.with_suffix(".log").read_text(errors="replace")
    assert code == 0, f"cycle {report.stem} exited {code}: {log[-3000:]}"
    return dict(json.loads(report.read_text()))


# Reading back what the stores hold ---------------------------------------------------------


def stored_points(backend_uri: str, run_ids: list[str]) -> dict[tuple[str, str, int], list[float]]:
    """Every stored point of the runs, straight from MLflow's ``metrics`` table:
    (run id, key, step) -> the values stored there (one, when nothing was stored twice)."""
    from sqlalchemy import bindparam, create_engine, text

    engine = create_engine(backend_uri)
    query = text(
        "SELECT run_uuid, key, step, value FROM metrics WHERE run_uuid IN :ids"
    ).bindparams(bindparam("ids", expanding=True))
    found: dict[tuple[str, str, int], list[float]] = {}
    try:
        with engine.connect() as connection:
            for run_id, key, step, value in connection.execute(query, {"ids": run_ids}):
                found.setdefault((run_id, key, int(step)), []).append(float(value))
    finally:
        engine.dispose()
    return found


def check_cycle_points(backend_uri: str, cycle: Cycle, report: dict[str, Any]) -> None:
    """Each (run, key, step) of the cycle stored exactly once, with the value logged."""
    runs = {-1: report["run_id"]}
    runs.update({i: report["participants"][p] for i, p in enumerate(cycle.participant_ids)})
    expected = {
        (run_id, key, step): value_of(index, k, step)
        for index, run_id in runs.items()
        for k, key in enumerate(cycle.key_names)
        for step in range(cycle.rounds)
    }
    stored = stored_points(backend_uri, list(runs.values()))
    twice = {point: values for point, values in stored.items() if len(values) != 1}
    assert not twice, (
        f"{cycle.run}: {len(twice)} points stored more than once, e.g. {next(iter(twice.items()))}"
    )
    missing = expected.keys() - stored.keys()
    assert not missing, f"{cycle.run}: {len(missing)} points missing, e.g. {sorted(missing)[:3]}"
    extra = stored.keys() - expected.keys()
    assert not extra, f"{cycle.run}: {len(extra)} unexpected points, e.g. {sorted(extra)[:3]}"
    wrong = [p for p, v in expected.items() if abs(stored[p][0] - v) > 1e-9]
    assert not wrong, f"{cycle.run}: {len(wrong)} points hold another value, e.g. {wrong[:3]}"


def checkpoint_path(report: dict[str, Any], round_: int) -> str:
    """The checkpoint's path under the artifacts destination (``<exp>/<run>/artifacts/...``)."""
    run = f"{report['experiment_id']}/{report['run_id']}"
    return f"{run}/artifacts/checkpoints/round_{round_}/model.pt"


def finished_runs(url: str, collaboration: str) -> dict[str, str]:
    """run id -> status, as the Synergos API's tree shows them."""
    tree = requests.get(f"{url}/api/synergos/v1/collaborations", timeout=60).json()
    statuses: dict[str, str] = {}
    for collab in tree["collaborations"]:
        if collab["id"] != collaboration:
            continue
        for project in collab["projects"]:
            for experiment in project["experiments"]:
                for run in experiment["runs"]:
                    statuses[run["id"]] = run["status"]
    return statuses
