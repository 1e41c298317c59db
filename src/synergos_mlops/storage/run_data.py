"""Params and tags of runs, written item by item so that one refused item costs no other.

What ``POST /api/synergos/v1/runs/data`` stores and a store folder's tracker writes: a list of
``(run id, "param" | "tag", key, value)`` items, in the order they were logged, through the
tracking store's own ``log_batch`` (MLflow's validation and its rules: a param keeps its first
value). A run's items go in ``log_batch`` calls of at most 100 params and 100 tags (MLflow's
limit); when MLflow refuses one, its items are written one at a time, so only the refused ones
are left out. Writing the same items again stores nothing new (a param logged again with its
value is accepted, a tag is set again), so a batch that a tracker sends twice is harmless.

Left out, counted by reason (:data:`REASONS`): items of a run that does not exist or is
deleted; tags named ``synergos.*`` or ``mlflow.*``, which hold the federation's structure (a
participant, its parent run) and are written only by the tracker itself and MLflow; a param
whose value differs from the one the run already holds (or from an earlier item of the same
batch); whatever else MLflow refuses (a key it does not accept, a value beyond its length).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.storage.batch import MAX_NAMED_CHARS

__all__ = [
    "ITEM_KINDS",
    "MAX_ITEMS",
    "MAX_ITEM_CHARS",
    "PARAM_CHANGED",
    "REASONS",
    "REFUSED_BY_MLFLOW",
    "RESERVED_TAG",
    "SENDER_REFUSALS",
    "RESERVED_TAG_PREFIXES",
    "RUN_MISSING",
    "RunDataResult",
    "as_items",
    "write_run_data",
]

ITEM_KINDS = ("param", "tag")
#: Items one request may carry, and the longest run id, key or value it takes: bounds on what
#: is read (MLflow's own limits are far lower, 250 characters for a key and 6,000 or 8,000 for
#: a value, and it names what it refuses, item by item).
MAX_ITEMS = 10_000
MAX_ITEM_CHARS = 1_000_000
RESERVED_TAG_PREFIXES = ("synergos.", "mlflow.")
RUN_MISSING = "run missing or deleted"
RESERVED_TAG = "tag name reserved (synergos.*, mlflow.*)"
PARAM_CHANGED = "param value changed"
REFUSED_BY_MLFLOW = "refused by MLflow"
#: What a sender may count as left out on its side, carried with its params and tags for the
#: destination to count (a server's ``/health``): a framework's text files it could not keep.
SENDER_REFUSALS = ("texts",)
REASONS = (RUN_MISSING, RESERVED_TAG, PARAM_CHANGED, REFUSED_BY_MLFLOW)
#: Params and tags in one of MLflow's ``log_batch`` calls (its limit: 100 of each).
_PER_LOG_BATCH = 100
#: An item: (run id, "param" or "tag", key, value).
Item = tuple[str, str, str, str]


@dataclass
class RunDataResult:
    """Items stored, and those left out counted by reason (``refused``) and each reason's
    first refusal in words (``named``), by kind ("params", "tags")."""

    stored: int = 0
    refused: dict[str, dict[str, int]] = field(default_factory=dict)
    named: dict[str, dict[str, str]] = field(default_factory=dict)

    def refuse(self, kind: str, reason: str, words: str) -> None:
        counts = self.refused.setdefault(f"{kind}s", {})
        counts[reason] = counts.get(reason, 0) + 1
        self.named.setdefault(f"{kind}s", {}).setdefault(reason, words[:MAX_NAMED_CHARS])

    def to_json(self) -> dict[str, Any]:
        return {"stored": self.stored, "refused": self.refused}


def as_items(raw: object) -> list[Item]:
    """``raw`` (what a spool file holds) as items; InvalidValueError naming the first that is
    not ``[run id, "param" | "tag", key, value]``, all text."""
    if not isinstance(raw, list):
        raise InvalidValueError("params and tags must be a list of items")
    items: list[Item] = []
    for item in raw:
        if (
            not isinstance(item, (list, tuple))
            or len(item) != 4
            or not all(isinstance(part, str) for part in item)
            or item[1] not in ITEM_KINDS
        ):
            raise InvalidValueError(
                f'item {str(item)[:80]!r} is not [run id, "param" | "tag", key, value]'
            )
        items.append((item[0], item[1], item[2], item[3]))
    return items


def _active(store: Any, run_id: str) -> bool:
    from mlflow.exceptions import MlflowException

    try:
        return bool(store.get_run(run_id).info.lifecycle_stage == "active")
    except MlflowException:
        return False


def _log_batch(
    store: Any, run_id: str, params: list[tuple[str, str]], tags: list[tuple[str, str]]
) -> str | None:
    """One MLflow ``log_batch`` of params and tags; None when stored, else MLflow's words."""
    from mlflow.entities import Param, RunTag
    from mlflow.exceptions import MlflowException

    try:
        store.log_batch(
            run_id, metrics=[], params=[Param(k, v) for k, v in params],
            tags=[RunTag(k, v) for k, v in tags],
        )  # fmt: skip
    except MlflowException as exc:
        if exc.get_http_status_code() >= 500:
            raise
        return str(exc.message)
    return None


def _write_run(store: Any, run_id: str, items: list[Item], result: RunDataResult) -> None:
    if not _active(store, run_id):
        for _, kind, key, _ in items:
            result.refuse(kind, RUN_MISSING, f"{kind} {key!r}: run {run_id!r} does not exist "
                          "or is deleted")  # fmt: skip
        return
    params: dict[str, str] = {}
    tags: dict[str, str] = {}
    for _, kind, key, value in items:
        if kind == "tag":
            if key.startswith(RESERVED_TAG_PREFIXES):
                result.refuse(kind, RESERVED_TAG, f"tag {key!r} is reserved")
            else:
                tags.pop(key, None)  # the last value, in its place
                tags[key] = value
        elif params.setdefault(key, value) != value:
            result.refuse(kind, PARAM_CHANGED, f"param {key!r} logged again with another value")
    param_items, tag_items = list(params.items()), list(tags.items())
    for start in range(0, max(len(param_items), len(tag_items)), _PER_LOG_BATCH):
        chunk = {"param": param_items[start : start + _PER_LOG_BATCH],
                 "tag": tag_items[start : start + _PER_LOG_BATCH]}  # fmt: skip
        if _log_batch(store, run_id, chunk["param"], chunk["tag"]) is None:
            result.stored += len(chunk["param"]) + len(chunk["tag"])
            continue
        for kind, found in chunk.items():  # one at a time: only the refused are left out
            for item in found:
                one = [item]
                words = _log_batch(store, run_id, *((one, []) if kind == "param" else ([], one)))
                if words is None:
                    result.stored += 1
                elif kind == "param" and "Changing param values is not allowed" in words:
                    result.refuse(kind, PARAM_CHANGED, words)
                else:
                    result.refuse(kind, REFUSED_BY_MLFLOW, words)


def write_run_data(store: Any, items: Sequence[Item]) -> RunDataResult:
    """Write ``items`` through the tracking ``store``; see the module docstring."""
    result = RunDataResult()
    by_run: dict[str, list[Item]] = {}
    for item in items:
        by_run.setdefault(item[0], []).append(item)
    for run_id, found in by_run.items():
        _write_run(store, run_id, found, result)
    return result
