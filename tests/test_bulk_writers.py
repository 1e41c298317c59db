"""Bulk writers to one SQLite store take turns (a file lock across threads and server
workers): under concurrent requests every good batch is stored whole, a bad batch is refused
alone, and a writer that fails leaves neither the lock nor its connection settings behind."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from mlflow import MlflowClient
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from synergos_mlops.storage.batch import MetricBatch, encode_batch
from synergos_mlops.storage.metrics import RunNotActiveError, write_metrics

BULK = "/api/synergos/v1/metrics/bulk"
KEYS = [f"evaluate/accuracy/class_{c}" for c in range(8)]


def batch_of(run_id: str, steps: range, *, key_suffix: str = "") -> MetricBatch:
    batch = MetricBatch()
    for step in steps:
        for k, key in enumerate(KEYS):
            batch.append(run_id, key + key_suffix, step, step / 100 + k, 1_700_000_000_000 + step)
    return batch


def post(url: str, batch: MetricBatch) -> requests.Response:
    return requests.post(
        url + BULK, data=encode_batch(batch), headers={"Content-Encoding": "gzip"}, timeout=120
    )


def stored_rows(database: Path, run_id: str) -> tuple[int, dict[str, int]]:
    """(points in ``metrics``, latest step by key in ``latest_metrics``) of a run."""
    with sqlite3.connect(database) as connection:
        count = connection.execute(
            "SELECT count(*) FROM metrics WHERE run_uuid = ?", (run_id,)
        ).fetchone()[0]
        latest = dict(
            connection.execute(
                "SELECT key, step FROM latest_metrics WHERE run_uuid = ?", (run_id,)
            ).fetchall()
        )
    return count, latest


def test_concurrent_bulk_requests_store_every_good_batch_and_refuse_the_bad_ones_alone(
    server_factory: Any,
) -> None:
    server = server_factory(workers=2)
    client = MlflowClient(server.url)
    experiment = client.create_experiment("concurrent-bulk")
    runs = [client.create_run(experiment).info.run_id for _ in range(6)]
    deleted = client.create_run(experiment).info.run_id
    client.delete_run(deleted)
    # Two batches per run (steps 0-299 and 300-599) and two bad ones, all sent at once.
    good = [batch_of(run, range(half * 300, half * 300 + 300)) for run in runs for half in (0, 1)]
    bad = [
        batch_of(deleted, range(300)),  # its run is deleted: 404
        batch_of(runs[0], range(600, 900), key_suffix="x" * 250),  # keys too long: refused
    ]
    batches = good[:6] + bad[:1] + good[6:] + bad[1:]
    answers: list[requests.Response | None] = [None] * len(batches)
    gate = threading.Barrier(len(batches))

    def send(index: int) -> None:
        gate.wait()
        answers[index] = post(server.url, batches[index])

    threads = [threading.Thread(target=send, args=(i,)) for i in range(len(batches))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(180)

    by_batch = {id(b): a for b, a in zip(batches, answers, strict=True)}
    for batch in good:
        answer = by_batch[id(batch)]
        assert answer is not None and answer.status_code == 200, answer and answer.text
        assert answer.json()["stored"] == len(batch)
    missing, long_keys = (by_batch[id(b)] for b in bad)
    assert missing is not None and missing.status_code == 404
    assert set(missing.json()["error"]) == {"code", "message"}
    # Each point of a key MLflow refuses is left out and counted; nothing else is lost.
    assert long_keys is not None and long_keys.status_code == 200, long_keys and long_keys.text
    assert long_keys.json()["stored"] == 0
    assert sum(long_keys.json()["refused"].values()) == len(bad[1])

    database = server.store / "mlflow.db"
    for run in runs:
        assert stored_rows(database, run) == (600 * len(KEYS), dict.fromkeys(KEYS, 599))
    assert stored_rows(database, deleted) == (0, {})


def test_a_refused_bulk_write_leaves_the_next_writer_its_turn_and_the_pool_its_settings(
    tmp_path: Path,
) -> None:
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "mlflow-artifacts:/")
    with store.engine.connect() as connection:
        settings = [
            connection.exec_driver_sql(f"PRAGMA {name}").scalar_one()
            for name in ("synchronous", "cache_size")
        ]
    run = store.create_run("0", "u", 0, [], "r").info.run_id
    with pytest.raises(RunNotActiveError):
        write_metrics(store.engine, batch_of("0" * 32, range(5)))
    # The same thread again: a lock left held would block here for good.
    assert write_metrics(store.engine, batch_of(run, range(5))).stored == 5 * len(KEYS)
    with store.engine.connect() as connection:
        assert [
            connection.exec_driver_sql(f"PRAGMA {name}").scalar_one()
            for name in ("synchronous", "cache_size")
        ] == settings
    assert stored_rows(tmp_path / "mlflow.db", run)[0] == 5 * len(KEYS)
    store.engine.dispose()


def test_bulk_writers_in_many_threads_of_one_process_each_store_their_points(
    tmp_path: Path,
) -> None:
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "mlflow-artifacts:/")
    run_ids = [store.create_run("0", "u", 0, [], f"r{i}").info.run_id for i in range(4)]
    failures: list[BaseException] = []

    def write(run_id: str, first: int) -> None:
        try:
            write_metrics(store.engine, batch_of(run_id, range(first, first + 50)))
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            failures.append(exc)

    threads = [
        threading.Thread(target=write, args=(run_id, first))
        for run_id in run_ids
        for first in (0, 50, 100)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    assert failures == []
    for run_id in run_ids:
        assert stored_rows(tmp_path / "mlflow.db", run_id) == (
            150 * len(KEYS),
            dict.fromkeys(KEYS, 149),
        )
    store.engine.dispose()
