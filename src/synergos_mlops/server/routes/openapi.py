"""``/api/synergos/v1/openapi.json``: the OpenAPI document of the Synergos read routes alone
(the routers of runs, logs, system, studies and catalogue, gathered here so none imports
another)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from synergos_mlops.server.http import API_PREFIX
from synergos_mlops.server.routes import catalogue, logs, runs, studies, system

__all__ = ["openapi_document", "router"]

router = APIRouter(prefix=API_PREFIX)

#: The routers the document describes, in this order.
_READ_ROUTERS = (
    runs.router,
    logs.read_router,
    system.read_router,
    studies.read_router,
    catalogue.router,
)

_openapi_cache: dict[str, Any] = {}


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the Synergos API alone."""
    if not _openapi_cache:
        from fastapi import FastAPI

        from synergos_mlops import __version__

        holder = FastAPI(
            title="Synergos MLOps API",
            version=__version__,
            description="Federated runs (collaborations, projects, experiments, runs and "
            'participants) kept in MLflow. Every error is {"error": {"code", "message"}}.',
        )
        for read_router in _READ_ROUTERS:
            holder.include_router(read_router)
        _openapi_cache.update(holder.openapi())
    return _openapi_cache


@router.get("/openapi.json", include_in_schema=False)
def openapi() -> JSONResponse:
    return JSONResponse(openapi_document())
