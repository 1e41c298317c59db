"""The ingester: bring an orchestrator's output folders into the tracker (see docs/ingest.md).

``synmlops ingest OUTPUTS`` is one pass (:func:`ingest`); ``synmlops watch OUTPUTS`` and
``synmlops serve --watch OUTPUTS`` keep polling (:class:`Watcher`). Runs are logged through
:class:`synergos_mlops.FederatedTracker`, so an ingested run looks exactly like one an
orchestrator logged itself.

Layers, each importing only the ones above it::

    _tags      the tag and artifact an ingested run keeps
    noop       whether a pass would change nothing, from a manifest, standard library only
               (public: the CLI asks it before importing anything else of the ingester)
    _scan      pure: walk the folders safely into run folders and problems
    _parse     read one file: loss histories, statistics, hashes; refuse half-written files
    _ingest    compare with the manifest a run keeps, log what changed through the tracker
    _watch     poll, wait for files to settle, ingest again
    _watch_service  the watch of ``serve --watch``: supervised, its status for /health
    _unchanged whether a whole tree is already in a store folder, read without MLflow
    progress   the rich progress bar of the CLI (public: the CLI imports it)

The names below are loaded when first used, so that ``import synergos_mlops.ingest.noop``
costs only the standard library (a no-op ``synmlops ingest`` is the time to start Python).
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synergos_mlops.ingest._ingest import (
        Ingester,
        IngestReport,
        ProgressSink,
        RunOutcome,
    )
    from synergos_mlops.ingest._scan import (
        Problem,
        RunFolder,
        Scan,
        WorkerOutputs,
        parse_worker_outputs,
        scan,
    )
    from synergos_mlops.ingest._tags import DIGEST_TAG, MANIFEST_PATH
    from synergos_mlops.ingest._unchanged import Unchanged, unchanged_report
    from synergos_mlops.ingest._watch import Watcher
    from synergos_mlops.ingest._watch_service import WatchService

__all__ = [
    "DIGEST_TAG",
    "MANIFEST_PATH",
    "IngestReport",
    "Ingester",
    "Problem",
    "ProgressSink",
    "RunFolder",
    "RunOutcome",
    "Scan",
    "Unchanged",
    "WatchService",
    "Watcher",
    "WorkerOutputs",
    "ingest",
    "parse_worker_outputs",
    "scan",
    "unchanged_report",
]

#: Public name -> the private module that defines it.
_WHERE = {
    "DIGEST_TAG": "_tags",
    "MANIFEST_PATH": "_tags",
    "IngestReport": "_ingest",
    "Ingester": "_ingest",
    "ProgressSink": "_ingest",
    "RunOutcome": "_ingest",
    "Problem": "_scan",
    "RunFolder": "_scan",
    "Scan": "_scan",
    "WorkerOutputs": "_scan",
    "parse_worker_outputs": "_scan",
    "scan": "_scan",
    "Unchanged": "_unchanged",
    "unchanged_report": "_unchanged",
    "Watcher": "_watch",
    "WatchService": "_watch_service",
}


def __getattr__(name: str) -> Any:
    where = _WHERE.get(name)
    if where is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{where}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


def ingest(
    outputs: Path,
    workers: Sequence[WorkerOutputs] = (),
    *,
    tracking_uri: str | None,
    progress: ProgressSink | None = None,
) -> IngestReport:
    """One pass: scan ``outputs`` and log every new or changed run; return the report."""
    from synergos_mlops.ingest._ingest import Ingester
    from synergos_mlops.ingest._scan import scan

    found = scan(outputs, workers)
    ingester = Ingester(tracking_uri)
    try:
        return ingester.ingest(found, progress)
    finally:
        ingester.close()
