"""storage/logs.py on SQLite and PostgreSQL: idempotent bulk insert, filtered reads with
cursors, retention, and the wire form of a batch."""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Engine

from synergos_mlops.errors import InvalidIdError, InvalidValueError
from synergos_mlops.server.database import upgrade
from synergos_mlops.storage.log_batch import (
    LogBatchTooLargeError,
    decode_log_batch,
    encode_log_batch,
)
from synergos_mlops.storage.logs import (
    LogQuery,
    LogRecord,
    count_records,
    delete_older_than,
    insert_records,
    iter_run_records,
    participant_of_logger,
    read_records,
    role_of_logger,
)

IDS = ("c", "p", "e", "r")


@pytest.fixture(params=["sqlite", "postgresql"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Engine]:
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    else:
        uri = request.getfixturevalue("postgres_uri")
    upgrade(uri, say=lambda _line: None)
    made = create_engine(uri)
    yield made
    made.dispose()


def _record(n: int, **changes: object) -> LogRecord:
    values: dict[str, object] = dict(
        timestamp=1_700_000_000_000 + n, level=20, logger="TTP_main", message=f"round {n} done",
        collaboration="c", project="p", experiment="e", run="r", role="TTP",
        fields={"round": n}, record_id=f"rec-{n}",
    )  # fmt: skip
    values.update(changes)
    return LogRecord(**values)  # type: ignore[arg-type]


def test_a_record_sent_twice_is_stored_once(engine: Engine) -> None:
    batch = [_record(n) for n in range(1000)]
    assert insert_records(engine, batch) == 1000
    assert insert_records(engine, batch[500:] + [_record(1000)]) == 1
    assert count_records(engine) == 1001


def test_records_without_a_sender_id_are_all_kept(engine: Engine) -> None:
    insert_records(engine, [_record(1, record_id=None), _record(1, record_id=None)])
    assert count_records(engine) == 2


def test_reads_filter_by_participant_level_role_and_text(engine: Engine) -> None:
    insert_records(
        engine,
        [
            _record(1),
            _record(2, participant="w1", logger="WKR_w1", role="WKR", message="Loss is NaN",
                    level=40),
            _record(3, participant="w2", logger="WKR_w2", role="WKR", message="50%_done"),
            _record(4, participant="w1", logger="SYS_w1", role="SYS", message="probe"),
            _record(5, run="other"),
        ],
    )  # fmt: skip

    def ids(**filters: object) -> list[str]:
        records, _ = read_records(engine, LogQuery(*IDS, **filters))  # type: ignore[arg-type]
        return [r["message"] for r in records]

    assert ids() == ["round 1 done", "Loss is NaN", "50%_done", "probe"]
    assert ids(participants=["w1"]) == ["Loss is NaN", "probe"]
    assert ids(min_level=30) == ["Loss is NaN"]
    assert ids(role="SYS") == ["probe"]
    assert ids(contains="loss is") == ["Loss is NaN"]
    assert ids(contains="%_") == ["50%_done"]  # LIKE's wildcards are plain text
    assert ids(visible=["w2"]) == ["round 1 done", "50%_done"]  # global stays visible


def test_cursors_read_the_newest_page_then_tail_forward_and_page_back(engine: Engine) -> None:
    insert_records(engine, [_record(n) for n in range(10)])
    newest, more = read_records(engine, LogQuery(*IDS, limit=3))
    assert [r["fields"]["round"] for r in newest] == [7, 8, 9] and more
    older, more = read_records(engine, LogQuery(*IDS, before=newest[0]["id"], limit=5))
    assert [r["fields"]["round"] for r in older] == [2, 3, 4, 5, 6] and more
    assert read_records(engine, LogQuery(*IDS, after=newest[-1]["id"])) == ([], False)
    insert_records(engine, [_record(10)])
    tail, more = read_records(engine, LogQuery(*IDS, after=newest[-1]["id"]))
    assert [r["fields"]["round"] for r in tail] == [10] and not more
    record = tail[0]
    assert record["level_name"] == "INFO" and record["role"] == "TTP"
    assert record["time"] == "2023-11-14T22:13:20.010Z"
    assert len(list(iter_run_records(engine, IDS, page=4))) == 11


def test_retention_deletes_only_records_older_than_the_cutoff(engine: Engine) -> None:
    insert_records(engine, [_record(n) for n in range(25)])
    assert delete_older_than(engine, 1_700_000_000_000 + 20, chunk=7) == 20
    assert count_records(engine) == 5


def test_logger_names_of_the_original_logger_give_role_and_participant() -> None:
    assert role_of_logger("WKR_worker_1") == "WKR"
    assert participant_of_logger("WKR_worker_1") == "worker_1"
    assert participant_of_logger("SYS_w2") == "w2"
    assert participant_of_logger("TTP_main") is None
    assert role_of_logger("my.module") is None


def _wire(**changes: object) -> dict[str, object]:
    record: dict[str, object] = {
        "id": "x-1", "collaboration": "c", "project": "p", "experiment": "e", "run": "r",
        "participant": None, "timestamp": 1, "level": 20, "logger": "WKR_w1", "message": "hi",
        "fields": {"a": 1},
    }  # fmt: skip
    record.update(changes)
    return record


def test_a_batch_round_trips_through_its_wire_form() -> None:
    (record,) = decode_log_batch(encode_log_batch([_wire()]))
    assert record.role == "WKR" and record.fields == {"a": 1} and record.record_id == "x-1"


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"run": "a/b"}, "must not contain '/'"),
        ({"timestamp": -1}, "'timestamp'"),
        ({"level": "INFO"}, "'level'"),
        ({"message": None}, "'message'"),
        ({"fields": [1]}, "'fields'"),
        ({"id": ""}, "'id'"),
    ],
)
def test_a_bad_record_is_refused_naming_its_field(changes: dict[str, object], problem: str) -> None:
    body = encode_log_batch([_wire(), _wire(**changes)])
    with pytest.raises((InvalidValueError, InvalidIdError), match="log record 1") as caught:
        decode_log_batch(body)
    assert problem in str(caught.value)


def test_a_gzip_bomb_stops_at_the_bound() -> None:
    bomb = gzip.compress(b'{"format": "synergos.logs/1", "records": [' + b" " * (70 << 20))
    with pytest.raises(LogBatchTooLargeError):
        decode_log_batch(bomb)
    with pytest.raises(InvalidValueError, match="format"):
        decode_log_batch(json.dumps({"records": []}).encode())
