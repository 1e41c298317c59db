"""A federated run's data as files for its bundle: what MLflow holds besides the artifacts.

Four files, written from the stores when the bundle is streamed (never kept on disk):

``hyperparameters.json``
    the federation run's params, ``{name: value}``, sorted by name.
``metrics.csv``
    every metric point of the global run and of every participant, one row each, long format:
    ``participant,key,step,value,timestamp`` (participant empty for the global run; NaN as
    ``nan``; timestamps in milliseconds since the epoch, as MLflow keeps them).
``statistics.csv``
    the per-class statistics, keys ``{stage}/{statistic}/class_{i}``, split into columns:
    ``participant,stage,statistic,class,step,value``.
``model_versions.json``
    the registered model versions whose source run is the federation run or a participant's:
    ``[{name, version, source, run_id, participant, status, creation_time}]``, from MLflow's
    model registry.

The CSV files are produced one run at a time (one query per run), so a bundle's memory stays
bounded by the largest single run, not the federation.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from synergos_mlops.storage import reads
from synergos_mlops.views.federated_runs import Backend, FederatedRun, iso_time

__all__ = [
    "DATA_FILES",
    "ArtifactFile",
    "DataFile",
    "data_files",
    "metrics_csv",
    "model_versions",
    "statistics_csv",
]

METRICS_HEADER = ("participant", "key", "step", "value", "timestamp")
STATISTICS_HEADER = ("participant", "stage", "statistic", "class", "step", "value")
#: ``{stage}/{statistic}/class_{i}``; the statistic may itself hold ``/``.
CLASS_KEY = re.compile(r"^(?P<stage>[^/]+)/(?P<statistic>.+)/class_(?P<cls>\d+)$")
DATA_FILES = ("hyperparameters.json", "metrics.csv", "statistics.csv", "model_versions.json")
FLUSH_AT = 256 * 1024


@dataclass(frozen=True)
class ArtifactFile:
    """A file of a run's bundle read from an artifact repository (``repo``), or from a
    generated one (the hardware series, the log records)."""

    repo: Any
    path: str  # inside the repository
    relative: str  # inside the run's artifact root
    size: int | None


@dataclass(frozen=True)
class DataFile:
    """A bundle entry produced from the stores: ``chunks()`` yields its bytes."""

    chunks: Callable[[], Iterator[bytes]]
    size: int | None = None


def _owners(run: FederatedRun) -> list[tuple[str, str]]:
    """``(participant column, run uuid)``: the global run first, then participants by id."""
    return [("", run.parent.run_uuid), *((p.synergos_id, p.run_uuid) for p in run.participants)]


def _csv_chunks(header: tuple[str, ...], rows: Iterator[tuple[Any, ...]]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow(row)
        if buffer.tell() >= FLUSH_AT:
            yield buffer.getvalue().encode()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode()


def _number(value: float | None) -> str:
    return "nan" if value is None else repr(value)


def _metric_rows(backend: Backend, run: FederatedRun) -> Iterator[tuple[Any, ...]]:
    for participant, run_uuid in _owners(run):
        for point in reads.metric_points(backend.session_maker, run_uuid):
            yield participant, point.key, point.step, _number(point.value), point.timestamp


def _statistic_rows(backend: Backend, run: FederatedRun) -> Iterator[tuple[Any, ...]]:
    for participant, run_uuid in _owners(run):
        for point in reads.metric_points(backend.session_maker, run_uuid):
            match = CLASS_KEY.match(point.key)
            if match is None:
                continue
            yield (participant, match["stage"], match["statistic"], int(match["cls"]),
                   point.step, _number(point.value))  # fmt: skip


def metrics_csv(backend: Backend, run: FederatedRun) -> Iterator[bytes]:
    """``metrics.csv``, in pieces."""
    return _csv_chunks(METRICS_HEADER, _metric_rows(backend, run))


def statistics_csv(backend: Backend, run: FederatedRun) -> Iterator[bytes]:
    """``statistics.csv``, in pieces."""
    return _csv_chunks(STATISTICS_HEADER, _statistic_rows(backend, run))


def model_versions(backend: Backend, run: FederatedRun) -> list[dict[str, Any]]:
    """The registered model versions created from the run or one of its participants."""
    if backend.registry is None:
        return []
    owners = {run_uuid: participant or None for participant, run_uuid in _owners(run)}
    found: list[dict[str, Any]] = []
    for run_uuid, participant in owners.items():
        token = None
        while True:
            page = backend.registry.search_model_versions(
                filter_string=f"run_id = '{run_uuid}'", max_results=1000, page_token=token
            )
            for version in page:
                found.append(
                    {
                        "name": version.name,
                        "version": str(version.version),
                        "source": version.source,
                        "run_id": version.run_id,
                        "participant": participant,
                        "status": version.status,
                        "creation_time": iso_time(version.creation_timestamp),
                    }
                )
            token = getattr(page, "token", None)
            if not token:
                break
    return sorted(found, key=lambda v: (v["name"], int(v["version"])))


def _json_chunks(produce: Callable[[], Any]) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        yield json.dumps(produce(), indent=2, ensure_ascii=False).encode() + b"\n"

    return chunks


def data_files(backend: Backend, run: FederatedRun) -> list[tuple[str, DataFile]]:
    """The run's data files, ``(name in the bundle, file)``, in :data:`DATA_FILES` order."""
    return [
        (
            "hyperparameters.json",
            DataFile(
                _json_chunks(
                    lambda: dict(
                        sorted(reads.params(backend.session_maker, run.parent.run_uuid).items())
                    )
                )
            ),
        ),
        ("metrics.csv", DataFile(lambda: metrics_csv(backend, run))),
        ("statistics.csv", DataFile(lambda: statistics_csv(backend, run))),
        ("model_versions.json", DataFile(_json_chunks(lambda: model_versions(backend, run)))),
    ]
