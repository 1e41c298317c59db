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

import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synergos_mlops.errors import StoreError, SynergosError
from synergos_mlops.federation import ExperimentIds
from synergos_mlops.store import ARTIFACTS_NAME

if TYPE_CHECKING:
    from synergos_mlops.tracking import FederatedRun

__all__ = ["LOGGED_MODEL_NAME", "register_arrays", "registered_model_name"]

LOGGED_MODEL_NAME = "global_model"
_SQLITE = "sqlite:///"
_PREFIX = "mlflow-artifacts:/"


def registered_model_name(ids: ExperimentIds) -> str:
    """``synergos-<collaboration>-<project>-<experiment>``, characters that model URIs and
    the registry UI handle badly replaced by ``-`` (the demo's convention)."""
    raw = f"synergos-{ids.collaboration}-{ids.project}-{ids.experiment}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", raw)


def _store_folder(tracking_uri: str) -> Path | None:
    if tracking_uri.startswith(_SQLITE):
        return Path(tracking_uri[len(_SQLITE) :]).parent
    return None


def _upload(client: Any, tracking_uri: str, model_id: str, location: str, local: Path) -> None:
    """A server stores the files through its artifact proxy; a store folder gets them in
    ``<store>/artifacts/``, where ``synmlops serve`` finds them."""
    folder = _store_folder(tracking_uri)
    if folder is not None and location.startswith(_PREFIX):
        target = (folder / ARTIFACTS_NAME / location[len(_PREFIX) :].strip("/")).resolve()
        if not target.is_relative_to((folder / ARTIFACTS_NAME).resolve()):
            raise StoreError(f"model artifact location {location!r} leaves {folder}")
        shutil.copytree(local, target, dirs_exist_ok=True)
    else:
        client.log_model_artifacts(model_id, str(local))


@contextmanager
def _registry_sees(tracking_uri: str) -> Iterator[None]:
    """MLflow's SQL registry looks a ``models:/<id>`` source up through the process-wide
    tracking URI; for a store folder point it there for the one call, then restore it."""
    if _store_folder(tracking_uri) is None:
        yield
        return
    import mlflow

    previous = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]


def register_arrays(
    run: FederatedRun, data: bytes, file_name: str, *, step: int, model_type: str
) -> str:
    """Keep ``data`` as the file ``file_name`` of a logged model of ``run`` and register it;
    returns the new version's number."""
    import mlflow
    from mlflow.entities import LoggedModelOutput, LoggedModelStatus
    from mlflow.exceptions import MlflowException

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
            _upload(client, uri, logged.model_id, logged.artifact_location, Path(tmp))
    except BaseException:
        client.finalize_logged_model(logged.model_id, LoggedModelStatus.FAILED)
        raise
    client.finalize_logged_model(logged.model_id, LoggedModelStatus.READY)
    client.log_outputs(run.run_id, [LoggedModelOutput(logged.model_id, step=step)])

    name = registered_model_name(run.ids)
    try:
        client.create_registered_model(name, description="Global model of federated runs.")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    with _registry_sees(uri):
        version = client.create_model_version(
            name, source=f"models:/{logged.model_id}", run_id=run.run_id,
            model_id=logged.model_id, tags=tags,
            description=f"Final global model of federated run {run.run!r}.",
            await_creation_for=0,
        )  # fmt: skip
    deadline = time.monotonic() + 300
    while version.status == "PENDING_REGISTRATION" and time.monotonic() < deadline:
        time.sleep(0.5)
        version = client.get_model_version(version.name, version.version)
    if version.status != "READY":
        raise SynergosError(f"model version {name}/{version.version} is {version.status}")
    return str(version.version)
