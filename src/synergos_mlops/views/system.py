"""Hardware statistics per participant as the run's page and bundle show them: every
``system/...`` series, the rounds' boundaries and a participants x rounds summary, all in
seconds since the federated (global) run's start (see docs/system.md); and the bundle's
``system.csv``."""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from typing import Any

from synergos_mlops.storage import reads
from synergos_mlops.storage.system import CPU_KEY, MEMORY_KEY, PROCESS_CPU_KEY, PROCESS_MEMORY_KEY
from synergos_mlops.views.federated_runs import Backend, FederatedRun, iso_time
from synergos_mlops.views.run_data import ArtifactFile

__all__ = ["SYSTEM_CSV", "csv_text", "system_csv_entries", "system_points", "system_view"]

#: The name of the hardware series in a run's bundle.
SYSTEM_CSV = "system.csv"
ROUND_KEY = "train/loss"


def system_points(backend: Backend, run_uuids: list[str]) -> list[tuple[Any, ...]]:
    """Rows ``(run_uuid, key, step, timestamp, value or None)`` of every ``system/...`` key
    of these runs, by run, key and step (a step stored twice keeps its latest point)."""
    from mlflow.store.tracking.dbmodels.models import SqlMetric
    from sqlalchemy import select

    if not run_uuids:
        return []
    m = SqlMetric.__table__.c
    query = (
        select(m.run_uuid, m.key, m.step, m.timestamp, m.value, m.is_nan)
        .where(m.run_uuid.in_(run_uuids), m.key.like("system/%"))
        .order_by(m.run_uuid, m.key, m.step, m.timestamp)
    )
    with backend.session_maker() as session:
        rows = session.connection().execute(query).fetchall()
    kept: dict[tuple[str, str, int], tuple[Any, ...]] = {}
    for run, key, step, stamp, value, is_nan in rows:
        kept[(run, key, int(step))] = (run, key, int(step), int(stamp), None if is_nan else value)
    return list(kept.values())


def _round_key(backend: Backend, run: FederatedRun) -> str | None:
    """``train/loss`` if the global run has it, else its first round-level key."""
    keys = sorted(
        p.key
        for p in reads.latest_metrics(backend.session_maker, [run.parent.run_uuid])
        if not p.key.startswith("system/") and "/epoch/" not in f"/{p.key}"
    )
    if ROUND_KEY in keys:
        return ROUND_KEY
    return keys[0] if keys else None


def _first_times(points: list[reads.MetricPoint]) -> dict[int, int]:
    """The first timestamp of each step."""
    first: dict[int, int] = {}
    for point in points:
        if point.step not in first or point.timestamp < first[point.step]:
            first[point.step] = point.timestamp
    return first


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _finite(values: list[Any]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def system_view(backend: Backend, run: FederatedRun) -> dict[str, Any]:
    """What the page draws: see the module docstring and docs/system.md."""
    start = run.parent.start_time or 0
    round_key = _round_key(backend, run)
    ends: dict[int, int] = {}
    own_ends: dict[str, dict[int, int]] = {}
    if round_key is not None:
        ends = _first_times(reads.all_points(backend.session_maker, run.parent.run_uuid,
                                             [round_key]).get(round_key, []))  # fmt: skip
        for row in run.participants:
            found = reads.all_points(backend.session_maker, row.run_uuid, [round_key])
            own_ends[row.synergos_id] = _first_times(found.get(round_key, []))
    rounds: list[dict[str, Any]] = []
    previous = 0.0
    for step in sorted(ends):
        end = (ends[step] - start) / 1000
        rounds.append({"round": step, "start": previous, "end": end})
        previous = end
    rows = system_points(backend, [p.run_uuid for p in run.participants])
    by_run: dict[str, dict[str, dict[str, list[Any]]]] = {}
    for run_uuid, key, step, stamp, value in rows:
        line = by_run.setdefault(run_uuid, {}).setdefault(
            key, {"steps": [], "seconds": [], "values": []}
        )
        line["steps"].append(step)
        line["seconds"].append((stamp - start) / 1000)
        line["values"].append(value)
    participants: dict[str, Any] = {}
    summary: dict[str, list[list[float | None]]] = {
        "cpu_mean_percentage": [],
        "process_cpu_mean_percentage": [],
        "memory_peak_megabytes": [],
        "process_memory_peak_megabytes": [],
        "duration_seconds": [],
        "samples": [],
    }
    keys: set[str] = set()
    for row in run.participants:
        series = by_run.get(row.run_uuid, {})
        keys.update(series)
        tags = reads.run_tags(backend.session_maker, row.run_uuid)
        facts = {
            k.removeprefix("synergos.system."): v
            for k, v in sorted(tags.items())
            if k.startswith("synergos.system.")
        }
        participants[row.synergos_id] = {
            "mlflow_run_id": row.run_uuid,
            "start": ((row.start_time or start) - start) / 1000,
            "facts": facts,
            "series": dict(sorted(series.items())),
        }

        def within(key: str, lo: float, hi: float, series: Any = series) -> list[float]:
            line = series.get(key)
            if line is None:
                return []
            picked = [v for s, v in zip(line["seconds"], line["values"], strict=True)
                      if lo <= s < hi]  # fmt: skip
            return _finite(picked)

        for name in summary:
            summary[name].append([])
        for item in rounds:
            lo, hi = float(item["start"]), float(item["end"])
            cpu = within(CPU_KEY, lo, hi)
            summary["cpu_mean_percentage"][-1].append(_mean(cpu))
            process_cpu = within(PROCESS_CPU_KEY, lo, hi)
            summary["process_cpu_mean_percentage"][-1].append(_mean(process_cpu))
            memory = within(MEMORY_KEY, lo, hi)
            summary["memory_peak_megabytes"][-1].append(max(memory) if memory else None)
            process_memory = within(PROCESS_MEMORY_KEY, lo, hi)
            summary["process_memory_peak_megabytes"][-1].append(
                max(process_memory) if process_memory else None
            )
            own = own_ends.get(row.synergos_id, {}).get(int(item["round"]))
            summary["duration_seconds"][-1].append(
                None if own is None else (own - start) / 1000 - lo
            )
            summary["samples"][-1].append(float(len(cpu)))
    return {
        "run": run.run_id,
        "start_time": iso_time(run.parent.start_time),
        "end_time": iso_time(run.parent.end_time),
        "round_key": round_key,
        "keys": sorted(keys),
        "rounds": rounds,
        "participants": participants,
        "summary": {
            "participants": [p.synergos_id for p in run.participants],
            "rounds": [item["round"] for item in rounds],
            **summary,
        },
    }


# --- the bundle's system.csv -------------------------------------------------------------


class _SystemCsv:
    """An artifact repository of one generated file: the run's hardware series as CSV,
    written when the bundle reaches it (``bundle.open_artifact`` downloads it)."""

    def __init__(self, backend: Backend, run: FederatedRun, participant: str | None) -> None:
        self._backend = backend
        self._run = run
        self._participant = participant

    def download_artifacts(self, path: str, dst_path: str | None = None) -> str:
        folder = dst_path or tempfile.mkdtemp(prefix="synmlops-system-")
        target = os.path.join(folder, os.path.basename(path))
        rows = self._run.participants
        if self._participant is not None:
            rows = tuple(r for r in rows if r.synergos_id == self._participant)
        owners = {r.run_uuid: r.synergos_id for r in rows}
        with open(target, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["participant", "key", "step", "value", "timestamp"])
            for run_uuid, key, step, stamp, value in system_points(self._backend, list(owners)):
                writer.writerow([owners[run_uuid], key, step, "" if value is None else value,
                                 stamp])  # fmt: skip
        return target


def _has_system_points(backend: Backend, run_uuids: list[str]) -> bool:
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric
    from sqlalchemy import select

    if not run_uuids:
        return False
    m = SqlLatestMetric.__table__.c
    query = select(m.run_uuid).where(m.run_uuid.in_(run_uuids), m.key.like("system/%")).limit(1)
    with backend.session_maker() as session:
        return session.connection().execute(query).first() is not None


def system_csv_entries(
    backend: Backend, run: FederatedRun, participant: str | None = None
) -> list[tuple[str, Any]]:
    """``[("system.csv", file)]`` when the run's (or the participant's) runs hold hardware
    samples, else nothing: the bundle's CSV of ``participant, key, step, value, timestamp``."""
    rows = run.participants
    if participant is not None:
        rows = tuple(r for r in rows if r.synergos_id == participant)
    if not _has_system_points(backend, [r.run_uuid for r in rows]):
        return []
    repo = _SystemCsv(backend, run, participant)
    return [(SYSTEM_CSV, ArtifactFile(repo, SYSTEM_CSV, SYSTEM_CSV, None))]


def csv_text(backend: Backend, run: FederatedRun) -> str:
    """The whole run's system.csv as text (for tests and small runs)."""
    buffer = io.StringIO()
    with tempfile.TemporaryDirectory() as folder:
        path = _SystemCsv(backend, run, None).download_artifacts(SYSTEM_CSV, folder)
        with open(path) as handle:
            buffer.write(handle.read())
    return buffer.getvalue()
