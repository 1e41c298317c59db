"""The bulk metric write stores exactly what MLflow's own log_batch stores, on SQLite and
PostgreSQL, and replaces points at the same (run, key, step)."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mlflow import MlflowClient
from mlflow.entities import Metric
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from sqlalchemy import text

from synergos_mlops.storage.batch import MetricBatch, decode_batch, encode_batch
from synergos_mlops.storage.metrics import RunNotActiveError, write_metrics

KEYS = ["train/loss", "evaluate/accuracy/class_0", "evaluate/R2"]
SPECIAL = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1e-300, 1.7976931348623157e308]


def sample_points() -> list[tuple[str, float, int, int]]:
    """(key, value, timestamp, step): special values, steps out of order, equal timestamps."""
    points = []
    for k, key in enumerate(KEYS):
        steps = [9, 0, 3, 5, 1, 2, 8, 4, 7, 6] if k == 0 else list(range(10))
        for position, step in enumerate(steps):
            value = SPECIAL[(position + k) % len(SPECIAL)] if position < 7 else step / 7
            points.append((key, value, 1_700_000_000_000 + (position % 3), step))
    points.append(("evaluate/nan_last", math.nan, 1_700_000_000_005, 12))
    points.append(("evaluate/inf_last", math.inf, 1_700_000_000_005, 12))
    return points


def as_batch(run_id: str, points: list[tuple[str, float, int, int]]) -> MetricBatch:
    batch = MetricBatch()
    for key, value, timestamp, step in points:
        batch.append(run_id, key, step, value, timestamp)
    return decode_batch(encode_batch(batch))  # through the wire form, as the server gets it


def same(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or a == b


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, int, float]]:
    return sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run_id, key))


def latest_rows(store: SqlAlchemyStore, run_id: str) -> dict[str, tuple[object, ...]]:
    with store.engine.connect() as connection:
        rows = connection.execute(
            text(
                "SELECT key, step, timestamp, value, is_nan FROM latest_metrics WHERE run_uuid=:r"
            ),
            {"r": run_id},
        ).all()
    return {row[0]: tuple(row[1:]) for row in rows}


def assert_same_runs(store: SqlAlchemyStore, client: MlflowClient, stock: str, bulk: str) -> None:
    keys = {m.key for m in client.get_run(stock).data._metric_objs}
    assert keys == {m.key for m in client.get_run(bulk).data._metric_objs}
    for key in keys:
        expected, got = history(client, stock, key), history(client, bulk, key)
        assert [(s, t) for s, t, _ in expected] == [(s, t) for s, t, _ in got], key
        assert all(same(a[2], b[2]) for a, b in zip(expected, got, strict=True)), key
    stock_latest = client.get_run(stock).data.metrics
    bulk_latest = client.get_run(bulk).data.metrics
    assert stock_latest.keys() == bulk_latest.keys()
    assert all(same(stock_latest[k], bulk_latest[k]) for k in stock_latest)
    assert latest_rows(store, stock) == latest_rows(store, bulk)


def compare_with_stock_log_batch(db_uri: str) -> None:
    store = SqlAlchemyStore(db_uri, "mlflow-artifacts:/")
    client = MlflowClient(db_uri)
    experiment = client.create_experiment("compare")
    stock = client.create_run(experiment).info.run_id
    bulk = client.create_run(experiment).info.run_id
    points = sample_points()
    client.log_batch(stock, metrics=[Metric(k, v, t, s) for k, v, t, s in points])
    result = write_metrics(store.engine, as_batch(bulk, points))
    assert result.stored == len(points)
    assert_same_runs(store, client, stock, bulk)

    # Logging again: re-logged steps are replaced (one point each, the latest value), new
    # steps appended; stock MLflow given the final points alone must store the same.
    again = [(k, v + 1 if not math.isnan(v) else 0.5, t + 10, s) for k, v, t, s in points[::3]]
    again += [("train/loss", 0.01, 1_700_000_000_100, 20), ("evaluate/R2", 0.2, 5, 9)]
    write_metrics(store.engine, as_batch(bulk, again))
    final = {(k, s): (k, v, t, s) for k, v, t, s in points}
    final.update({(k, s): (k, v, t, s) for k, v, t, s in again})
    restocked = client.create_run(experiment).info.run_id
    client.log_batch(restocked, metrics=[Metric(k, v, t, s) for k, v, t, s in final.values()])
    assert_same_runs(store, client, restocked, bulk)
    store.engine.dispose()


def test_bulk_write_stores_what_stock_log_batch_stores_on_sqlite(tmp_path: Path) -> None:
    compare_with_stock_log_batch(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_bulk_write_stores_what_stock_log_batch_stores_on_postgresql(postgres_uri: str) -> None:
    compare_with_stock_log_batch(postgres_uri)


def test_bulk_write_refuses_an_unknown_run_and_writes_nothing(tmp_path: Path) -> None:
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "mlflow-artifacts:/")
    run = store.create_run("0", "u", 0, [], "r").info.run_id
    batch = as_batch(run, [("train/loss", 1.0, 1, 0)])
    batch.append("0" * 32, "train/loss", 0, 1.0, 1)
    with pytest.raises(RunNotActiveError, match="run '0{32}' does not exist"):
        write_metrics(store.engine, batch)
    assert MlflowClient(store.db_uri).get_metric_history(run, "train/loss") == []
    store.engine.dispose()


def test_a_point_logged_twice_in_one_batch_keeps_the_last_value(tmp_path: Path) -> None:
    store = SqlAlchemyStore(f"sqlite:///{tmp_path / 'mlflow.db'}", "mlflow-artifacts:/")
    run = store.create_run("0", "u", 0, [], "r").info.run_id
    write_metrics(store.engine, as_batch(run, [("a", 1.0, 5, 0), ("a", 2.0, 4, 0)]))
    got = MlflowClient(store.db_uri).get_metric_history(run, "a")
    assert [(m.step, m.value, m.timestamp) for m in got] == [(0, 2.0, 4)]
    store.engine.dispose()


def metric_rows(store: SqlAlchemyStore, run_id: str) -> list[tuple[object, ...]]:
    """The run's rows of MLflow's ``metrics`` table, as stored (NaN as 0 with is_nan)."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT key, step, timestamp, value, is_nan FROM metrics WHERE run_uuid=:r"),
            {"r": run_id},
        ).all()
    return sorted(tuple(row) for row in rows)


def compare_large_batch_row_for_row(db_uri: str) -> None:
    """Several runs in one batch, more points than one statement chunk, every special value:
    the metrics and latest_metrics rows equal stock log_batch's, row for row."""
    store = SqlAlchemyStore(db_uri, "mlflow-artifacts:/")
    client = MlflowClient(db_uri)
    experiment = client.create_experiment("large")
    runs = [(client.create_run(experiment).info.run_id, client.create_run(experiment).info.run_id)
            for _ in range(4)]  # fmt: skip
    keys = [f"evaluate/accuracy/class_{c}" for c in range(25)] + ["train/loss"]
    batch = MetricBatch()
    for index, (stock, bulk) in enumerate(runs):
        points = [
            (key, SPECIAL[(step + k + index) % len(SPECIAL)] if step % 4 == 0 else step / 3 + k,
             1_700_000_000_000 + step // 2, step)
            for step in range(30)
            for k, key in enumerate(keys)
        ]  # fmt: skip
        metrics = [Metric(k, v, t, s) for k, v, t, s in points]
        for start in range(0, len(metrics), 1000):
            client.log_batch(stock, metrics=metrics[start : start + 1000])
        for key, value, timestamp, step in points:
            batch.append(bulk, key, step, value, timestamp)
    result = write_metrics(store.engine, decode_batch(encode_batch(batch)))
    assert result.stored == len(batch) > 3000
    for stock, bulk in runs:
        assert metric_rows(store, stock) == metric_rows(store, bulk)
        assert latest_rows(store, stock) == latest_rows(store, bulk)
        assert_same_runs(store, client, stock, bulk)
    store.engine.dispose()


def test_a_large_batch_over_many_runs_is_stored_row_for_row_as_log_batch_on_sqlite(
    tmp_path: Path,
) -> None:
    compare_large_batch_row_for_row(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_a_large_batch_over_many_runs_is_stored_row_for_row_as_log_batch_on_postgresql(
    postgres_uri: str,
) -> None:
    compare_large_batch_row_for_row(postgres_uri)


def test_a_format_1_batch_from_an_earlier_spool_reads_as_the_same_points() -> None:
    """Spool files of earlier trackers hold format 1 (JSON lists); the server still reads
    them, special values included, as format 2 reads the same points."""
    points = sample_points()
    batch = MetricBatch()
    for key, value, timestamp, step in points:
        batch.append("r" * 32, key, step, value, timestamp)
    keys = list(dict.fromkeys(batch.keys))
    document = {
        "format": "synergos.metrics/1", "runs": ["r" * 32], "keys": keys,
        "run": [0] * len(batch), "key": [keys.index(k) for k in batch.keys],
        "step": batch.steps, "value": batch.values, "timestamp": batch.timestamps,
    }  # fmt: skip
    old = decode_batch(gzip.compress(json.dumps(document).encode()))
    new = decode_batch(encode_batch(batch))
    for got in (old, new):
        assert (got.run_ids, got.keys, got.steps, got.timestamps) == (
            batch.run_ids, batch.keys, batch.steps, batch.timestamps,
        )  # fmt: skip
        assert all(same(a, b) for a, b in zip(got.values, batch.values, strict=True))


_STORES: list[tuple[SqlAlchemyStore, MlflowClient, str]] = []
_POINT = st.tuples(
    st.sampled_from(["a", "b/class_0", "c"]),
    st.one_of(st.sampled_from(SPECIAL), st.floats(allow_nan=False, width=32)),
    st.integers(min_value=0, max_value=4),  # timestamp: few, so that points share one
    st.integers(min_value=0, max_value=5),  # step
)


@given(batches=st.lists(st.lists(_POINT, min_size=1, max_size=30), min_size=1, max_size=3),
       runs=st.integers(min_value=1, max_value=3))  # fmt: skip
def test_batches_of_any_order_store_what_log_batch_stores_of_the_points_that_remain(
    batches: list[list[tuple[str, float, int, int]]], runs: int, tmp_path_factory: Any
) -> None:
    """Batches written in turn over several runs, with repeated steps, shared timestamps and
    special values in any order, leave each run's ``metrics`` and ``latest_metrics`` rows as
    stock ``log_batch`` leaves them given only the points that remain: the last one logged
    at each (run, key, step)."""
    if not _STORES:  # one store for every example: new runs each time
        db_uri = f"sqlite:///{tmp_path_factory.mktemp('any') / 'mlflow.db'}"
        made = MlflowClient(db_uri)
        _STORES.append((SqlAlchemyStore(db_uri, "mlflow-artifacts:/"), made,
                        made.create_experiment("any")))  # fmt: skip
    store, client, experiment = _STORES[0]
    pairs = [(client.create_run(experiment).info.run_id, client.create_run(experiment).info.run_id)
             for _ in range(runs)]  # fmt: skip
    final: dict[tuple[str, str, int], tuple[str, float, int, int]] = {}
    for number, points in enumerate(batches):
        batch = MetricBatch()
        for position, (key, value, timestamp, step) in enumerate(points):
            stock, bulk = pairs[(position + number) % runs]
            batch.append(bulk, key, step, value, timestamp)
            final[(stock, key, step)] = (key, value, timestamp, step)
        write_metrics(store.engine, decode_batch(encode_batch(batch)))
    for stock, bulk in pairs:
        remaining = [
            Metric(k, v, t, s) for (run, *_), (k, v, t, s) in final.items() if run == stock
        ]
        if remaining:
            client.log_batch(stock, metrics=remaining)
        assert metric_rows(store, stock) == metric_rows(store, bulk)
        assert latest_rows(store, stock) == latest_rows(store, bulk)


def test_a_bulk_write_on_postgresql_plans_as_postgresql_chooses_whatever_the_workers_ask(
    postgres_uri: str,
) -> None:
    """An operator's ``PGOPTIONS`` may force ``plan_cache_mode=force_custom_plan`` (the served
    workers did, once); under it, the foreign-key check PostgreSQL runs for every inserted
    point was planned again for each one. Inside a bulk write the mode is PostgreSQL's own
    again, and the points are all stored."""
    from sqlalchemy import create_engine, event

    store = SqlAlchemyStore(postgres_uri, "mlflow-artifacts:/")
    run = store.create_run("0", "u", 0, [], "r").info.run_id
    forced = "-c plan_cache_mode=force_custom_plan"
    engine = create_engine(postgres_uri, connect_args={"options": forced})
    seen: list[str] = []

    def mode(_conn: Any, cursor: Any, statement: str, *_rest: Any) -> None:
        if "INSERT INTO latest_metrics" in statement:
            seen.append(cursor.connection.execute("SHOW plan_cache_mode").fetchone()[0])

    event.listen(engine, "before_cursor_execute", mode)
    try:
        with engine.connect() as connection:
            outside = connection.exec_driver_sql("SHOW plan_cache_mode").scalar_one()
        points = [("train/loss", step / 10, 1_700_000_000_000 + step, step) for step in range(50)]
        assert write_metrics(engine, as_batch(run, points)).stored == 50
        with engine.connect() as connection:
            after = connection.exec_driver_sql("SHOW plan_cache_mode").scalar_one()
    finally:
        event.remove(engine, "before_cursor_execute", mode)
        engine.dispose()
    assert (outside, seen, after) == ("force_custom_plan", ["auto"], "force_custom_plan")
    assert len(MlflowClient(postgres_uri).get_metric_history(run, "train/loss")) == 50
    store.engine.dispose()
