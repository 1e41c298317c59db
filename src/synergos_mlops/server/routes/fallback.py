"""Included after every Synergos router: a path under ``/api/synergos/v1`` that no route
answers gets the one JSON error shape (404, or 405 when a route answers it with another
method) instead of falling through to MLflow's HTML page."""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.routing import Match

from synergos_mlops.server.http import API_PREFIX, ApiError

__all__ = ["router"]

router = APIRouter()


@router.api_route(
    f"{API_PREFIX}/{{rest:path}}",
    methods=["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"],
    include_in_schema=False,
)
def no_route(request: Request) -> None:
    for route in request.app.router.routes:
        if route.matches(request.scope)[0] == Match.PARTIAL:
            raise ApiError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed here")
    raise ApiError(404, "NOT_FOUND", f"no API route answers {request.url.path[:200]!r}")
