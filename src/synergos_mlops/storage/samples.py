"""The wire form of hardware samples: a metric batch whose runs are participants.

The body of ``POST /api/synergos/v1/system/samples`` and the content of one file of the
monitor's spool. It is the metric batch's format 2 (``storage.batch``), gzip-compressed, with
two differences: the ``runs`` table names *participants* as ``"<collaboration>/<participant>"``
(ids never hold ``/``, so the pair is unambiguous), which the server resolves to MLflow runs
by time; and a ``facts`` object holds each participant's static machine facts::

    {"format": "synergos.system/1", "points": n,
     "runs": ["hospitals/worker_1", ...], "keys": ["system/cpu_utilization_percentage", ...],
     "run": ..., "key": ..., "step": ..., "value": ..., "timestamp": ...,   # as format 2
     "facts": {"hospitals/worker_1": {"cpu_count": "8", "hostname": "node-3", ...}}}

A sample is all the points of one participant at one timestamp (milliseconds since the
epoch, the participant machine's clock); ``step`` is not used (0) and is set by the server.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.federation import validate_id
from synergos_mlops.storage.batch import (
    MetricBatch,
    batch_document,
    batch_from_document,
    read_document,
)

__all__ = [
    "FORMAT",
    "SampleBatch",
    "any_target",
    "decode_samples",
    "encode_samples",
    "split_any_target",
    "split_target",
    "target",
]

FORMAT = "synergos.system/1"
#: Longest text of one fact; longer ones are cut (MLflow allows 8,000 characters per tag).
MAX_FACT_LENGTH = 1000
MAX_FACTS = 50


def target(collaboration: str, participant: str) -> str:
    """The name of a participant in a sample batch's ``runs`` table."""
    validate_id("collaboration", collaboration)
    validate_id("participant", participant)
    return f"{collaboration}/{participant}"


def any_target(participant: str) -> str:
    """A participant of whichever collaboration holds its runs (``"/<participant>"``): for
    hardware samples that name no collaboration (the original SysmetricLogger's, over GELF).
    Never on the wire: :func:`decode_samples` refuses it."""
    validate_id("participant", participant)
    return f"/{participant}"


def split_any_target(name: str) -> tuple[str | None, str]:
    """:func:`split_target`, with None for the collaboration of an :func:`any_target`."""
    if name.startswith("/"):
        return None, validate_id("participant", name[1:])
    return split_target(name)


def split_target(name: str) -> tuple[str, str]:
    """``(collaboration, participant)`` of a ``runs`` entry; InvalidIdError when malformed."""
    collaboration, sep, participant = name.partition("/")
    if not sep:
        raise InvalidValueError(f"sample target {name[:100]!r} is not 'collaboration/participant'")
    return validate_id("collaboration", collaboration), validate_id("participant", participant)


@dataclass
class SampleBatch:
    """Points per participant target, and each target's static facts."""

    points: MetricBatch = field(default_factory=MetricBatch)
    facts: dict[str, dict[str, str]] = field(default_factory=dict)


def encode_samples(batch: MetricBatch, facts: dict[str, dict[str, str]]) -> bytes:
    """The gzip-compressed wire form; ``facts`` of the targets the points name."""
    document = batch_document(batch)
    document["format"] = FORMAT
    named = set(batch.run_ids)
    document["facts"] = {name: dict(values) for name, values in facts.items() if name in named}
    text = json.dumps(document, separators=(",", ":"))
    return gzip.compress(text.encode(), compresslevel=1)


def _facts(raw: object) -> dict[str, dict[str, str]]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise InvalidValueError("sample batch field 'facts' must be an object")
    facts: dict[str, dict[str, str]] = {}
    for name, values in raw.items():
        split_target(name)
        if not isinstance(values, dict) or len(values) > MAX_FACTS:
            raise InvalidValueError(f"facts of {name[:100]!r} must be an object of <= {MAX_FACTS}")
        kept: dict[str, str] = {}
        for key, value in values.items():
            if not isinstance(key, str) or not key or len(key) > 100 or not key.isidentifier():
                raise InvalidValueError(f"fact name {str(key)[:100]!r} must be a short identifier")
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise InvalidValueError(f"fact {key!r} must be text or a number")
            kept[key] = str(value)[:MAX_FACT_LENGTH]
        facts[name] = kept
    return facts


def decode_samples(body: bytes) -> SampleBatch:
    """Read a wire-form sample batch; raise InvalidValueError (or InvalidIdError)."""
    document = read_document(body)
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidValueError(f"a sample batch must be a JSON object with format {FORMAT!r}")
    points = batch_from_document(document)
    for name in set(points.run_ids):
        split_target(name)
    bad = next((k for k in set(points.keys) if not k.startswith("system/")), None)
    if bad is not None:
        raise InvalidValueError(f"sample key {bad[:100]!r} must start with 'system/'")
    return SampleBatch(points, _facts(document.get("facts")))
