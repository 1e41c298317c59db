"""The ``mlflow.app`` factory: MLflow's server app plus the Synergos routes.

uvicorn imports this factory by name in every worker (``synmlops serve`` starts uvicorn with
it, as ``mlflow server --app-name synergos`` does), so configuration arrives through
environment variables read here, never at import time. Under uvicorn the factory returns
MLflow's FastAPI app with the Synergos routers included *ahead of* MLflow's routes (its
catch-all mount of the Flask app and its plain-text ``/health``), so the stock UI and REST API
keep working unchanged.
"""

from __future__ import annotations

import gc
import importlib
import inspect
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from flask import Flask

__all__ = ["OPEN_ROUTER_MODULES", "ROUTER_MODULES", "create_app"]

#: Modules whose ``router`` (a FastAPI APIRouter) is mounted, in this order.
ROUTER_MODULES: tuple[str, ...] = (
    "synergos_mlops.server.health",
    "synergos_mlops.server.routes.bulk",
    "synergos_mlops.server.routes.logs",  # ahead of runs: its catch-all answers /runs/...
    "synergos_mlops.server.routes.system",  # before runs: its /runs/... catch-all answers 404
    "synergos_mlops.server.routes.catalogue",  # before runs too: {run}/datasets
    "synergos_mlops.server.routes.runs",
    "synergos_mlops.server.routes.openapi",
    "synergos_mlops.server.routes.studies",
    "synergos_mlops.server.routes.station",
    "synergos_mlops.server.routes.mlflow_ui",
)


#: Routers that stay open when authentication is on.
OPEN_ROUTER_MODULES: tuple[str, ...] = ("synergos_mlops.server.health",)


def _include_first(
    fastapi_app: FastAPI, routers: dict[str, Any], dependencies: list[Any] | None = None
) -> None:
    """Include routers ahead of every MLflow route.

    They must match before MLflow's catch-all ``/`` mount of its Flask app, and before
    MLflow's own plain-text ``/health``; the Synergos paths clash with nothing else.
    ``dependencies`` (authentication) go on every router but the open ones.
    """
    routes = fastapi_app.router.routes
    mlflow_routes = list(routes)
    routes.clear()
    for name, router in routers.items():
        guard = [] if name in OPEN_ROUTER_MODULES else list(dependencies or [])
        fastapi_app.include_router(router, dependencies=guard)
    routes.extend(mlflow_routes)


def _install_error_handlers(fastapi_app: FastAPI) -> None:
    """One JSON error shape on the Synergos API; MLflow's own routes keep theirs."""
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException as StarletteHTTPException

    from synergos_mlops.server.http import API_PREFIX, ApiError, error_response

    async def api_error(_request: Request, exc: Exception) -> Any:
        assert isinstance(exc, ApiError)
        return error_response(exc.status_code, exc.code, exc.message)

    previous = fastapi_app.exception_handlers.get(RequestValidationError)

    async def validation_error(request: Request, exc: Exception) -> Any:
        if request.url.path.startswith(API_PREFIX) and isinstance(exc, RequestValidationError):
            problems = "; ".join(
                f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('msg', '')}"
                for error in exc.errors()
            )
            return error_response(400, "BAD_REQUEST", problems or "malformed request")
        if previous is None:
            raise exc
        response = previous(request, exc)
        return await response if inspect.isawaitable(response) else response

    previous_http = fastapi_app.exception_handlers.get(StarletteHTTPException)

    async def http_error(request: Request, exc: Exception) -> Any:
        # A path under the API that no route matches (a segment holding a newline, say).
        if request.url.path.startswith(API_PREFIX) and isinstance(exc, StarletteHTTPException):
            if exc.status_code == 404:
                path = request.url.path[:200]
                return error_response(404, "NOT_FOUND", f"no API route answers {path!r}")
            return error_response(exc.status_code, "BAD_REQUEST", str(exc.detail))
        if previous_http is None:
            raise exc
        response = previous_http(request, exc)
        return await response if inspect.isawaitable(response) else response

    fastapi_app.add_exception_handler(ApiError, api_error)
    fastapi_app.add_exception_handler(RequestValidationError, validation_error)
    fastapi_app.add_exception_handler(StarletteHTTPException, http_error)


def _is_server_worker() -> bool:
    """A server worker (serve set its store in the environment), not a test building the app.
    The name is ``mlflow.server.BACKEND_STORE_URI_ENV_VAR``, read before MLflow is imported."""
    return bool(os.environ.get("_MLFLOW_SERVER_FILE_STORE"))


def _freeze_startup_objects() -> None:
    """Move what the worker built at start-up (MLflow, SQLAlchemy, FastAPI: hundreds of
    thousands of long-lived objects) out of the garbage collector's sight. A bulk write or a
    series read allocates ~100,000 tuples; each full collection they trigger would otherwise
    walk that whole heap, which measured as half of a large read's time."""
    if _is_server_worker():
        gc.collect()
        gc.freeze()


def create_app(app: Flask | None = None) -> Any:
    """Return MLflow's server app with Synergos MLOps mounted on it."""
    # A worker's start is mostly importing MLflow's server, whose objects all live as long as
    # the worker: no collection is run while they are made (a quarter less CPU per start),
    # one is run at the end, and what is left is frozen (_freeze_startup_objects).
    collecting = gc.isenabled() and _is_server_worker()
    if collecting:
        gc.disable()
    try:
        return _create_app(app)
    finally:
        if collecting:
            gc.enable()


def _create_app(app: Flask | None) -> Any:
    from synergos_mlops.server.mlflow_imports import quiet_mlflow_server_imports

    with quiet_mlflow_server_imports():  # each worker would print it on every start
        import mlflow.server.fastapi_app  # noqa: F401
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as mlflow_flask_app

    flask_app = app if app is not None else mlflow_flask_app
    if _MLFLOW_SGI_NAME.get() not in (None, "uvicorn"):
        # gunicorn/waitress serve the Flask app alone; the Synergos routes need uvicorn.
        raise RuntimeError("the synergos app runs under uvicorn (MLflow's default server)")

    from mlflow.server.fastapi_app import create_fastapi_app

    from synergos_mlops.server.auth import AUTH_APP_ENV

    dependencies: list[Any] = []
    if os.environ.get(AUTH_APP_ENV) == "1":  # set by `synmlops serve --auth`
        from synergos_mlops.server.auth.app import authenticated_app

        fastapi_app, dependencies = authenticated_app(flask_app)
    else:
        fastapi_app = create_fastapi_app(flask_app)
    routers = {name: importlib.import_module(name).router for name in ROUTER_MODULES}
    # Last: a path under the API that no route above answers (see server/routes/fallback.py).
    routers["synergos_mlops.server.routes.fallback"] = importlib.import_module(
        "synergos_mlops.server.routes.fallback"
    ).router
    _include_first(fastapi_app, routers, dependencies)
    _install_error_handlers(fastapi_app)
    _freeze_startup_objects()
    return fastapi_app
