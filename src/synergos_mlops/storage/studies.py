"""Studies in MLflow's own tables: defining one, numbering and resolving its trials, reading
them back (see ``synergos_mlops.studies`` for the tags).

Defining a study and resolving a trial take the same database lock as every run resolution
(``storage.runs.resolution_lock``: a PostgreSQL advisory lock, a lock file beside SQLite), so
two trackers or two server replicas adding trials at once never give two runs one number.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from synergos_mlops.errors import InvalidValueError, SynergosError
from synergos_mlops.federation import ExperimentIds, validate_id
from synergos_mlops.storage import reads
from synergos_mlops.storage.reads import RunRow, SessionMaker
from synergos_mlops.storage.system import (
    CPU_COUNT_TAG,
    CPU_KEY,
    MEMORY_KEY,
    NETWORK_KEYS,
    PROCESS_CPU_KEY,
    PROCESS_MEMORY_KEY,
)
from synergos_mlops.studies import (
    DEFAULT_STUDY,
    PARAM_TYPES,
    TAG_OUTSIDE_SPACE,
    TAG_PARAM_TYPES,
    TAG_STUDY,
    TAG_STUDY_PREFIX,
    TAG_TRIAL,
    TAG_TRIAL_REQUEST,
    TAG_TUNER,
    StudyDefinition,
    legacy_trial_number,
    read_types,
    trial_run_name,
    types_tag,
    validate_study_name,
)

__all__ = [
    "ResolvedTrial",
    "StudyConflictError",
    "StudyNotDefinedError",
    "TrialRow",
    "ParticipantHardware",
    "define_study",
    "latest_values",
    "participant_rows",
    "resolve_trial",
    "study_definitions",
    "trial_hardware",
    "trial_rows",
    "trial_rows_of",
    "trial_params",
]


class StudyConflictError(SynergosError):
    """A study of that name is already defined with another search space, metric or
    direction."""


class StudyNotDefinedError(SynergosError, LookupError):
    """A trial for a study that its experiment does not define."""


@dataclass(frozen=True)
class ResolvedTrial:
    resolved: Any  # storage.runs.ResolvedRun
    run: str
    number: int
    status: str

    def to_json(self) -> dict[str, Any]:
        return {**self.resolved.to_json(), "run": self.run, "number": self.number,
                "status": self.status}  # fmt: skip


def _now_ms() -> int:
    return int(time.time() * 1000)


def define_study(
    store: Any, ids: ExperimentIds, definition: StudyDefinition, *, extend: bool = False
) -> StudyDefinition:
    """Keep the study's definition as an experiment tag (creating the experiment if needed).
    Defining it again with the same search is a no-op returning the stored one; with another
    search space, metric or direction it is refused (StudyConflictError). With ``extend``
    (a tuner's conditional space) the same metric and direction are enough: the stored space
    takes in the parameters it lacks, and the union is returned."""
    from mlflow.entities import ExperimentTag

    from synergos_mlops.storage.runs import get_or_create_experiment, resolution_lock

    with resolution_lock(store.engine):
        experiment_id = get_or_create_experiment(store, ids)
        tags = store.get_experiment(experiment_id).tags
        stored = tags.get(definition.tag_key)
        created = replace(definition, created=definition.created or _now_ms())
        if stored is not None:
            found = StudyDefinition.from_tag(definition.tag_key, stored)
            if found is not None:
                merged = found.extended_by(definition) if extend else None
                if merged is None and not found.same_search(definition):
                    raise StudyConflictError(
                        f"study {definition.name!r} of experiment {ids.name!r} is already "
                        "defined with another "
                        + ("metric or direction" if extend else "search space, metric or direction")
                    )
                if merged is None or merged == found:
                    return found
                created = merged
        value = created.tag_value()
        if len(value) > 20000:  # MLflow's limit on an experiment tag's value
            raise InvalidValueError(
                f"study {definition.name!r}: the definition is {len(value)} characters as "
                "JSON, MLflow keeps at most 20000"
            )
        store.set_experiment_tag(experiment_id, ExperimentTag(created.tag_key, value))
        return created


def _numbers(store: Any, experiment_id: str, study: str) -> dict[str, int]:
    """``{run name: trial number}`` of the study's trials, tagged or (default study) named
    ``optim_run_<n>``."""
    found: dict[str, int] = {}
    for trial in trial_rows(store.ManagedSessionMaker, experiment_id):
        if trial.study == study:
            found[trial.run.synergos_id] = trial.number
    return found


def _trial_of_request(store: Any, experiment_id: str, request: str) -> str | None:
    """The run id of the experiment's trial made by this request id, if one was."""
    from mlflow.store.tracking.dbmodels.models import SqlTag

    with store.ManagedSessionMaker() as session:
        made = {
            row[0]
            for row in session.query(SqlTag.run_uuid).filter(
                SqlTag.key == reads.tag_key(TAG_TRIAL_REQUEST), SqlTag.value == request
            )
        }
    if not made:
        return None
    for row in reads.federation_runs(store.ManagedSessionMaker, [experiment_id]):
        if row.run_uuid in made:
            return row.synergos_id
    return None


def _check_types(types: object) -> str:
    """The ``synergos.param_types`` tag's value for a trial request's ``types``."""
    if not isinstance(types, Mapping) or not all(
        isinstance(k, str) and v in PARAM_TYPES for k, v in types.items()
    ):
        raise InvalidValueError(
            f"types must map a hyperparameter to one of {', '.join(PARAM_TYPES)}"
        )
    tag = types_tag(types)
    if tag is None:
        raise InvalidValueError("types: too many typed hyperparameters for one MLflow tag")
    return tag


def _check_tuner(tuner: object) -> str:
    """The ``synergos.trial.tuner`` tag's value for a trial request's ``tuner``."""
    if (
        not isinstance(tuner, Mapping)
        or set(tuner) != {"tuner", "trial"}
        or not isinstance(tuner["tuner"], str)
        or not 0 < len(tuner["tuner"]) <= 100
        or isinstance(tuner["trial"], bool)
        or not isinstance(tuner["trial"], (int, str))
        or len(str(tuner["trial"])) > 200
    ):
        raise InvalidValueError(
            'tuner must be {"tuner": <name>, "trial": <its trial number or id>} (short texts)'
        )
    return json.dumps({"tuner": tuner["tuner"], "trial": tuner["trial"]}, ensure_ascii=False)


def resolve_trial(
    store: Any,
    ids: ExperimentIds,
    study: str,
    run: str | None,
    participants: Sequence[str] = (),
    *,
    user: str | None = None,
    queued: bool = False,
    outside: Sequence[str] = (),
    request: str | None = None,
    types: Mapping[str, str] | None = None,
    tuner: Mapping[str, Any] | None = None,
) -> ResolvedTrial:
    """Find or create the trial's federated run, numbered within the study, under the
    resolution lock.

    ``run`` None: a new trial, numbered one above the highest, run id ``<study>_run_<n>``.
    ``queued``: a new run is left SCHEDULED (an existing one keeps its status); otherwise the
    run is marked RUNNING, and a SCHEDULED one starts its clock now. ``outside`` names the
    hyperparameters outside the search space (tag ``synergos.trial.outside_space``).
    ``request`` (with ``run`` None) is the caller's id for this request, kept as tag
    ``synergos.trial.request``: the same request again (a retry whose first answer was lost,
    perhaps through another replica) finds the trial it made rather than numbering a new one.
    ``types`` (``{name: type}`` of the hyperparameters that are not strings) is kept as tag
    ``synergos.param_types``; ``tuner`` (``{"tuner": "optuna", "trial": 3}``: the tuner's own
    trial number or id) as tag ``synergos.trial.tuner``.
    """
    from mlflow.entities import RunStatus, RunTag
    from mlflow.store.tracking.dbmodels.models import SqlRun
    from sqlalchemy import update

    from synergos_mlops.storage.runs import resolution_lock, resolve_run_locked

    validate_study_name(study)
    if run is not None:
        validate_id("run", run)
    typed = _check_types(types) if types is not None else None
    tuned = _check_tuner(tuner) if tuner is not None else None
    with resolution_lock(store.engine):
        experiment_id = reads.find_experiment(store.ManagedSessionMaker, ids.name)
        tags = {} if experiment_id is None else store.get_experiment(experiment_id).tags
        if experiment_id is None or TAG_STUDY_PREFIX + study not in tags:
            raise StudyNotDefinedError(f"study {study!r} is not defined in experiment {ids.name!r}")
        numbers = _numbers(store, experiment_id, study)
        if run is None and request:
            run = _trial_of_request(store, experiment_id, request)
        taken = {row.synergos_id for row in reads.federation_runs(
            store.ManagedSessionMaker, [experiment_id])}  # fmt: skip
        number = numbers.get(run) if run is not None else None
        if number is None:
            number = max(numbers.values(), default=0) + 1
            while run is None and trial_run_name(study, number) in taken:
                number += 1
        name = run if run is not None else trial_run_name(study, number)
        existing = reads.find_federation_run(store.ManagedSessionMaker, experiment_id, name)
        if existing is not None and existing.status == "SCHEDULED" and not queued:
            with store.ManagedSessionMaker(read_only=False) as session:
                session.execute(
                    update(SqlRun)
                    .where(SqlRun.run_uuid == existing.run_uuid)
                    .values(start_time=_now_ms())
                )
        # A new trial run is made with its study, number and request (one transaction): a
        # replica killed right after it cannot leave a numbered run that its retried request
        # would not find.
        trial_tags = {TAG_STUDY: study, TAG_TRIAL: str(number)}
        if request:
            trial_tags[TAG_TRIAL_REQUEST] = request
        resolved = resolve_run_locked(
            store, ids, name, participants, user=user, reopen=not queued, created_with=trial_tags
        )
        status = existing.status if existing is not None and queued else "RUNNING"
        if queued and existing is None:
            status = "SCHEDULED"
            store.update_run_info(resolved.run_id, RunStatus.SCHEDULED, None, None)
        store.set_tag(resolved.run_id, RunTag(TAG_STUDY, study))
        store.set_tag(resolved.run_id, RunTag(TAG_TRIAL, str(number)))
        if request:
            store.set_tag(resolved.run_id, RunTag(TAG_TRIAL_REQUEST, request))
        if typed is not None:
            store.set_tag(resolved.run_id, RunTag(TAG_PARAM_TYPES, typed))
        if tuned is not None:
            store.set_tag(resolved.run_id, RunTag(TAG_TUNER, tuned))
        if outside:
            store.set_tag(resolved.run_id, RunTag(TAG_OUTSIDE_SPACE, json.dumps(list(outside))))
        elif existing is not None and TAG_OUTSIDE_SPACE in reads.run_tags(
            store.ManagedSessionMaker, resolved.run_id
        ):
            store.delete_tag(resolved.run_id, TAG_OUTSIDE_SPACE)
    return ResolvedTrial(resolved, name, number, status or "RUNNING")


# --- reads -------------------------------------------------------------------------------


def study_definitions(
    session_maker: SessionMaker, experiment_ids: Sequence[str] | None
) -> dict[str, dict[str, StudyDefinition]]:
    """``{experiment id: {study name: definition}}`` from the experiments' tags (of every
    experiment when ``experiment_ids`` is None)."""
    from mlflow.store.tracking.dbmodels.models import SqlExperimentTag as T

    if experiment_ids is not None and not experiment_ids:
        return {}
    wanted = None if experiment_ids is None else {str(e) for e in experiment_ids}
    with session_maker() as session:
        query = session.query(T.experiment_id, T.key, T.value).filter(
            T.key.like(TAG_STUDY_PREFIX.replace("_", r"\_") + "%", escape="\\")
        )
        # One experiment's alone; else every definition, kept below (no id list to bind).
        if wanted is not None and len(wanted) == 1:
            query = query.filter(T.experiment_id == int(next(iter(wanted))))
        rows = query.all()
    found: dict[str, dict[str, StudyDefinition]] = {}
    for experiment_id, key, value in rows:
        definition = StudyDefinition.from_tag(key, value)
        if definition is not None and (wanted is None or str(experiment_id) in wanted):
            found.setdefault(str(experiment_id), {})[definition.name] = definition
    return found


@dataclass(frozen=True)
class TrialRow:
    """A federation run that is a trial of a study."""

    run: RunRow
    study: str
    number: int
    outside: tuple[str, ...] | None  # None: no tag (not checked when logged)
    types: dict[str, str] | None = None  # None: logged without types (read as JSON)
    tuner: dict[str, Any] | None = None  # the tuner's own trial: {"tuner", "trial"}


def _trial_tags(session_maker: SessionMaker, keys: Sequence[str]) -> dict[str, dict[str, str]]:
    """``{run: {key: value}}`` of every run holding one of these tag keys (the trials' own,
    which no other run holds), through MLflow's ``(key, run_uuid)`` primary key."""
    from mlflow.store.tracking.dbmodels.models import SqlTag

    found: dict[str, dict[str, str]] = {}
    with session_maker() as session:
        rows = (
            session.query(SqlTag.run_uuid, SqlTag.key, SqlTag.value)
            .filter(SqlTag.key.in_(list(keys)))
            .all()
        )
    for run_uuid, key, value in rows:
        found.setdefault(run_uuid, {})[key] = value
    return found


def trial_run_ids(session_maker: SessionMaker) -> list[str]:
    """Every run of the store that may be a trial: tagged ``synergos.study``, or with a
    Synergos id ``optim_run_<n>`` (the default study). Read from the tags alone, through
    indexes (MLflow's tag key index; the run-id trigram index of ``storage.run_search`` for
    the names), so the cost follows the trials, not the runs the store holds. Runs of any
    role and state: the caller keeps the active federation runs."""
    from mlflow.store.tracking.dbmodels.models import SqlTag
    from sqlalchemy import func, select
    from sqlalchemy import text as sql

    from synergos_mlops.storage.run_search import SEARCH_TABLE, fts_phrase, has_run_search

    t = SqlTag.__table__.c
    prefix = r"optim\_run\_%"
    with session_maker() as session:
        connection = session.connection()
        found = list(connection.execute(select(t.run_uuid).where(t.key == TAG_STUDY)).scalars())
        named: Any
        if connection.dialect.name == "sqlite" and has_run_search(connection):
            named = sql(
                f"SELECT run_uuid, value FROM {SEARCH_TABLE} WHERE {SEARCH_TABLE} MATCH :phrase"
            ).bindparams(phrase=fts_phrase("optim_run_"))
        else:  # PostgreSQL's planner takes the pg_trgm index for the lower() LIKE
            named = select(t.run_uuid, t.value).where(
                t.key == reads.tag_key(reads.TAG_RUN),
                func.lower(t.value).like(reads.in_text(prefix), escape="\\"),
            )
        found += [run for run, value in connection.execute(named)
                  if legacy_trial_number(value) is not None]  # fmt: skip
    return list(dict.fromkeys(found))


def trial_rows(session_maker: SessionMaker, experiment_id: str) -> list[TrialRow]:
    """Every trial of every study of an experiment: runs tagged ``synergos.study``, and runs
    named ``optim_run_<n>`` without that tag (the default study, trial ``n``)."""
    return trial_rows_of(session_maker, [experiment_id])[str(experiment_id)]


def trial_rows_of(
    session_maker: SessionMaker, experiment_ids: Sequence[str] | None, *, counted: bool = True
) -> dict[str, list[TrialRow]]:
    """:func:`trial_rows` for several experiments at once (every experiment's when
    ``experiment_ids`` is None), ``{experiment id: trials}``, in a few queries whatever their
    number. One experiment is read run by run; for more, the trials are found from their
    tags (:func:`trial_run_ids`), so the cost follows the trials the store holds, not its
    runs. Without ``counted`` the trials' runs carry no participant count (one query less)."""
    wanted = [] if experiment_ids is None else [str(e) for e in experiment_ids]
    keys = (TAG_STUDY, TAG_TRIAL, TAG_OUTSIDE_SPACE, TAG_PARAM_TYPES, TAG_TUNER)
    if len(wanted) == 1:
        runs = reads.federation_runs(session_maker, wanted, counted=counted)
        tags = _experiment_tags(session_maker, wanted, keys)
    else:  # no list of experiments or runs to bind: the trials' rows, kept below
        visible = None if experiment_ids is None else set(wanted)
        runs = [
            r
            for r in reads.federation_runs_named(session_maker, trial_run_ids(session_maker))
            if visible is None or r.experiment_id in visible
        ]
        tags = _trial_tags(session_maker, keys)
        if counted and runs:
            counts = reads.participant_counts(session_maker, [r.run_uuid for r in runs])
            runs = [replace(r, participants=counts.get(r.run_uuid, 0)) for r in runs]
    trials: dict[str, list[TrialRow]] = {e: [] for e in wanted}
    for row in runs:
        trial = _trial(row, tags.get(row.run_uuid, {}))
        if trial is not None:
            trials.setdefault(row.experiment_id, []).append(trial)
    return trials


def _trial(row: RunRow, own: Mapping[str, str]) -> TrialRow | None:
    study = own.get(TAG_STUDY)
    number: int | None = None
    if study is not None:
        try:
            number = int(own.get(TAG_TRIAL, ""))
        except ValueError:
            number = None
    else:
        number = legacy_trial_number(row.synergos_id)
        if number is not None:
            study = DEFAULT_STUDY
    if study is None:
        return None
    outside: tuple[str, ...] | None = None
    if TAG_OUTSIDE_SPACE in own:
        try:
            outside = tuple(str(x) for x in json.loads(own[TAG_OUTSIDE_SPACE]))
        except (ValueError, TypeError):
            outside = (own[TAG_OUTSIDE_SPACE],)
    tuner: dict[str, Any] | None = None
    try:
        found = json.loads(own.get(TAG_TUNER, "null"))
        tuner = found if isinstance(found, dict) else None
    except ValueError:
        tuner = None
    return TrialRow(row, study, number if number is not None else 0, outside,
                    read_types(own.get(TAG_PARAM_TYPES)), tuner)  # fmt: skip


def _experiment_tags(
    session_maker: SessionMaker, experiment_ids: list[str], keys: Sequence[str]
) -> dict[str, dict[str, str]]:
    """``{run: {key: value}}`` for these tag keys of the active runs of these experiments,
    in one query joined on the runs (not a list of every run id)."""
    from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag

    found: dict[str, dict[str, str]] = {}
    if not experiment_ids:
        return found
    with session_maker() as session:
        rows = (
            session.query(SqlTag.run_uuid, SqlTag.key, SqlTag.value)
            .join(SqlRun, SqlRun.run_uuid == SqlTag.run_uuid)
            .filter(
                SqlRun.experiment_id.in_([int(e) for e in experiment_ids]),
                SqlRun.lifecycle_stage == reads.ACTIVE,
                SqlTag.key.in_(list(keys)),
            )
            .all()
        )
    for run_uuid, key, value in rows:
        found.setdefault(run_uuid, {})[key] = value
    return found


def trial_params(session_maker: SessionMaker, run_uuids: list[str]) -> dict[str, dict[str, str]]:
    """Every param of these runs, in one query."""
    from mlflow.store.tracking.dbmodels.models import SqlParam

    found: dict[str, dict[str, str]] = {uuid: {} for uuid in run_uuids}
    if not run_uuids:
        return found
    with session_maker() as session:
        rows = (
            session.query(SqlParam.run_uuid, SqlParam.key, SqlParam.value)
            .filter(SqlParam.run_uuid.in_(run_uuids))
            .all()
        )
    for run_uuid, key, value in rows:
        found[run_uuid][key] = value
    return found


def participant_rows(
    session_maker: SessionMaker, parent_uuids: list[str]
) -> list[tuple[str, str, str]]:
    """``(parent run, participant run, participant id)`` of every participant of these
    federation runs, in one query."""
    from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
    from sqlalchemy.orm import aliased

    if not parent_uuids:
        return []
    parent = aliased(SqlTag)
    participant = aliased(SqlTag)
    with session_maker() as session:
        rows = (
            session.query(parent.value, SqlRun.run_uuid, participant.value)
            .join(SqlRun, SqlRun.run_uuid == parent.run_uuid)
            .join(
                participant,
                (participant.run_uuid == SqlRun.run_uuid)
                & (participant.key == reads.TAG_PARTICIPANT),
            )
            .filter(parent.key == reads.tag_key(reads.PARENT_TAG), parent.value.in_(parent_uuids))
            .filter(SqlRun.lifecycle_stage == reads.ACTIVE)
            .all()
        )
    return [(str(a), str(b), str(c)) for a, b, c in rows]


def latest_values(
    session_maker: SessionMaker, run_uuids: list[str], key: str
) -> dict[str, float | None]:
    """The latest value of one metric of each of these runs that has it (NaN as None)."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric as M

    if not run_uuids:
        return {}
    with session_maker() as session:
        rows = (
            session.query(M.run_uuid, M.value, M.is_nan)
            .filter(M.run_uuid.in_(run_uuids), M.key == key)
            .all()
        )
    return {run: (None if is_nan else float(value)) for run, value, is_nan in rows}


# --- hardware cost of trials -------------------------------------------------------------

_GPU_PREFIX = "system/gpu_"
_GPU_SUFFIX = "_utilization_percentage"
_HARDWARE_KEYS = (PROCESS_CPU_KEY, CPU_KEY, PROCESS_MEMORY_KEY, MEMORY_KEY, *NETWORK_KEYS)


def _costs(key: str) -> bool:
    """Whether a ``system/...`` key enters a trial's hardware cost."""
    return key in _HARDWARE_KEYS or (key.startswith(_GPU_PREFIX) and key.endswith(_GPU_SUFFIX))


@dataclass(frozen=True)
class ParticipantHardware:
    """What one participant run's hardware samples say it cost (None: not sampled).

    ``cpu_seconds``: core-seconds, the mean CPU use times the run's wall time: the training
    process's (``process_cpu``, 100 % = one core) when sampled, else the machine's times its
    ``cpu_count`` fact. ``memory_peak_megabytes``: the process's peak resident memory, else
    the machine's peak memory in use. ``gpu_seconds``: the sum over GPUs of the mean
    utilization times the wall time (a GPU busy for 10 s: 10). ``network_megabytes``: received
    plus sent while the run's samples were taken."""

    samples: int
    wall_time_s: float
    cpu_seconds: float | None
    memory_peak_megabytes: float | None
    gpu_seconds: float | None
    network_megabytes: float | None


def trial_hardware(
    session_maker: SessionMaker, child_uuids: Sequence[str], now: int | None = None
) -> dict[str, ParticipantHardware]:
    """The hardware cost of each of these participant runs that has samples, aggregated by
    the database: one query finds the runs' ``system/...`` keys (MLflow's small
    ``latest_metrics`` table, so a study without samples costs only that), one groups the
    samples of the keys that count by run and key, two read the runs' times and their
    ``cpu_count`` facts: four queries for a whole study."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric, SqlMetric, SqlRun, SqlTag
    from sqlalchemy import func, select

    if not child_uuids:
        return {}
    latest = SqlLatestMetric.__table__.c
    with session_maker() as session:
        pairs = (
            session.connection()
            .execute(
                select(latest.run_uuid, latest.key).where(
                    latest.run_uuid.in_(list(child_uuids)), latest.key.like("system/%")
                )
            )
            .fetchall()
        )
        wanted = [(str(run), str(key)) for run, key in pairs if _costs(str(key))]
        if not wanted:
            return {}
        sampled = sorted({run for run, _ in wanted})
        m = SqlMetric.__table__.c
        # The exact keys, not a LIKE: the database then reads them through an index (on
        # SQLite, 14 ms instead of 43 ms for 200 trials x 10 sampled participants).
        aggregated = session.connection().execute(
            select(m.run_uuid, m.key, func.count(), func.avg(m.value), func.max(m.value),
                   func.min(m.value))
            .where(m.run_uuid.in_(sampled), m.key.in_(sorted({k for _, k in wanted})),
                   m.is_nan.is_(False))
            .group_by(m.run_uuid, m.key)
        ).fetchall()  # fmt: skip
        r = SqlRun.__table__.c
        times = {
            str(row[0]): (row[1], row[2])
            for row in session.connection().execute(
                select(r.run_uuid, r.start_time, r.end_time).where(r.run_uuid.in_(sampled))
            )
        }
        t = SqlTag.__table__.c
        cores: dict[str, float] = {}
        for run_uuid, value in session.connection().execute(
            select(t.run_uuid, t.value).where(t.run_uuid.in_(sampled), t.key == CPU_COUNT_TAG)
        ):
            try:
                cores[str(run_uuid)] = float(value)
            except ValueError:
                continue
    figures: dict[str, dict[str, tuple[int, float, float, float]]] = {}
    for run_uuid, key, count, mean, peak, low in aggregated:
        figures.setdefault(str(run_uuid), {})[str(key)] = (
            int(count), float(mean), float(peak), float(low)
        )  # fmt: skip
    clock = now if now is not None else _now_ms()
    out: dict[str, ParticipantHardware] = {}
    for run_uuid, own in figures.items():
        start, end = times.get(run_uuid, (None, None))
        if start is None:
            continue
        wall = max(0.0, ((end if end is not None else clock) - start) / 1000)
        cpu: float | None = None
        if PROCESS_CPU_KEY in own:
            cpu = own[PROCESS_CPU_KEY][1] / 100 * wall
        elif CPU_KEY in own and run_uuid in cores:
            cpu = own[CPU_KEY][1] / 100 * cores[run_uuid] * wall
        memory_key = PROCESS_MEMORY_KEY if PROCESS_MEMORY_KEY in own else MEMORY_KEY
        memory = own[memory_key][2] if memory_key in own else None
        gpus = [v for k, v in own.items() if k.startswith(_GPU_PREFIX)]
        gpu_seconds = sum(g[1] for g in gpus) / 100 * wall if gpus else None
        counters = [own[k] for k in NETWORK_KEYS if k in own]
        network = sum(c[2] - c[3] for c in counters) if counters else None
        samples = max((v[0] for v in own.values()), default=0)
        out[run_uuid] = ParticipantHardware(samples, wall, cpu, memory, gpu_seconds, network)
    return out
