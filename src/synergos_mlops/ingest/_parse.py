"""Read and check the files of a run folder: loss histories, inference statistics, hashes.

A file is read through its resolved path without following a link (the scan has already
checked that it stays under its root), and is refused when its size or modification time
moved while it was read: it is still being written and will be taken on a later pass.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Mapping

from synergos_mlops.catalogue import DatasetEntry, Note
from synergos_mlops.errors import InvalidValueError
from synergos_mlops.federation import STAGES, statistic_points
from synergos_mlops.ingest._scan import FileEntry

__all__ = [
    "FileProblem",
    "LossHistory",
    "parse_catalogue",
    "parse_global_loss",
    "parse_local_loss",
    "parse_statistics",
    "read_bytes",
    "sha256_of",
]

LossHistory = dict[int, float]
_CHUNK = 1 << 20


class FileProblem(Exception):
    """A file that cannot be ingested as it is now (the message says why; ``code``, when
    given, is the reason the ingest report counts it under)."""

    def __init__(self, message: str, code: str = "") -> None:
        super().__init__(message)
        self.code = code


def _open(entry: FileEntry) -> int:
    try:
        fd = os.open(entry.path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise FileProblem(f"cannot be read ({exc.strerror})") from None
    info = os.fstat(fd)
    if (info.st_size, info.st_mtime_ns) != (entry.size, entry.mtime_ns):
        os.close(fd)
        raise FileProblem("changed since it was scanned (still being written?); retried later")
    return fd


def _check_unchanged(fd: int, entry: FileEntry) -> None:
    info = os.fstat(fd)
    if (info.st_size, info.st_mtime_ns) != (entry.size, entry.mtime_ns):
        raise FileProblem("changed while it was read (still being written?); retried later")


def read_bytes(entry: FileEntry) -> bytes:
    fd = _open(entry)
    try:
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read()
        _check_unchanged(fd, entry)
        return data
    finally:
        os.close(fd)


def sha256_of(entry: FileEntry) -> str:
    fd = _open(entry)
    try:
        hasher = hashlib.sha256()
        with os.fdopen(fd, "rb", closefd=False) as handle:
            while chunk := handle.read(_CHUNK):
                hasher.update(chunk)
        _check_unchanged(fd, entry)
        return hasher.hexdigest()
    finally:
        os.close(fd)


def _json(entry: FileEntry) -> object:
    data = read_bytes(entry)
    if not data.strip():
        raise FileProblem("is empty (still being written?); retried later")
    try:
        return json.loads(data)
    except UnicodeDecodeError:
        raise FileProblem("is not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise FileProblem(
            f"is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); retried "
            "when it changes"
        ) from None
    except RecursionError:
        message = "nests deeper than the JSON reader goes; retried when it changes"
        raise FileProblem(message) from None
    except ValueError as exc:  # e.g. an integer longer than Python reads (4,300 digits)
        message = f"is not JSON this reader takes ({exc}); retried when it changes"
        raise FileProblem(message) from None


def _history(value: object, where: str, notes: list[str]) -> LossHistory:
    if not isinstance(value, Mapping):
        raise FileProblem(f"{where} must be an object of round: loss, not {type(value).__name__}")
    history: LossHistory = {}
    for key, loss in value.items():
        try:
            round_ = int(str(key))
        except ValueError:
            round_ = -1
        if round_ < 0 or str(round_) != str(key).strip():
            notes.append(f"{where}: round {key!r} is not a round number; left out")
            continue
        if isinstance(loss, bool) or not isinstance(loss, (int, float)):
            notes.append(f"{where}: loss {loss!r} at round {round_} is not a number; left out")
            continue
        if not math.isfinite(loss):
            notes.append(f"{where}: loss {loss} at round {round_} is not finite; left out")
            continue
        history[round_] = float(loss)
    return history


def parse_global_loss(entry: FileEntry, notes: list[str]) -> dict[str, LossHistory]:
    """``{"train": {"<round>": loss}, "evaluate": {...}}`` -> histories by stage."""
    data = _json(entry)
    if not isinstance(data, Mapping):
        raise FileProblem('must be an object like {"train": {"<round>": loss}}')
    histories: dict[str, LossHistory] = {}
    for stage, value in data.items():
        if stage not in STAGES:
            notes.append(f"stage {stage!r} is not one of {', '.join(STAGES)}; left out")
            continue
        histories[stage] = _history(value, stage, notes)
    return histories


def parse_local_loss(entry: FileEntry, notes: list[str]) -> LossHistory:
    """``{"<round>": loss}`` -> a history (train stage)."""
    data = _json(entry)
    if isinstance(data, Mapping) and set(data) and set(data) <= set(STAGES):
        # Tolerate the global shape in a local file: take its train history.
        notes.append("holds stages; its train history is used")
        data = data.get("train", {})
    return _history(data, "history", notes)


def parse_statistics(entry: FileEntry, notes: list[str]) -> dict[str, object]:
    """The statistics of an inference statistics file, each checked to give valid points.

    The file holds ``{name: value or one value per class}``, or the same under a
    ``"statistics"`` key (as the worker's API returns it).
    """
    data = _json(entry)
    if isinstance(data, Mapping) and isinstance(data.get("statistics"), Mapping):
        data = data["statistics"]
    if not isinstance(data, Mapping):
        raise FileProblem("must be an object of statistic: value")
    stage = entry.stage or "evaluate"
    kept: dict[str, object] = {}
    for name, value in data.items():
        if not isinstance(name, str) or not name or "/" in name:
            notes.append(f"statistic {name!r} is not a usable name; left out")
            continue
        try:
            points = list(statistic_points(stage, {name: value}))
        except InvalidValueError as exc:
            notes.append(f"{exc}; left out")
            continue
        if not all(math.isfinite(v) for _, v in points):
            notes.append(f"statistic {name!r} has a value that is not finite; left out")
            continue
        kept[name] = value
    return kept


def parse_catalogue(
    entry: FileEntry, collaboration: str, project: str, notes: list[Note]
) -> list[DatasetEntry]:
    """The catalogue entries of a worker's ``catalogue.json`` (see ``synergos_mlops.catalogue``);
    each part left out or missing goes to ``notes`` with its reason; a file with no usable split
    is a FileProblem."""
    from synergos_mlops.catalogue import parse_worker_catalogue
    from synergos_mlops.catalogue_shape import NO_SUMMARY

    assert entry.participant is not None
    data = _json(entry)
    try:
        entries, found = parse_worker_catalogue(data, collaboration, project, entry.participant)
    except InvalidValueError as exc:
        raise FileProblem(f"is not a data catalogue the worker writes: {exc}", NO_SUMMARY) from None
    notes.extend(found)
    return entries
