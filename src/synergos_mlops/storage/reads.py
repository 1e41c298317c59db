"""Fast reads of federated runs straight from MLflow's SQL tables.

The Synergos API answers questions MLflow's REST API would need many calls for (a run's
participants, every participant's series of several metrics). Each function here is one or
two SQL queries through MLflow's own SQLAlchemy models, on a session from the tracking
store's ``ManagedSessionMaker``; they only read.

Each is written so that its cost does not grow with the store (``make bench``'s scale
table): runs are found through our indexes (``storage/migrations``, revision
``s0003_read_indexes``) on ``runs.experiment_id`` and on ``tags (key, value)``, with the tag
key written into the SQL as a literal (:func:`tag_key`) so that PostgreSQL sees that its
partial index covers it; metric points through MLflow's ``(run_uuid, key, step)`` index,
which SQLite is told to use (:func:`by_run_index`): it would otherwise pick the primary key,
which starts with ``key``, and read that key's points of every run in the store.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager
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

__all__ = [
    "LOOKUP_KEYS",
    "ExperimentRow",
    "MetricPoint",
    "RunRow",
    "SessionMaker",
    "federation_runs",
    "federation_runs_matching",
    "federation_runs_named",
    "in_text",
    "participant_counts",
    "find_experiment",
    "find_federated_run",
    "find_federation_run",
    "latest_metrics",
    "metric_points",
    "metric_series",
    "params",
    "participant_runs",
    "run_tags",
    "all_points",
    "by_run_index",
    "synergos_experiments",
    "collaboration_counts",
    "tag_key",
]

#: ``SqlAlchemyStore.ManagedSessionMaker``: a context manager that yields a session.
SessionMaker = Callable[[], AbstractContextManager[Any]]

PARENT_TAG = "mlflow.parentRunId"
ACTIVE = "active"
#: Tag keys looked up by value, which our index ``synergos_tags_value`` covers (on PostgreSQL
#: it holds these keys' rows only; see migration ``s0003_read_indexes``).
LOOKUP_KEYS = (
    PARENT_TAG,
    TAG_PARTICIPANT,
    TAG_ROLE,
    TAG_RUN,
    "synergos.study",
    "synergos.trial.request",
)
_METRICS_BY_RUN = "index_metrics_run_uuid_key_step"  # MLflow's own index on metrics


def tag_key(key: str) -> Any:
    """A tag key for a WHERE clause, rendered into the SQL as a literal: PostgreSQL uses a
    partial index only where it can prove the query lies inside it, which a bound parameter
    hides from a cached generic plan."""
    if key not in LOOKUP_KEYS:
        raise ValueError(f"tag {key!r} is not covered by synergos_tags_value")
    return in_text(key)


def in_text(value: str) -> Any:
    """A text value rendered into the SQL as a literal, for a condition whose best plan
    depends on it: a ``LIKE`` pattern. With a bound parameter, once the driver has prepared
    the statement (after five runs) PostgreSQL may keep one generic plan for every pattern, and
    the run-id search then read every id instead of asking the trigram index (42 ms a search
    against 10 at 10M points)."""
    from sqlalchemy import String, bindparam

    return bindparam(None, value, type_=String(), literal_execute=True)


def by_run_index(session: Any, query: Any) -> list[tuple[Any, ...]]:
    """The rows of a Core ``query`` over MLflow's ``metrics`` table (as :func:`_plain_rows`),
    read on SQLite through MLflow's ``(run_uuid, key, step)`` index, named in the SQL
    (``INDEXED BY``; SQLAlchemy renders no table hint for SQLite). Without statistics,
    SQLite's planner prefers the primary key ``(key, timestamp, ...)`` for ``run_uuid IN
    (...) AND key IN (...)`` and then reads and sorts that key's points of every run in the
    store. PostgreSQL's planner has statistics and is left to choose."""
    connection = session.connection()
    if connection.dialect.name != "sqlite":
        return _plain_rows(session, query)
    compiled = query.compile(
        dialect=connection.dialect, compile_kwargs={"render_postcompile": True}
    )
    sql = str(compiled)
    if sql.count("FROM metrics") != 1:
        raise ValueError("by_run_index reads one query over the metrics table")
    sql = sql.replace("FROM metrics", f"FROM metrics INDEXED BY {_METRICS_BY_RUN}")
    params = tuple(compiled.params[name] for name in compiled.positiontup or ())
    return list(connection.exec_driver_sql(sql, params).fetchall())


@dataclass(frozen=True)
class ExperimentRow:
    experiment_id: str
    name: str
    collaboration: str
    project: str
    experiment: str


@dataclass(frozen=True)
class RunRow:
    """A federation (parent) or participant (child) run."""

    run_uuid: str
    experiment_id: str
    synergos_id: str
    status: str | None
    start_time: int | None
    end_time: int | None
    artifact_uri: str | None
    participants: int = 0


@dataclass(frozen=True)
class MetricPoint:
    run_uuid: str
    key: str
    step: int
    value: float | None  # None for NaN
    timestamp: int


def _value(value: float, is_nan: bool) -> float | None:
    return None if is_nan else float(value)


def _fallback_ids(name: str) -> list[str]:
    """An experiment's (collaboration, project, experiment) read from its name, for the
    tags it lacks."""
    parts = name.split("/")
    return parts if len(parts) == 3 else ["", "", name]


def synergos_experiments(
    session_maker: SessionMaker,
    collaboration: str | None = None,
    *,
    ids: Collection[str] | None = None,
) -> list[ExperimentRow]:
    """Every active experiment tagged with a Synergos collaboration (``collaboration``'s
    alone when given, those of ``ids`` alone when given: chosen by the database, so a level
    of the tree or the studies list reads those experiments only, however many others the
    store holds)."""
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlExperimentTag
    from sqlalchemy import select

    keys = (TAG_COLLABORATION, TAG_PROJECT, TAG_EXPERIMENT)
    e, t = SqlExperiment.__table__.c, SqlExperimentTag.__table__.c
    query = (
        select(e.experiment_id, e.name, t.key, t.value)
        .join_from(
            SqlExperiment.__table__, SqlExperimentTag.__table__, t.experiment_id == e.experiment_id
        )  # fmt: skip
        .where(e.lifecycle_stage == ACTIVE, t.key.in_(keys))
    )
    if collaboration is not None:
        own = SqlExperimentTag.__table__.alias("own").c
        query = query.where(e.experiment_id.in_(
            select(own.experiment_id).where(own.key == TAG_COLLABORATION,
                                            own.value == collaboration)
        ))  # fmt: skip
    with session_maker() as session:
        if ids is None:
            rows = _plain_rows(session, query)
        else:
            wanted = sorted({int(i) for i in ids})
            rows = [row for start in range(0, len(wanted), ID_CHUNK)
                    for row in _plain_rows(session, query.where(
                        e.experiment_id.in_(wanted[start : start + ID_CHUNK])))]  # fmt: skip
    found: dict[str, dict[str, str]] = {}
    names: dict[str, str] = {}
    for experiment_id, name, key, value in rows:
        found.setdefault(str(experiment_id), {})[key] = value
        names[str(experiment_id)] = name
    result = []
    for experiment_id, tags in found.items():
        if TAG_COLLABORATION not in tags:
            continue
        fallback = _fallback_ids(names[experiment_id])
        result.append(
            ExperimentRow(
                experiment_id=experiment_id,
                name=names[experiment_id],
                collaboration=tags[TAG_COLLABORATION],
                project=tags.get(TAG_PROJECT, fallback[1]),
                experiment=tags.get(TAG_EXPERIMENT, fallback[2]),
            )
        )
    return result


def collaboration_counts(session_maker: SessionMaker) -> dict[str, tuple[int, int]]:
    """``{collaboration: (projects, experiments)}`` over the active experiments that
    :func:`synergos_experiments` lists, counted by the database: one row per collaboration
    and project comes back (and one per experiment without a project tag, whose project its
    name gives), not one per experiment, so the tree's first level costs what the number
    of collaborations makes it cost."""
    from mlflow.store.tracking.dbmodels.models import SqlExperiment, SqlExperimentTag
    from sqlalchemy import case, func, select

    experiments = SqlExperiment.__table__
    e = experiments.c
    c = SqlExperimentTag.__table__.alias("c")
    p = SqlExperimentTag.__table__.alias("p")
    untagged = case((p.c.experiment_id.is_(None), e.name))
    query = (
        select(c.c.value, p.c.value, untagged, func.count())
        .select_from(experiments)
        .join(c, (c.c.experiment_id == e.experiment_id) & (c.c.key == TAG_COLLABORATION))
        .outerjoin(p, (p.c.experiment_id == e.experiment_id) & (p.c.key == TAG_PROJECT))
        .where(e.lifecycle_stage == ACTIVE)
        .group_by(c.c.value, p.c.value, untagged)
    )
    with session_maker() as session:
        rows = _plain_rows(session, query)
    projects: dict[str, set[str]] = {}
    counts: dict[str, int] = {}
    for collaboration, project, name, count in rows:
        if name is not None:  # no project tag
            project = _fallback_ids(name)[1]
        projects.setdefault(collaboration, set()).add(project)
        counts[collaboration] = counts.get(collaboration, 0) + int(count)
    return {name: (len(projects[name]), counts[name]) for name in projects}


def find_experiment(session_maker: SessionMaker, name: str) -> str | None:
    """The id of the active experiment called ``name``, or None."""
    with session_maker() as session:
        return _experiment_id(session, name)


def _experiment_id(session: Any, name: str) -> str | None:
    from mlflow.store.tracking.dbmodels.models import SqlExperiment
    from sqlalchemy import select

    experiments = SqlExperiment.__table__.c
    query = select(experiments.experiment_id).where(
        experiments.name == name, experiments.lifecycle_stage == ACTIVE
    )
    row = session.execute(query.limit(1)).first()
    return None if row is None else str(row[0])


@functools.cache
def _runs_of_role(role: str, id_tag: str) -> Any:
    """Runs of one role with their Synergos id, as a Core select (built once: the callers add
    their own conditions; building an ORM query each time cost more than running it). The
    role's value is compared as an expression (``value || ''``), which no index serves: every
    run has a role, so the runs are to be found by what the caller filters on (an experiment,
    an id, a parent), never by reading every run of that role, which SQLite's planner would do
    without statistics."""
    from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
    from sqlalchemy import and_, select

    runs, tags = SqlRun.__table__, SqlTag.__table__
    role_tag, id_value = tags.alias("role_tag"), tags.alias("id_value")
    return (
        select(
            runs.c.run_uuid,
            runs.c.experiment_id,
            id_value.c.value,
            runs.c.name,
            runs.c.status,
            runs.c.start_time,
            runs.c.end_time,
            runs.c.artifact_uri,
        )
        .select_from(
            runs.join(
                role_tag,
                and_(
                    role_tag.c.run_uuid == runs.c.run_uuid,
                    role_tag.c.key == tag_key(TAG_ROLE),
                    role_tag.c.value.concat("") == role,
                ),
            ).outerjoin(
                id_value,
                and_(id_value.c.run_uuid == runs.c.run_uuid, id_value.c.key == tag_key(id_tag)),
            )
        )
        .where(runs.c.lifecycle_stage == ACTIVE)
    )


def _runs() -> Any:
    from mlflow.store.tracking.dbmodels.models import SqlRun

    return SqlRun.__table__.c


def _tagged(key: str, value: str) -> Any:
    """The ids of the runs tagged ``key = value`` (through our tag index)."""
    from mlflow.store.tracking.dbmodels.models import SqlTag
    from sqlalchemy import select

    tags = SqlTag.__table__.c
    return select(tags.run_uuid).where(tags.key == tag_key(key), tags.value == value)


def _run_row(row: Sequence[Any], participants: int = 0) -> RunRow:
    run_uuid, experiment_id, synergos_id, name, status, start, end, artifact_uri = row
    return RunRow(
        run_uuid=run_uuid,
        experiment_id=str(experiment_id),
        synergos_id=synergos_id if synergos_id is not None else (name or run_uuid),
        status=status,
        start_time=start,
        end_time=end,
        artifact_uri=artifact_uri,
        participants=participants,
    )


@functools.cache
def _counts_of_participants() -> Any:
    from mlflow.store.tracking.dbmodels.models import SqlRun, SqlTag
    from sqlalchemy import and_, bindparam, func, select

    runs, tags = SqlRun.__table__, SqlTag.__table__
    parent, role = tags.alias("parent"), tags.alias("role")
    return (
        select(parent.c.value, func.count(runs.c.run_uuid))
        .select_from(
            parent.join(runs, runs.c.run_uuid == parent.c.run_uuid).join(
                role,
                and_(
                    role.c.run_uuid == parent.c.run_uuid,
                    role.c.key == tag_key(TAG_ROLE),
                    role.c.value == ROLE_PARTICIPANT,
                ),
            )
        )
        .where(
            parent.c.key == tag_key(PARENT_TAG),
            parent.c.value.in_(bindparam("parents", expanding=True)),
            runs.c.lifecycle_stage == ACTIVE,
        )
        .group_by(parent.c.value)
    )


def _participant_counts(session: Any, parent_uuids: Iterable[str]) -> dict[str, int]:
    parents = list(parent_uuids)
    if not parents:
        return {}
    rows = session.execute(_counts_of_participants(), {"parents": parents})
    return {value: int(count) for value, count in rows}


def federation_runs(
    session_maker: SessionMaker, experiment_ids: Sequence[str], *, counted: bool = True
) -> list[RunRow]:
    """The federation (parent) runs of these experiments, each with its participant count
    (0 for every run when not ``counted``: see :func:`participant_counts`)."""
    if not experiment_ids:
        return []
    with session_maker() as session:
        query = _runs_of_role(ROLE_FEDERATION, TAG_RUN).where(
            _runs().experiment_id.in_([int(e) for e in experiment_ids])
        )
        rows = session.execute(query).all()
        counts = _participant_counts(session, (row[0] for row in rows)) if counted else {}
    return [_run_row(row, counts.get(row[0], 0)) for row in rows]


def participant_counts(session_maker: SessionMaker, parent_uuids: Sequence[str]) -> dict[str, int]:
    """``{parent run: how many participant runs}`` (parents without any are left out)."""
    with session_maker() as session:
        return _participant_counts(session, parent_uuids)


def federation_runs_matching(
    session_maker: SessionMaker, text: str, experiment_ids: Sequence[str]
) -> list[RunRow]:
    """The federation runs of these experiments whose Synergos id holds ``text`` (any case),
    without participant counts. The ids holding it are found through the trigram index of
    ``storage.run_search`` (SQLite's FTS5 table; PostgreSQL's planner picks its ``pg_trgm``
    index for the ``LIKE``) where the text has a trigram, else by reading the ``synergos.run``
    entries of our tag index."""
    from mlflow.store.tracking.dbmodels.models import SqlTag
    from sqlalchemy import func, select
    from sqlalchemy import text as sql

    from synergos_mlops.storage.run_search import SEARCH_TABLE, fts_phrase, has_run_search

    if not experiment_ids or not text or not text.isprintable():
        return []  # an id is printable text (federation.validate_id): none holds this one
    with session_maker() as session:
        connection = session.connection()
        named: Any
        if len(text) >= 3 and connection.dialect.name == "sqlite" and has_run_search(connection):
            named = sql(
                f"SELECT run_uuid FROM {SEARCH_TABLE} WHERE {SEARCH_TABLE} MATCH :phrase"
            ).bindparams(phrase=fts_phrase(text))
        else:
            # Both sides folded by the database's lower(): SQLite's folds ASCII letters only,
            # and a text folded by Python's would then miss the very id it was typed from.
            escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            tags = SqlTag.__table__.c
            named = select(tags.run_uuid).where(
                tags.key == tag_key(TAG_RUN),
                func.lower(tags.value).like(func.lower(in_text(f"%{escaped}%")), escape="\\"),
            )
        query = _runs_of_role(ROLE_FEDERATION, TAG_RUN).where(
            _runs().run_uuid.in_(named),
            _runs().experiment_id.in_([int(e) for e in experiment_ids]),
        )
        rows = session.execute(query).all()
    return [_run_row(row) for row in rows]


#: Run ids per query when runs are asked for by id (well under SQLite's 32,766 variables).
ID_CHUNK = 5000


def federation_runs_named(session_maker: SessionMaker, run_uuids: Sequence[str]) -> list[RunRow]:
    """Those of these runs that are active federation runs, without participant counts,
    found by their ids (MLflow's primary key): the cost follows the ids asked for, not the
    runs the store holds."""
    ids = list(dict.fromkeys(run_uuids))
    found: list[RunRow] = []
    with session_maker() as session:
        for start in range(0, len(ids), ID_CHUNK):
            query = _runs_of_role(ROLE_FEDERATION, TAG_RUN).where(
                _runs().run_uuid.in_(ids[start : start + ID_CHUNK])
            )
            rows = session.execute(query).all()
            found += [_run_row(row) for row in rows]
    return found


def find_federation_run(
    session_maker: SessionMaker, experiment_id: str, run_id: str
) -> RunRow | None:
    """The federation run ``run_id`` of an experiment (the latest started, if logged twice)."""
    with session_maker() as session:
        return _federation_run(session, experiment_id, run_id)


def _federation_run(session: Any, experiment_id: str, run_id: str) -> RunRow | None:
    runs = _runs()
    query = (
        _runs_of_role(ROLE_FEDERATION, TAG_RUN)
        .where(
            runs.experiment_id == int(experiment_id), runs.run_uuid.in_(_tagged(TAG_RUN, run_id))
        )
        .order_by(runs.start_time.desc())
        .limit(1)
    )
    row = session.execute(query).first()
    if row is None:
        return None
    counts = _participant_counts(session, [row[0]])
    return _run_row(row, counts.get(row[0], 0))


def participant_runs(session_maker: SessionMaker, parent_uuid: str) -> list[RunRow]:
    """The participant (child) runs of a federation run, sorted by participant id."""
    with session_maker() as session:
        return _participant_runs(session, parent_uuid)


def _participant_runs(session: Any, parent_uuid: str) -> list[RunRow]:
    query = _runs_of_role(ROLE_PARTICIPANT, TAG_PARTICIPANT).where(
        _runs().run_uuid.in_(_tagged(PARENT_TAG, parent_uuid))
    )
    rows = session.execute(query).all()
    return sorted((_run_row(row) for row in rows), key=lambda r: r.synergos_id)


def find_federated_run(
    session_maker: SessionMaker, experiment_name: str, run_id: str
) -> tuple[str | None, RunRow | None, list[RunRow]]:
    """A federated run in one session: the id of the active experiment ``experiment_name``
    (None when there is none), its federation run ``run_id`` (None when there is none) and
    that run's participant runs (as :func:`participant_runs`)."""
    with session_maker() as session:
        experiment_id = _experiment_id(session, experiment_name)
        if experiment_id is None:
            return None, None, []
        parent = _federation_run(session, experiment_id, run_id)
        if parent is None:
            return experiment_id, None, []
        return experiment_id, parent, _participant_runs(session, parent.run_uuid)


def run_tags(session_maker: SessionMaker, run_uuid: str) -> dict[str, str]:
    from mlflow.store.tracking.dbmodels.models import SqlTag

    with session_maker() as session:
        rows = session.query(SqlTag.key, SqlTag.value).filter(SqlTag.run_uuid == run_uuid)
        return {key: value for key, value in rows.all()}


def all_points(
    session_maker: SessionMaker, run_uuid: str, keys: Sequence[str]
) -> dict[str, list[MetricPoint]]:
    """Every stored point of these keys of one run, several at one step included, in the
    order they were logged (timestamp, then step)."""
    from mlflow.store.tracking.dbmodels.models import SqlMetric
    from sqlalchemy import select

    if not keys:
        return {}
    m = SqlMetric.__table__.c
    query = (
        select(m.key, m.step, m.value, m.is_nan, m.timestamp)
        .where(m.run_uuid == run_uuid, m.key.in_(list(keys)))
        .order_by(m.key, m.timestamp, m.step)
    )
    found: dict[str, list[MetricPoint]] = {}
    with session_maker() as session:
        for key, step, value, is_nan, timestamp in by_run_index(session, query):
            point = MetricPoint(run_uuid, key, int(step), _value(value, is_nan), int(timestamp))
            found.setdefault(key, []).append(point)
    return found


def params(session_maker: SessionMaker, run_uuid: str) -> dict[str, str]:
    from mlflow.store.tracking.dbmodels.models import SqlParam

    with session_maker() as session:
        rows = session.query(SqlParam.key, SqlParam.value).filter(SqlParam.run_uuid == run_uuid)
        return {key: value for key, value in rows.all()}


def latest_metrics(session_maker: SessionMaker, run_uuids: Sequence[str]) -> list[MetricPoint]:
    """The latest point of every metric of these runs (MLflow's ``latest_metrics`` table)."""
    from mlflow.store.tracking.dbmodels.models import SqlLatestMetric as M

    if not run_uuids:
        return []
    with session_maker() as session:
        rows = (
            session.query(M.run_uuid, M.key, M.step, M.value, M.is_nan, M.timestamp)
            .filter(M.run_uuid.in_(list(run_uuids)))
            .all()
        )
    return [
        MetricPoint(run, key, int(step), _value(value, is_nan), int(timestamp))
        for run, key, step, value, is_nan, timestamp in rows
    ]


def _plain_rows(session: Any, query: Any) -> list[tuple[Any, ...]]:
    """The rows of a Core ``query`` as the driver's plain tuples.

    The statement runs through SQLAlchemy (compiled for the dialect, its events fired), but
    the rows are taken from the driver's cursor: SQLAlchemy's ``Row`` objects cost more than
    the database itself for long series (255,000 points on SQLite: 1.1 s through ``Row``s,
    0.45 s as tuples). Columns come as the driver gives them (``is_nan`` is 0/1 on SQLite).
    """
    result = session.connection().execute(query)
    try:
        return list(result.cursor.fetchall())
    finally:
        result.close()


def metric_series(
    session_maker: SessionMaker, run_uuids: Sequence[str], keys: Sequence[str]
) -> dict[str, dict[str, tuple[list[int], list[float | None]]]]:
    """Every point of these keys for these runs, in one query (three on SQLite).

    Returns ``{key: {run_uuid: (steps, values)}}``, steps ascending, NaN as None; a step
    logged more than once keeps its latest value (by timestamp), as MLflow's own history
    does last. The points are read as typed columns (:func:`series.metric_lines`).
    """
    from synergos_mlops.storage.series import metric_lines

    return {
        key: {
            run: (line.steps.tolist(), [None if v != v else v for v in line.values.tolist()])
            for run, line in per_run.items()
        }
        for key, per_run in metric_lines(session_maker, run_uuids, keys).items()
    }


def metric_points(session_maker: SessionMaker, run_uuid: str) -> list[MetricPoint]:
    """Every stored point of one run, as MLflow's ``metrics`` table holds them (a step logged
    twice is two points), by key, step and timestamp."""
    from mlflow.store.tracking.dbmodels.models import SqlMetric
    from sqlalchemy import select

    m = SqlMetric.__table__.c
    query = (
        select(m.key, m.step, m.timestamp, m.value, m.is_nan)
        .where(m.run_uuid == run_uuid)
        .order_by(m.key, m.step, m.timestamp)
    )
    with session_maker() as session:
        rows = by_run_index(session, query)
    return [
        MetricPoint(run_uuid, key, int(step), _value(value, is_nan), int(timestamp))
        for key, step, timestamp, value, is_nan in rows
    ]
