"""The factory's half of authentication: MLflow's basic-auth app plus our hooks."""

from __future__ import annotations

from typing import Any

__all__ = ["authenticated_app"]


def authenticated_app(flask_app: Any) -> tuple[Any, list[Any]]:
    """MLflow's FastAPI app with its basic-auth (users, permissions, hooks, middleware) and
    our participant scoping; and the dependencies every Synergos router but /health takes."""
    from fastapi import Depends, Request
    from mlflow.server import auth as mlflow_auth

    from synergos_mlops.server.auth import _mlflow_routes
    from synergos_mlops.server.auth.viewer import (
        Unauthenticated,
        require_authentication,
        require_viewer,
    )
    from synergos_mlops.server.http import error_response

    fastapi_app = mlflow_auth.create_app(flask_app)  # under uvicorn: MLflow's FastAPI app
    _mlflow_routes.install(flask_app, fastapi_app)
    require_authentication()

    async def unauthenticated(_request: Request, exc: Exception) -> Any:
        assert isinstance(exc, Unauthenticated)
        response = error_response(exc.status_code, exc.code, exc.message)
        response.headers["WWW-Authenticate"] = 'Basic realm="mlflow"'
        return response

    fastapi_app.add_exception_handler(Unauthenticated, unauthenticated)
    return fastapi_app, [Depends(require_viewer)]
