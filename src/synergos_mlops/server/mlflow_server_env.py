"""What MLflow's ``mlflow server`` command hands its uvicorn workers, written by ``serve``.

``mlflow server`` is a process of its own between ``synmlops serve`` and uvicorn: it imports
all of MLflow (about 2.7 s of CPU), opens the stores once, writes the environment below and
starts ``python -m uvicorn``. ``serve`` has already checked and created the store
(``server/database.py``), so it starts uvicorn itself with the same environment, and the
server answers about 2.5 s sooner. The workers are MLflow's own (its FastAPI app, its Flask
handlers reading these variables); only the process that launched them is gone.

The names are MLflow's (``mlflow.server.constants`` and ``mlflow.environment_variables``);
they are spelled here because importing ``mlflow.server`` costs the 2.3 s this saves.
``tests/test_serve.py`` checks them against MLflow's own, so an MLflow that renames one
fails a test instead of a server.
"""

from __future__ import annotations

import importlib.util
import uuid
from pathlib import Path

__all__ = [
    "ALLOWED_HOSTS_ENV",
    "APP_FACTORY",
    "CORS_ORIGINS_ENV",
    "FRAME_OPTIONS_ENV",
    "MLFLOW_UVICORN_LOG_CONFIG",
    "WORKER_ENV_NAMES",
    "mlflow_worker_env",
]

#: The ``mlflow.app`` entry point ``synergos`` (``mlflow server --app-name synergos``).
APP_FACTORY = "synergos_mlops.server.app:create_app"

#: MLflow's security middleware settings (``--allowed-hosts``, ``--cors-allowed-origins``,
#: ``--x-frame-options`` of ``mlflow server``).
ALLOWED_HOSTS_ENV = "MLFLOW_SERVER_ALLOWED_HOSTS"
CORS_ORIGINS_ENV = "MLFLOW_SERVER_CORS_ALLOWED_ORIGINS"
FRAME_OPTIONS_ENV = "MLFLOW_SERVER_X_FRAME_OPTIONS"

#: ``mlflow.server.constants`` name → its value, and the worker flags of
#: ``mlflow.environment_variables`` that ``mlflow server`` sets.
WORKER_ENV_NAMES = {
    "BACKEND_STORE_URI_ENV_VAR": "_MLFLOW_SERVER_FILE_STORE",
    "REGISTRY_STORE_URI_ENV_VAR": "_MLFLOW_SERVER_REGISTRY_STORE",
    "ARTIFACT_ROOT_ENV_VAR": "_MLFLOW_SERVER_ARTIFACT_ROOT",
    "SERVE_ARTIFACTS_ENV_VAR": "_MLFLOW_SERVER_SERVE_ARTIFACTS",
    "ARTIFACTS_DESTINATION_ENV_VAR": "_MLFLOW_SERVER_ARTIFACT_DESTINATION",
    "_MLFLOW_SERVER_BOOT_ID": "_MLFLOW_SERVER_BOOT_ID",
    "_MLFLOW_IN_JOB_EXECUTOR": "_MLFLOW_IN_JOB_EXECUTOR",
    "_MLFLOW_SGI_NAME": "_MLFLOW_SGI_NAME",
    "MLFLOW_ENABLE_WORKSPACES": "MLFLOW_ENABLE_WORKSPACES",
}

#: MLflow's logging set-up for uvicorn (the ``--log-config`` that ``mlflow server`` passes).
MLFLOW_UVICORN_LOG_CONFIG = (
    Path(next(iter(importlib.util.find_spec("mlflow").submodule_search_locations or [""])))  # type: ignore[union-attr]
    / "server"
    / "uvicorn_log_config.yaml"
)


def mlflow_worker_env(backend: str, destination: str) -> dict[str, str]:
    """The variables ``mlflow server --backend-store-uri B --artifacts-destination D`` sets
    for its workers: stores, proxied artifacts under ``mlflow-artifacts:/``, uvicorn, a new
    boot id, no job executor, no workspaces."""
    names = WORKER_ENV_NAMES
    return {
        names["BACKEND_STORE_URI_ENV_VAR"]: backend,
        names["REGISTRY_STORE_URI_ENV_VAR"]: backend,
        names["ARTIFACT_ROOT_ENV_VAR"]: "mlflow-artifacts:/",
        names["SERVE_ARTIFACTS_ENV_VAR"]: "true",
        names["ARTIFACTS_DESTINATION_ENV_VAR"]: destination,
        names["_MLFLOW_SERVER_BOOT_ID"]: uuid.uuid4().hex,
        names["_MLFLOW_IN_JOB_EXECUTOR"]: "false",
        names["_MLFLOW_SGI_NAME"]: "uvicorn",
        names["MLFLOW_ENABLE_WORKSPACES"]: "false",
    }
