"""A columnar batch of metric points and its wire form.

The wire form is the body of ``POST /api/synergos/v1/metrics/bulk`` and the content of one
spool file: gzip-compressed JSON, columnar, with run ids and keys stored once::

    {"format": "synergos.metrics/1",
     "runs": ["<run id>", ...], "keys": ["train/loss", ...],
     "run": [0, 0, 1, ...], "key": [0, 1, 0, ...],          # indexes into runs / keys
     "step": [...], "value": [...], "timestamp": [...]}      # one entry per point

Values NaN, Infinity and -Infinity are written as the JSON extensions Python's ``json`` reads
and writes (``NaN``, ``Infinity``, ``-Infinity``).

A batch is read within fixed bounds, whatever its sender claims: at most :data:`MAX_POINTS`
points and :data:`MAX_JSON_BYTES` of JSON once decompressed (a gzip bomb stops there, and the
point count is estimated from the text before any JSON is parsed); steps and timestamps fit in
64 bits. Beyond the bounds, :class:`BatchTooLargeError`.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any

from synergos_mlops.errors import InvalidValueError

__all__ = [
    "FORMAT",
    "MAX_JSON_BYTES",
    "MAX_POINTS",
    "BatchTooLargeError",
    "MetricBatch",
    "decode_batch",
    "encode_batch",
]

FORMAT = "synergos.metrics/1"
#: Points in one batch (the tracker sends 20,000 by default).
MAX_POINTS = 1_000_000
#: JSON text of one batch once decompressed (1,000,000 points take ~45 MB).
MAX_JSON_BYTES = 96 * 1024 * 1024
_INT64 = 2**63
_INFLATE_CHUNK = 1024 * 1024


class BatchTooLargeError(InvalidValueError):
    """A batch beyond MAX_POINTS points or MAX_JSON_BYTES of JSON."""


@dataclass
class MetricBatch:
    """Metric points, one list entry per point (columnar)."""

    run_ids: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.keys)

    def append(self, run_id: str, key: str, step: int, value: float, timestamp: int) -> None:
        self.run_ids.append(run_id)
        self.keys.append(key)
        self.steps.append(step)
        self.values.append(value)
        self.timestamps.append(timestamp)


def _indexed(items: list[str]) -> tuple[list[str], list[int]]:
    table: dict[str, int] = {}
    index = [table.setdefault(item, len(table)) for item in items]
    return list(table), index


def encode_batch(batch: MetricBatch, *, compresslevel: int = 1) -> bytes:
    """The gzip-compressed JSON wire form of ``batch``."""
    runs, run_index = _indexed(batch.run_ids)
    keys, key_index = _indexed(batch.keys)
    document = {
        "format": FORMAT,
        "runs": runs,
        "keys": keys,
        "run": run_index,
        "key": key_index,
        "step": batch.steps,
        "value": batch.values,
        "timestamp": batch.timestamps,
    }
    text = json.dumps(document, separators=(",", ":"))
    import gzip

    return gzip.compress(text.encode(), compresslevel=compresslevel)


def _too_many_points() -> BatchTooLargeError:
    return BatchTooLargeError(f"a metric batch may hold at most {MAX_POINTS} points")


def _separators_bound() -> int:
    # Five numeric columns hold a comma between entries; runs and keys are small tables.
    return 5 * MAX_POINTS + 100_000


def _inflate(body: bytes) -> bytes:
    """The JSON text of a body, decompressed piece by piece within the bounds."""
    if body[:2] != b"\x1f\x8b":
        if len(body) > MAX_JSON_BYTES:
            raise BatchTooLargeError(f"a metric batch may hold {MAX_JSON_BYTES} bytes of JSON")
        if body.count(b",") > _separators_bound():
            raise _too_many_points()
        return body
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = bytearray()
    separators = 0
    data = body
    try:
        while True:
            piece = inflater.decompress(data, _INFLATE_CHUNK)
            separators += piece.count(b",")
            out += piece
            if separators > _separators_bound():
                raise _too_many_points()
            if len(out) > MAX_JSON_BYTES:
                raise BatchTooLargeError(
                    f"a metric batch may hold {MAX_JSON_BYTES} bytes of JSON once decompressed"
                )
            data = inflater.unconsumed_tail
            if inflater.eof:
                if inflater.unused_data.strip(b"\x00"):
                    raise InvalidValueError("metric batch holds more than one gzip member")
                break
            if not data and not piece:
                raise InvalidValueError("metric batch is not gzip/JSON: the gzip data is cut")
    except zlib.error as exc:
        raise InvalidValueError(f"metric batch is not gzip/JSON: {exc}") from None
    return bytes(out)


def _int64(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and -_INT64 <= value < _INT64


def _column(document: dict[str, Any], name: str, size: int | None) -> list[Any]:
    column = document.get(name)
    if not isinstance(column, list):
        raise InvalidValueError(f"metric batch field {name!r} must be a list")
    if size is not None and len(column) != size:
        raise InvalidValueError(
            f"metric batch field {name!r} has {len(column)} entries, expected {size}"
        )
    return column


def decode_batch(body: bytes) -> MetricBatch:
    """Read a wire-form batch (gzip-compressed or plain JSON); raise InvalidValueError."""
    text = _inflate(body)
    try:
        document = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidValueError(f"metric batch is not gzip/JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidValueError(f"metric batch must be a JSON object with format {FORMAT!r}")
    runs = _column(document, "runs", None)
    keys = _column(document, "keys", None)
    run_index = _column(document, "run", None)
    size = len(run_index)
    if size > MAX_POINTS:
        raise _too_many_points()
    key_index = _column(document, "key", size)
    steps = _column(document, "step", size)
    values = _column(document, "value", size)
    timestamps = _column(document, "timestamp", size)
    if not all(isinstance(r, str) for r in runs) or not all(isinstance(k, str) for k in keys):
        raise InvalidValueError("metric batch 'runs' and 'keys' must hold strings")
    for name, table, index in (("runs", runs, run_index), ("keys", keys, key_index)):
        if not all(_int64(i) and 0 <= i < len(table) for i in index):
            raise InvalidValueError(f"metric batch has an index outside {name!r}")
    run_ids = [runs[i] for i in run_index]
    key_names = [keys[i] for i in key_index]
    floats: list[float] = []
    for position, (step, value, stamp) in enumerate(zip(steps, values, timestamps, strict=True)):
        if not _int64(step):
            raise InvalidValueError(
                f"metric {key_names[position][:100]!r} has a step that is not a 64-bit integer"
            )
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidValueError(f"metric {key_names[position][:100]!r} has a non-numeric value")
        if not _int64(stamp) or stamp < 0:
            raise InvalidValueError(f"metric {key_names[position][:100]!r} has a bad timestamp")
        try:
            floats.append(float(value))
        except OverflowError:
            raise InvalidValueError(
                f"metric {key_names[position][:100]!r} has a value beyond a 64-bit float"
            ) from None
    return MetricBatch(run_ids, key_names, steps, floats, timestamps)
