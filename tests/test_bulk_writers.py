"""Bulk writers to one SQLite store take turns (a file lock across threads and server
workers): under concurrent requests every good batch is stored whole, a bad batch is refused
alone, and a writer that fails leaves neither the lock nor its connection settings behind."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

from synergos_mlops.storage import metrics
from synergos_mlops.storage.batch import MetricBatch, encode_batch
from synergos_mlops.storage.metrics import (
    RunNotActiveError,
    WriteResult,
    bulk_writer_turn,
    write_metrics,
)
from synergos_mlops.storage.run_data import RUN_MISSING

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

    # Every point not stored is counted by reason, whichever worker answered.
    health = requests.get(f"{server.url}/health", timeout=60).json()
    assert health["status"] == "ok"
    assert health["refused"] == {
        "metrics": {**long_keys.json()["refused"], RUN_MISSING: len(bad[0])}
    }
    # And the workers still write.
    later = post(server.url, batch_of(runs[1], range(600, 610)))
    assert later.status_code == 200 and later.json()["stored"] == 10 * len(KEYS)

    database = server.store / "mlflow.db"
    for run in runs:
        stored = 610 if run == runs[1] else 600
        assert stored_rows(database, run) == (stored * len(KEYS), dict.fromkeys(KEYS, stored - 1))
    assert stored_rows(database, deleted) == (0, {})


def test_a_refused_bulk_write_leaves_the_next_writer_its_turn_and_the_pool_its_settings(
    tmp_path: Path,
) -> None:
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "mlflow-artifacts:/")
    names = ("synchronous", *metrics.SQLITE_WRITE_SETTINGS)
    with store.engine.connect() as connection:
        settings = [connection.exec_driver_sql(f"PRAGMA {name}").scalar_one() for name in names]
    run = store.create_run("0", "u", 0, [], "r").info.run_id
    with pytest.raises(RunNotActiveError):
        write_metrics(store.engine, batch_of("0" * 32, range(5)))
    # The same thread again: a lock left held would block here for good.
    assert write_metrics(store.engine, batch_of(run, range(5))).stored == 5 * len(KEYS)
    with store.engine.connect() as connection:
        assert [
            connection.exec_driver_sql(f"PRAGMA {name}").scalar_one() for name in names
        ] == settings
    assert stored_rows(tmp_path / "mlflow.db", run)[0] == 5 * len(KEYS)
    store.engine.dispose()


def test_a_bulk_write_leaves_its_pages_in_the_write_ahead_log_for_a_later_checkpoint(
    tmp_path: Path,
) -> None:
    """A commit of more than SQLite's default 1,000 pages is not copied back into the
    database at once (each round of a federation would copy back the same index pages again);
    every point is read back all the same, and a checkpoint later copies them."""
    database = tmp_path / "mlflow.db"
    store = SqlAlchemyStore(f"sqlite:///{database}", "mlflow-artifacts:/")
    runs = [store.create_run("0", "u", 0, [], f"r{i}").info.run_id for i in range(40)]
    store.engine.dispose()
    with sqlite3.connect(database) as connection:  # as a store folder's database is
        connection.execute("PRAGMA journal_mode=WAL")
    size = database.stat().st_size
    batch = MetricBatch()
    for run in runs:  # one point on each of 40 x 8 x 25 series: pages all over the indexes
        for key in KEYS:
            for suffix in range(25):
                batch.append(run, f"{key}/{suffix}", 1, 0.5, 1_700_000_000_000)
    assert write_metrics(store.engine, batch).stored == 8000
    wal = database.with_name("mlflow.db-wal")
    assert wal.stat().st_size > 1000 * 4096  # more than the default's 1,000 pages
    assert database.stat().st_size == size  # none of them copied back yet
    with sqlite3.connect(database) as connection:
        assert connection.execute("SELECT count(*) FROM metrics").fetchone() == (8000,)
        busy, frames, copied = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    assert (busy, copied) == (0, frames)
    assert database.stat().st_size > size
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


# Batches that wait together for SQLite's writer --------------------------------------------


Outcome = WriteResult | BaseException


def written_while_waiting(engine: Any, batches: list[MetricBatch]) -> list[Outcome]:
    """Write ``batches`` from one thread each, queued in this order while this thread holds
    the bulk writers' turn (as a writer in another server worker would), then let them go;
    each batch's result or error."""
    outcomes: list[Outcome | None] = [None] * len(batches)
    waiting = metrics._writers(engine).waiting

    def write(index: int) -> None:
        try:
            outcomes[index] = write_metrics(engine, batches[index])
        except BaseException as exc:  # noqa: BLE001 - the batch's outcome, checked by callers
            outcomes[index] = exc

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(batches))]
    with bulk_writer_turn(engine):
        for index, thread in enumerate(threads):
            thread.start()
            deadline = time.monotonic() + 30
            while len(waiting) < index + 1:  # queued: its place in the order is taken
                assert time.monotonic() < deadline, "a writer never queued"
                time.sleep(0.005)
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive()
    return [outcome for outcome in outcomes if outcome is not None]


def recorded_groups(monkeypatch: pytest.MonkeyPatch) -> list[set[str]]:
    """The runs each bulk write transaction names, recorded as it checks them."""
    groups: list[set[str]] = []
    check = metrics._check_runs

    def recording(connection: Any, run_ids: list[str]) -> None:
        groups.append(set(run_ids))
        check(connection, run_ids)

    monkeypatch.setattr(metrics, "_check_runs", recording)
    return groups


def test_batches_waiting_together_share_a_transaction_and_keep_their_order_per_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "mlflow-artifacts:/")
    a, b, c = (store.create_run("0", "u", 0, [], f"r{i}").info.run_id for i in range(3))
    groups = recorded_groups(monkeypatch)
    again = batch_of(a, range(5, 15))  # steps 5-9 logged a second time, other values
    again.values[:] = [v + 1000 for v in again.values]
    outcomes = written_while_waiting(
        store.engine, [batch_of(a, range(10)), batch_of(b, range(10)), again, batch_of(c, range(3))]
    )
    # One transaction for a, b and c; a's second batch waits for the next one.
    assert groups == [{a, b, c}, {a}]
    assert outcomes == [
        WriteResult(stored=80, replaced=0),
        WriteResult(stored=80, replaced=0),
        WriteResult(stored=80, replaced=5 * len(KEYS)),
        WriteResult(stored=24, replaced=0),
    ]
    assert stored_rows(tmp_path / "mlflow.db", a) == (15 * len(KEYS), dict.fromkeys(KEYS, 14))
    history = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(a, KEYS[1])
    assert [(m.step, m.value) for m in history] == [
        (step, step / 100 + 1 + (1000 if step >= 5 else 0)) for step in range(15)
    ]
    store.engine.dispose()


def test_a_bad_batch_waiting_among_good_ones_fails_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "mlflow-artifacts:/")
    a, b, deleted = (store.create_run("0", "u", 0, [], f"r{i}").info.run_id for i in range(3))
    store.delete_run(deleted)
    groups = recorded_groups(monkeypatch)
    outcomes = written_while_waiting(
        store.engine, [batch_of(a, range(4)), batch_of(deleted, range(4)), batch_of(b, range(4))]
    )
    assert outcomes[0] == outcomes[2] == WriteResult(stored=4 * len(KEYS), replaced=0)
    assert isinstance(outcomes[1], RunNotActiveError) and deleted in str(outcomes[1])
    # Tried together first (rolled back), then one by one.
    assert groups == [{a, deleted, b}, {a}, {deleted}, {b}]
    database = tmp_path / "mlflow.db"
    assert stored_rows(database, a) == stored_rows(database, b) == (32, dict.fromkeys(KEYS, 3))
    assert stored_rows(database, deleted) == (0, {})
    store.engine.dispose()


@pytest.fixture(scope="module")
def grouped_store(tmp_path_factory: pytest.TempPathFactory) -> Any:
    folder = tmp_path_factory.mktemp("grouped")
    store = SqlAlchemyStore(f"sqlite:///{folder / 'mlflow.db'}", "mlflow-artifacts:/")
    yield store
    store.engine.dispose()


# A batch: its parts, each (run index, key, first step, number of steps, value offset), at
# most one part per (run, key).
part_strategy = st.tuples(
    st.integers(0, 3), st.sampled_from(["loss", "accuracy"]), st.integers(0, 8),
    st.integers(1, 6), st.floats(-1e6, 1e6, allow_nan=False),
)  # fmt: skip
batches_strategy = st.lists(
    st.lists(part_strategy, min_size=1, max_size=3, unique_by=lambda part: part[:2]),
    min_size=1, max_size=7,
)  # fmt: skip
Part = tuple[int, str, int, int, float]


@settings(max_examples=40, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(planned=batches_strategy, deleted_run=st.sampled_from([None, 0, 1, 2, 3]))
# A batch that starts at its series' latest stored step, beside a series it appends to.
@example(planned=[[(0, "loss", 0, 3, 0.0)], [(0, "loss", 2, 2, 1.0), (0, "accuracy", 0, 1, 0.0)]],
         deleted_run=None)  # fmt: skip
def test_batches_waiting_together_end_as_if_written_one_after_another(
    grouped_store: Any, planned: list[list[Part]], deleted_run: int | None
) -> None:
    store = grouped_store
    runs = [store.create_run("0", "u", 0, [], f"h{i}").info.run_id for i in range(4)]
    if deleted_run is not None:
        store.delete_run(runs[deleted_run])
    batches = []
    for parts in planned:
        batch = MetricBatch()
        for run, key, first, count, offset in parts:
            for step in range(first, first + count):
                batch.append(runs[run], key, step, offset + step, 1_700_000_000_000)
        batches.append(batch)
    outcomes = written_while_waiting(store.engine, batches)
    # The model: each batch in its turn, a step's later value replacing the earlier one.
    expected: dict[tuple[str, str], dict[int, float]] = {
        (run, key): {} for run in runs for key in ("loss", "accuracy")
    }
    for parts, outcome in zip(planned, outcomes, strict=True):
        if any(part[0] == deleted_run for part in parts):
            assert isinstance(outcome, RunNotActiveError)
            continue
        replaced = 0
        for run, key, first, count, offset in parts:
            stored = expected[(runs[run], key)]
            # A point at or below its series' latest stored step may replace one (counted).
            replaced += sum(step <= max(stored, default=-1) for step in range(first, first + count))
            stored.update({step: offset + step for step in range(first, first + count)})
        assert outcome == WriteResult(stored=sum(part[3] for part in parts), replaced=replaced)
    client = MlflowClient(str(store.engine.url))
    for (run_id, key), points in expected.items():
        history = client.get_metric_history(run_id, key)
        assert sorted((m.step, m.value) for m in history) == sorted(points.items())
        latest = client.get_run(run_id).data.metrics
        assert latest.get(key) == (points[max(points)] if points else None)
