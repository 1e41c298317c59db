"""Orchestrator output trees for the ingester's tests and benchmark, written as a TTP would."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

PARTICIPANTS = ("worker_1", "worker_2", "worker_3", "worker_4")


def train_loss(round_: int) -> float:
    return round(1.0 / (round_ + 1), 6)


def evaluate_loss(round_: int) -> float:
    return round(1.2 / (round_ + 1), 6)


def local_loss(participant_index: int, round_: int) -> float:
    return round(1.0 / (round_ + 1) + 0.01 * (participant_index + 1), 6)


def write_json(path: Path, data: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_bytes(path: Path, size: int, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    block = (f"weights-{seed}-" * 64).encode()
    path.write_bytes((block * (size // len(block) + 1))[:size])
    return path


def write_run(
    outputs: Path,
    collaboration: str,
    project: str,
    experiment: str,
    run: str,
    *,
    participants: Sequence[str] = PARTICIPANTS,
    rounds: int = 3,
    epochs: int = 2,
    model_bytes: int = 2048,
    checkpoints: bool = True,
) -> Path:
    """A finished run folder: histories over ``rounds``, models, checkpoints per round/epoch."""
    folder = outputs / collaboration / project / experiment / run
    write_global(folder, rounds)
    write_bytes(folder / "global_model.pt", model_bytes, seed=rounds)
    for index, participant in enumerate(participants):
        write_local(folder, participant, index, rounds)
        write_bytes(folder / f"local_model_{participant}.pt", model_bytes, seed=index)
    if checkpoints:
        for round_ in range(rounds):
            for epoch in range(epochs):
                write_checkpoint(folder, round_, epoch, participants, model_bytes)
    return folder


def write_global(folder: Path, rounds: int) -> Path:
    return write_json(
        folder / "global_loss_history.json",
        {
            "train": {str(r): train_loss(r) for r in range(rounds)},
            "evaluate": {str(r): evaluate_loss(r) for r in range(rounds)},
        },
    )


def write_local(folder: Path, participant: str, index: int, rounds: int) -> Path:
    return write_json(
        folder / f"local_loss_history_{participant}.json",
        {str(r): local_loss(index, r) for r in range(rounds)},
    )


def write_checkpoint(
    folder: Path, round_: int, epoch: int, participants: Sequence[str], model_bytes: int = 2048
) -> Path:
    point = folder / "checkpoints" / f"round_{round_}" / f"epoch_{epoch}"
    write_bytes(point / "global_model.pt", model_bytes, seed=round_ * 10 + epoch)
    for participant in participants[:1]:
        write_bytes(point / f"local_model_{participant}.pt", model_bytes, seed=round_)
    return point


STATISTICS = {
    "accuracy": [0.91, 0.88],
    "roc_auc_score": [0.95, 0.93],
    "f_score": [0.9, 0.87],
    "TPs": [40, 44],
    "R2": 0.5,
}


def write_worker(
    worker_outputs: Path,
    participant: str | None,
    ids: Sequence[str],
    stage: str = "evaluate",
    statistics: dict[str, object] | None = None,
) -> Path:
    """A worker's inference outputs; ``participant`` None writes one worker's own folder."""
    base = worker_outputs if participant is None else worker_outputs / participant
    folder = base.joinpath(*ids, stage)
    write_json(folder / f"inference_statistics_{stage}.json", statistics or STATISTICS)
    (folder / f"inference_predictions_{stage}.txt").write_text("0\n1\n1\n0\n", encoding="utf-8")
    (folder / f"inference_scores_{stage}.txt").write_text("0.1\n0.9\n0.8\n0.2\n", encoding="utf-8")
    return folder


def touch_later(path: Path, seconds: int = 5) -> None:
    """Move a file's mtime forward without changing its content."""
    info = path.stat()
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns + seconds * 1_000_000_000))


# --- the worker's catalogue.json ------------------------------------------------------------
#
# The shape the original Synergos worker writes to <project>/preprocessing/catalogue.json,
# confirmed from aisingapore/synergos_worker (rest_rpc/core/server.py load_proc and
# rest_rpc/core/utils.py MetaExtractor, commit f737409): per split, headers are the model's
# one-hot encoded columns {"X": [...], "y": [...]}, schemas the pandas dtypes of the
# combined data (its target too), and metadata src_count (the row count), _type and the kind's
# fields, a tabular summary's columns nested under "features". Values are what pandas'
# describe() gives: a numeric column's count is a float, and a statistic it cannot compute is
# NaN, which the worker's json.dump writes as the bare token NaN.


def worker_tabular_summary(rows: int = 120) -> dict[str, object]:
    """One tabular split's metadata as the worker's MetaExtractor makes it."""
    return {
        "src_count": rows,
        "_type": "tabular",
        "features": {
            "cat_variables": {
                "sex": {"count": rows, "unique": 2, "top": 1, "freq": 64, "labels": [0, 1],
                        "datatype": "category"},
                "cp": {"count": rows, "unique": 4, "top": 4, "freq": 57,
                       "labels": [1, 2, 3, 4], "datatype": "category"},
                "target": {"count": rows, "unique": 2, "top": 0, "freq": 66, "labels": [0, 1],
                           "datatype": "category"},
            },
            "num_variables": {
                "age": {"count": float(rows), "mean": 54.2, "std": 9.1, "min": 29.0,
                        "25%": 47.0, "50%": 55.0, "75%": 61.0, "max": 77.0,
                        "datatype": "int64"},
                "chol": {"count": float(rows), "mean": 246.7, "std": float("nan"),
                         "min": 126.0, "25%": 211.0, "50%": 241.0, "75%": 275.0,
                         "max": 564.0, "datatype": "float64"},
            },
            "misc_variables": {"notes": {"datatype": "object"}},
        },
    }  # fmt: skip


WORKER_TABULAR_SCHEMA = {
    "age": "int64", "sex": "category", "cp": "category", "chol": "float64",
    "notes": "object", "target": "category",
}  # fmt: skip
WORKER_TABULAR_HEADERS = {
    "X": ["age", "chol", "sex_0", "sex_1", "cp_1", "cp_2", "cp_3", "cp_4"],
    "y": ["target_0", "target_1"],
}


def worker_catalogue_tabular(splits: Sequence[str] = ("train", "evaluate")) -> dict[str, object]:
    return {
        "headers": {split: WORKER_TABULAR_HEADERS for split in splits},
        "schemas": {split: WORKER_TABULAR_SCHEMA for split in splits},
        "metadata": {split: worker_tabular_summary() for split in splits},
    }


def worker_catalogue_image() -> dict[str, object]:
    """An image participant's: flat metadata, pixel columns named <colour>x<row>x<column>."""
    pixels = [f"Lx{row}x{column}" for row in range(2) for column in range(2)]
    return {
        "headers": {"train": {"X": pixels, "y": ["target_0", "target_1"]}},
        "schemas": {"train": {**{p: "float64" for p in pixels}, "target": "category"}},
        "metadata": {"train": {"src_count": 300, "_type": "image", "pixel_height": 28,
                               "pixel_width": 28, "color": "L"}},
    }  # fmt: skip


def worker_catalogue_text() -> dict[str, object]:
    """A text participant's: a doc-term matrix, flat metadata."""
    words = ["fever", "cough", "rash"]
    return {
        "headers": {"predict": {"X": words, "y": ["target"]}},
        "schemas": {"predict": {**{w: "float64" for w in words}, "target": "category"}},
        "metadata": {"predict": {"src_count": 50, "_type": "text", "word_count": 3,
                                 "sparsity": 0.93, "representation": 0.004}},
    }  # fmt: skip


def write_worker_catalogue(
    worker_outputs: Path,
    participant: str | None,
    ids: Sequence[str],
    data: object,
    *,
    at: float | None = None,
) -> Path:
    """``data`` as a worker's <ids>/preprocessing/catalogue.json, written as the worker's
    json.dump writes it (NaN as the bare token), dated ``at`` (seconds since the epoch; by
    default an hour ago: the worker writes it when it loads its data, before a run trains)."""
    base = worker_outputs if participant is None else worker_outputs / participant
    path = base.joinpath(*ids, "preprocessing", "catalogue.json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    set_mtime(path, time.time() - 3600 if at is None else at)
    return path


def set_mtime(path: Path, at: float) -> None:
    """Date a file, or every file under a folder, ``at`` (seconds since the epoch)."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for file in files:
        os.utime(file, ns=(int(at * 1e9), int(at * 1e9)))
