"""The tracker's server-side routes: idempotent bulk metrics and run resolution.

``POST /api/synergos/v1/metrics/bulk``
    Body: a columnar metric batch (``synergos_mlops.storage.batch``), gzip-compressed
    (``Content-Encoding: gzip``) or plain JSON. Points at a (run, key, step) already stored are
    replaced, so sending a batch twice stores it once. A point whose key MLflow refuses is left
    out and counted by reason in ``/health`` (``metrics``); the batch's other points are stored.
    Answer: ``{"stored": n, "replaced": m, "refused": {reason: count}}``.

``POST /api/synergos/v1/runs/resolve``
    Body: ``{"collaboration", "project", "experiment", "run", "participants": [...],
    "user"?}``. Finds or creates the experiment, the parent run and the participants' child
    runs, serialized in the database (``synergos_mlops.storage.runs``), so two trackers racing
    to create the same run get the same ids. Answer: ``ResolvedRun.to_json()``.

``POST /api/synergos/v1/runs/end``
    Body: ``{"run_ids": [...], "status": "FINISHED" | "FAILED" | "KILLED", "end_time": ms}``.
    Ends a federated run and all its participants' runs in one request and one transaction
    (MLflow's ``runs/update`` takes one run per request); ending again is harmless. A run that
    does not exist or is deleted costs the others nothing: it is named in the answer,
    ``{"ended": n, "missing": [...]}``. Needs what ``metrics/bulk`` needs (EDIT on each run's
    experiment).

``POST /api/synergos/v1/runs/data``
    Body: ``{"items": [{"run_id", "kind": "param" | "tag", "key", "value"}, ...]}``, in the
    order they were logged. Params and tags of runs (``synergos_mlops.storage.run_data``): one
    refused item costs no other; those left out (a run missing or deleted, a tag named
    ``synergos.*`` or ``mlflow.*``, a param logged again with another value, what MLflow
    refuses) are counted by reason in ``/health`` (``params``, ``tags``). Sending the same
    items again stores nothing new. ``"refused": {"texts": {reason: count}}`` (optional): what
    the sender left out on its side, counted with the rest. Answer: ``{"stored": n,
    "refused": {"params": {reason: count}, "tags": {...}}}``. Needs what ``metrics/bulk``
    needs.

All four write through the server's own tracking store (``_get_tracking_store()``), so they work
on every SQL backend the server runs on (SQLite and PostgreSQL are tested).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field, StringConstraints
from starlette.concurrency import run_in_threadpool

from synergos_mlops.errors import InvalidIdError, InvalidValueError, StoreError
from synergos_mlops.server.auth.viewer import (
    authorize_metric_writes,
    authorize_resolve,
    grant_creator,
)
from synergos_mlops.server.http import API_PREFIX, ApiError, bounded_body
from synergos_mlops.storage.batch import MAX_POINTS, MAX_REASON_CHARS, MAX_REASONS
from synergos_mlops.storage.run_data import MAX_ITEM_CHARS, MAX_ITEMS

__all__ = ["router"]

router = APIRouter(prefix=API_PREFIX)

#: Largest accepted body, compressed or not (a 100,000-point batch is ~3 MB of JSON).
MAX_BODY_BYTES = 64 * 1024 * 1024


def sql_store() -> Any:
    from mlflow.server.handlers import _get_tracking_store

    store = _get_tracking_store()
    if getattr(store, "engine", None) is None:
        raise ApiError(501, "NOT_SUPPORTED", "the tracking store is not an SQL database")
    return store


def _write(body: bytes) -> dict[str, Any]:
    from synergos_mlops.server.intake import count_refused
    from synergos_mlops.storage.batch import BatchTooLargeError, decode_batch
    from synergos_mlops.storage.metrics import RunNotActiveError, write_metrics
    from synergos_mlops.storage.run_data import RUN_MISSING
    from synergos_mlops.storage.screen import screen_keys

    try:
        decoded = decode_batch(body)
        authorize_metric_writes(decoded.run_ids)
        screened = screen_keys(decoded)
        count_refused("metrics", screened.refused, screened.named)
        result = write_metrics(sql_store().engine, screened.batch)
    except BatchTooLargeError as exc:
        raise ApiError(413, "TOO_LARGE", str(exc)) from None
    except InvalidValueError as exc:
        raise ApiError(400, "INVALID_VALUE", str(exc)) from None
    except RunNotActiveError as exc:
        # Not stored, so counted (a tracker keeps the batch in its rejected/ folder).
        count_refused("metrics", {RUN_MISSING: len(screened.batch)}, {RUN_MISSING: RUN_MISSING})
        raise ApiError(404, "RUN_NOT_FOUND", str(exc)) from None
    return {"stored": result.stored, "replaced": result.replaced, "refused": screened.refused}


@router.post("/metrics/bulk")
async def bulk_metrics(request: Request) -> dict[str, Any]:
    body = await bounded_body(request, MAX_BODY_BYTES, "a metric batch")
    return await run_in_threadpool(_write, body)


class ResolveRequest(BaseModel):
    collaboration: str
    project: str
    experiment: str
    run: str
    participants: list[str] = Field(default_factory=list)
    user: str | None = None


def _resolve(request: ResolveRequest) -> dict[str, Any]:
    from mlflow.exceptions import MlflowException

    from synergos_mlops.federation import ExperimentIds
    from synergos_mlops.storage.runs import resolve_run

    try:
        ids = ExperimentIds(request.collaboration, request.project, request.experiment)
        store = sql_store()
        created = authorize_resolve(store, ids.name)
        resolved = resolve_run(store, ids, request.run, request.participants, user=request.user)
    except InvalidIdError as exc:
        raise ApiError(400, "INVALID_ID", str(exc)) from None
    except StoreError as exc:
        raise ApiError(409, "CONFLICT", str(exc)) from None
    except MlflowException as exc:  # e.g. an experiment name beyond MLflow's limits
        if exc.get_http_status_code() >= 500:
            raise
        raise ApiError(exc.get_http_status_code(), "INVALID_VALUE", exc.message) from None
    if created:
        grant_creator(resolved.experiment_id, ids.collaboration)
    return resolved.to_json()


@router.post("/runs/resolve")
async def resolve_runs(request: ResolveRequest) -> dict[str, Any]:
    return await run_in_threadpool(_resolve, request)


#: Runs one ``runs/end`` may end (a federation and its participants).
MAX_END_RUNS = 100_000


class EndRequest(BaseModel):
    run_ids: list[str]
    status: str
    end_time: int


def _end(request: EndRequest) -> dict[str, Any]:
    from synergos_mlops.storage.runs import RUN_END_STATUSES, end_runs

    if request.status not in RUN_END_STATUSES:
        raise ApiError(
            400, "INVALID_VALUE",
            f"status {request.status!r} must be one of {', '.join(RUN_END_STATUSES)}",
        )  # fmt: skip
    if not 0 <= request.end_time < 2**63:
        raise ApiError(400, "INVALID_VALUE", f"end_time {request.end_time} is not a time in ms")
    if len(request.run_ids) > MAX_END_RUNS:
        raise ApiError(413, "TOO_LARGE", f"runs/end takes at most {MAX_END_RUNS} runs")
    authorize_metric_writes(request.run_ids)
    missing = end_runs(sql_store().engine, request.run_ids, request.status, request.end_time)
    if missing:
        from synergos_mlops.server.intake import count_refused
        from synergos_mlops.storage.run_data import RUN_MISSING

        count_refused("run_ends", {RUN_MISSING: len(missing)}, {RUN_MISSING: RUN_MISSING})
    return {"ended": len(set(request.run_ids)) - len(missing), "missing": missing}


@router.post("/runs/end")
async def end_runs_route(request: EndRequest) -> dict[str, Any]:
    return await run_in_threadpool(_end, request)


class RunDataItem(BaseModel):
    run_id: str = Field(max_length=MAX_ITEM_CHARS)
    kind: Literal["param", "tag"]
    key: str = Field(max_length=MAX_ITEM_CHARS)
    value: str = Field(max_length=MAX_ITEM_CHARS)


Reason = Annotated[str, StringConstraints(min_length=1, max_length=MAX_REASON_CHARS)]
Count = Annotated[int, Field(ge=1, le=MAX_POINTS)]


class RunDataRequest(BaseModel):
    items: list[RunDataItem] = Field(max_length=MAX_ITEMS)
    #: What the sender left out on its side, by kind and reason (a site's text without a path).
    refused: dict[
        Literal["texts"], Annotated[dict[Reason, Count], Field(max_length=MAX_REASONS)]
    ] = Field(default_factory=dict)


def _run_data(request: RunDataRequest) -> dict[str, Any]:
    from synergos_mlops.server.intake import count_refused
    from synergos_mlops.storage.run_data import write_run_data

    items = [(item.run_id, item.kind, item.key, item.value) for item in request.items]
    authorize_metric_writes(item[0] for item in items)
    result = write_run_data(sql_store(), items)
    for what, refused in result.refused.items():
        count_refused(what, refused, result.named[what])
    for what, counts in request.refused.items():
        count_refused(what, counts, {reason: reason for reason in counts})
    return result.to_json()


@router.post("/runs/data")
async def run_data_route(request: RunDataRequest) -> dict[str, Any]:
    return await run_in_threadpool(_run_data, request)
