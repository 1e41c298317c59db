"""One federated cycle, logged and read back the stock way and the Synergos way."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests

STAGES = ("train", "evaluate")
STATISTICS = ("accuracy", "roc_auc_score", "pr_auc_score", "f_score", "TPRs", "TNRs", "PPVs",
              "NPVs", "FPRs", "FNRs", "FDRs", "TPs", "TNs", "FPs", "FNs")  # fmt: skip
STOCK_BATCH = 1000  # points per stock log_batch request (MLflow's limit per request)


@dataclass(frozen=True)
class Workload:
    """``participants`` + the global run, each logging ``keys`` per-class statistics per round."""

    participants: int
    rounds: int
    keys: int
    classes: int = 10

    @property
    def runs(self) -> int:
        return self.participants + 1

    @property
    def points(self) -> int:
        return self.runs * self.rounds * self.keys

    def key_names(self) -> list[str]:
        names = [
            f"{stage}/{statistic}/class_{c}"
            for stage in STAGES
            for statistic in STATISTICS
            for c in range(self.classes)
        ]
        if self.keys > len(names):
            raise ValueError(f"at most {len(names)} keys")
        return names[: self.keys]

    def participant_ids(self) -> list[str]:
        return [f"worker_{i:02d}" for i in range(self.participants)]

    def describe(self) -> str:
        return (f"({self.participants} participants + global) × {self.rounds} rounds × "
                f"{self.keys} keys = {self.points:,} points")  # fmt: skip

    def values(self, seed: int) -> list[list[float]]:
        """One row of values per (round, run), deterministic; now and then a NaN."""
        rng = random.Random(seed)
        rows = []
        for _ in range(self.rounds * self.runs):
            row = [rng.random() for _ in range(self.keys)]
            if rng.random() < 0.05:
                row[rng.randrange(self.keys)] = math.nan
            rows.append(row)
        return rows


@dataclass(frozen=True)
class Ids:
    collaboration: str
    project: str
    experiment: str
    run: str

    @property
    def parts(self) -> tuple[str, str, str, str]:
        return (self.collaboration, self.project, self.experiment, self.run)

    @property
    def experiment_name(self) -> str:
        return f"{self.collaboration}/{self.project}/{self.experiment}"

    @property
    def path(self) -> str:
        return "/".join(quote(p, safe="") for p in self.parts)


@dataclass
class StockRun:
    client: Any
    parent: str
    children: dict[str, str]

    @property
    def run_ids(self) -> list[str]:
        return [self.parent, *self.children.values()]


def create_stock_run(url: str, ids: Ids, participants: list[str]) -> StockRun:
    """The experiment, parent and child runs as DESIGN.md maps them, with MlflowClient."""
    from mlflow import MlflowClient

    client = MlflowClient(url)
    found = client.get_experiment_by_name(ids.experiment_name)
    if found is None:
        try:
            experiment = client.create_experiment(ids.experiment_name)
        except Exception:  # noqa: BLE001 - another cycle created it meanwhile
            found = client.get_experiment_by_name(ids.experiment_name)
            if found is None:
                raise
    if found is not None:
        experiment = found.experiment_id
    parent = client.create_run(experiment, run_name=ids.run).info.run_id
    children = {
        p: client.create_run(
            experiment, run_name=p, tags={"mlflow.parentRunId": parent}
        ).info.run_id
        for p in participants
    }
    return StockRun(client, parent, children)


def log_stock(run: StockRun, workload: Workload, values: list[list[float]]) -> tuple[int, int]:
    """Stock ``log_batch``, ``STOCK_BATCH`` points per request, round by round; returns
    (points sent, failed requests)."""
    from mlflow.entities import Metric

    keys = workload.key_names()
    pending: dict[str, list[Any]] = {run_id: [] for run_id in run.run_ids}
    sent = failed = 0

    def send(run_id: str) -> None:
        nonlocal sent, failed
        metrics, pending[run_id] = pending[run_id], []
        try:
            run.client.log_batch(run_id, metrics=metrics)
        except Exception:  # noqa: BLE001 - counted, the benchmark goes on
            failed += 1
        sent += len(metrics)

    rows = iter(values)
    for step in range(workload.rounds):
        stamp = int(time.time() * 1000)
        for run_id in run.run_ids:
            row = next(rows)
            points = zip(keys, row, strict=True)
            pending[run_id].extend(Metric(k, v, stamp, step) for k, v in points)
            if len(pending[run_id]) >= STOCK_BATCH:
                send(run_id)
    for run_id in run.run_ids:
        if pending[run_id]:
            send(run_id)
    return sent, failed


def counting_transport(url: str) -> Any:
    """The tracker's own HTTP transport, counting the requests that failed (and were retried
    from the spool)."""
    from synergos_mlops.tracking import HttpTransport

    class Counting(HttpTransport):
        sent = 0
        failed = 0

        def write_metrics(self, body: bytes) -> None:
            try:
                super().write_metrics(body)
            except Exception:
                self.failed += 1
                raise
            self.sent += 1

    return Counting(url)


def open_tracker(url: str, spool: Path) -> tuple[Any, Any]:
    from synergos_mlops.tracking import FederatedTracker, TrackerConfig

    transport = counting_transport(url)
    return FederatedTracker(config=TrackerConfig(spool_dir=spool), transport=transport), transport


def log_tracker(run: Any, workload: Workload, values: list[list[float]]) -> int:
    """The same points through ``FederatedRun.log_metrics``, flushed; returns points logged."""
    keys = workload.key_names()
    participants: list[str | None] = [None, *workload.participant_ids()]
    rows = iter(values)
    logged = 0
    for step in range(workload.rounds):
        for participant in participants:
            row = next(rows)
            run.log_metrics(dict(zip(keys, row, strict=True)), step=step, participant=participant)
            logged += len(row)
    if not run.flush():
        raise RuntimeError("the tracker could not store every point")
    return logged


def read_stock(run: StockRun, keys: list[str]) -> int:
    """Every series of the run with stock ``get_metric_history``; returns points read."""
    return sum(
        len(run.client.get_metric_history(run_id, key)) for run_id in run.run_ids for key in keys
    )


def read_synergos(url: str, ids: Ids, keys: list[str]) -> int:
    """Every series of the run with one Synergos API request; returns points read."""
    response = requests.get(
        f"{url}/api/synergos/v1/runs/{ids.path}/metrics",
        params={"keys": ",".join(keys)},
        timeout=600,
    )
    response.raise_for_status()
    return sum(
        len(line["steps"])
        for entry in response.json()["series"].values()
        for line in [entry["global"], *entry["participants"].values()]
        if line is not None
    )


def raw_sqlite_ceiling(
    database: Path, run_ids: list[str], workload: Workload, values: list[list[float]],
    commit_every: int = 10_000,
) -> float:  # fmt: skip
    """Seconds to insert ``workload``'s points for ``run_ids`` (global first, as
    ``Workload.values`` orders them) straight into MLflow's ``metrics`` table with the
    ``sqlite3`` module: one prepared ``executemany`` per ``commit_every`` rows, each chunk in
    primary-key order, with the connection settings the bulk write uses. No HTTP, no MLflow,
    no ``latest_metrics``: what the database alone takes, the ceiling of any write path."""
    import sqlite3

    from synergos_mlops.storage.metrics import SQLITE_WRITE_SETTINGS

    keys = workload.key_names()
    stamp = int(time.time() * 1000)
    rows = []
    flat = iter(values)
    for step in range(workload.rounds):
        for run_id in run_ids:
            row = next(flat)
            rows += [
                (key, 0.0 if v != v else v, stamp, run_id, step, v != v)
                for key, v in zip(keys, row, strict=True)
            ]
    statement = (
        "INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) "
        "VALUES (?, ?, ?, ?, ?, ?)"
    )
    connection = sqlite3.connect(database, isolation_level=None)
    try:
        connection.execute("PRAGMA foreign_keys = ON")
        for name, value in SQLITE_WRITE_SETTINGS.items():
            connection.execute(f"PRAGMA {name} = {value}")
        started = time.perf_counter()
        for start in range(0, len(rows), commit_every):
            chunk = sorted(rows[start : start + commit_every], key=itemgetter(0, 2, 4, 3))
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(statement, chunk)
            connection.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        connection.close()
