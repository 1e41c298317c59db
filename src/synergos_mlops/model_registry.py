"""Logged models and registered versions of a federated run, through MLflow's client.

Shared by the demo (a scikit-learn model) and the framework adapters (opaque files): the
registered model's name, where a logged model's files go (a server's artifact proxy, or a store
folder's ``artifacts/`` directly), and the registry's asynchronous registration.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from synergos_mlops.errors import StoreError, SynergosError
from synergos_mlops.federation import ExperimentIds
from synergos_mlops.store import ARTIFACTS_NAME

__all__ = [
    "await_ready",
    "ensure_registered_model",
    "registered_model_name",
    "registry_sees",
    "store_folder_of",
    "upload_model_files",
]

_SQLITE = "sqlite:///"
_PROXY = "mlflow-artifacts:/"


def registered_model_name(ids: ExperimentIds) -> str:
    """``synergos-<collaboration>-<project>-<experiment>``, with characters that model URIs
    and the registry UI handle badly replaced by ``-``."""
    raw = f"synergos-{ids.collaboration}-{ids.project}-{ids.experiment}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


def store_folder_of(tracking_uri: str) -> Path | None:
    """The store folder behind a ``sqlite:///<store>/mlflow.db`` URI, else None."""
    if tracking_uri.startswith(_SQLITE):
        return Path(tracking_uri[len(_SQLITE) :]).parent
    return None


def upload_model_files(
    client: Any, tracking_uri: str, model_id: str, artifact_location: str, local_dir: Path
) -> None:
    """Put a logged model's files where it points.

    A store folder's runs keep their artifacts under ``mlflow-artifacts:/``, which only a
    server resolves (to ``<store>/artifacts/``); written directly, the folder then serves the
    model as soon as ``synmlops serve`` runs on it.
    """
    folder = store_folder_of(tracking_uri)
    if folder is not None and artifact_location.startswith(_PROXY):
        relative = artifact_location[len(_PROXY) :].strip("/")
        target = (folder / ARTIFACTS_NAME / relative).resolve()
        if not target.is_relative_to((folder / ARTIFACTS_NAME).resolve()):
            raise StoreError(f"model artifact location {artifact_location!r} leaves {folder}")
        shutil.copytree(local_dir, target, dirs_exist_ok=True)
    else:
        client.log_model_artifacts(model_id, str(local_dir))


@contextmanager
def registry_sees(tracking_uri: str) -> Iterator[None]:
    """Let a database registry find the logged model.

    MLflow's SQL registry looks a ``models:/<model_id>`` source up through the process-wide
    tracking URI, not its client's (a known gap in MLflow). A server does that lookup on its
    own side; for a store folder the process-wide URI is pointed at it for this one call and
    then restored exactly (``set_tracking_uri`` mirrors itself in ``MLFLOW_TRACKING_URI``, so
    that variable holds the previous state).
    """
    if tracking_uri.startswith(("http://", "https://")):
        yield
        return
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]


def ensure_registered_model(client: Any, name: str, description: str) -> None:
    """Create the registered model ``name`` unless it exists."""
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def await_ready(client: Any, version: Any, timeout: float = 300.0) -> Any:
    """Wait until a registry that registers asynchronously has the version READY."""
    deadline = time.monotonic() + timeout
    while version.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
        time.sleep(0.5)
        version = client.get_model_version(version.name, version.version)
    if version.status != "READY":
        raise SynergosError(
            f"model version {version.name}/{version.version} is {version.status}, not READY"
        )
    return version
