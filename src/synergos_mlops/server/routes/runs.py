"""The Synergos REST API, ``/api/synergos/v1/...``: federated runs as JSON, bundles as ZIP.

Every error is ``{"error": {"code", "message"}}``: unknown ids are 404 naming the id, bad
parameters 400. ``/api/synergos/v1/openapi.json`` documents just these routes.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse

from synergos_mlops.server.auth.viewer import (
    current_viewer,
    visible_participants,
    visible_run,
    visible_tree,
)
from synergos_mlops.server.http import (
    API_PREFIX,
    ERRORS,
    RUN,
    ApiError,
    Collaboration,
    Experiment,
    Participant,
    Project,
    RunId,
    answer,
    parse_keys,
)
from synergos_mlops.views.bundle import (
    bundle_entries,
    bundle_time,
    content_type,
    find_artifact,
    iter_file,
    iter_zip,
    owned_artifacts,
)
from synergos_mlops.views.federated_runs import (
    Backend,
    FederatedRun,
    TreeQuery,
    collaboration_tree,
    newest_runs,
    resolve_run,
    run_detail,
    run_series,
    tree_part,
)
from synergos_mlops.views.series import MAX_POINTS, SeriesQuery

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX, tags=["synergos"])


def _run_base(request: Request, run: FederatedRun) -> str:
    ids = (run.ids.collaboration, run.ids.project, run.ids.experiment, run.run_id)
    root = request.scope.get("root_path", "")
    return f"{root}{API_PREFIX}/runs/" + "/".join(quote(i, safe="") for i in ids)


def _artifact_listing(backend: Backend, run: FederatedRun, base: str) -> dict[str, Any]:
    """Each file with the URL that serves it: a participant's files that lie in the parent's
    flat folder (the original TTP's layout) are served from there."""
    owned = owned_artifacts(backend, run)

    def files(items: list[Any], prefix: str) -> list[dict[str, Any]]:
        return [
            {
                "path": item.relative,
                "size": item.size,
                "url": f"{prefix}/artifacts/{quote(item.relative)}",
            }
            for item in items
        ]

    return {
        "global": files(owned.shared, base),
        "participants": {
            p.synergos_id: files(owned.moved.get(p.synergos_id, []), base)
            + files(
                owned.own.get(p.synergos_id, []),
                f"{base}/participants/{quote(p.synergos_id, safe='')}",
            )
            for p in run.participants
        },
    }


def _scoped_tree(answer: dict[str, Any]) -> dict[str, Any]:
    """A part of the tree as a participant-bound account sees it: no participant counts."""
    for collaboration in answer["collaborations"]:
        for project in collaboration.get("projects", []):
            for experiment in project.get("experiments", []):
                for run in experiment.get("runs", []):
                    run["participant_count"] = None
    return answer


@router.get("/collaborations", responses=ERRORS)
def collaborations(
    collaboration: Annotated[str | None, Query(description="Only this collaboration")] = None,
    project: Annotated[str | None, Query(description="Only this project")] = None,
    experiment: Annotated[str | None, Query(description="Only this experiment")] = None,
    depth: Annotated[
        str | None,
        Query(
            description="Down to which level: collaborations, projects, experiments or runs "
            "(the default); a level not loaded gives its count (project_count, "
            "experiment_count, run_count)"
        ),
    ] = None,
    search: Annotated[
        str | None,
        Query(
            max_length=250,
            description="Only runs whose id, or whose collaboration's, project's or "
            "experiment's id, holds this text (any case); at most `limit` runs (200), "
            "`truncated` says when more matched",
        ),
    ] = None,
    limit: Annotated[
        int | None, Query(ge=1, le=10_000, description="Runs per experiment (a page)")
    ] = None,
    offset: Annotated[
        int, Query(ge=0, description="Runs skipped per experiment (`next_offset` of a page)")
    ] = 0,
) -> dict[str, Any]:
    """The tree: collaborations → projects → experiments → runs (status, times, participants).
    Without parameters, the whole tree; with them, a part of it whose size does not grow
    with the store: one level at a time (`depth`, under `collaboration`, `project`,
    `experiment`), runs a page at a time (`limit`, `offset`), or a `search`."""
    query = TreeQuery(collaboration, project, experiment, depth or "runs", search or None,
                      limit, offset)  # fmt: skip
    if query.whole:
        return {
            "collaborations": answer(lambda: visible_tree(collaboration_tree(Backend.of_server())))
        }

    def work() -> dict[str, Any]:
        viewer = current_viewer()
        readable = None if viewer is None or viewer.is_admin else viewer.can_read
        answer = tree_part(Backend.of_server(), query, readable)
        return _scoped_tree(answer) if viewer is not None and viewer.scoped else answer

    return answer(work)


@router.get("/runs", responses=ERRORS)
def runs_newest_first(
    limit: Annotated[int, Query(ge=1, le=1000, description="How many runs (newest first)")] = 10,
) -> dict[str, Any]:
    """The newest federated runs of every experiment the account may read, newest first (each
    with its collaboration, project and experiment), with `run_count` (all of them) and
    `running` (how many are running): the overview page's "latest runs"."""

    def work() -> dict[str, Any]:
        viewer = current_viewer()
        readable = None if viewer is None or viewer.is_admin else viewer.can_read
        found = newest_runs(Backend.of_server(), limit, readable)
        if viewer is not None and viewer.scoped:  # no participant counts, as in the tree
            for run in found["runs"]:
                run["participant_count"] = None
        return found

    return answer(work)


@router.get(RUN, responses=ERRORS)
def run_view(
    request: Request,
    collaboration: Collaboration,
    project: Project,
    experiment: Experiment,
    run: RunId,
) -> dict[str, Any]:
    """One run: hyperparameters, participants, metric keys, latest values, artifacts, links."""

    def work() -> dict[str, Any]:
        backend = Backend.of_server()
        found = visible_run(resolve_run(backend, collaboration, project, experiment, run))
        base = _run_base(request, found)
        body = run_detail(backend, found)
        body["artifacts"] = _artifact_listing(backend, found, base)
        root = request.scope.get("root_path", "")
        body["links"] = {
            "self": base,
            "metrics": f"{base}/metrics",
            "bundle": f"{base}/bundle.zip",
            "mlflow_ui": root + body["mlflow"]["url"],
            "command_station": f"{root}/synergos/runs/" + base.split("/runs/", 1)[1],
        }
        for participant in body["participants"]:
            pid = quote(participant["id"], safe="")
            participant["bundle"] = f"{base}/participants/{pid}/bundle.zip"
            participant["mlflow_url"] = root + participant["mlflow_url"]
        return body

    return answer(work)


@router.get(f"{RUN}/metrics", responses=ERRORS, response_class=JSONResponse)
def run_metrics(
    collaboration: Collaboration,
    project: Project,
    experiment: Experiment,
    run: RunId,
    keys: Annotated[
        list[str] | None,
        Query(
            description="Metric keys, comma-separated or repeated; every key when left out. "
            "Round-level keys (train/loss) step by round; epoch-level keys "
            "(train/epoch/loss) by epoch across rounds."
        ),
    ] = None,
    format: Annotated[
        str,
        Query(
            description="`lists`: steps and values as JSON lists (the default); `typed`: "
            "each as base64 of little-endian int64 and float64, with its `count`"
        ),
    ] = "lists",
    points: Annotated[
        int | None,
        Query(
            description="A chart's width in pixel columns: a series with more than twice as "
            f"many points keeps each column's lowest and highest point and its first and "
            f"last (`decimated`); 1 to {MAX_POINTS}"
        ),
    ] = None,
    min_step: Annotated[
        int | None, Query(description="Only points from this step on (a zoomed chart)")
    ] = None,
    max_step: Annotated[int | None, Query(description="Only points up to this step")] = None,
) -> JSONResponse:
    """The series of the chosen metrics for the global run and every participant: every
    point, or a step window, decimated to a chart's width when `points` is given."""
    chosen = parse_keys(keys)

    def work() -> JSONResponse:
        query = SeriesQuery(points, min_step, max_step, format)
        backend = Backend.of_server()
        found = visible_run(resolve_run(backend, collaboration, project, experiment, run))
        wanted = chosen
        if wanted is None:
            wanted = run_detail(backend, found)["metric_keys"]
        # Plain lists of numbers or base64 text: rendered as they are, without FastAPI's
        # per-value encoder.
        return JSONResponse(run_series(backend, found, wanted, query))

    return answer(work)


def _zip_response(chunks: Iterator[bytes], filename: str) -> StreamingResponse:
    return StreamingResponse(
        chunks,
        media_type="application/zip",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{quote(filename, safe='')}",
            "Cache-Control": "no-store",
        },
    )


def _bundle_name(run: FederatedRun, participant: str | None = None) -> str:
    parts = [run.ids.collaboration, run.ids.project, run.ids.experiment, run.run_id]
    if participant is not None:
        parts.append(participant)
    return "-".join(parts) + ".zip"


@router.get(
    f"{RUN}/bundle.zip",
    responses={**ERRORS, 200: {"content": {"application/zip": {}}}},
    response_class=StreamingResponse,
)
def run_bundle(
    collaboration: Collaboration, project: Project, experiment: Experiment, run: RunId
) -> StreamingResponse:
    """Every artifact of the run and its participants as one ZIP (global/, participants/<id>/),
    and its log records as logs.jsonl, streamed."""

    def work() -> StreamingResponse:
        backend = Backend.of_server()
        found = visible_run(resolve_run(backend, collaboration, project, experiment, run))
        visible = visible_participants(collaboration)
        entries = bundle_entries(backend, found, visible=visible)  # logs.jsonl included
        return _zip_response(iter_zip(entries, bundle_time(found)), _bundle_name(found))

    return answer(work)


@router.get(
    f"{RUN}/participants/{{participant}}/bundle.zip",
    responses={**ERRORS, 200: {"content": {"application/zip": {}}}},
    response_class=StreamingResponse,
)
def participant_bundle(
    collaboration: Collaboration,
    project: Project,
    experiment: Experiment,
    run: RunId,
    participant: Participant,
) -> StreamingResponse:
    """Every artifact of one participant of the run as one ZIP, and the participant's log
    records as logs.jsonl, streamed."""

    def work() -> StreamingResponse:
        backend = Backend.of_server()
        found = visible_run(resolve_run(backend, collaboration, project, experiment, run))
        visible = visible_participants(collaboration)
        entries = bundle_entries(backend, found, participant, visible=visible)
        return _zip_response(
            iter_zip(entries, bundle_time(found)), _bundle_name(found, participant)
        )

    return answer(work)


def _file_response(backend: Backend, row: Any, path: str, owner: str) -> StreamingResponse:
    item = find_artifact(backend, row, path, owner)
    name = item.relative.rsplit("/", 1)[-1]
    headers = {"Content-Disposition": f"attachment; filename*=UTF-8''{quote(name, safe='')}"}
    if item.size is not None:
        headers["Content-Length"] = str(item.size)
    return StreamingResponse(iter_file(item), media_type=content_type(name), headers=headers)


@router.get(
    f"{RUN}/artifacts/{{path:path}}",
    responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}},
    response_class=StreamingResponse,
)
def run_artifact(
    collaboration: Collaboration,
    project: Project,
    experiment: Experiment,
    run: RunId,
    path: Annotated[str, Path(description="Path inside the run's artifacts")],
) -> StreamingResponse:
    """One artifact file of the federation (global) run."""

    def work() -> StreamingResponse:
        backend = Backend.of_server()
        found = visible_run(resolve_run(backend, collaboration, project, experiment, run))
        return _file_response(backend, found.parent, path, f"run {found.run_id!r}")

    return answer(work)


@router.get(
    f"{RUN}/participants/{{participant}}/artifacts/{{path:path}}",
    responses={**ERRORS, 200: {"content": {"application/octet-stream": {}}}},
    response_class=StreamingResponse,
)
def participant_artifact(
    collaboration: Collaboration,
    project: Project,
    experiment: Experiment,
    run: RunId,
    participant: Participant,
    path: Annotated[str, Path(description="Path inside the participant's artifacts")],
) -> StreamingResponse:
    """One artifact file of a participant of the run."""

    def work() -> StreamingResponse:
        backend = Backend.of_server()
        found = visible_run(resolve_run(backend, collaboration, project, experiment, run))
        row = found.participant(participant)
        return _file_response(backend, row, path, f"participant {participant!r}")

    return answer(work)


def _unknown_route(request: Request) -> JSONResponse:
    """Paths under this API's own prefixes that name no route: 404 (or 405), as JSON."""
    if request.method != "GET":
        raise ApiError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here")
    raise ApiError(404, "NOT_FOUND", f"no API route at {request.url.path}")


_ANY = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]
# Only the prefixes this module owns: other Synergos routers may live under API_PREFIX too.
for _prefix in ("/runs/{rest:path}", "/collaborations/{rest:path}", "/collaborations"):
    router.add_api_route(_prefix, _unknown_route, methods=_ANY, include_in_schema=False)
