"""A columnar batch of metric points and its wire form.

The wire form is the body of ``POST /api/synergos/v1/metrics/bulk`` and the content of one
spool file: gzip-compressed JSON, columnar, with run ids and keys stored once::

    {"format": "synergos.metrics/1",
     "runs": ["<run id>", ...], "keys": ["train/loss", ...],
     "run": [0, 0, 1, ...], "key": [0, 1, 0, ...],          # indexes into runs / keys
     "step": [...], "value": [...], "timestamp": [...]}      # one entry per point

Values NaN, Infinity and -Infinity are written as the JSON extensions Python's ``json`` reads
and writes (``NaN``, ``Infinity``, ``-Infinity``).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from typing import Any

from synergos_mlops.errors import InvalidValueError

__all__ = ["FORMAT", "MetricBatch", "decode_batch", "encode_batch"]

FORMAT = "synergos.metrics/1"


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
    return gzip.compress(text.encode(), compresslevel=compresslevel)


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
    try:
        if body[:2] == b"\x1f\x8b":
            body = gzip.decompress(body)
        document = json.loads(body)
    except (OSError, EOFError, ValueError) as exc:
        raise InvalidValueError(f"metric batch is not gzip/JSON: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidValueError(f"metric batch must be a JSON object with format {FORMAT!r}")
    runs = _column(document, "runs", None)
    keys = _column(document, "keys", None)
    run_index = _column(document, "run", None)
    size = len(run_index)
    key_index = _column(document, "key", size)
    steps = _column(document, "step", size)
    values = _column(document, "value", size)
    timestamps = _column(document, "timestamp", size)
    if not all(isinstance(r, str) for r in runs) or not all(isinstance(k, str) for k in keys):
        raise InvalidValueError("metric batch 'runs' and 'keys' must hold strings")
    try:
        run_ids = [runs[i] for i in run_index]
        key_names = [keys[i] for i in key_index]
    except (IndexError, TypeError):
        raise InvalidValueError("metric batch has an index outside 'runs' or 'keys'") from None
    for position, (step, value, stamp) in enumerate(zip(steps, values, timestamps, strict=True)):
        if isinstance(step, bool) or not isinstance(step, int):
            raise InvalidValueError(f"metric {key_names[position]!r} has a non-integer step")
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InvalidValueError(f"metric {key_names[position]!r} has a non-numeric value")
        if isinstance(stamp, bool) or not isinstance(stamp, int) or stamp < 0:
            raise InvalidValueError(f"metric {key_names[position]!r} has a bad timestamp")
    return MetricBatch(run_ids, key_names, steps, [float(v) for v in values], timestamps)
