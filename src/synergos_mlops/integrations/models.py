"""A framework's final global model as an MLflow logged model, registered with lineage.

The framework adapters (Flower, NVIDIA FLARE) hand over the model as bytes in the
framework's own form (a ``numpy.savez`` file of Flower's arrays, NVFlare's saved model): it is
kept as it is, as the files of an MLflow logged model of the federated run (``models:/<id>``,
source run = the federated run, output of that run at the last round) and registered as a new
version of ``synergos-<collaboration>-<project>-<experiment>`` whose run is the federated run,
so the catalogue's lineage (dataset, participant run, federated run, model version) reaches it.
The files are not an MLflow flavour: ``mlflow.artifacts.download_artifacts(<version source>)``
gives them back, and the framework loads them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from synergos_mlops.model_registry import (
    await_ready,
    ensure_registered_model,
    registered_model_name,
    registry_sees,
    upload_model_files,
)

if TYPE_CHECKING:
    from synergos_mlops.tracking import FederatedRun

__all__ = ["LOGGED_MODEL_NAME", "register_arrays", "registered_model_name"]

LOGGED_MODEL_NAME = "global_model"


def register_arrays(
    run: FederatedRun, data: bytes, file_name: str, *, step: int, model_type: str
) -> str:
    """Keep ``data`` as the file ``file_name`` of a logged model of ``run`` and register it;
    returns the new version's number."""
    import mlflow
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus

    uri = run.tracking_uri
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    tags = {"synergos.run": run.run, "synergos.collaboration": run.ids.collaboration}
    logged = client.create_logged_model(
        run.experiment_id, name=LOGGED_MODEL_NAME, source_run_id=run.run_id, tags=tags,
        model_type=model_type,
    )  # fmt: skip
    try:
        with tempfile.TemporaryDirectory(prefix="synmlops-model-") as tmp:
            (Path(tmp) / file_name).write_bytes(data)
            upload_model_files(client, uri, logged.model_id, logged.artifact_location, Path(tmp))
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(run.run_id, [LoggedModelOutput(logged.model_id, step=step)])

    name = registered_model_name(run.ids)
    ensure_registered_model(client, name, "Global model of federated runs.")
    with registry_sees(uri):
        version = client.create_model_version(
            name, source=f"models:/{logged.model_id}", run_id=run.run_id,
            model_id=logged.model_id, tags=tags,
            description=f"Final global model of federated run {run.run!r}.",
            await_creation_for=0,
        )  # fmt: skip
    version = await_ready(client, version)
    return str(version.version)
