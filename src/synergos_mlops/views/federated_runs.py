"""Federated runs as the Synergos API shows them, read from MLflow's stores.

``Backend`` is what a reader needs: the tracking store's session maker and the artifact
repository of the server's artifacts destination. The server takes MLflow's own; the
command line can build one over a store folder. Everything here only reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from synergos_mlops.errors import StoreError, SynergosError
from synergos_mlops.federation import ExperimentIds, validate_id
from synergos_mlops.storage import reads
from synergos_mlops.storage.reads import RunRow
from synergos_mlops.storage.series import metric_lines
from synergos_mlops.views.series import (
    TYPED_FORMAT,
    SeriesQuery,
    line_answer,
    series_axis,
    shaped_lines,
)

__all__ = [
    "Backend",
    "DEPTHS",
    "FederatedRun",
    "TreeQuery",
    "NotFoundError",
    "collaboration_tree",
    "resolve_run",
    "run_detail",
    "run_series",
    "tree_part",
]


class NotFoundError(SynergosError, LookupError):
    """A collaboration, project, experiment, run, participant, metric or artifact that is not
    there; the message names it."""


@dataclass(frozen=True)
class Backend:
    """The stores one reader uses."""

    session_maker: reads.SessionMaker
    artifacts: Any | None  # the artifact repository of the artifacts destination
    registry: Any | None = None  # MLflow's model registry store, when there is one
    engine: Any | None = None  # the SQLAlchemy engine, for our own tables (central logs)

    @classmethod
    def of_server(cls) -> Backend:
        """MLflow's own stores, inside a running tracking server."""
        from mlflow.server import ARTIFACTS_DESTINATION_ENV_VAR
        from mlflow.server.handlers import (
            _get_artifact_repo_mlflow_artifacts,
            _get_tracking_store,
        )

        store = _get_tracking_store()
        session_maker = getattr(store, "ManagedSessionMaker", None)
        if session_maker is None:
            raise StoreError("the Synergos API needs a database backend store")
        artifacts = None
        if os.environ.get(ARTIFACTS_DESTINATION_ENV_VAR):
            artifacts = _get_artifact_repo_mlflow_artifacts()
        return cls(session_maker, artifacts, _server_registry(), getattr(store, "engine", None))

    @classmethod
    def of_store_folder(cls, folder: str | os.PathLike[str]) -> Backend:
        """The stores of a store folder (``mlflow.db`` and ``artifacts/``), opened here."""
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        from synergos_mlops.store import StoreFolder

        store_folder = StoreFolder.at(folder)
        if not store_folder.db_path.is_file():
            raise StoreError(f"store {store_folder.path} holds no {store_folder.db_path.name}")
        store = SqlAlchemyStore(store_folder.backend_store_uri, str(store_folder.artifacts_path))
        artifacts = get_artifact_repository(str(store_folder.artifacts_path))
        from mlflow.store.model_registry.sqlalchemy_store import (
            SqlAlchemyStore as RegistryStore,
        )

        registry = RegistryStore(store_folder.backend_store_uri)
        return cls(store.ManagedSessionMaker, artifacts, registry, store.engine)

    def artifact_roots(self, run: RunRow) -> list[tuple[Any, str]]:
        """Every place that holds a run's artifacts: its artifact URI, and for a run whose
        files lie in a folder another writer owns (a mirrored file store) also the proxied
        location where uploads through the server go (see ``storage.runs.upload_uri``)."""
        from synergos_mlops.storage.runs import upload_uri

        roots = [self.artifact_root(run)]
        uri = run.artifact_uri or ""
        uploads = upload_uri(run.experiment_id, run.run_uuid, uri)
        if uploads != uri and self.artifacts is not None:
            roots.append((self.artifacts, urlparse(uploads).path.strip("/")))
        return roots

    def artifact_root(self, run: RunRow) -> tuple[Any, str]:
        """The repository holding a run's artifacts and the run's folder inside it."""
        uri = run.artifact_uri or ""
        parsed = urlparse(uri)
        if parsed.scheme == "mlflow-artifacts":
            if self.artifacts is None:
                raise StoreError("the server has no artifacts destination to read artifacts from")
            return self.artifacts, parsed.path.strip("/")
        from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

        if not uri:
            raise StoreError(f"run {run.synergos_id!r} has no artifact location")
        return get_artifact_repository(uri), ""


def _server_registry() -> Any | None:
    """The running server's model registry store; None when it has none (a registry that
    cannot be opened must not take the run's other data down with it)."""
    from mlflow.server.handlers import _get_model_registry_store

    try:
        return _get_model_registry_store()
    except Exception:  # noqa: BLE001 - MLflow raises several kinds for "no registry here"
        return None


@dataclass(frozen=True)
class FederatedRun:
    """One federated run, resolved from its ids: the parent run and its participants."""

    ids: ExperimentIds
    run_id: str
    experiment_id: str
    parent: RunRow
    participants: tuple[RunRow, ...] = field(default=())

    def participant(self, participant_id: str) -> RunRow:
        validate_id("participant", participant_id)
        for row in self.participants:
            if row.synergos_id == participant_id:
                return row
        raise NotFoundError(f"participant {participant_id!r} not found in run {self.run_id!r}")

    @property
    def run_uuids(self) -> list[str]:
        return [self.parent.run_uuid, *(p.run_uuid for p in self.participants)]

    def owner_of(self, run_uuid: str) -> str | None:
        """None for the global run, else the participant id."""
        if run_uuid == self.parent.run_uuid:
            return None
        for row in self.participants:
            if row.run_uuid == run_uuid:
                return row.synergos_id
        return None


def iso_time(millis: int | None) -> str | None:
    if millis is None:
        return None
    moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def mlflow_run_url(experiment_id: str, run_uuid: str) -> str:
    """The MLflow UI's page of a run, relative to the server's root."""
    return f"/#/experiments/{experiment_id}/runs/{run_uuid}"


def _run_summary(row: RunRow) -> dict[str, Any]:
    return {
        "id": row.synergos_id,
        "status": row.status,
        "start_time": iso_time(row.start_time),
        "end_time": iso_time(row.end_time),
        "participant_count": row.participants,
        "mlflow_run_id": row.run_uuid,
    }


def collaboration_tree(backend: Backend) -> list[dict[str, Any]]:
    """Collaborations → projects → experiments → runs, sorted by id; runs by start time."""
    experiments = reads.synergos_experiments(backend.session_maker)
    runs = reads.federation_runs(backend.session_maker, [e.experiment_id for e in experiments])
    by_experiment: dict[str, list[RunRow]] = {}
    for row in runs:
        by_experiment.setdefault(row.experiment_id, []).append(row)
    tree: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for experiment in experiments:
        rows = sorted(
            by_experiment.get(experiment.experiment_id, []),
            key=lambda r: (r.start_time or 0, r.synergos_id),
        )
        tree.setdefault(experiment.collaboration, {}).setdefault(experiment.project, []).append(
            {
                "id": experiment.experiment,
                "mlflow_experiment_id": experiment.experiment_id,
                "runs": [_run_summary(r) for r in rows],
            }
        )
    return [
        {
            "id": collaboration,
            "projects": [
                {"id": project, "experiments": sorted(exps, key=lambda e: e["id"])}
                for project, exps in sorted(projects.items())
            ],
        }
        for collaboration, projects in sorted(tree.items())
    ]


DEPTHS = ("collaborations", "projects", "experiments", "runs")
#: Runs listed at most for a search (the answer says ``truncated`` when more matched).
SEARCH_LIMIT = 200


@dataclass(frozen=True)
class TreeQuery:
    """A part of the tree, so that what is sent and read stays the same size however many
    runs the store holds: the levels down to ``depth``, under the given ids, runs paged
    (``offset``, ``limit``); or, with ``search``, the runs whose ids (or whose
    collaboration's, project's or experiment's) hold the text, at most ``limit``."""

    collaboration: str | None = None
    project: str | None = None
    experiment: str | None = None
    depth: str = "runs"
    search: str | None = None
    limit: int | None = None
    offset: int = 0

    @property
    def whole(self) -> bool:
        return self == TreeQuery()


def _sorted_runs(rows: Iterable[RunRow]) -> list[RunRow]:
    return sorted(rows, key=lambda r: (r.start_time or 0, r.synergos_id))


def _levels(
    experiments: Sequence[reads.ExperimentRow],
) -> dict[str, dict[str, list[reads.ExperimentRow]]]:
    tree: dict[str, dict[str, list[reads.ExperimentRow]]] = {}
    for experiment in sorted(experiments, key=lambda e: (e.collaboration, e.project,
                                                         e.experiment)):  # fmt: skip
        tree.setdefault(experiment.collaboration, {}).setdefault(experiment.project, []).append(
            experiment
        )
    return tree


def _experiment_item(
    backend: Backend, experiment: reads.ExperimentRow, rows: list[RunRow] | None,
    total: int | None, query: TreeQuery,
) -> dict[str, Any]:  # fmt: skip
    item: dict[str, Any] = {"id": experiment.experiment,
                            "mlflow_experiment_id": experiment.experiment_id}  # fmt: skip
    if total is not None:
        item["run_count"] = total
    if rows is not None:
        item["runs"] = [_run_summary(r) for r in rows]
    return item


def tree_part(
    backend: Backend, query: TreeQuery, readable: Callable[[str], bool] | None = None
) -> dict[str, Any]:
    """The part of :func:`collaboration_tree` that ``query`` asks for, as the API's answer:
    ``{"collaborations": [...]}`` with the same items and fields, where a level not loaded
    has its count instead (``project_count``, ``experiment_count``, ``run_count``), a paged
    experiment has its ``run_count`` and, when more runs follow, ``next_offset``, and a
    search says ``truncated`` when it listed ``limit`` runs of more. Items the ``readable``
    predicate (of an MLflow experiment id) refuses are left out, counts included."""
    if query.depth not in DEPTHS:
        raise SynergosError(f"depth must be one of {', '.join(DEPTHS)}, not {query.depth!r}")
    if query.limit is not None and query.limit < 1:
        raise SynergosError("limit must be at least 1")
    if query.offset < 0:
        raise SynergosError("offset must not be negative")
    if (query.depth == DEPTHS[0] and readable is None and not query.search
            and query.project is None and query.experiment is None):  # fmt: skip
        sizes = reads.collaboration_counts(backend.session_maker)
        return {"collaborations": [
            {"id": name, "project_count": projects, "experiment_count": experiments}
            for name, (projects, experiments) in sorted(sizes.items())
            if query.collaboration is None or name == query.collaboration
        ]}  # fmt: skip
    experiments = [
        e for e in reads.synergos_experiments(backend.session_maker, query.collaboration)
        if (query.project is None or e.project == query.project)
        and (query.experiment is None or e.experiment == query.experiment)
        and (readable is None or readable(e.experiment_id))
    ]  # fmt: skip
    answer: dict[str, Any] = {}
    runs: dict[str, list[RunRow]] = {}
    totals: dict[str, int] = {}
    depth = DEPTHS.index(query.depth)
    if query.search:
        text = query.search.casefold()
        limit = min(query.limit or SEARCH_LIMIT, SEARCH_LIMIT)
        by_id = [e for e in experiments
                 if any(text in part.casefold() for part in (e.collaboration, e.project,
                                                             e.experiment))]  # fmt: skip
        matched = reads.federation_runs_matching(
            backend.session_maker, query.search, [e.experiment_id for e in experiments]
        )
        found = {r.run_uuid: r for r in matched if text in r.synergos_id.casefold()}
        if by_id:
            for row in reads.federation_runs(
                backend.session_maker, [e.experiment_id for e in by_id], counted=False
            ):
                found[row.run_uuid] = row
        ordered = sorted(found.values(), key=lambda r: (r.experiment_id, r.start_time or 0,
                                                        r.synergos_id))  # fmt: skip
        answer["truncated"] = len(ordered) > limit
        ordered = ordered[:limit]
        counts = reads.participant_counts(backend.session_maker, [r.run_uuid for r in ordered])
        for row in ordered:
            runs.setdefault(row.experiment_id, []).append(
                replace(row, participants=counts.get(row.run_uuid, 0))
            )
        keep = {e.experiment_id for e in by_id} | set(runs)
        experiments = [e for e in experiments if e.experiment_id in keep]
        runs = {k: _sorted_runs(v) for k, v in runs.items()}
        depth = DEPTHS.index("runs")
    elif depth == DEPTHS.index("runs"):
        rows = _sorted_runs(reads.federation_runs(
            backend.session_maker, [e.experiment_id for e in experiments], counted=False
        ))  # fmt: skip
        for row in rows:
            runs.setdefault(row.experiment_id, []).append(row)
        for experiment_id, listed in list(runs.items()):
            totals[experiment_id] = len(listed)
            end = None if query.limit is None else query.offset + query.limit
            runs[experiment_id] = listed[query.offset : end]
        shown = [r.run_uuid for page in runs.values() for r in page]
        counts = reads.participant_counts(backend.session_maker, shown)
        runs = {k: [replace(r, participants=counts.get(r.run_uuid, 0)) for r in v]
                for k, v in runs.items()}  # fmt: skip
    elif depth == DEPTHS.index("experiments"):
        for row in reads.federation_runs(
            backend.session_maker, [e.experiment_id for e in experiments], counted=False
        ):
            totals[row.experiment_id] = totals.get(row.experiment_id, 0) + 1
    collaborations = []
    for collaboration, projects in sorted(_levels(experiments).items()):
        item: dict[str, Any] = {"id": collaboration}
        if depth == 0:
            item["project_count"] = len(projects)
            item["experiment_count"] = sum(len(e) for e in projects.values())
            collaborations.append(item)
            continue
        item["projects"] = []
        for project, own in sorted(projects.items()):
            level: dict[str, Any] = {"id": project}
            if depth == 1:
                level["experiment_count"] = len(own)
            else:
                level["experiments"] = []
                for experiment in own:
                    shown_runs = runs.get(experiment.experiment_id, []) if depth == 3 else None
                    total = None
                    if depth == 2 or (depth == 3 and not query.search):
                        total = totals.get(experiment.experiment_id, 0)
                    entry = _experiment_item(backend, experiment, shown_runs, total, query)
                    if (depth == 3 and not query.search and query.limit is not None
                            and query.offset + query.limit < (total or 0)):  # fmt: skip
                        entry["next_offset"] = query.offset + query.limit
                    level["experiments"].append(entry)
            item["projects"].append(level)
        collaborations.append(item)
    return {"collaborations": collaborations, **answer}


def newest_runs(
    backend: Backend, limit: int, readable: Callable[[str], bool] | None = None
) -> dict[str, Any]:
    """The ``limit`` newest federation runs of every experiment ``readable`` lets through,
    newest first, each with its collaboration, project and experiment; and how many runs
    there are, and how many of them are running. One read of the runs' rows, whatever the
    limit; participants are counted for the runs listed only."""
    if limit < 1:
        raise SynergosError("limit must be at least 1")
    experiments = {
        e.experiment_id: e for e in reads.synergos_experiments(backend.session_maker)
        if readable is None or readable(e.experiment_id)
    }  # fmt: skip
    rows = reads.federation_runs(backend.session_maker, list(experiments), counted=False)
    newest = sorted(rows, key=lambda r: (r.start_time or 0, r.synergos_id), reverse=True)
    newest = newest[:limit]
    counts = reads.participant_counts(backend.session_maker, [r.run_uuid for r in newest])
    listed = []
    for row in newest:
        experiment = experiments[row.experiment_id]
        listed.append({
            "collaboration": experiment.collaboration, "project": experiment.project,
            "experiment": experiment.experiment,
            **_run_summary(replace(row, participants=counts.get(row.run_uuid, 0))),
        })  # fmt: skip
    return {
        "runs": listed,
        "run_count": len(rows),
        "running": sum(1 for r in rows if r.status == "RUNNING"),
    }


def missing_level(backend: Backend, ids: ExperimentIds) -> str:
    known = reads.synergos_experiments(backend.session_maker)
    if not any(e.collaboration == ids.collaboration for e in known):
        return f"collaboration {ids.collaboration!r} not found"
    if not any(e.collaboration == ids.collaboration and e.project == ids.project for e in known):
        return f"project {ids.project!r} not found in collaboration {ids.collaboration!r}"
    return (
        f"experiment {ids.experiment!r} not found in project {ids.project!r} of "
        f"collaboration {ids.collaboration!r}"
    )


def resolve_run(
    backend: Backend, collaboration: str, project: str, experiment: str, run: str
) -> FederatedRun:
    """Find a federated run by its ids; raise InvalidIdError or NotFoundError naming it."""
    ids = ExperimentIds(collaboration, project, experiment)
    validate_id("run", run)
    experiment_id, parent, participants = reads.find_federated_run(
        backend.session_maker, ids.name, run
    )
    if experiment_id is None:
        raise NotFoundError(missing_level(backend, ids))
    if parent is None:
        raise NotFoundError(f"run {run!r} not found in experiment {ids.name!r}")
    return FederatedRun(ids, run, experiment_id, parent, tuple(participants))


def _latest(points: Iterable[reads.MetricPoint]) -> dict[str, dict[str, Any]]:
    return {
        p.key: {"value": p.value, "step": p.step, "timestamp": p.timestamp}
        for p in sorted(points, key=lambda p: p.key)
    }


UNATTRIBUTED_NOTE = (
    "Logged by the original Synergos TTP with the class index as the step and every "
    "participant's and stage's values on that one step: kept as logged, in the order logged, "
    "attributable to no participant, stage or round."
)


def _unattributed(backend: Backend, run: FederatedRun, keys: list[str]) -> dict[str, Any]:
    points = reads.all_points(backend.session_maker, run.parent.run_uuid, keys)
    return {
        "note": UNATTRIBUTED_NOTE,
        "statistics": [
            {
                "key": key,
                "points": [
                    {"step": p.step, "value": p.value, "timestamp": p.timestamp}
                    for p in points.get(key, [])
                ],
            }
            for key in keys
        ],
    }


def run_detail(backend: Backend, run: FederatedRun) -> dict[str, Any]:
    """Everything the run view shows but the series and the artifact listing."""
    from synergos_mlops.federation import is_legacy_statistic
    from synergos_mlops.legacy import SOURCE_FILE_STORE, TAG_SOURCE

    latest = reads.latest_metrics(backend.session_maker, run.run_uuids)
    parent = run.parent
    source = reads.run_tags(backend.session_maker, parent.run_uuid).get(TAG_SOURCE)
    unattributed: list[str] = []
    if source == SOURCE_FILE_STORE:
        unattributed = sorted(
            {p.key for p in latest if p.run_uuid == parent.run_uuid and is_legacy_statistic(p.key)}
        )
        latest = [p for p in latest if p.key not in unattributed]
    by_run: dict[str, list[reads.MetricPoint]] = {}
    for point in latest:
        by_run.setdefault(point.run_uuid, []).append(point)
    keys = sorted({p.key for p in latest})
    return {
        "source": source,
        "unattributed": _unattributed(backend, run, unattributed) if unattributed else None,
        "collaboration": run.ids.collaboration,
        "project": run.ids.project,
        "experiment": run.ids.experiment,
        "run": run.run_id,
        "status": parent.status,
        "start_time": iso_time(parent.start_time),
        "end_time": iso_time(parent.end_time),
        "hyperparameters": dict(
            sorted(reads.params(backend.session_maker, parent.run_uuid).items())
        ),
        "participants": [
            {
                "id": p.synergos_id,
                "status": p.status,
                "start_time": iso_time(p.start_time),
                "end_time": iso_time(p.end_time),
                "mlflow_run_id": p.run_uuid,
                "mlflow_url": mlflow_run_url(p.experiment_id, p.run_uuid),
            }
            for p in run.participants
        ],
        "metric_keys": keys,
        "latest_metrics": {
            "global": _latest(by_run.get(parent.run_uuid, [])),
            "participants": {
                p.synergos_id: _latest(by_run.get(p.run_uuid, [])) for p in run.participants
            },
        },
        "mlflow": {
            "experiment_id": run.experiment_id,
            "run_id": parent.run_uuid,
            "url": mlflow_run_url(run.experiment_id, parent.run_uuid),
        },
    }


def run_series(
    backend: Backend,
    run: FederatedRun,
    keys: Sequence[str],
    query: SeriesQuery | None = None,
) -> dict[str, Any]:
    """The series of ``keys`` for the global run and every participant, in one query (two on
    SQLite): as JSON lists, or typed columns, cut to a step window and decimated as ``query``
    asks (:mod:`synergos_mlops.views.series`)."""
    query = query or SeriesQuery()
    series = metric_lines(
        backend.session_maker, run.run_uuids, keys, first=query.first, last=query.last
    )
    missing = [key for key in keys if key not in series]
    if missing and query.windowed:  # a key may have no point in the window
        logged = {p.key for p in reads.latest_metrics(backend.session_maker, run.run_uuids)}
        missing = [key for key in missing if key not in logged]
    if missing:
        raise NotFoundError(
            f"metric {missing[0]!r} not found in run {run.run_id!r}"
            + (f" (nor {len(missing) - 1} more)" if len(missing) > 1 else "")
        )
    order = {uuid: index for index, uuid in enumerate(run.run_uuids)}
    out: dict[str, Any] = {}
    for key in keys:
        per_run = shaped_lines(series.get(key, {}), query)
        entry: dict[str, Any] = {"axis": series_axis(key), "global": None, "participants": {}}
        if not query.plain:
            entry["decimated"] = any(line.decimated for line in per_run.values())
        for run_uuid, line in sorted(per_run.items(), key=lambda i: order[i[0]]):
            answer = line_answer(line, query)
            owner = run.owner_of(run_uuid)
            if owner is None:
                entry["global"] = answer
            else:
                entry["participants"][owner] = answer
        out[key] = entry
    body: dict[str, Any] = {"run": run.run_id, "keys": list(keys), "series": out}
    if query.format == "typed":
        body["format"] = TYPED_FORMAT
    if not query.plain:
        body.update(points=query.points, min_step=query.first, max_step=query.last)
    return body
