"""Is the whole tree already in the store? Answered before MLflow is loaded.

A second ``synmlops ingest`` of a tree nothing touched compares each run's digest of
``(name, size, mtime_ns)`` with the digest tag its parent run keeps (see ``_ingest``); that
comparison is cheap, but reaching it through MLflow's client costs seconds of imports. For a
store folder, this module reads the digest tags straight from its ``mlflow.db`` with the
standard library's ``sqlite3``, read-only: when every run of the scan has them all equal, the
pass is a no-op and its report is known without loading MLflow. Anything else (a run not
there, a digest that differs, a run logged twice, a database that cannot be read, a server
URL) answers None, and the ordinary pass decides, as it always did.
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict
from pathlib import Path

from synergos_mlops.federation import ROLE_FEDERATION, TAG_ROLE, TAG_RUN
from synergos_mlops.ingest._ingest import DIGEST_TAG, IngestReport, RunOutcome
from synergos_mlops.ingest._scan import Scan

__all__ = ["unchanged_report"]

_QUERY = f"""
SELECT e.name, run_tag.value, digest.value
FROM runs r
JOIN experiments e ON e.experiment_id = r.experiment_id
JOIN tags role ON role.run_uuid = r.run_uuid AND role.key = '{TAG_ROLE}'
                  AND role.value = '{ROLE_FEDERATION}'
JOIN tags run_tag ON run_tag.run_uuid = r.run_uuid AND run_tag.key = '{TAG_RUN}'
LEFT JOIN tags digest ON digest.run_uuid = r.run_uuid AND digest.key = '{DIGEST_TAG}'
WHERE r.lifecycle_stage = 'active' AND e.lifecycle_stage = 'active'
"""


def _database(target: str) -> Path | None:
    """The SQLite file of a store-folder target; None for a server or a database URI."""
    if target.startswith(("http://", "https://")):
        return None
    if target.startswith("file:"):
        target = target.removeprefix("file:").removeprefix("//")
    elif "://" in target:
        return None
    path = Path(target) / "mlflow.db"
    return path if path.is_file() else None


def _digests(database: Path) -> dict[tuple[str, str], list[str | None]] | None:
    try:
        connection = sqlite3.connect(f"{database.resolve().as_uri()}?mode=ro", uri=True)
    except sqlite3.Error:
        return None
    try:
        found: dict[tuple[str, str], list[str | None]] = defaultdict(list)
        for experiment, run, digest in connection.execute(_QUERY):
            found[(experiment, run)].append(digest)
        return found
    except sqlite3.Error:  # no such table (a store no one wrote yet), locked, unreadable
        return None
    finally:
        connection.close()


def unchanged_report(scan: Scan, target: str) -> IngestReport | None:
    """The report of ingesting ``scan`` into ``target`` when it would change nothing (every
    run unchanged), read without MLflow; None when the ordinary pass must decide."""
    database = _database(target)
    if database is None or not scan.runs:
        return None
    stored = _digests(database)
    if stored is None:
        return None
    report = IngestReport(problems=list(scan.problems))
    for skipped in scan.skipped:
        report.outcomes.append(RunOutcome(skipped.where, "skipped", skipped.reason))
    for run in scan.runs:
        name = f"{run.collaboration}/{run.project}/{run.experiment}"
        if stored.get((name, run.run)) != [run.digest()]:
            return None
        report.outcomes.append(RunOutcome(run.label, "unchanged"))
    return report
