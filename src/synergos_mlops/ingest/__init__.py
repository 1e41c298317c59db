"""The ingester: bring an orchestrator's output folders into the tracker (see docs/ingest.md).

``synmlops ingest OUTPUTS`` is one pass (:func:`ingest`); ``synmlops watch OUTPUTS`` and
``synmlops serve --watch OUTPUTS`` keep polling (:class:`Watcher`). Runs are logged through
:class:`synergos_mlops.FederatedTracker`, so an ingested run looks exactly like one an
orchestrator logged itself.

Layers, each importing only the ones above it::

    _scan      pure: walk the folders safely into run folders and problems
    _parse     read one file: loss histories, statistics, hashes; refuse half-written files
    _ingest    compare with the manifest a run keeps, log what changed through the tracker
    _watch     poll, wait for files to settle, ingest again
    _unchanged whether a whole tree is already in a store folder, read without MLflow
    progress   the rich progress bar of the CLI (public: the CLI imports it)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from synergos_mlops.ingest._ingest import (
    DIGEST_TAG,
    MANIFEST_PATH,
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
from synergos_mlops.ingest._unchanged import unchanged_report
from synergos_mlops.ingest._watch import Watcher

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
    "Watcher",
    "WorkerOutputs",
    "ingest",
    "parse_worker_outputs",
    "scan",
    "unchanged_report",
]


def ingest(
    outputs: Path,
    workers: Sequence[WorkerOutputs] = (),
    *,
    tracking_uri: str | None,
    progress: ProgressSink | None = None,
) -> IngestReport:
    """One pass: scan ``outputs`` and log every new or changed run; return the report."""
    found = scan(outputs, workers)
    ingester = Ingester(tracking_uri)
    try:
        return ingester.ingest(found, progress)
    finally:
        ingester.close()
