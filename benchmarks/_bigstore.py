"""A big store written with bulk SQL, for the scale benchmark (``benchmarks.scale_bench``).

Stock MLflow (or our tracker) would take hours to log ten million points; the rows written
here are the ones ``FederatedTracker`` writes (experiment tags, parent and participant runs
with their Synergos tags, params, metrics and ``latest_metrics``), inserted straight into
MLflow's tables in large transactions. The store grows in place: :meth:`BigStore.grow` adds
filler runs, so one store is measured at every size on the way up.

What is in it:

- the probe, always there and what the benchmark asks about: experiment ``probe/bench/exp``
  with :data:`PROBE_RUNS` federated runs, and a study of :data:`STUDY_TRIALS` trials in
  ``probe/bench/tuning`` (3 participants each, one key over 10 rounds, trial params);
- filler: federated runs of ``participants`` × ``rounds`` × ``keys`` points spread over
  collaborations, projects and experiments (10 runs per experiment, 5 experiments per
  project, 4 projects per collaboration), as a busy grid has.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from synergos_mlops.federation import (
    ROLE_FEDERATION,
    ROLE_PARTICIPANT,
    TAG_COLLABORATION,
    TAG_EXPERIMENT,
    TAG_PARTICIPANT,
    TAG_PROJECT,
    TAG_ROLE,
    TAG_RUN,
)
from synergos_mlops.studies import TAG_STUDY, TAG_TRIAL, StudyDefinition

PROBE = ("probe", "bench", "exp")
PROBE_STUDY = ("probe", "bench", "tuning")
STUDY_NAME = "lr search"
PROBE_RUNS = 5
STUDY_TRIALS = 200
RUNS_PER_EXPERIMENT = 10
EXPERIMENTS_PER_PROJECT = 5
PROJECTS_PER_COLLABORATION = 4
PARENT_TAG = "mlflow.parentRunId"
RUN_NAME_TAG = "mlflow.runName"
_ROWS_PER_COMMIT = 200_000


@dataclass(frozen=True)
class Shape:
    """One federated run's size."""

    participants: int = 10
    rounds: int = 100
    keys: int = 10

    @property
    def points(self) -> int:
        return (self.participants + 1) * self.rounds * self.keys

    def key_names(self) -> list[str]:
        base = ["train/loss", "evaluate/loss", "evaluate/accuracy"]
        return (base + [f"evaluate/stat_{i}" for i in range(self.keys)])[: self.keys]


class BigStore:
    """A SQLite or PostgreSQL store, created with MLflow's schema and ours, filled by SQL."""

    def __init__(self, uri: str, artifacts: str, shape: Shape) -> None:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        from synergos_mlops.server.database import upgrade

        upgrade(uri, say=lambda _line: None)
        self.uri = uri
        self.shape = shape
        self.store = SqlAlchemyStore(uri, artifacts)
        self.engine = self.store.engine
        self.filler_runs = 0
        self._random = random.Random(7)
        self._experiments: dict[tuple[str, str, str], int] = {}

    def close(self) -> None:
        self.engine.dispose()

    # -- experiments --------------------------------------------------------------------

    def experiment(self, ids: tuple[str, str, str], study: StudyDefinition | None = None) -> int:
        from mlflow.entities import ExperimentTag

        if ids not in self._experiments:
            found = self.store.get_experiment_by_name("/".join(ids))
            if found is not None:
                self._experiments[ids] = int(found.experiment_id)
                return self._experiments[ids]
            tags = [ExperimentTag(TAG_COLLABORATION, ids[0]), ExperimentTag(TAG_PROJECT, ids[1]),
                    ExperimentTag(TAG_EXPERIMENT, ids[2])]  # fmt: skip
            if study is not None:
                tags.append(ExperimentTag(study.tag_key, study.tag_value()))
            self._experiments[ids] = int(self.store.create_experiment("/".join(ids), None, tags))
        return self._experiments[ids]

    # -- runs ---------------------------------------------------------------------------

    def _run_row(self, experiment_id: int, name: str, start: int) -> tuple[str, dict[str, Any]]:
        run_uuid = uuid.uuid4().hex
        return run_uuid, {
            "run_uuid": run_uuid, "name": name, "source_type": "LOCAL", "source_name": "",
            "entry_point_name": "", "user_id": "bench", "status": "FINISHED",
            "start_time": start, "end_time": start + 60_000, "source_version": "",
            "lifecycle_stage": "active", "artifact_uri": f"mlflow-artifacts:/{experiment_id}/"
            f"{run_uuid}/artifacts", "experiment_id": experiment_id,
        }  # fmt: skip

    def _federated_run(
        self, experiment_id: int, run: str, start: int, shape: Shape,
        extra_tags: dict[str, str] | None = None, params: dict[str, str] | None = None,
    ) -> Iterator[tuple[str, dict[str, Any]]]:  # fmt: skip
        """``(table, row)`` of one federated run: parent, participants, tags, params,
        metrics and latest metrics."""
        parent, row = self._run_row(experiment_id, run, start)
        yield "runs", row
        tags = {TAG_RUN: run, TAG_ROLE: ROLE_FEDERATION, RUN_NAME_TAG: run, **(extra_tags or {})}
        for key, value in tags.items():
            yield "tags", {"key": key, "value": value, "run_uuid": parent}
        for key, value in (params or {"rounds": str(shape.rounds), "lr": "0.01"}).items():
            yield "params", {"key": key, "value": value, "run_uuid": parent}
        owners = [parent]
        for p in range(shape.participants):
            participant = f"party_{p}"
            child, row = self._run_row(experiment_id, participant, start)
            owners.append(child)
            yield "runs", row
            for key, value in {PARENT_TAG: parent, TAG_PARTICIPANT: participant,
                               TAG_ROLE: ROLE_PARTICIPANT, TAG_RUN: run,
                               RUN_NAME_TAG: participant}.items():  # fmt: skip
                yield "tags", {"key": key, "value": value, "run_uuid": child}
        uniform = self._random.random
        for owner in owners:
            for key in shape.key_names():
                value = 0.0
                for step in range(shape.rounds):
                    value = uniform()
                    yield "metrics", {"key": key, "value": value, "timestamp": start + step,
                                      "run_uuid": owner, "step": step, "is_nan": False}  # fmt: skip
                yield "latest_metrics", {"key": key, "value": value,
                                         "timestamp": start + shape.rounds - 1,
                                         "step": shape.rounds - 1, "is_nan": False,
                                         "run_uuid": owner}  # fmt: skip

    def _insert(self, rows: Iterator[tuple[str, dict[str, Any]]]) -> int:
        """Insert ``(table, row)`` pairs in large transactions, through the driver's own
        ``executemany`` on SQLite and ``COPY`` on PostgreSQL (SQLAlchemy's per-row work would
        triple the build's time, and psycopg's ``executemany`` is twice as slow as ``COPY``);
        the metric points inserted."""
        order = ("runs", "tags", "params", "metrics", "latest_metrics")
        pending: dict[str, list[dict[str, Any]]] = {name: [] for name in order}
        sqlite = self.engine.dialect.name == "sqlite"
        points = 0
        held = 0

        def flush() -> None:
            with self.engine.begin() as connection:
                if sqlite:
                    connection.exec_driver_sql("PRAGMA synchronous=OFF")
                for name in order:
                    if not pending[name]:
                        continue
                    columns = list(pending[name][0])
                    quoted = ", ".join(f'"{c}"' for c in columns)
                    values = [tuple(row[c] for c in columns) for row in pending[name]]
                    if sqlite:
                        marks = ", ".join("?" for _ in columns)
                        connection.exec_driver_sql(
                            f"INSERT INTO {name} ({quoted}) VALUES ({marks})", values
                        )
                    else:
                        driver = connection.connection.driver_connection
                        sql = f"COPY {name} ({quoted}) FROM STDIN"
                        with driver.cursor() as cursor, cursor.copy(sql) as copy:
                            for value in values:
                                copy.write_row(value)
                    pending[name] = []

        for table, row in rows:
            pending[table].append(row)
            held += 1
            points += table == "metrics"
            if held >= _ROWS_PER_COMMIT:
                flush()
                held = 0
        flush()
        return points

    # -- what the benchmark asks for ----------------------------------------------------

    def add_probe(self) -> int:
        """The probe's runs and study; the points inserted."""
        experiment_id = self.experiment(PROBE)
        study = StudyDefinition.build(STUDY_NAME, {"lr": {"_type": "loguniform",
                                                          "_value": [1e-4, 1e-1]}},
                                      "evaluate/accuracy", "maximize", created=1)  # fmt: skip
        study_id = self.experiment(PROBE_STUDY, study)
        small = Shape(participants=3, rounds=10, keys=3)
        start = 1_700_000_000_000

        def rows() -> Iterator[tuple[str, dict[str, Any]]]:
            for r in range(PROBE_RUNS):
                yield from self._federated_run(experiment_id, f"run-{r}", start + r, self.shape)
            for t in range(1, STUDY_TRIALS + 1):
                yield from self._federated_run(
                    study_id,
                    f"lr search_run_{t}",
                    start + t,
                    small,
                    extra_tags={TAG_STUDY: STUDY_NAME, TAG_TRIAL: str(t)},
                    params={"lr": repr(10 ** (-4 + 3 * self._random.random())), "rounds": "10"},
                )

        return self._insert(rows())

    def grow(self, runs: int) -> int:
        """Add ``runs`` filler federated runs; the points inserted."""
        start = int(time.time() * 1000) - 10_000_000

        def rows() -> Iterator[tuple[str, dict[str, Any]]]:
            for _ in range(runs):
                n = self.filler_runs
                e = n // RUNS_PER_EXPERIMENT
                p = e // EXPERIMENTS_PER_PROJECT
                c = p // PROJECTS_PER_COLLABORATION
                ids = (f"collab_{c}", f"project_{p}", f"exp_{e}")
                experiment_id = self.experiment(ids)
                self.filler_runs += 1
                yield from self._federated_run(experiment_id, f"run_{n}", start + n, self.shape)

        return self._insert(rows())

    def settle(self) -> None:
        """What a store that grew over time has on PostgreSQL: what autovacuum does some while
        after a bulk insert, done now (``VACUUM ANALYZE``) so that it does not run during the
        measurements. Its planner statistics: measured before them, the probe alone read its
        studies list in 150 ms instead of 20. Its visibility map, for index-only scans: one
        run of this benchmark measured the 10M store while autovacuum was at work, and a
        run's page and a series took 54 ms instead of 15. Then a ``CHECKPOINT``, so that the
        pages the load dirtied are not written out while the questions are timed (where the
        role may ask for one). SQLite keeps no statistics unless asked (MLflow's stores never
        are), so it is left as it is."""
        from sqlalchemy import text

        if self.engine.dialect.name == "postgresql":
            with self.engine.connect() as connection:
                now = connection.execution_options(isolation_level="AUTOCOMMIT")
                now.execute(text("VACUUM ANALYZE"))
                try:
                    now.execute(text("CHECKPOINT"))
                except Exception as exc:  # noqa: BLE001 - neither superuser nor pg_checkpoint
                    print(f"  no CHECKPOINT before measuring: {str(exc).splitlines()[0]}")

    def points(self) -> int:
        from sqlalchemy import text

        with self.engine.connect() as connection:
            return int(connection.execute(text("SELECT count(*) FROM metrics")).scalar_one())
