"""``GET /health``: 200 once the server can serve and its stores answer, 503 with the reason."""

from __future__ import annotations

import os
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from synergos_mlops import __version__
from synergos_mlops.server.artifacts import check_artifacts_destination, destination_kind

router = APIRouter()


def _backend_name(uri: str) -> str:
    scheme = uri.split(":", 1)[0]
    return scheme.split("+", 1)[0] or "unknown"


def _check_stores() -> dict[str, Any]:
    from mlflow.server import ARTIFACTS_DESTINATION_ENV_VAR, BACKEND_STORE_URI_ENV_VAR
    from mlflow.server.handlers import _get_tracking_store
    from sqlalchemy import text

    store = _get_tracking_store()
    engine = getattr(store, "engine", None)
    if engine is not None:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    destination = os.environ.get(ARTIFACTS_DESTINATION_ENV_VAR, "")
    # A folder: only a file in its way is fatal; a bucket: one HeadBucket, a few seconds at most.
    if destination:
        check_artifacts_destination(destination)
    return {
        "backend": _backend_name(os.environ.get(BACKEND_STORE_URI_ENV_VAR, "")),
        "artifacts": destination_kind(destination),
    }


def watch_health_problem(status: dict[str, Any]) -> str | None:
    """Why ``/health`` must say 503 for the status of ``serve --watch`` (written by
    ``ingest.WatchService``), or None while it works."""
    down = status.get("down")
    if not down:
        return None
    return f"the watch of {status.get('outputs')} stopped ({down}); it is being restarted"


@router.get("/health")
def health() -> JSONResponse:
    import mlflow

    body: dict[str, Any] = {"version": __version__, "mlflow_version": mlflow.__version__}
    try:
        body.update(_check_stores())
    except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; say why
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return JSONResponse(
            status_code=503, content={**body, "status": "unavailable", "reason": reason}
        )
    from synergos_mlops.legacy import STATUS_ENV, file_store_health_problem, read_status

    status_path = os.environ.get(STATUS_ENV)
    if status_path:
        sync = read_status(status_path)
        if sync is not None and (
            sync.get("experiments") or sync.get("skipped") or sync.get("reading")
            or sync.get("down")
        ):  # fmt: skip
            body["file_store"] = sync
            problem = file_store_health_problem(sync)
            if problem is not None:  # the mirror stopped: never "ok" while the TTP's runs wait
                return JSONResponse(
                    status_code=503, content={**body, "status": "unavailable", "reason": problem}
                )
    from synergos_mlops.server.services.log_service import STATUS_ENV as GELF_STATUS_ENV
    from synergos_mlops.server.services.log_service import gelf_health_problem
    from synergos_mlops.server.services.log_service import read_status as read_service_status

    gelf_path = os.environ.get(GELF_STATUS_ENV)
    if gelf_path:
        gelf = read_service_status(gelf_path) or {"accepted": 0, "rejected": {}}
        body["gelf"] = gelf
        problem = gelf_health_problem(gelf)
        if problem is not None:  # a GELF thread stopped: never "ok" while records are lost
            return JSONResponse(
                status_code=503, content={**body, "status": "unavailable", "reason": problem}
            )
    from synergos_mlops.server.intake import refused_counts

    body["refused"] = refused_counts()
    from synergos_mlops.server.services.log_service import (
        RETENTION_STATUS_ENV,
        retention_health_problem,
    )
    from synergos_mlops.store import WATCH_STATUS_ENV

    # Services with a status file: shown under their name; never "ok" while one fails (old
    # log records pile up, an outputs folder waits unread).
    for variable, name, problem_of in (
        (RETENTION_STATUS_ENV, "log_retention", retention_health_problem),
        (WATCH_STATUS_ENV, "watch", watch_health_problem),
    ):
        path = os.environ.get(variable)
        status = read_service_status(path) if path else None
        if status is not None:
            body[name] = status
            problem = problem_of(status)
            if problem is not None:
                return JSONResponse(
                    status_code=503, content={**body, "status": "unavailable", "reason": problem}
                )
    return JSONResponse(content={**body, "status": "ok"})
