"""Screening a metric batch before it is written: the points whose key MLflow would refuse
are taken out and counted by reason, so one bad key never costs the batch's other points.
What the batch's sender already left out (``MetricBatch.refused``, such as a value that is no
number) is counted with them."""

from __future__ import annotations

from dataclasses import dataclass, field

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.storage.batch import MetricBatch
from synergos_mlops.validate import check_metric_key

__all__ = ["KEY_LENGTH", "KEY_NAME", "KEY_TEXT", "VALUE_NOT_NUMBER", "Screened", "screen_keys"]

#: Reasons a point is refused, as /health counts them.
KEY_NAME = "metric key MLflow refuses"
KEY_LENGTH = "metric key longer than 250 characters"
KEY_TEXT = "metric key not printable"
#: Counted by the sender (a framework's client sent text, a bool or an int beyond a float).
VALUE_NOT_NUMBER = "metric value that is no number"


@dataclass
class Screened:
    """The batch's accepted points, how many were refused by reason, and the first refused
    key of each reason with the refusal's words."""

    batch: MetricBatch
    refused: dict[str, int] = field(default_factory=dict)
    named: dict[str, str] = field(default_factory=dict)


def _reason(key: str, message: str) -> str:
    if not key or len(key) > 250:
        return KEY_LENGTH
    if not key.isprintable():
        return KEY_TEXT
    return KEY_NAME


def screen_keys(batch: MetricBatch) -> Screened:
    """Check each distinct key once (MLflow's metric-name rule, 1 to 250 printable
    characters); a batch whose keys all pass is returned as it is, without a copy. The
    refusals are the batch's own (its sender's) and those of its keys."""
    bad: dict[str, str] = {}
    for key in set(batch.keys):
        try:
            check_metric_key(key)
        except InvalidValueError as exc:
            bad[key] = str(exc)
    if not bad:
        return Screened(batch, dict(batch.refused), dict(batch.named))
    screened = Screened(MetricBatch(), dict(batch.refused), dict(batch.named))
    kept = screened.batch
    for position, key in enumerate(batch.keys):
        message = bad.get(key)
        if message is None:
            kept.append(
                batch.run_ids[position], key, batch.steps[position], batch.values[position],
                batch.timestamps[position],
            )  # fmt: skip
            continue
        reason = _reason(key, message)
        screened.refused[reason] = screened.refused.get(reason, 0) + 1
        screened.named.setdefault(reason, message)
    return screened
