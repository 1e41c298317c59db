"""A columnar batch of metric points and its wire form.

The wire form is the body of ``POST /api/synergos/v1/metrics/bulk`` and the content of one
spool file: gzip-compressed JSON, columnar, with run ids and keys stored once. The tracker
writes format 2, whose numeric columns are little-endian binary arrays in base64, so neither
side spends Python work per point on text::

    {"format": "synergos.metrics/2", "points": n,
     "runs": ["<run id>", ...], "keys": ["train/loss", ...],
     "run": "<base64 uint32[n]>", "key": "<base64 uint32[n]>",   # indexes into runs / keys
     "step": "<base64 int64[n]>", "value": "<base64 float64[n]>",
     "timestamp": "<base64 int64[n]>",
     "refused": {"<reason>": count, ...}, "named": {"<reason>": "<first refusal's words>"}}

``refused`` and ``named`` are optional: points the sender itself could not put in the batch
(a value that is no number, from a framework's client), counted by reason for the
destination to count with its own refusals (a server's ``/health``). At most
:data:`MAX_REASONS` reasons, each named in at most :data:`MAX_REASON_CHARS` characters and
described in at most :data:`MAX_NAMED_CHARS`.

Format 1 (what earlier trackers left in their spools) holds the same columns as JSON lists,
with NaN, Infinity and -Infinity as the JSON extensions Python's ``json`` reads; the server
still reads it::

    {"format": "synergos.metrics/1", "runs": [...], "keys": [...],
     "run": [0, 0, 1, ...], "key": [0, 1, 0, ...],
     "step": [...], "value": [...], "timestamp": [...]}

A batch is read within fixed bounds, whatever its sender claims: at most :data:`MAX_POINTS`
points and :data:`MAX_JSON_BYTES` of JSON once decompressed (a gzip bomb stops there, and the
point count is estimated from the text before any JSON is parsed); steps and timestamps fit in
64 bits, timestamps are not negative. Beyond the bounds, :class:`BatchTooLargeError`.
"""

from __future__ import annotations

import base64
import binascii
import gzip
import json
import sys
import zlib
from array import array
from dataclasses import dataclass, field
from typing import Any

from synergos_mlops.errors import InvalidValueError

__all__ = [
    "FORMAT",
    "FORMAT_V1",
    "MAX_JSON_BYTES",
    "MAX_NAMED_CHARS",
    "MAX_POINTS",
    "MAX_REASONS",
    "MAX_REASON_CHARS",
    "BatchTooLargeError",
    "MetricBatch",
    "batch_document",
    "batch_from_document",
    "decode_batch",
    "encode_batch",
    "read_document",
]

FORMAT = "synergos.metrics/2"
FORMAT_V1 = "synergos.metrics/1"
#: Points in one batch (the tracker sends 20,000 by default).
MAX_POINTS = 1_000_000
#: JSON text of one batch once decompressed (1,000,000 points take ~45 MB).
MAX_JSON_BYTES = 96 * 1024 * 1024
#: Reasons a batch may carry in ``refused``, and the length of a reason and of its words.
MAX_REASONS = 16
MAX_REASON_CHARS = 200
MAX_NAMED_CHARS = 1000
_INT64 = 2**63
_INFLATE_CHUNK = 1024 * 1024
#: Format 2's columns: array type code and the size of one entry in bytes.
_COLUMNS_V2 = {"run": "I", "key": "I", "step": "q", "value": "d", "timestamp": "q"}
_LITTLE = sys.byteorder == "little"


class BatchTooLargeError(InvalidValueError):
    """A batch beyond MAX_POINTS points or MAX_JSON_BYTES of JSON."""


@dataclass
class MetricBatch:
    """Metric points, one list entry per point (columnar); ``refused`` counts by reason the
    points its sender left out, ``named`` gives each reason's first refusal in words."""

    run_ids: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    timestamps: list[int] = field(default_factory=list)
    refused: dict[str, int] = field(default_factory=dict)
    named: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keys)

    def append(self, run_id: str, key: str, step: int, value: float, timestamp: int) -> None:
        self.run_ids.append(run_id)
        self.keys.append(key)
        self.steps.append(step)
        self.values.append(value)
        self.timestamps.append(timestamp)

    def count_refused(self, refused: dict[str, int], named: dict[str, str]) -> None:
        """Add ``refused`` (count by reason) and the words of reasons not yet named."""
        for reason, count in refused.items():
            self.refused[reason] = self.refused.get(reason, 0) + count
        for reason, words in named.items():
            self.named.setdefault(reason, words)


def _indexed(items: list[str]) -> tuple[list[str], list[int]]:
    table: dict[str, int] = {}
    index = [table.setdefault(item, len(table)) for item in items]
    return list(table), index


def _packed(typecode: str, column: list[Any]) -> str:
    packed = array(typecode, column)
    if not _LITTLE:
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def batch_document(batch: MetricBatch) -> dict[str, Any]:
    """The JSON document of ``batch`` in format 2 (before compression); other wire forms
    (the system samples') add their own fields to it."""
    runs, run_index = _indexed(batch.run_ids)
    keys, key_index = _indexed(batch.keys)
    refusals = {"refused": batch.refused, "named": batch.named} if batch.refused else {}
    return {
        "format": FORMAT,
        "points": len(batch),
        "runs": runs,
        "keys": keys,
        "run": _packed("I", run_index),
        "key": _packed("I", key_index),
        "step": _packed("q", batch.steps),
        "value": _packed("d", batch.values),
        "timestamp": _packed("q", batch.timestamps),
        **refusals,
    }


def encode_batch(batch: MetricBatch, *, compresslevel: int = 1) -> bytes:
    """The gzip-compressed wire form (format 2) of ``batch``."""
    text = json.dumps(batch_document(batch), separators=(",", ":"))
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


def _names(document: dict[str, Any]) -> tuple[list[str], list[str]]:
    runs = _column(document, "runs", None)
    keys = _column(document, "keys", None)
    if not all(isinstance(r, str) for r in runs) or not all(isinstance(k, str) for k in keys):
        raise InvalidValueError("metric batch 'runs' and 'keys' must hold strings")
    return runs, keys


def _unpacked(document: dict[str, Any], name: str, size: int) -> array[Any]:
    """Format 2's column ``name``: ``size`` entries, read from base64 without a loop per
    entry."""
    text = document.get(name)
    typecode = _COLUMNS_V2[name]
    width = array(typecode).itemsize
    if not isinstance(text, str) or len(text) != 4 * -(-size * width // 3):
        raise InvalidValueError(
            f"metric batch field {name!r} must be base64 of {size} entries of {width} bytes"
        )
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidValueError(f"metric batch field {name!r} is not base64") from None
    column = array(typecode)
    column.frombytes(raw)
    if not _LITTLE:
        column.byteswap()
    return column


def _refusals(document: dict[str, Any]) -> tuple[dict[str, int], dict[str, str]]:
    """The optional ``refused`` counts and ``named`` words of a format-2 document."""
    refused = document.get("refused", {})
    named = document.get("named", {})
    if not isinstance(refused, dict) or not isinstance(named, dict):
        raise InvalidValueError("metric batch fields 'refused' and 'named' must be objects")
    if len(refused) > MAX_REASONS or len(named) > MAX_REASONS:
        raise InvalidValueError(f"metric batch may give at most {MAX_REASONS} refusal reasons")
    for reason, count in refused.items():
        if not reason or len(reason) > MAX_REASON_CHARS or not reason.isprintable():
            raise InvalidValueError(
                f"metric batch refusal reasons must be 1 to {MAX_REASON_CHARS} printable characters"
            )
        if not _int64(count) or not 0 < count <= MAX_POINTS:
            raise InvalidValueError(
                f"metric batch refusal count of {reason[:100]!r} must be 1 to {MAX_POINTS}"
            )
    for reason, words in named.items():
        if reason not in refused or not isinstance(words, str) or len(words) > MAX_NAMED_CHARS:
            raise InvalidValueError(
                f"metric batch field 'named' must give each refused reason's words in at most "
                f"{MAX_NAMED_CHARS} characters"
            )
    return refused, named


def _decode_v2(document: dict[str, Any]) -> MetricBatch:
    size = document.get("points")
    if not isinstance(size, int) or not _int64(size) or size < 0:
        raise InvalidValueError("metric batch field 'points' must be a count")
    if size > MAX_POINTS:
        raise _too_many_points()
    runs, keys = _names(document)
    columns = {name: _unpacked(document, name, size) for name in _COLUMNS_V2}
    for name, table in (("run", runs), ("key", keys)):
        if size and max(columns[name]) >= len(table):
            raise InvalidValueError(f"metric batch has an index outside {name + 's'!r}")
    if size and min(columns["timestamp"]) < 0:
        raise InvalidValueError("metric batch has a negative timestamp")
    refused, named = _refusals(document)
    return MetricBatch(
        run_ids=[runs[i] for i in columns["run"]],
        keys=[keys[i] for i in columns["key"]],
        steps=columns["step"].tolist(),
        values=columns["value"].tolist(),
        timestamps=columns["timestamp"].tolist(),
        refused=refused,
        named=named,
    )


def _decode_v1(document: dict[str, Any]) -> MetricBatch:
    runs, keys = _names(document)
    run_index = _column(document, "run", None)
    size = len(run_index)
    if size > MAX_POINTS:
        raise _too_many_points()
    key_index = _column(document, "key", size)
    steps = _column(document, "step", size)
    values = _column(document, "value", size)
    timestamps = _column(document, "timestamp", size)
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


def read_document(body: bytes) -> Any:
    """The JSON document of a gzip-compressed or plain body, read within the bounds."""
    text = _inflate(body)
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidValueError(f"metric batch is not gzip/JSON: {exc}") from None


def batch_from_document(document: dict[str, Any]) -> MetricBatch:
    """The columns of a format-2 document (as :func:`batch_document` makes it)."""
    return _decode_v2(document)


def decode_batch(body: bytes) -> MetricBatch:
    """Read a wire-form batch, format 2 or 1, gzip-compressed or plain JSON; raise
    InvalidValueError (BatchTooLargeError beyond the bounds)."""
    document = read_document(body)
    form = document.get("format") if isinstance(document, dict) else None
    if form == FORMAT:
        return _decode_v2(document)
    if form == FORMAT_V1:
        return _decode_v1(document)
    raise InvalidValueError(
        f"metric batch must be a JSON object with format {FORMAT!r} or {FORMAT_V1!r}"
    )
