"""Checks made at the call site, so a bad key or value fails where it is logged."""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

from synergos_mlops.errors import InvalidValueError

__all__ = [
    "as_step",
    "as_value",
    "check_metric_key",
    "check_param_key",
    "metric_items",
    "metric_values",
    "safe_relative_path",
]

_MAX_KEY_LENGTH = 250
_INT64 = 2**63


def _mlflow_message(exc: Exception) -> str:
    return str(getattr(exc, "message", exc))


@functools.lru_cache(maxsize=65536)
def check_metric_key(key: object) -> str:
    """``key`` if MLflow accepts it as a metric key, else InvalidValueError naming it."""
    if not isinstance(key, str):
        raise InvalidValueError(f"metric key {key!r} must be a string")
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_metric_name

    try:
        _validate_metric_name(key)
    except MlflowException as exc:
        raise InvalidValueError(f"metric key {key!r} is refused: {_mlflow_message(exc)}") from None
    if not key or len(key) > _MAX_KEY_LENGTH:
        raise InvalidValueError(f"metric key {key!r} must have 1 to {_MAX_KEY_LENGTH} characters")
    if not key.isprintable():
        raise InvalidValueError(f"metric key {key!r} must be printable text")
    return key


def check_param_key(key: object) -> str:
    if not isinstance(key, str):
        raise InvalidValueError(f"hyperparameter name {key!r} must be a string")
    from mlflow.exceptions import MlflowException
    from mlflow.utils.validation import _validate_param_name

    try:
        _validate_param_name(key)
    except MlflowException as exc:
        raise InvalidValueError(
            f"hyperparameter name {key!r} is refused: {_mlflow_message(exc)}"
        ) from None
    if not key or len(key) > _MAX_KEY_LENGTH:
        raise InvalidValueError(
            f"hyperparameter name {key!r} must have 1 to {_MAX_KEY_LENGTH} characters"
        )
    return key


def as_value(key: str, value: object) -> float:
    """A metric value as a float; bools, text and None are refused (NaN and ±inf are kept)."""
    if isinstance(value, (bool, str, bytes)) or value is None or not hasattr(value, "__float__"):
        raise InvalidValueError(f"metric {key!r} has a non-numeric value {value!r}")
    try:
        return float(value)  # type: ignore[arg-type,unused-ignore]
    except (TypeError, ValueError, OverflowError):
        raise InvalidValueError(f"metric {key!r} has a non-numeric value {value!r}") from None


def as_step(name: str, value: object) -> int:
    """A step, round or epoch as an int (numpy integers welcome; bools and floats refused)."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise InvalidValueError(f"{name} {value!r} must be an integer")
    number = int(value.__index__())  # type: ignore[attr-defined,unused-ignore]
    if not -_INT64 <= number < _INT64:
        raise InvalidValueError(f"{name} {number} does not fit in 64 bits")
    return number


def metric_items(metrics: Mapping[str, Any]) -> list[tuple[str, float]]:
    if not isinstance(metrics, Mapping):
        raise InvalidValueError(f"metrics must be a mapping of key to value, not {metrics!r}")
    return [(check_metric_key(key), as_value(key, value)) for key, value in metrics.items()]


def metric_values(metrics: Mapping[str, Any]) -> list[tuple[str, float]]:
    """As :func:`metric_items`, the keys left for the destination to check (text only)."""
    if not isinstance(metrics, Mapping):
        raise InvalidValueError(f"metrics must be a mapping of key to value, not {metrics!r}")
    items = []
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise InvalidValueError(f"metric key {key!r} must be a string")
        items.append((key, as_value(key, value)))
    return items


def safe_relative_path(kind: str, value: str) -> str:
    """A relative artifact path that stays inside its folder; InvalidValueError otherwise."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidValueError(f"{kind} {value!r} must be a non-empty relative path")
    text = value.replace("\\", "/")
    if text.startswith("/") or PurePosixPath(text).is_absolute() or ":" in text.split("/")[0]:
        raise InvalidValueError(f"{kind} {value!r} must be relative, not absolute")
    parts = [part for part in text.split("/") if part not in ("", ".")]
    if not parts or ".." in parts:
        raise InvalidValueError(f"{kind} {value!r} must not leave its folder ('..')")
    if any(not part.isprintable() for part in parts):
        raise InvalidValueError(f"{kind} {value!r} must be printable text")
    return posixpath.join(*parts)
