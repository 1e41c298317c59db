"""Checks made at the call site, so a bad key or value fails where it is logged."""

from __future__ import annotations

import functools
import json
import posixpath
import re
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
    "param_text",
    "safe_relative_path",
]

_MAX_KEY_LENGTH = 250
_INT64 = 2**63


def _mlflow_message(exc: Exception) -> str:
    return str(getattr(exc, "message", exc))


#: Keys of ASCII letters, digits and ``_ - . /`` and spaces, which MLflow accepts on every
#: platform (its rule also allows more).
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_\-. /]{1,250}")


def _plainly_valid(key: str) -> bool:
    """True when MLflow surely accepts ``key`` as a metric or parameter name, checked without
    loading MLflow: a process that only logs (an orchestrator, a Flower ServerApp) then never
    imports it, and MLflow's objects no longer weigh on its garbage collector. Every other key
    is judged by MLflow's own rule."""
    if not _PLAIN_KEY.fullmatch(key):
        return False
    normal = posixpath.normpath(key)
    return normal == key and normal != "." and not normal.startswith(("..", "/"))


@functools.lru_cache(maxsize=65536)
def check_metric_key(key: object) -> str:
    """``key`` if MLflow accepts it as a metric key, else InvalidValueError naming it."""
    if not isinstance(key, str):
        raise InvalidValueError(f"metric key {key!r} must be a string")
    if _plainly_valid(key):
        return key
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
    if _plainly_valid(key):
        return key
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
        raise InvalidValueError(f"metric {key!r} has a non-numeric value {_short(value)}")
    try:
        return float(value)  # type: ignore[arg-type,unused-ignore]
    except (TypeError, ValueError, OverflowError):
        raise InvalidValueError(f"metric {key!r} has a non-numeric value {_short(value)}") from None


def _short(value: object) -> str:
    """``repr(value)`` cut to 100 characters; an int beyond a float by its size (its digits
    may be too many for Python to print)."""
    if isinstance(value, int) and value.bit_length() > 1024:
        return f"(an int of {value.bit_length()} bits)"
    text = repr(value)
    return text if len(text) <= 100 else text[:97] + "..."


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


def metric_values(metrics: Mapping[str, Any]) -> tuple[list[tuple[str, float]], list[str]]:
    """As :func:`metric_items` for values that come from elsewhere: the keys are left for the
    destination to check (text only), and a value that is no number is left out instead of
    refusing the mapping. Returns the points and, per value left out, the refusal's words."""
    if not isinstance(metrics, Mapping):
        raise InvalidValueError(f"metrics must be a mapping of key to value, not {metrics!r}")
    items = []
    left_out = []
    for key, value in metrics.items():
        if not isinstance(key, str):
            raise InvalidValueError(f"metric key {key!r} must be a string")
        try:
            items.append((key, as_value(key, value)))
        except InvalidValueError as exc:
            left_out.append(str(exc))
    return items, left_out


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


def param_text(value: object) -> str:
    """A param's or tag's value as MLflow keeps it, text: lists, tuples and dicts as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list, tuple)):
        try:
            return json.dumps(value, default=str)
        except (TypeError, ValueError):
            return str(value)
    return str(value)
