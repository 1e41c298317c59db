"""A batch of log records and its wire form: the body of ``POST /api/synergos/v1/logs`` and
the content of one file of the tracker's log spool. Gzip-compressed JSON::

    {"format": "synergos.logs/1",
     "records": [{"id": "<sender's record id>", "collaboration": "c", "project": "p",
                  "experiment": "e", "run": "r", "participant": "worker_1" | null,
                  "timestamp": <ms>, "level": 20, "logger": "WKR_worker_1",
                  "message": "...", "fields": {...}}, ...]}

Read within fixed bounds whatever the sender claims: :data:`MAX_RECORDS` records,
:data:`MAX_JSON_BYTES` of JSON once decompressed (a gzip bomb stops there), a message of at
most :data:`MAX_MESSAGE_CHARS` characters. Anything else is an :class:`InvalidValueError`
naming the record and the field; nothing of a batch is kept when one record is bad.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from synergos_mlops.errors import InvalidIdError, InvalidValueError
from synergos_mlops.federation import validate_id
from synergos_mlops.storage.logs import LogRecord, role_of_logger

__all__ = [
    "FORMAT",
    "MAX_JSON_BYTES",
    "MAX_MESSAGE_CHARS",
    "MAX_RECORDS",
    "LogBatchTooLargeError",
    "LogRunNotFoundError",
    "attach_runs",
    "decode_log_batch",
    "encode_log_batch",
]

FORMAT = "synergos.logs/1"
MAX_RECORDS = 100_000
MAX_JSON_BYTES = 64 * 1024 * 1024
MAX_MESSAGE_CHARS = 1024 * 1024
_ID_CHARS = 64
_TEXT_CHARS = 250
_CHUNK = 1024 * 1024


class LogBatchTooLargeError(InvalidValueError):
    """A batch beyond MAX_RECORDS records or MAX_JSON_BYTES of JSON."""


def encode_log_batch(records: Sequence[Mapping[str, Any]], *, compresslevel: int = 5) -> bytes:
    text = json.dumps({"format": FORMAT, "records": list(records)}, default=str)
    return gzip.compress(text.encode(), compresslevel=compresslevel)


def _inflate(body: bytes) -> bytes:
    if body[:2] != b"\x1f\x8b":
        if len(body) > MAX_JSON_BYTES:
            raise LogBatchTooLargeError(f"a log batch may hold {MAX_JSON_BYTES} bytes of JSON")
        return body
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    data = body
    try:
        while True:
            piece = inflater.decompress(data, _CHUNK)
            out += piece
            if len(out) > MAX_JSON_BYTES:
                raise LogBatchTooLargeError(
                    f"a log batch may hold {MAX_JSON_BYTES} bytes of JSON once decompressed"
                )
            data = inflater.unconsumed_tail
            if inflater.eof:
                break
            if not data and not piece:
                raise InvalidValueError("log batch is not gzip/JSON: the gzip data is cut")
    except zlib.error as exc:
        raise InvalidValueError(f"log batch is not gzip/JSON: {exc}") from None
    return bytes(out)


def _int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63


def _record(position: int, item: object) -> LogRecord:
    where = f"log record {position}"
    if not isinstance(item, dict):
        raise InvalidValueError(f"{where} must be a JSON object")
    record_id = item.get("id")
    if not isinstance(record_id, str) or not 0 < len(record_id) <= _ID_CHARS:
        raise InvalidValueError(f"{where}: 'id' must be text of 1 to {_ID_CHARS} characters")
    try:
        ids = {
            kind: validate_id(kind, item.get(kind))
            for kind in ("collaboration", "project", "experiment", "run")
        }
        participant = item.get("participant")
        if participant is not None:
            validate_id("participant", participant)
    except InvalidIdError as exc:
        raise InvalidIdError(f"{where}: {exc}") from None
    for kind, value in (*ids.items(), ("participant", participant)):
        if value is not None and len(value) > _TEXT_CHARS:
            raise InvalidValueError(f"{where}: {kind} id is longer than {_TEXT_CHARS} characters")
    stamp = item.get("timestamp")
    if not _int(stamp) or stamp < 0:  # type: ignore[operator]
        raise InvalidValueError(f"{where}: 'timestamp' must be ms since the epoch")
    level = item.get("level")
    if not _int(level) or not 0 <= level <= 100:  # type: ignore[operator]
        raise InvalidValueError(f"{where}: 'level' must be a number from 0 to 100")
    logger = item.get("logger")
    if not isinstance(logger, str) or not 0 < len(logger) <= _TEXT_CHARS:
        raise InvalidValueError(f"{where}: 'logger' must be text of 1 to {_TEXT_CHARS} characters")
    message = item.get("message")
    if not isinstance(message, str):
        raise InvalidValueError(f"{where}: 'message' must be text")
    if len(message) > MAX_MESSAGE_CHARS:
        raise InvalidValueError(f"{where}: 'message' is longer than {MAX_MESSAGE_CHARS} chars")
    fields = item.get("fields")
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        raise InvalidValueError(f"{where}: 'fields' must be a JSON object")
    return LogRecord(
        timestamp=int(stamp),  # type: ignore[arg-type]
        level=int(level),  # type: ignore[arg-type]
        logger=logger,
        message=message,
        participant=participant,
        role=role_of_logger(logger),
        fields=fields,
        record_id=record_id,
        **ids,
    )


def decode_log_batch(body: bytes) -> list[LogRecord]:
    """Read a wire-form batch (gzip or plain JSON); raise InvalidValueError naming the
    first problem (LogBatchTooLargeError beyond the bounds)."""
    text = _inflate(body)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidValueError(f"log batch is not gzip/JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidValueError(f"log batch must be a JSON object with format {FORMAT!r}")
    items = document.get("records")
    if not isinstance(items, list):
        raise InvalidValueError("log batch field 'records' must be a list")
    if len(items) > MAX_RECORDS:
        raise LogBatchTooLargeError(f"a log batch may hold at most {MAX_RECORDS} records")
    return [_record(position, item) for position, item in enumerate(items)]


class LogRunNotFoundError(InvalidValueError):
    """A batch names a federated run that does not exist (or is deleted)."""


def attach_runs(engine: Any, records: Sequence[LogRecord]) -> list[LogRecord]:
    """``records`` with the MLflow id of their federation run; LogRunNotFoundError naming the
    first run that is not there."""
    import dataclasses

    from synergos_mlops.storage.logs import run_uuid_for

    found: dict[tuple[str, str, str, str], str] = {}
    out = []
    for record in records:
        ids = (record.collaboration, record.project, record.experiment, record.run)
        if ids not in found:
            uuid = run_uuid_for(engine, *ids)  # type: ignore[arg-type]
            if uuid is None:
                raise LogRunNotFoundError(
                    f"run {record.run!r} not found in experiment {'/'.join(ids[:3])!r}"  # type: ignore[arg-type]
                )
            found[ids] = uuid  # type: ignore[index]
        out.append(dataclasses.replace(record, run_uuid=found[ids]))  # type: ignore[index]
    return out
