"""Hardware statistics per participant: the monitors' write route and the page's read route.

``POST /api/synergos/v1/system/samples``
    Body: a sample batch (``storage.samples``), gzip-compressed or plain JSON. Each sample is
    attached by time to its participant's runs (``storage.system``). Answer:
    ``{"samples", "attached", "unmatched", "points", "runs"}``; ``unmatched`` samples fell
    within no run of their participant and are not stored.

``GET /api/synergos/v1/runs/{collaboration}/{project}/{experiment}/{run}/system``
    Every participant's ``system/...`` series, the rounds' boundaries and a participants x
    rounds summary, all in seconds since the federated (global) run's start (see
    :func:`system_view` and docs/system.md).

With ``serve --auth``, an account bound to participants writes samples of those
participants only, into runs of experiments it may read; any other account needs EDIT on
the experiment (as for metric batches); runs it may not write to are not matched. Reads see
only the participants the account sees.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Path, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from synergos_mlops.errors import InvalidIdError, InvalidValueError
from synergos_mlops.server.auth.viewer import current_viewer, visible_run
from synergos_mlops.server.http import API_PREFIX, ERRORS, ApiError, answer, bounded_body
from synergos_mlops.views.federated_runs import (
    Backend,
    resolve_run,
)
from synergos_mlops.views.system import system_view

__all__ = ["read_router", "router"]

T = TypeVar("T")

MAX_BODY_BYTES = 16 * 1024 * 1024

#: Both routes (the write route, then ``read_router``'s).
router = APIRouter(tags=["synergos"])
#: The read route alone: in the Synergos OpenAPI document (``server.routes.runs``).
read_router = APIRouter(prefix=API_PREFIX, tags=["synergos"])


# --- writes ------------------------------------------------------------------------------


def _may_write() -> Callable[[Any], bool] | None:
    viewer = current_viewer()
    if viewer is None or viewer.is_admin:
        return None
    if viewer.scoped:  # its own participant's hardware, into runs it may read
        return lambda run: viewer.can_read(run.experiment_id)
    return lambda run: viewer.can_edit(run.experiment_id)


def _check_targets(names: set[str]) -> None:
    from synergos_mlops.storage.samples import split_target

    viewer = current_viewer()
    if viewer is None or not viewer.scoped:
        return
    for name in sorted(names):
        collaboration, participant = split_target(name)
        if not viewer.sees_participant(collaboration, participant):
            raise ApiError(
                403, "PERMISSION_DENIED",
                f"{viewer.username!r} may not send samples of participant {participant!r}",
            )  # fmt: skip


def _attach(body: bytes) -> dict[str, int]:
    from mlflow.server.handlers import _get_tracking_store

    from synergos_mlops.storage.batch import BatchTooLargeError
    from synergos_mlops.storage.metrics import RunNotActiveError
    from synergos_mlops.storage.samples import decode_samples
    from synergos_mlops.storage.system import attach_samples

    try:
        batch = decode_samples(body)
        _check_targets(set(batch.points.run_ids))
        engine = getattr(_get_tracking_store(), "engine", None)
        if engine is None:
            raise ApiError(501, "NOT_SUPPORTED", "the tracking store is not an SQL database")
        result = attach_samples(engine, batch, may_write=_may_write())
    except BatchTooLargeError as exc:
        raise ApiError(413, "TOO_LARGE", str(exc)) from None
    except (InvalidValueError, InvalidIdError) as exc:
        raise ApiError(400, "INVALID_VALUE", str(exc)) from None
    except RunNotActiveError as exc:  # deleted between the match and the write: try again
        raise ApiError(503, "UNAVAILABLE", str(exc)) from None
    return result.to_json()


@router.post(f"{API_PREFIX}/system/samples")
async def system_samples(request: Request) -> dict[str, int]:
    """Hardware samples of participants, attached by time to their runs."""
    body = await bounded_body(request, MAX_BODY_BYTES, "a sample batch")
    return await run_in_threadpool(_attach, body)


# --- reads -------------------------------------------------------------------------------


@read_router.get(
    "/runs/{collaboration}/{project}/{experiment}/{run}/system",
    responses=ERRORS,
    response_class=JSONResponse,
)
def run_system(
    collaboration: Annotated[str, Path(description="Collaboration id")],
    project: Annotated[str, Path(description="Project id")],
    experiment: Annotated[str, Path(description="Experiment id")],
    run: Annotated[str, Path(description="Run id (one federated cycle)")],
) -> JSONResponse:
    """Hardware statistics of every participant of the run: each ``system/...`` series,
    the rounds' boundaries, and a participants x rounds summary (seconds since the run's
    start)."""

    def work() -> JSONResponse:
        backend = Backend.of_server()
        found = visible_run(resolve_run(backend, collaboration, project, experiment, run))
        return JSONResponse(system_view(backend, found))

    return answer(work)


router.include_router(read_router)
