"""Studies and run comparison in the Synergos API (see docs/studies.md).

Reads: ``GET /studies``, ``GET /studies/{c}/{p}/{e}/{study}``, ``GET /compare?run=c/p/e/r&...``.
Writes, for the tracker (``tracker.study``, ``study.trial``): ``POST /studies/define`` and
``POST /studies/trials/resolve``, both under the database's resolution lock, so trials added
through several replicas at once are numbered once. Errors have the API's one shape.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Annotated, Any, TypeVar
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from synergos_mlops.federation import ExperimentIds
from synergos_mlops.server.auth.viewer import (
    authorize_resolve,
    current_viewer,
    grant_creator,
    visible_run,
)
from synergos_mlops.server.http import API_PREFIX, ERRORS, ApiError, parse_keys
from synergos_mlops.server.http import answer as api_answer
from synergos_mlops.views.federated_runs import Backend, NotFoundError, resolve_run

__all__ = ["MAX_COMPARED", "read_router", "router"]

#: The reads, in the API's OpenAPI document; the tracker's writes are not (like metrics/bulk).
read_router = APIRouter(prefix=API_PREFIX, tags=["synergos"])
write_router = APIRouter(prefix=API_PREFIX)
T = TypeVar("T")
MAX_COMPARED = 10
STUDY = "/studies/{collaboration}/{project}/{experiment}/{study}"


def _answer(work: Callable[[], T]) -> T:
    """The API's error mapping (``http.answer``), plus the study's own: an undefined study is
    a 404, a redefinition a 409, a name or value beyond MLflow's limits a 400."""
    from mlflow.exceptions import MlflowException

    from synergos_mlops.storage.studies import StudyConflictError, StudyNotDefinedError

    def studied() -> T:
        try:
            return work()
        except StudyNotDefinedError as exc:
            raise NotFoundError(str(exc)) from None
        except StudyConflictError as exc:
            raise ApiError(409, "CONFLICT", str(exc)) from None
        except MlflowException as exc:
            if exc.get_http_status_code() >= 500:
                raise
            raise ApiError(400, "BAD_REQUEST", exc.message) from None

    return api_answer(studied)


def _scoped() -> bool:
    viewer = current_viewer()
    return viewer is not None and viewer.scoped


def _sees() -> Callable[[str, str], bool]:
    viewer = current_viewer()
    if viewer is None:
        return lambda _c, _p: True
    return viewer.sees_participant


def _readable(experiment_id: str) -> bool:
    viewer = current_viewer()
    return viewer is None or viewer.can_read(experiment_id)


@read_router.get("/studies", responses=ERRORS)
def studies(
    collaboration: Annotated[str | None, Query(description="Only this collaboration")] = None,
    project: Annotated[str | None, Query(description="Only this project")] = None,
    experiment: Annotated[str | None, Query(description="Only this experiment")] = None,
) -> dict[str, Any]:
    """Every study, per experiment: its metric, direction, trial count and counts by state."""
    from synergos_mlops.storage import reads
    from synergos_mlops.views.studies import list_studies

    def work() -> dict[str, Any]:
        def keep(e: reads.ExperimentRow) -> bool:
            return ((collaboration is None or e.collaboration == collaboration)
                    and (project is None or e.project == project)
                    and (experiment is None or e.experiment == experiment)
                    and _readable(e.experiment_id))  # fmt: skip

        return {"studies": list_studies(Backend.of_server(), keep)}

    return _answer(work)


@read_router.get(STUDY, responses=ERRORS)
def study(
    collaboration: Annotated[str, Path(description="Collaboration id")],
    project: Annotated[str, Path(description="Project id")],
    experiment: Annotated[str, Path(description="Experiment id")],
    study: Annotated[str, Path(description="Study name")],
    metric: Annotated[
        str | None, Query(description="Another metric key to rank the trials by")
    ] = None,
) -> dict[str, Any]:
    """One study: definition, trials (state, hyperparameters, value, participant spread,
    wall time, outside-space flag), counts by state, best trial, optimization history and
    parameter importance."""
    from synergos_mlops.views.studies import study_detail

    parsed = parse_keys([metric]) if metric is not None else None
    chosen = parsed[0] if parsed else None

    def work() -> dict[str, Any]:
        backend = Backend.of_server()
        ids = ExperimentIds(collaboration, project, experiment)
        from synergos_mlops.storage import reads

        experiment_id = reads.find_experiment(backend.session_maker, ids.name)
        if experiment_id is not None and not _readable(experiment_id):
            raise NotFoundError(f"study {study!r} not found in experiment {ids.name!r}")
        return study_detail(backend, ids, study, sees=_sees(), scoped=_scoped(), metric=chosen)

    return _answer(work)


def _parse_ref(ref: str) -> tuple[str, str, str, str]:
    parts = ref.split("/")
    if len(parts) != 4 or not all(parts):
        raise ApiError(
            400, "BAD_REQUEST",
            f"run {ref[:120]!r} must be collaboration/project/experiment/run "
            "(each id percent-encoded)",
        )  # fmt: skip
    return parts[0], parts[1], parts[2], parts[3]


@read_router.get("/compare", responses=ERRORS)
def compare(
    request: Request,
    run: Annotated[
        list[str],
        Query(
            description="2 to 10 runs, each collaboration/project/experiment/run with "
            "every id percent-encoded; repeat the parameter"
        ),
    ],
    keys: Annotated[
        list[str] | None,
        Query(
            description="Metric keys to chart, comma-separated or repeated; default: the "
            "round-level keys every run has (at most 12)"
        ),
    ] = None,
) -> dict[str, Any]:
    """Runs side by side: the hyperparameters that differ (and the common ones apart), final
    metrics (global and per participant) and series for overlaid charts."""
    from synergos_mlops.views.studies import compare_runs

    if not MAX_COMPARED >= len(run) >= 2:
        raise ApiError(400, "BAD_REQUEST", f"compare 2 to {MAX_COMPARED} runs, not {len(run)}")
    refs = [_parse_ref(r) for r in run]
    if len(set(refs)) != len(refs):
        raise ApiError(400, "BAD_REQUEST", "a run is named twice")
    chosen = parse_keys(keys)

    def work() -> dict[str, Any]:
        backend = Backend.of_server()
        found = [visible_run(resolve_run(backend, *ref)) for ref in refs]
        body = compare_runs(backend, found, chosen)
        root = request.scope.get("root_path", "")
        for entry, ref in zip(body["runs"], refs, strict=True):
            tail = "/".join(quote(i, safe="") for i in ref)
            entry["links"] = {
                "self": f"{root}{API_PREFIX}/runs/{tail}",
                "command_station": f"{root}/synergos/runs/{tail}",
            }
        return body

    return _answer(work)


# --- the tracker's writes ----------------------------------------------------------------


class DefineRequest(BaseModel):
    collaboration: str
    project: str
    experiment: str
    name: str
    search_space: dict[str, Any]
    metric: str
    direction: str = "maximize"
    extend: bool = False


class TrialRequest(BaseModel):
    collaboration: str
    project: str
    experiment: str
    study: str
    run: str | None = None
    participants: list[str] = Field(default_factory=list)
    user: str | None = None
    queued: bool = False
    outside: list[str] = Field(default_factory=list)
    request: str | None = Field(default=None, max_length=64)
    types: dict[str, Any] | None = None
    tuner: dict[str, Any] | None = None


def _store() -> Any:
    from synergos_mlops.server.routes.bulk import sql_store

    return sql_store()


def _define(request: DefineRequest) -> dict[str, Any]:
    from synergos_mlops.storage.studies import define_study
    from synergos_mlops.studies import StudyDefinition

    def work() -> dict[str, Any]:
        ids = ExperimentIds(request.collaboration, request.project, request.experiment)
        wanted = StudyDefinition.build(
            request.name, request.search_space, request.metric, request.direction
        )
        store = _store()
        created = authorize_resolve(store, ids.name)
        stored = define_study(store, ids, wanted, extend=request.extend)
        if created:
            grant_creator(store.get_experiment_by_name(ids.name).experiment_id,
                          ids.collaboration)  # fmt: skip
        return {"name": stored.name, **stored.to_json()}

    return _answer(work)


def _trial(request: TrialRequest) -> dict[str, Any]:
    from synergos_mlops.storage.studies import resolve_trial

    def work() -> dict[str, Any]:
        ids = ExperimentIds(request.collaboration, request.project, request.experiment)
        store = _store()
        authorize_resolve(store, ids.name)
        return resolve_trial(
            store, ids, request.study, request.run, request.participants, user=request.user,
            queued=request.queued, outside=request.outside, request=request.request,
            types=request.types, tuner=request.tuner,
        ).to_json()  # fmt: skip

    return _answer(work)


@write_router.post("/studies/define", responses=ERRORS)
async def define(request: DefineRequest) -> Response:
    """Define a study (the tracker's ``tracker.study``); defining it again with the same
    search is a no-op, with another 409; with ``extend`` the stored space takes in the
    parameters it lacks (409 only for another metric or direction). Answered as Python's
    JSON (the tracker's route): a NaN or infinite choice comes back as it went."""
    answer = await run_in_threadpool(_define, request)
    return Response(json.dumps(answer), media_type="application/json")


@write_router.post("/studies/trials/resolve", responses=ERRORS)
async def trial(request: TrialRequest) -> dict[str, Any]:
    """Number and find or create a trial's federated run (the tracker's ``study.trial``)."""
    return await run_in_threadpool(_trial, request)


router = APIRouter()
router.include_router(read_router)
router.include_router(write_router)
