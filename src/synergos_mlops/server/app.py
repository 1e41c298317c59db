"""The ``mlflow.app`` factory: MLflow's server app plus the Synergos routes.

MLflow imports this factory by name in every worker (``mlflow server --app-name synergos``,
which ``synmlops serve`` runs), so configuration arrives through environment variables read
here, never at import time. Under uvicorn the factory returns MLflow's FastAPI app with the
Synergos routers included *before* the catch-all mount of MLflow's Flask app, so the stock
UI and REST API keep working unchanged.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI
    from flask import Flask

__all__ = ["create_app"]


def _include_first(fastapi_app: FastAPI, routers: list[Any]) -> None:
    """Include routers ahead of every MLflow route.

    They must match before MLflow's catch-all ``/`` mount of its Flask app, and before
    MLflow's own plain-text ``/health``; the Synergos paths clash with nothing else.
    """
    routes = fastapi_app.router.routes
    mlflow_routes = list(routes)
    routes.clear()
    for router in routers:
        fastapi_app.include_router(router)
    routes.extend(mlflow_routes)


def create_app(app: Flask | None = None) -> Any:
    """Return MLflow's server app with Synergos MLOps mounted on it."""
    from mlflow.environment_variables import _MLFLOW_SGI_NAME
    from mlflow.server import app as mlflow_flask_app

    from synergos_mlops.server import health

    flask_app = app if app is not None else mlflow_flask_app
    if _MLFLOW_SGI_NAME.get() not in (None, "uvicorn"):
        # gunicorn/waitress serve the Flask app alone; the Synergos routes need uvicorn.
        raise RuntimeError("the synergos app runs under uvicorn (MLflow's default server)")

    from mlflow.server.fastapi_app import create_fastapi_app

    fastapi_app = create_fastapi_app(flask_app)
    _include_first(fastapi_app, [health.router])
    return fastapi_app
