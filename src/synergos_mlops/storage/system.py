"""Hardware samples attached by time to the participant runs they were taken during.

A sample batch (``storage.samples``) names participants, not runs. For each participant P of
collaboration C it names, the runs that may hold its samples are the participant (child)
runs tagged ``synergos.participant = P`` in active experiments tagged
``synergos.collaboration = C``. A sample taken at time t goes to every such run whose
interval ``[start_time, end_time]`` holds t (a run still going has no end), under its
``system/...`` key with **step = whole seconds since that run's start** (``(t - start_time)
// 1000``) and timestamp t. Two runs of one participant at once (a study's trials) both get
it; a sample within no run is counted and dropped.

Points go through :func:`storage.metrics.write_metrics`, so a batch sent twice stores each
point once, and ``MlflowClient.get_metric_history`` reads them as any metric. Static facts
become tags ``synergos.system.<fact>`` of every run a participant's samples were attached to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.engine import Engine

from synergos_mlops.federation import (
    ROLE_PARTICIPANT,
    TAG_COLLABORATION,
    TAG_PARTICIPANT,
    TAG_ROLE,
)
from synergos_mlops.storage.batch import MetricBatch
from synergos_mlops.storage.samples import SampleBatch, split_any_target, split_target

__all__ = [
    "CPU_COUNT_TAG",
    "CPU_KEY",
    "FACT_TAG_PREFIX",
    "MEMORY_KEY",
    "NETWORK_KEYS",
    "PROCESS_CPU_KEY",
    "PROCESS_MEMORY_KEY",
    "AttachResult",
    "CandidateRun",
    "attach_samples",
    "candidate_runs",
]

#: Static facts become run tags under this prefix: ``synergos.system.cpu_count``.
FACT_TAG_PREFIX = "synergos.system."
#: The hardware series the server reads back (heatmap, study cost), as monitors name them.
CPU_KEY = "system/cpu_utilization_percentage"
PROCESS_CPU_KEY = "system/process_cpu_utilization_percentage"
MEMORY_KEY = "system/system_memory_usage_megabytes"
PROCESS_MEMORY_KEY = "system/process_memory_rss_megabytes"
#: Counters since the monitor started: what a run used is their last minus their first.
NETWORK_KEYS = ("system/network_receive_megabytes", "system/network_transmit_megabytes")
CPU_COUNT_TAG = FACT_TAG_PREFIX + "cpu_count"


@dataclass(frozen=True)
class CandidateRun:
    run_uuid: str
    experiment_id: str
    start_time: int
    end_time: int | None

    def holds(self, timestamp: int) -> bool:
        end = self.end_time
        return self.start_time <= timestamp and (end is None or timestamp <= end)


@dataclass(frozen=True)
class AttachResult:
    samples: int
    """Samples in the batch (one per participant and timestamp)."""
    attached: int
    """Samples that fell within at least one run."""
    unmatched: int
    """Samples within no run of their participant: counted, not stored."""
    points: int
    """Metric points written (a sample within two runs counts in both)."""
    runs: int
    """Runs that received points."""

    def to_json(self) -> dict[str, int]:
        return {
            "samples": self.samples,
            "attached": self.attached,
            "unmatched": self.unmatched,
            "points": self.points,
            "runs": self.runs,
        }


def candidate_runs(
    engine: Engine, collaboration: str | None, participant: str, earliest: int, latest: int
) -> list[CandidateRun]:
    """The participant runs of ``participant`` in ``collaboration`` (None: in any) whose
    interval meets ``[earliest, latest]`` (milliseconds)."""
    from mlflow.store.tracking.dbmodels.models import (
        SqlExperiment,
        SqlExperimentTag,
        SqlRun,
        SqlTag,
    )

    runs = SqlRun.__table__
    experiments = SqlExperiment.__table__
    experiment_tags = SqlExperimentTag.__table__
    r, e, et = runs.c, experiments.c, experiment_tags.c
    who = SqlTag.__table__.alias("who")
    role = SqlTag.__table__.alias("role")
    query: Any = (
        select(r.run_uuid, r.experiment_id, r.start_time, r.end_time)
        .select_from(runs)
        .join(experiments, e.experiment_id == r.experiment_id)
    )
    if collaboration is not None:
        query = query.join(
            experiment_tags,
            and_(
                et.experiment_id == r.experiment_id,
                et.key == TAG_COLLABORATION,
                et.value == collaboration,
            ),
        )
    query = (
        query.join(
            who,
            and_(
                who.c.run_uuid == r.run_uuid,
                who.c.key == TAG_PARTICIPANT,
                who.c.value == participant,
            ),
        )
        .join(
            role,
            and_(
                role.c.run_uuid == r.run_uuid,
                role.c.key == TAG_ROLE,
                role.c.value == ROLE_PARTICIPANT,
            ),
        )
        .where(
            r.lifecycle_stage == "active",
            e.lifecycle_stage == "active",
            r.start_time.is_not(None),
            r.start_time <= latest,
            (r.end_time.is_(None)) | (r.end_time >= earliest),
        )
        .order_by(r.start_time, r.run_uuid)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).fetchall()
    return [CandidateRun(row[0], str(row[1]), int(row[2]), row[3]) for row in rows]


def _set_fact_tags(engine: Engine, run_uuids: list[str], facts: dict[str, str]) -> None:
    """Tags ``synergos.system.<fact>`` on the runs, written only where they differ."""
    from mlflow.store.tracking.dbmodels.models import SqlTag
    from sqlalchemy import delete
    from sqlalchemy.exc import IntegrityError

    if not facts or not run_uuids:
        return
    wanted = {FACT_TAG_PREFIX + name: value for name, value in facts.items()}
    t = SqlTag.__table__.c
    with engine.connect() as connection:
        stored = {
            (row[0], row[1]): row[2]
            for row in connection.execute(
                select(t.run_uuid, t.key, t.value).where(
                    t.run_uuid.in_(run_uuids), t.key.in_(list(wanted))
                )
            )
        }
    changes = [
        (run, key, value)
        for run in run_uuids
        for key, value in wanted.items()
        if stored.get((run, key)) != value
    ]
    if not changes:
        return
    try:
        with engine.begin() as connection:
            for run, key, _ in changes:
                if (run, key) in stored:
                    connection.execute(
                        delete(SqlTag.__table__).where(t.run_uuid == run, t.key == key)
                    )
            connection.execute(
                SqlTag.__table__.insert(),
                [{"run_uuid": run, "key": key, "value": value} for run, key, value in changes],
            )
    except IntegrityError:
        pass  # another writer set the same facts at the same moment


def attach_samples(
    engine: Engine,
    batch: SampleBatch,
    *,
    may_write: Callable[[CandidateRun], bool] | None = None,
    write: Callable[[Engine, MetricBatch], Any] | None = None,
    any_collaboration: bool = False,
) -> AttachResult:
    """Write a sample batch into the runs its samples were taken during (see the module
    docstring). ``may_write`` leaves out runs the writer may not touch: their samples count
    as unmatched when no other run holds them. With ``any_collaboration``, a target of
    ``samples.any_target`` goes to its participant's runs in any collaboration."""
    from synergos_mlops.storage.metrics import write_metrics

    points = batch.points
    by_target: dict[str, list[int]] = {}
    for position, name in enumerate(points.run_ids):
        by_target.setdefault(name, []).append(position)
    out = MetricBatch()
    samples = attached = 0
    facts_for: dict[str, list[str]] = {}
    touched: set[str] = set()
    for name, positions in by_target.items():
        found = split_any_target(name) if any_collaboration else split_target(name)
        collaboration, participant = found
        stamps = [points.timestamps[i] for i in positions]
        runs = candidate_runs(engine, collaboration, participant, min(stamps), max(stamps))
        if may_write is not None:
            runs = [run for run in runs if may_write(run)]
        distinct = set(stamps)
        samples += len(distinct)
        held: set[int] = set()
        for run in runs:
            for i in positions:
                stamp = points.timestamps[i]
                if run.holds(stamp):
                    held.add(stamp)
                    out.append(
                        run.run_uuid,
                        points.keys[i],
                        (stamp - run.start_time) // 1000,
                        points.values[i],
                        stamp,
                    )
                    touched.add(run.run_uuid)
                    facts_for.setdefault(name, [])
                    if run.run_uuid not in facts_for[name]:
                        facts_for[name].append(run.run_uuid)
        attached += len(held)
    (write or write_metrics)(engine, out)
    for name, run_uuids in facts_for.items():
        _set_fact_tags(engine, run_uuids, batch.facts.get(name, {}))
    return AttachResult(
        samples=samples,
        attached=attached,
        unmatched=samples - attached,
        points=len(out),
        runs=len(touched),
    )
