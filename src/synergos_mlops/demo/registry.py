"""The final global model as an MLflow model, registered in the Model Registry.

The model is a scikit-learn ``LogisticRegression`` carrying the federated weights, saved in
the safe ``skops`` format with the pyfunc flavour, so ``mlflow.pyfunc.load_model`` and
``mlflow.sklearn.load_model`` both load it and predict exactly as the federated model.

Everything goes through an :class:`mlflow.MlflowClient` bound to the run's tracking URI; the
process-wide MLflow state (the active run, the tracking URI) is left as it was (see
:func:`synergos_mlops.model_registry.registry_sees` for the one call that needs the tracking
URI, and how it is restored).
``mlflow.sklearn.log_model`` is not used because it reads the full history of every metric
of the run, one request per key, to copy one step onto the model: hundreds of requests for a
federated run with per-class statistics.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from synergos_mlops.demo.training import SoftmaxModel
from synergos_mlops.model_registry import (
    await_ready,
    ensure_registered_model,
    registered_model_name,
    registry_sees,
    upload_model_files,
)

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


registered_name = registered_model_name


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
            upload_model_files(
                client, tracking_uri, logged.model_id, logged.artifact_location, path
            )
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=step)])

    ensure_registered_model(
        client, name, "Global model of Synergos federated runs (synmlops demo)."
    )
    with registry_sees(tracking_uri):
        version = client.create_model_version(
            name,
            source=f"models:/{logged.model_id}",
            run_id=run_id,
            model_id=logged.model_id,
            tags=dict(tags or {}),
            description="Final global model of the federated run.",
            await_creation_for=0,  # waited for below, without MLflow's log line
        )
    await_ready(client, version)
    return RegisteredModel(name=name, version=str(version.version), model_id=logged.model_id)
