"""Where the demo writes, whether that place already holds runs, and how to open the result."""

from __future__ import annotations

from urllib.parse import quote

from synergos_mlops.errors import ServerUnavailableError
from synergos_mlops.federation import ExperimentIds
from synergos_mlops.model_registry import store_folder_of

__all__ = ["check_reachable", "holds_runs", "is_server", "run_links", "store_folder_of"]

#: Where ``synmlops serve`` listens by default, for the hint printed after a folder run.
_DEFAULT_SERVER = "http://localhost:5500"  # as `synmlops serve` prints it


def is_server(tracking_uri: str) -> bool:
    return tracking_uri.startswith(("http://", "https://"))


def check_reachable(tracking_uri: str, timeout: float = 10.0) -> None:
    """Refuse a server that does not answer, before any training (the tracker itself would
    wait for it for a minute, which suits an orchestrator but not a first try)."""
    if not is_server(tracking_uri):
        return
    import requests

    try:
        requests.get(f"{tracking_uri.rstrip('/')}/health", timeout=timeout)
    except requests.RequestException as exc:
        reason = type(exc).__name__
        raise ServerUnavailableError(
            f"the tracking server at {tracking_uri} cannot be reached ({reason})"
        ) from None


def holds_runs(tracking_uri: str) -> bool:
    """True when the tracking destination holds at least one run, deleted ones included
    (a user who deleted the demo run does not want it back on the next ``make run``)."""
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    client = MlflowClient(tracking_uri=tracking_uri)
    page_token = None
    while True:
        experiments = client.search_experiments(
            view_type=ViewType.ALL, max_results=1000, page_token=page_token
        )
        ids = [experiment.experiment_id for experiment in experiments]
        for start in range(0, len(ids), 100):
            found = client.search_runs(
                ids[start : start + 100], run_view_type=ViewType.ALL, max_results=1
            )
            if found:
                return True
        page_token = experiments.token
        if not page_token:
            return False


def run_links(
    tracking_uri: str, ids: ExperimentIds, run: str, experiment_id: str, run_id: str
) -> tuple[str, str]:
    """The run's page in the Command Station and in the MLflow UI."""
    base = tracking_uri.rstrip("/") if is_server(tracking_uri) else _DEFAULT_SERVER
    path = "/".join(quote(part, safe="") for part in (*_parts(ids), run))
    station = f"{base}/synergos/runs/{path}"
    mlflow_ui = f"{base}/#/experiments/{experiment_id}/runs/{run_id}"
    return station, mlflow_ui


def _parts(ids: ExperimentIds) -> tuple[str, str, str]:
    return ids.collaboration, ids.project, ids.experiment
