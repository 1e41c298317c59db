"""The final global model as an MLflow model, registered in the Model Registry.

The model is a scikit-learn ``LogisticRegression`` carrying the federated weights, saved in
the safe ``skops`` format with the pyfunc flavour, so ``mlflow.pyfunc.load_model`` and
``mlflow.sklearn.load_model`` both load it and predict exactly as the federated model.

Everything goes through an :class:`mlflow.MlflowClient` bound to the run's tracking URI; the
process-wide MLflow state (the active run, the tracking URI) is left as it was (see
:func:`_registry_sees` for the one call that needs the tracking URI, and how it is restored).
``mlflow.sklearn.log_model`` is not used because it reads the full history of every metric
of the run, one request per key, to copy one step onto the model: hundreds of requests for a
federated run with per-class statistics.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from synergos_mlops.demo.target import is_server, store_folder_of
from synergos_mlops.demo.training import SoftmaxModel
from synergos_mlops.errors import StoreError
from synergos_mlops.federation import ExperimentIds
from synergos_mlops.store import ARTIFACTS_NAME

__all__ = ["LOGGED_MODEL_NAME", "RegisteredModel", "register_global_model", "registered_name"]

#: The name of the logged model inside the parent run (``models:/<model_id>``).
LOGGED_MODEL_NAME = "global_model"


@dataclass(frozen=True)
class RegisteredModel:
    """Where the registered global model lives."""

    name: str
    version: str
    model_id: str

    @property
    def uri(self) -> str:
        """``models:/<name>/<version>``, for ``mlflow.pyfunc.load_model``."""
        return f"models:/{self.name}/{self.version}"


def registered_name(ids: ExperimentIds) -> str:
    """``synergos-<collaboration>-<project>-<experiment>``, with characters that model URIs
    and the registry UI handle badly replaced by ``-``."""
    raw = f"synergos-{ids.collaboration}-{ids.project}-{ids.experiment}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


def _upload(
    client: Any, tracking_uri: str, model_id: str, artifact_location: str, local_dir: Path
) -> None:
    """Put the saved model where its logged model points.

    A store folder's runs keep their artifacts under ``mlflow-artifacts:/``, which only a
    server resolves (to ``<store>/artifacts/``); written directly, the folder then serves the
    model as soon as ``synmlops serve`` runs on it.
    """
    folder = store_folder_of(tracking_uri)
    prefix = "mlflow-artifacts:/"
    if folder is not None and artifact_location.startswith(prefix):
        relative = artifact_location[len(prefix) :].strip("/")
        target = (folder / ARTIFACTS_NAME / relative).resolve()
        if not target.is_relative_to((folder / ARTIFACTS_NAME).resolve()):
            raise StoreError(f"model artifact location {artifact_location!r} leaves {folder}")
        shutil.copytree(local_dir, target, dirs_exist_ok=True)
    else:
        client.log_model_artifacts(model_id, str(local_dir))


@contextmanager
def _registry_sees(tracking_uri: str) -> Iterator[None]:
    """Let a database registry find the logged model.

    MLflow's SQL registry looks a ``models:/<model_id>`` source up through the process-wide
    tracking URI, not its client's (a known gap in MLflow). A server does that lookup on its
    own side; for a store folder the process-wide URI is pointed at it for this one call and
    then restored exactly (``set_tracking_uri`` mirrors itself in ``MLFLOW_TRACKING_URI``, so
    that variable holds the previous state).
    """
    if is_server(tracking_uri):
        yield
        return
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]


def _await_ready(client: Any, version: Any, timeout: float = 300.0) -> None:
    """Wait until a registry that registers asynchronously has the version READY."""
    import time

    from synergos_mlops.errors import SynergosError

    deadline = time.monotonic() + timeout
    while version.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
        time.sleep(0.5)
        version = client.get_model_version(version.name, version.version)
    if version.status != "READY":
        raise SynergosError(
            f"model version {version.name}/{version.version} is {version.status}, not READY"
        )


def _ensure_registered_model(client: Any, name: str, description: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def register_global_model(
    *,
    tracking_uri: str,
    experiment_id: str,
    run_id: str,
    name: str,
    model: SoftmaxModel,
    example: NDArray[np.float64],
    params: Mapping[str, object],
    step: int,
    tags: Mapping[str, str] | None = None,
) -> RegisteredModel:
    """Log ``model`` as an MLflow model of run ``run_id`` and register it as a new version
    of ``name``, whose source is that run."""
    import mlflow
    import mlflow.sklearn
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.models import Model, infer_signature

    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    estimator = model.to_sklearn()
    logged = client.create_logged_model(
        experiment_id,
        name=LOGGED_MODEL_NAME,
        source_run_id=run_id,
        params={key: str(value) for key, value in params.items()},
        tags=dict(tags or {}),
        model_type="softmax-regression",
    )
    try:
        with tempfile.TemporaryDirectory(prefix="synmlops-model-") as tmp:
            path = Path(tmp) / "model"
            mlflow.sklearn.save_model(
                estimator,
                str(path),
                mlflow_model=Model(
                    artifact_path=logged.artifact_location,
                    run_id=run_id,
                    model_uuid=logged.model_id,
                    model_id=logged.model_id,
                ),
                serialization_format=mlflow.sklearn.SERIALIZATION_FORMAT_SKOPS,
                signature=infer_signature(example, estimator.predict(example)),
                input_example=example[:2],
                # Given explicitly: inferring them starts a subprocess that loads the model.
                pip_requirements=mlflow.sklearn.get_default_pip_requirements(include_skops=True),
            )
            _upload(client, tracking_uri, logged.model_id, logged.artifact_location, path)
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])

    _ensure_registered_model(
        client, name, "Global model of Synergos federated runs (synmlops demo)."
    )
    with _registry_sees(tracking_uri):
        version = client.create_model_version(
            name,
            source=f"models:/{logged.model_id}",
            run_id=run_id,
            model_id=logged.model_id,
            tags=dict(tags or {}),
            description="Final global model of the federated run.",
            await_creation_for=0,  # waited for below, without MLflow's log line
        )
    _await_ready(client, version)
    return RegisteredModel(name=name, version=str(version.version), model_id=logged.model_id)
