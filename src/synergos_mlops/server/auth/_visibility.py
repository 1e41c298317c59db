"""What of MLflow's resources an account bound to participants may not see.

A run is another participant's when it is a participant run (``synergos.role`` =
``participant``) of a collaboration the account is not bound to for that participant. Every
other resource is judged by the runs it comes from:

- a logged model by its source run;
- a model version by its run, its logged model and whatever run or logged model its source
  names (``runs:/<run>/...``, ``models:/<model id>``, an artifact URI);
- a registered model by its versions: hidden when it has versions and all are hidden;
- a dataset (as ``experiments/search-datasets`` lists it) by the runs that used it: hidden
  when every one of them is;
- an artifact proxy path by its run or logged model (``<exp>/<run>/...``,
  ``<exp>/models/<model id>/...``); any other folder under an experiment (traces) is hidden.

Answers are cached for one request.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_plus

from synergos_mlops.server.auth.viewer import RunVisibility

__all__ = ["Visibility", "model_ids", "run_ids"]

#: MLflow run ids are 32 lower-case hex digits (uuid4().hex); logged models ``m-`` and as many.
_RUN_ID = re.compile(r"(?<![0-9a-f])[0-9a-f]{32}(?![0-9a-f])")
_MODEL_ID = re.compile(r"(?<![0-9a-z-])m-[0-9a-f]{32}(?![0-9a-f])")


def run_ids(*texts: str) -> list[str]:
    """Every run id named in ``texts``, percent-encoded or not (``path=1%2F<run>``)."""
    found: list[str] = []
    for text in texts:
        found += _RUN_ID.findall(unquote_plus(text).lower())
    return found


def model_ids(*texts: str) -> list[str]:
    """Every logged model id named in ``texts``."""
    found: list[str] = []
    for text in texts:
        found += _MODEL_ID.findall(unquote_plus(text).lower())
    return found


class Visibility(RunVisibility):
    """:class:`RunVisibility` for runs, and the resources that come from runs."""

    def __init__(self, viewer: Any, tracking_store: Any = None) -> None:
        super().__init__(viewer, tracking_store)
        self._models: dict[str, bool] = {}
        self._versions: dict[tuple[str, str], bool] = {}
        self._registered: dict[str, bool] = {}
        self._datasets: dict[tuple[str, str, str], bool] = {}

    @property
    def session_maker(self) -> Any:
        return self.store.ManagedSessionMaker

    def model_hidden(self, model_id: str) -> bool:
        if model_id not in self._models:
            from synergos_mlops.storage.catalogue import logged_model

            try:
                model = logged_model(self.session_maker, model_id)
            except Exception:  # noqa: BLE001 - a store without logged models hides none
                model = None
            self._models[model_id] = model is not None and self.hidden(model.source_run_id)
        return self._models[model_id]

    def named_hidden(self, *texts: str) -> str | None:
        """The first run or logged model named in ``texts`` that is hidden."""
        run = self.any_hidden(run_ids(*texts))
        if run is not None:
            return f"Run '{run}'"
        return next((f"Logged model '{m}'" for m in model_ids(*texts) if self.model_hidden(m)),
                    None)  # fmt: skip

    def source_hidden(self, run_id: str | None, model_id: str | None, source: str | None) -> bool:
        """Whether a model version with this run, logged model and source is hidden."""
        if run_id and self.hidden(run_id):
            return True
        if model_id and self.model_hidden(model_id):
            return True
        return bool(source) and self.named_hidden(str(source)) is not None

    def version_hidden(self, name: str, version: str) -> bool:
        key = (name, version)
        if key not in self._versions:
            from synergos_mlops.storage.catalogue import model_version

            try:
                found = model_version(self.session_maker, name, int(version))
            except (ValueError, TypeError):
                found = None
            self._versions[key] = found is not None and self.source_hidden(
                found.run_id, found.model_id, found.source
            )
        return self._versions[key]

    def registered_model_hidden(self, name: str) -> bool:
        if name not in self._registered:
            from mlflow.store.model_registry.dbmodels.models import SqlModelVersion

            with self.session_maker() as session:
                rows = (
                    session.query(SqlModelVersion.version)
                    .filter(
                        SqlModelVersion.name == name,
                        SqlModelVersion.current_stage != "Deleted_Internal",
                    )
                    .all()
                )
            versions = [str(row[0]) for row in rows]
            self._registered[name] = bool(versions) and all(
                self.version_hidden(name, v) for v in versions
            )
        return self._registered[name]

    def dataset_hidden(self, experiment_id: str, name: str, digest: str) -> bool:
        key = (experiment_id, name, digest)
        if key not in self._datasets:
            from mlflow.store.tracking.dbmodels.models import SqlDataset, SqlInput

            if not experiment_id.isdigit():
                return False

            with self.session_maker() as session:
                rows = (
                    session.query(SqlInput.destination_id)
                    .join(SqlDataset, SqlDataset.dataset_uuid == SqlInput.source_id)
                    .filter(
                        SqlInput.source_type == "DATASET",
                        SqlInput.destination_type == "RUN",
                        SqlDataset.experiment_id == int(experiment_id),
                        SqlDataset.name == name,
                        SqlDataset.digest == digest,
                    )
                    .all()
                )
            runs = {str(row[0]) for row in rows}
            self._datasets[key] = bool(runs) and all(self.hidden(r) for r in runs)
        return self._datasets[key]

    def artifact_path_hidden(self, artifact_path: str) -> str | None:
        """The proxy's ``<exp>/<run>/...`` and ``<exp>/models/<model id>/...``: what is
        hidden in it; any other folder below an experiment is hidden as a whole."""
        parts = [p for p in unquote_plus(artifact_path).split("/") if p]
        if len(parts) < 2:
            return None
        named = self.named_hidden(artifact_path)
        if named is not None:
            return named
        if parts[1] == "models" or _RUN_ID.fullmatch(parts[1].lower()):
            return None
        return f"Artifact folder '{parts[0]}/{parts[1]}'"
