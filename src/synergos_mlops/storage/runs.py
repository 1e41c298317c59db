"""Get-or-create of a federation's experiment, parent run and participant runs.

MLflow has no unique key on runs, so "find the run tagged ``synergos.run`` = R, else create
it" is a race between two trackers (or two threads, or two server workers). Every resolution
therefore runs under one lock that lives with the database, so it holds across processes and
machines that share it:

- PostgreSQL: a session-level advisory lock (``pg_advisory_lock``) on a dedicated connection;
- SQLite: an exclusive ``flock`` on ``<database>.synergos-resolve.lock`` beside the file (the
  server's workers and a tracker in folder mode share the folder, hence the lock file);
- any other database: a lock within this process only.

Resolutions are rare (once per run and participant), so one lock for all of them costs nothing.
Inside the lock, MLflow's own store API creates what is missing, so every row is exactly what
MLflow would write.
"""

from __future__ import annotations

import contextlib
import fcntl
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlflow.entities import ExperimentTag, RunTag
from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_USER
from sqlalchemy import exists, text, update

from synergos_mlops.errors import StoreError
from synergos_mlops.federation import (
    ROLE_FEDERATION,
    ROLE_PARTICIPANT,
    TAG_PARTICIPANT,
    TAG_ROLE,
    TAG_RUN,
    ExperimentIds,
    validate_id,
)

__all__ = [
    "RUN_END_STATUSES",
    "ResolvedRun",
    "end_runs",
    "ensure_participant_runs",
    "resolution_lock",
    "resolve_run",
    "resolve_run_locked",
    "upload_uri",
]

_PROCESS_LOCK = threading.Lock()
_ADVISORY_KEY = 0x53594E47  # "SYNG"


@dataclass
class ResolvedRun:
    """The MLflow ids of one federated run."""

    experiment_id: str
    run_id: str
    artifact_uri: str
    participants: dict[str, str] = field(default_factory=dict)
    participant_artifact_uris: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "experiment_id": self.experiment_id,
            "run_id": self.run_id,
            "artifact_uri": self.artifact_uri,
            "participants": self.participants,
            "participant_artifact_uris": self.participant_artifact_uris,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ResolvedRun:
        return cls(
            experiment_id=str(data["experiment_id"]),
            run_id=str(data["run_id"]),
            artifact_uri=str(data["artifact_uri"]),
            participants=dict(data.get("participants", {})),
            participant_artifact_uris=dict(data.get("participant_artifact_uris", {})),
        )


@contextlib.contextmanager
def _resolve_lock(engine: Any) -> Iterator[None]:
    with _PROCESS_LOCK:
        dialect = engine.dialect.name
        if dialect == "postgresql":
            with engine.connect() as connection:
                connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _ADVISORY_KEY})
                connection.commit()
                try:
                    yield
                finally:
                    connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _ADVISORY_KEY})
                    connection.commit()
        elif dialect == "sqlite" and engine.url.database not in (None, "", ":memory:"):
            with open(f"{engine.url.database}.synergos-resolve.lock", "a+b") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)
        else:
            yield


#: The lock every get-or-create of experiments and runs takes (see the module docstring).
resolution_lock = _resolve_lock


def _find_run(store: Any, experiment_id: str, tags: dict[str, str]) -> tuple[str, str] | None:
    with store.ManagedSessionMaker() as session:
        query = session.query(SqlRun.run_uuid, SqlRun.artifact_uri).filter(
            SqlRun.experiment_id == int(experiment_id), SqlRun.lifecycle_stage == "active"
        )
        for key, value in tags.items():
            query = query.filter(
                exists().where(
                    SqlTag.run_uuid == SqlRun.run_uuid, SqlTag.key == key, SqlTag.value == value
                )
            )
        found = query.order_by(SqlRun.start_time, SqlRun.run_uuid).first()
        return (found[0], found[1]) if found else None


def _reopen(store: Any, run_id: str) -> None:
    """Mark a run found again RUNNING (its metrics, params and artifacts stay)."""
    with store.ManagedSessionMaker(read_only=False) as session:
        session.execute(
            update(SqlRun)
            .where(SqlRun.run_uuid == run_id, SqlRun.status != "RUNNING")
            .values(status="RUNNING", end_time=None)
        )


def upload_uri(experiment_id: str, run_id: str, artifact_uri: str) -> str:
    """Where a client uploads a run's artifacts: the run's own artifact URI, except for a run
    whose files lie in a local folder that another writer owns (a file store the server
    mirrors); its uploads go through the server's artifact proxy and leave that folder as
    it is."""
    if artifact_uri.startswith("/") or artifact_uri.startswith("file:"):
        return f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts"
    return artifact_uri


def _get_or_create_run(
    store: Any, experiment_id: str, name: str, tags: dict[str, str], user: str | None, reopen: bool,
    created_with: Mapping[str, str] | None = None,
) -> tuple[str, str]:  # fmt: skip
    """The active run with ``tags``, else a new one with them and ``created_with`` (set in the
    same transaction as the run, so no process dying halfway leaves the run without them)."""
    found = _find_run(store, experiment_id, tags)
    if found is not None:
        if reopen:
            _reopen(store, found[0])
        return found[0], upload_uri(experiment_id, found[0], found[1])
    run_tags = [RunTag(key, value) for key, value in {**tags, **(created_with or {})}.items()]
    if user:
        run_tags.append(RunTag(MLFLOW_USER, user))
    run = store.create_run(
        experiment_id=experiment_id,
        user_id=user or "",
        start_time=int(time.time() * 1000),
        tags=run_tags,
        run_name=name,
    )
    return run.info.run_id, run.info.artifact_uri


def get_or_create_experiment(store: Any, ids: ExperimentIds) -> str:
    experiment = store.get_experiment_by_name(ids.name)
    if experiment is None:
        tags = [ExperimentTag(key, value) for key, value in ids.tags.items()]
        return str(store.create_experiment(ids.name, None, tags))
    if experiment.lifecycle_stage != "active":
        raise StoreError(
            f"experiment {ids.name!r} is deleted; restore it (mlflow experiments restore "
            f"--experiment-id {experiment.experiment_id}) or log under other ids"
        )
    for key, value in ids.tags.items():
        if experiment.tags.get(key) != value:
            store.set_experiment_tag(experiment.experiment_id, ExperimentTag(key, value))
    return str(experiment.experiment_id)


def resolve_run(
    store: Any,
    ids: ExperimentIds,
    run: str,
    participants: Sequence[str] = (),
    *,
    user: str | None = None,
    reopen: bool = True,
) -> ResolvedRun:
    """Find or create the experiment, the parent run and one child run per participant.

    ``store`` is MLflow's ``SqlAlchemyStore``. Found runs are marked RUNNING again when
    ``reopen`` (a federated cycle logged again); their data stays.
    """
    validate_id("run", run)
    for participant in participants:
        validate_id("participant", participant)
    with _resolve_lock(store.engine):
        return resolve_run_locked(store, ids, run, participants, user=user, reopen=reopen)


def resolve_run_locked(
    store: Any,
    ids: ExperimentIds,
    run: str,
    participants: Sequence[str] = (),
    *,
    user: str | None = None,
    reopen: bool = True,
    created_with: Mapping[str, str] | None = None,
) -> ResolvedRun:
    """:func:`resolve_run` for a caller that already holds :data:`resolution_lock` (a study's
    trial is numbered and resolved under one lock, see ``storage.studies``). A federation run
    made now gets the tags ``created_with`` in the transaction that makes it."""
    experiment_id = get_or_create_experiment(store, ids)
    parent_tags = {TAG_RUN: run, TAG_ROLE: ROLE_FEDERATION}
    run_id, artifact_uri = _get_or_create_run(
        store, experiment_id, run, parent_tags, user, reopen, created_with
    )
    resolved = ResolvedRun(experiment_id, run_id, artifact_uri)
    for participant in dict.fromkeys(participants):
        child_tags = {
            MLFLOW_PARENT_RUN_ID: run_id,
            TAG_PARTICIPANT: participant,
            TAG_ROLE: ROLE_PARTICIPANT,
            TAG_RUN: run,
        }
        child_id, child_uri = _get_or_create_run(
            store, experiment_id, participant, child_tags, user, reopen
        )
        resolved.participants[participant] = child_id
        resolved.participant_artifact_uris[participant] = child_uri
    return resolved


def ensure_participant_runs(
    store: Any,
    experiment_id: str,
    parent_id: str,
    run: str,
    participants: Sequence[str],
    *,
    status: str = "RUNNING",
    start_time: int | None = None,
    end_time: int | None = None,
) -> dict[str, str]:
    """The child run of each participant of a parent run known by its MLflow id, created
    where missing in one transaction, with exactly the tags :func:`resolve_run` gives (so
    either finds the other's). For many runs at once, where one ``create_run`` per child
    would commit once each."""
    import uuid

    from mlflow.store.tracking.dbmodels.models import SqlExperiment
    from mlflow.utils.mlflow_tags import MLFLOW_RUN_NAME

    from synergos_mlops.storage.reads import participant_runs

    for participant in participants:
        validate_id("participant", participant)
    with _resolve_lock(store.engine):
        found = {row.synergos_id: row.run_uuid for row in participant_runs(
            store.ManagedSessionMaker, parent_id
        )}  # fmt: skip
        missing = [p for p in dict.fromkeys(participants) if p not in found]
        if missing:
            with store.ManagedSessionMaker(read_only=False) as session:
                location = session.get(SqlExperiment, int(experiment_id)).artifact_location
                for participant in missing:
                    child = uuid.uuid4().hex
                    session.add(
                        SqlRun(
                            run_uuid=child, name=participant[:250], source_type="LOCAL",
                            source_name="", entry_point_name="", user_id="", status=status,
                            start_time=start_time, end_time=end_time, source_version="",
                            lifecycle_stage="active",
                            artifact_uri=f"{location.rstrip('/')}/{child}/artifacts",
                            experiment_id=int(experiment_id),
                        )
                    )  # fmt: skip
                    tags = {
                        MLFLOW_PARENT_RUN_ID: parent_id,
                        TAG_PARTICIPANT: participant,
                        TAG_ROLE: ROLE_PARTICIPANT,
                        TAG_RUN: run,
                        MLFLOW_RUN_NAME: participant,
                    }
                    session.add_all(SqlTag(key=k, value=v, run_uuid=child) for k, v in tags.items())
                    found[participant] = child
    return {p: found[p] for p in participants}


#: The statuses a run may end with.
RUN_END_STATUSES = ("FINISHED", "FAILED", "KILLED")
_END_CHUNK = 2000


def end_runs(engine: Any, run_ids: Sequence[str], status: str, end_time: int) -> list[str]:
    """Set ``status`` and ``end_time`` of every active run among ``run_ids``, in one
    transaction (what MLflow's ``update_run_info`` sets, a statement per 2,000 runs rather
    than a request per run); return the ids not ended because no active run has them. On
    SQLite it waits for its turn among the bulk writers rather than in SQLite's own growing
    sleeps, which a run's end lost, time after time, to the points of other runs."""
    from sqlalchemy import select

    from synergos_mlops.storage.metrics import bulk_writer_turn, take_write_lock

    if status not in RUN_END_STATUSES:
        raise ValueError(f"status {status!r} must be one of {', '.join(RUN_END_STATUSES)}")
    wanted = list(dict.fromkeys(run_ids))
    found: set[str] = set()
    with bulk_writer_turn(engine), engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            take_write_lock(connection)
        for start in range(0, len(wanted), _END_CHUNK):
            chunk = wanted[start : start + _END_CHUNK]
            query: Any = select(SqlRun.run_uuid).where(
                SqlRun.run_uuid.in_(chunk), SqlRun.lifecycle_stage == "active"
            )
            active = sorted(connection.execute(query).scalars())
            if active:
                connection.execute(
                    update(SqlRun)
                    .where(SqlRun.run_uuid.in_(active))
                    .values(status=status, end_time=end_time)
                )
            found.update(active)
    return [run_id for run_id in wanted if run_id not in found]
