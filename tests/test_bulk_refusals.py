"""A metric batch holding keys MLflow refuses: the bulk route stores every other point, counts
the refused ones by reason in /health (the same whichever worker answers) and names each
reason once in the server's log; a store folder leaves them out the same way. Values that are
no number, from a framework's clients (``check_keys=False``), are left out by the tracker and
counted by the destination with the refused keys: the batch carries them."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st
from mlflow import MlflowClient

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.storage.batch import (
    MAX_REASONS,
    MetricBatch,
    batch_document,
    decode_batch,
    encode_batch,
)
from synergos_mlops.storage.screen import (
    KEY_LENGTH,
    KEY_NAME,
    KEY_TEXT,
    VALUE_NOT_NUMBER,
    screen_keys,
)
from synergos_mlops.tracking import FederatedTracker

API = "/api/synergos/v1"
GOOD = ["train/loss", "evaluate/a b", "x:y"]
BAD = {"top@5": KEY_NAME, "evaluate/../loss": KEY_NAME, "k" * 251: KEY_LENGTH, "a\tb": KEY_TEXT}


@given(st.lists(st.sampled_from([*GOOD, *BAD]), max_size=40))
def test_screening_keeps_each_good_point_in_order_and_counts_each_bad_one_by_reason(
    keys: list[str],
) -> None:
    batch = MetricBatch()
    for position, key in enumerate(keys):
        batch.append("run", key, position, float(position), 1000 + position)
    screened = screen_keys(batch)
    assert screened.batch.keys == [k for k in keys if k in GOOD]
    assert screened.batch.steps == [p for p, k in enumerate(keys) if k in GOOD]
    assert screened.batch.values == [float(p) for p, k in enumerate(keys) if k in GOOD]
    wanted: dict[str, int] = {}
    for key in keys:
        if key in BAD:
            wanted[BAD[key]] = wanted.get(BAD[key], 0) + 1
    assert screened.refused == wanted
    assert set(screened.named) == set(wanted)


REASONS = st.text(st.characters(codec="utf-8", categories=["L", "N", "P", "Zs"]), min_size=1,
                  max_size=200).filter(str.isprintable)  # fmt: skip


@given(
    st.dictionaries(REASONS, st.integers(1, 10**6), max_size=MAX_REASONS),
    st.lists(st.sampled_from(GOOD), max_size=5),
)
def test_a_batchs_own_refusals_travel_with_it_and_are_counted_with_its_refused_keys(
    refused: dict[str, int], keys: list[str]
) -> None:
    batch = MetricBatch()
    for step, key in enumerate([*keys, "top@5"]):
        batch.append("run", key, step, 1.0, 1000)
    batch.count_refused(refused, {reason: f"why {reason}" for reason in refused})
    decoded = decode_batch(encode_batch(batch))
    assert (decoded.refused, decoded.named) == (batch.refused, batch.named)
    assert decoded.keys == batch.keys
    screened = screen_keys(decoded)
    assert screened.batch.keys == keys
    assert screened.refused == {**refused, KEY_NAME: refused.get(KEY_NAME, 0) + 1}


@pytest.mark.parametrize(
    "refusals",
    [
        {"refused": []},
        {"refused": {"": 1}},
        {"refused": {"a\nb": 1}},
        {"refused": {"r" * 201: 1}},
        {"refused": {"reason": 0}},
        {"refused": {"reason": True}},
        {"refused": {"reason": 10**7}},
        {"refused": {f"reason {i}": 1 for i in range(MAX_REASONS + 1)}},
        {"refused": {"reason": 1}, "named": {"other": "words"}},
        {"refused": {"reason": 1}, "named": {"reason": "w" * 1001}},
        {"refused": {"reason": 1}, "named": {"reason": 5}},
    ],
)
def test_a_batch_with_bad_refusals_is_refused_whole_with_one_message(
    refusals: dict[str, Any],
) -> None:
    batch = MetricBatch()
    batch.append("run", "train/loss", 0, 1.0, 1000)
    body = json.dumps({**batch_document(batch), **refusals}).encode()
    with pytest.raises(InvalidValueError, match="refus|named"):
        decode_batch(body)


def _batch(run_id: str) -> MetricBatch:
    batch = MetricBatch()
    for step, key in enumerate(["train/loss", "top@5", "evaluate/loss", "k" * 251, "top@5"]):
        batch.append(run_id, key, step, 0.5 + step, 1000 + step)
    return batch


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_bulk_route_stores_the_good_points_around_refused_keys_and_counts_them_in_health(
    server_factory: Any, tmp_path: Path, database: str, request: pytest.FixtureRequest
) -> None:
    """On PostgreSQL too, through served workers (prepared statements, the bulk write's own
    ``plan_cache_mode`` for its transaction)."""
    extra = ([] if database == "sqlite"
             else ["--backend-store-uri", request.getfixturevalue("postgres_uri")])  # fmt: skip
    server = server_factory(tmp_path / "store", workers=2, extra=extra)
    with FederatedTracker(server.url) as tracker:
        run = tracker.run("c", "p", "e", "r")
        run_id = run.run_id
        run.end()
    for _ in range(2):  # twice, so both workers may answer
        response = requests.post(
            f"{server.url}{API}/metrics/bulk", data=encode_batch(_batch(run_id)),
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"}, timeout=60,
        )  # fmt: skip
        assert response.status_code == 200, response.text
        assert response.json() == {
            "stored": 2, "replaced": response.json()["replaced"],
            "refused": {KEY_NAME: 2, KEY_LENGTH: 1},
        }  # fmt: skip
    client = MlflowClient(server.url)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "train/loss")] == [
        (0, 0.5)
    ]
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "evaluate/loss")] == [
        (2, 2.5)
    ]
    for _ in range(4):
        health = requests.get(f"{server.url}/health", timeout=60).json()
        assert health["refused"] == {"metrics": {KEY_NAME: 4, KEY_LENGTH: 2}}
    named = [line for line in server.output().splitlines() if "not stored" in line]
    assert len(named) == 2, named
    assert any("top@5" in line for line in named) and any(KEY_LENGTH in line for line in named)
    # Values that are no number, from a framework's clients: left out by the tracker, counted
    # by the server with the keys it refused; the other points of the same calls are stored.
    with FederatedTracker(server.url) as tracker, tracker.run("c", "p", "e", "r2") as run:
        run.log_metrics(
            {"train/loss": 0.25, "huge": 10**400, "text": "0.5", "top@5": 1.0}, step=0,
            participant="w1", check_keys=False,
        )  # fmt: skip
        run.log_metric_columns(
            ["w1", None, "w2"], ["evaluate/loss", "evaluate/loss", "flag"], [0.75, 10**400, True],
            step=1, check_keys=False,
        )  # fmt: skip
        run.flush()
        run.log_metrics({"only": 10**999}, step=2, check_keys=False)  # a batch of no points
        run.flush()
        run.log_metrics({"train/loss": 0.125}, step=3, participant="w1")  # still writing after
        run.flush()
        child = run.participant_run_id("w1")
        parent = run.run_id
    assert client.get_run(child).data.metrics == {"train/loss": 0.125, "evaluate/loss": 0.75}
    assert [(m.step, m.value) for m in client.get_metric_history(child, "train/loss")] == [
        (0, 0.25), (3, 0.125),
    ]  # fmt: skip
    assert client.get_run(parent).data.metrics == {}
    # A batch whose own refusal counts are malformed: a 400 naming them, nothing of it stored.
    bad = MetricBatch()
    bad.append(child, "train/loss", 9, 9.0, 1000)
    body = json.dumps({**batch_document(bad), "refused": {"reason": -1}}).encode()
    response = requests.post(
        f"{server.url}{API}/metrics/bulk", data=body,
        headers={"Content-Type": "application/json"}, timeout=60,
    )  # fmt: skip
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_VALUE"
    assert "refusal count" in response.json()["error"]["message"]
    assert 9 not in {m.step for m in client.get_metric_history(child, "train/loss")}
    health = requests.get(f"{server.url}/health", timeout=60).json()
    assert health["refused"] == {"metrics": {KEY_NAME: 5, KEY_LENGTH: 2, VALUE_NOT_NUMBER: 5}}, (
        health
    )
    named = [line for line in server.output().splitlines() if VALUE_NOT_NUMBER in line]
    bits = f"{(10**400).bit_length()} bits"
    assert len(named) == 1 and "huge" in named[0] and bits in named[0], named


def test_into_a_store_folder_a_refused_key_is_left_out_with_one_warning_and_the_rest_stored(
    tmp_path: Path, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, "synergos_mlops.tracking")
    with FederatedTracker(tmp_path / "store") as tracker, tracker.run("c", "p", "e", "r") as run:
        for step in range(3):
            run.log_metrics(
                {"train/loss": step, "top@5": 1, "evaluate/loss": -step}, step=step,
                participant="w1", check_keys=False,
            )  # fmt: skip
            run.flush()
        child = run.participant_run_id("w1")
        uri = run.tracking_uri
    client = MlflowClient(uri)
    assert set(client.get_run(child).data.metrics) == {"train/loss", "evaluate/loss"}
    assert [m.value for m in client.get_metric_history(child, "evaluate/loss")] == [0, -1, -2]
    warned = [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()]
    assert len(warned) == 1 and "top@5" in warned[0], warned


def test_into_a_store_folder_a_value_that_is_no_number_is_left_out_with_one_warning(
    tmp_path: Path, caplog: Any
) -> None:
    caplog.set_level(logging.WARNING, "synergos_mlops.tracking")
    with FederatedTracker(tmp_path / "store") as tracker, tracker.run("c", "p", "e", "r") as run:
        for step in range(3):
            run.log_metrics(
                {"train/loss": step, "huge": 10**400, "none": None}, step=step, check_keys=False
            )
            run.flush()
        with pytest.raises(InvalidValueError, match="non-numeric"):  # checked: refused at once
            run.log_metrics({"huge": 10**400}, step=3)
        parent = run.run_id
        uri = run.tracking_uri
    client = MlflowClient(uri)
    assert [m.value for m in client.get_metric_history(parent, "train/loss")] == [0, 1, 2]
    assert set(client.get_run(parent).data.metrics) == {"train/loss"}
    warned = [r.getMessage() for r in caplog.records if "not stored" in r.getMessage()]
    assert len(warned) == 1 and "2 metric point(s)" in warned[0], warned  # said once
    bits = f"{(10**400).bit_length()} bits"
    assert VALUE_NOT_NUMBER in warned[0] and bits in warned[0], warned
