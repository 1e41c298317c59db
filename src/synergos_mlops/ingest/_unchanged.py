"""Is the whole tree already in the store? Answered before MLflow is loaded.

A second ``synmlops ingest`` of a tree nothing touched compares each run's digest of
``(name, size, mtime_ns)`` with the digest tag its parent run keeps (see ``_ingest``); that
comparison is cheap, but reaching it through MLflow's client costs seconds of imports. For a
store folder, this module reads the digest tags straight from its ``mlflow.db`` with the
standard library's ``sqlite3``, read-only: when every run of the scan has them all equal, the
pass is a no-op and its report is known without loading MLflow. Anything else (a run not
there, a digest that differs, a run logged twice, a database that cannot be read, a server
URL) answers None, and the ordinary pass decides, as it always did.

This is the way in when the tree has no manifest of :mod:`synergos_mlops.ingest.noop` yet
(ingested by ``watch``, or a manifest lost): its answer carries what the manifest needs.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path
from typing import NamedTuple

from synergos_mlops.federation import ROLE_FEDERATION, TAG_ROLE, TAG_RUN
from synergos_mlops.ingest._ingest import IngestReport, RunOutcome
from synergos_mlops.ingest._scan import Scan
from synergos_mlops.ingest._tags import DIGEST_TAG
from synergos_mlops.ingest.noop import store_database

__all__ = ["Unchanged", "unchanged_report"]

_QUERY = f"""
SELECT e.name, run_tag.value, digest.value, e.experiment_id, r.run_uuid
FROM runs r
JOIN experiments e ON e.experiment_id = r.experiment_id
JOIN tags role ON role.run_uuid = r.run_uuid AND role.key = '{TAG_ROLE}'
                  AND role.value = '{ROLE_FEDERATION}'
JOIN tags run_tag ON run_tag.run_uuid = r.run_uuid AND run_tag.key = '{TAG_RUN}'
LEFT JOIN tags digest ON digest.run_uuid = r.run_uuid AND digest.key = '{DIGEST_TAG}'
WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active'
"""


class Unchanged(NamedTuple):
    """A no-op pass: its report, and label -> (experiment id, run id, digest) of its runs."""

    report: IngestReport
    stored: dict[str, tuple[str, str, str]]


_Found = dict[tuple[str, str], list[tuple[str | None, str, str]]]


def _digests(database: Path) -> _Found | None:
    try:
        connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        found: _Found = defaultdict(list)
        for experiment, run, digest, experiment_id, run_id in connection.execute(_QUERY):
            found[(experiment, run)].append((digest, str(experiment_id), run_id))
        return found
    except sqlite3.Error:  # no such table (a store no one wrote yet), locked, unreadable
        return None
    finally:
        connection.close()


def unchanged_report(scan: Scan, target: str) -> Unchanged | None:
    """The report of ingesting ``scan`` into ``target`` when it would change nothing (every
    run unchanged), read without MLflow; None when the ordinary pass must decide."""
    database = store_database(target)
    if database is None or not scan.runs:
        return None
    stored = _digests(database)
    if stored is None:
        return None
    report = IngestReport(problems=list(scan.problems))
    for skipped in scan.skipped:
        report.outcomes.append(RunOutcome(skipped.where, "skipped", skipped.reason))
    runs: dict[str, tuple[str, str, str]] = {}
    for run in scan.runs:
        name = f"{run.collaboration}/{run.project}/{run.experiment}"
        found = stored.get((name, run.run), [])
        digest = run.digest()
        if len(found) != 1 or found[0][0] != digest:
            return None
        runs[run.label] = (found[0][1], found[0][2], digest)
        report.outcomes.append(RunOutcome(run.label, "unchanged"))
    return Unchanged(report, runs)
