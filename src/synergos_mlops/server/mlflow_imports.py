"""Importing MLflow's server modules without the deprecation they print on import.

MLflow 3.17's FastAPI app (``mlflow.server.fastapi_app``, imported by ``mlflow.server.auth``
and so by every module of its basic-auth app) imports ``starlette.middleware.wsgi``, which
Starlette has deprecated: two lines on stderr before any output of ours, in every server
worker and every ``synmlops auth`` command. It is MLflow's to replace; we only import.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

__all__ = ["quiet_mlflow_server_imports"]


@contextlib.contextmanager
def quiet_mlflow_server_imports() -> Iterator[None]:
    """Silence Starlette's deprecation of its WSGI middleware, and nothing else, inside."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="starlette.middleware.wsgi is deprecated", category=UserWarning
        )
        yield
