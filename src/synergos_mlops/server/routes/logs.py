"""Central logs on the Synergos API (see docs/logs.md).

``POST /api/synergos/v1/logs``
    Body: a batch of log records (``synergos_mlops.storage.log_batch``), gzip-compressed
    (``Content-Encoding: gzip``) or plain JSON; what the tracker's ``FederatedLogHandler``
    sends. Every record names an existing federated run; a record whose id is stored already
    is left out, so a batch sent twice is stored once. Answer: ``{"stored": n}``. A bad
    record is a 400 naming it, an unknown run a 404; nothing of the batch is stored then.
    With ``--auth``: EDIT on the run's experiment; an account bound to participants writes
    only its own participants' records, into runs it may read (READ, as ``auth bind``
    grants).

``GET /api/synergos/v1/runs/{collaboration}/{project}/{experiment}/{run}/logs``
    The run's records, oldest first, filtered (see :func:`run_logs`).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.server.auth.viewer import (
    RunVisibility,
    authorize_metric_writes,
    current_viewer,
    visible_participants,
    visible_run,
)
from synergos_mlops.server.http import (
    API_PREFIX,
    ERRORS,
    RUN,
    ApiError,
    Collaboration,
    Experiment,
    Project,
    RunId,
    answer,
    bounded_body,
)
from synergos_mlops.views.federated_runs import Backend, resolve_run

__all__ = ["read_router", "router", "write_router"]

#: Largest record id a database's 64-bit integer holds; a larger cursor is a 400, not a 500.
_MAX_ID = 2**63 - 1


#: The tracker's write route (like metrics/bulk, not in the read API's OpenAPI document).
write_router = APIRouter(prefix=API_PREFIX, tags=["synergos"])
#: The read route, in ``/api/synergos/v1/openapi.json``.
read_router = APIRouter(prefix=API_PREFIX, tags=["synergos"])

#: Largest accepted body, compressed or not.
MAX_BODY_BYTES = 64 * 1024 * 1024
#: Highest level number (what a stored record may hold).
_MAX_LEVEL = 100
_LEVELS = {"DEBUG": 10, "INFO": 20, "WARNING": 30, "WARN": 30, "ERROR": 40, "CRITICAL": 50}


def _engine() -> Any:
    from mlflow.server.handlers import _get_tracking_store

    engine = getattr(_get_tracking_store(), "engine", None)
    if engine is None:
        raise ApiError(501, "NOT_SUPPORTED", "the tracking store is not an SQL database")
    return engine


def _authorize(records: list[Any]) -> None:
    viewer = current_viewer()
    if viewer is None or not viewer.scoped:
        authorize_metric_writes(sorted({r.run_uuid for r in records}))
        return
    # A bound account holds READ on its collaboration's experiments (what `auth bind`
    # grants), never EDIT: like its hardware samples, it writes its own participant's
    # records into runs it may read, and nothing else.
    visibility = RunVisibility(viewer)
    for run_uuid in sorted({r.run_uuid for r in records}):
        found = visibility._run(run_uuid)
        if found is not None and not viewer.can_read(found[0]):
            raise ApiError(404, "RUN_NOT_FOUND", f"run {run_uuid!r} not found")
    for record in records:
        if record.participant is None or not viewer.sees_participant(
            record.collaboration, record.participant
        ):
            whose = "the orchestrator" if record.participant is None else record.participant
            raise ApiError(
                403, "PERMISSION_DENIED",
                f"{viewer.username!r} is bound to participants and may not write records of "
                f"{whose!r}",
            )  # fmt: skip


def _write(body: bytes) -> dict[str, int]:
    from synergos_mlops.storage.log_batch import (
        LogBatchTooLargeError,
        LogRunNotFoundError,
        attach_runs,
        decode_log_batch,
    )
    from synergos_mlops.storage.logs import insert_records

    try:
        engine = _engine()
        records = attach_runs(engine, decode_log_batch(body))
        _authorize(records)
        return {"stored": insert_records(engine, records)}
    except LogBatchTooLargeError as exc:
        raise ApiError(413, "TOO_LARGE", str(exc)) from None
    except LogRunNotFoundError as exc:
        raise ApiError(404, "RUN_NOT_FOUND", str(exc)) from None
    except InvalidValueError as exc:  # InvalidIdError included
        raise ApiError(400, "INVALID_VALUE", str(exc)) from None


@write_router.post("/logs")
async def write_logs(request: Request) -> dict[str, int]:
    body = await bounded_body(request, MAX_BODY_BYTES, "a log batch")
    return await run_in_threadpool(_write, body)


def _level(raw: str | None) -> int | None:
    if raw is None or raw == "":
        return None
    # ASCII digits only: "²" is a digit to str.isdigit, not to int().
    if raw.isascii() and raw.isdigit() and len(raw) <= 4 and int(raw) <= _MAX_LEVEL:
        return int(raw)
    found = _LEVELS.get(raw.upper())
    if found is None:
        raise ApiError(
            400, "BAD_REQUEST",
            f"level {raw[:40]!r} must be a number from 0 to {_MAX_LEVEL} or one of DEBUG, "
            "INFO, WARNING, ERROR, CRITICAL",
        )  # fmt: skip
    return found


def _participants(raw: list[str] | None) -> list[str] | None:
    if not raw:
        return None
    return [p.strip() for item in raw for p in item.split(",") if p.strip()] or None


@read_router.get(f"{RUN}/logs", responses=ERRORS)
def run_logs(
    collaboration: Collaboration,
    project: Project,
    experiment: Experiment,
    run: RunId,
    participant: Annotated[
        list[str] | None,
        Query(
            description="Only these participants' records (comma-separated or repeated); "
            "the run's global records and every participant's when left out."
        ),
    ] = None,
    level: Annotated[
        str | None,
        Query(description="Minimum level: a number (20) or a name (INFO, WARNING, ...)."),
    ] = None,
    role: Annotated[
        str | None, Query(description="Only records of this role: TTP, WKR, DIR or SYS.")
    ] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Only records whose message holds this text (case-insensitive).",
        ),
    ] = None,
    after: Annotated[
        int | None,
        Query(
            ge=0,
            le=_MAX_ID,
            description="Records after this record id, oldest first (a live tail: "
            "pass the last id you have).",
        ),
    ] = None,
    before: Annotated[
        int | None,
        Query(
            ge=0, le=_MAX_ID, description="The newest records before this record id (paging back)."
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=5000, description="Most records returned.")] = 500,
) -> dict[str, Any]:
    """The run's log records (the orchestrator's and its participants'), oldest first: with
    neither ``after`` nor ``before``, the newest ``limit`` records."""
    from synergos_mlops.storage.logs import ROLES, LogQuery, read_records

    if role is not None and role.upper() not in ROLES:
        raise ApiError(400, "BAD_REQUEST", f"role {role[:40]!r} must be one of {', '.join(ROLES)}")
    if after is not None and before is not None:
        raise ApiError(400, "BAD_REQUEST", "give after or before, not both")
    minimum = _level(level)
    chosen = _participants(participant)

    def work() -> dict[str, Any]:
        found = visible_run(
            resolve_run(Backend.of_server(), collaboration, project, experiment, run)
        )
        visible = visible_participants(found.ids.collaboration)
        if visible is not None and chosen is not None:
            hidden = [p for p in chosen if p not in visible]
            if hidden:
                from synergos_mlops.views.federated_runs import NotFoundError

                raise NotFoundError(f"participant {hidden[0]!r} not found in run {run!r}")
        query = LogQuery(
            found.ids.collaboration, found.ids.project, found.ids.experiment, found.run_id,
            participants=chosen, visible=visible, min_level=minimum,
            role=None if role is None else role.upper(), contains=q or None,
            after=after, before=before, limit=limit,
        )  # fmt: skip
        records, more = read_records(_engine(), query)
        last = records[-1]["id"] if records else (after or 0)
        return {"run": found.run_id, "records": records, "more": more, "last_id": last}

    return answer(work)


#: What ``server/app.py`` mounts.

router = APIRouter()
router.include_router(write_router)
router.include_router(read_router)
