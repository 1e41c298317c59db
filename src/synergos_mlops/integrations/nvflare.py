"""An NVIDIA FLARE analytics receiver that logs a job as a Synergos federated run.

::

    from nvflare.app_common.np.recipes import NumpyFedAvgRecipe
    from nvflare.recipe import SimEnv
    from synergos_mlops.integrations.nvflare import add_synergos_tracking

    recipe = NumpyFedAvgRecipe(name="linear", model=[0.0, 0.0], min_clients=2,
                               num_rounds=3, train_script="client.py")
    add_synergos_tracking(recipe, "http://localhost:5500", "c", "p", "e")
    recipe.run(SimEnv(num_clients=2))

``SynergosReceiver`` plays the part of NVFlare's ``MLflowReceiver`` on the server: the clients
log with ``nvflare.client.tracking`` (``MLflowWriter``'s ``log_metric(s)``, ``log_param(s)``,
``set_tag(s)``; ``SummaryWriter``'s ``add_scalar(s)``), their events reach the server as
``fed.analytix_log_stats``, and the receiver maps the job onto one federated run
(``run``, default: the job id) with each site a participant:

- a site's metrics become that participant's series under the key the site logged, at the
  step it gave (0 without one); its params and tags go onto its participant run, spooled
  with the points (tags named ``synergos.*`` or ``mlflow.*`` are refused, as they are ours and
  MLflow's); a site's ``log_text(text, path)`` is the file ``path`` of its participant run;
- the job's meta (name, min_clients, deploy map, ...) become hyperparameters ``job/<key>``;
- the sites of the job are the participants from the start;
- at the end of the run, the global model the job's persistor (``persistor_id``) holds is kept
  as ``models/global/global_model.npz`` (``numpy.savez`` of its weights by name) and
  registered as a model version of the run (see :mod:`synergos_mlops.integrations.models`).

NVFlare catches what a receiver raises and goes on, so a job succeeds even when nothing was
stored: a key MLflow refuses is sent as the site named it and counted by reason by the
destination (a server's ``/health``); a value that is no number (text, an int beyond a float)
is left out and counted there as ``metric value that is no number``; a param or tag the
destination refuses (reserved, a param logged again with another value, what MLflow refuses)
is counted there too (``params``, ``tags``); the others are kept.
``FedJob`` saves a component as its class and the ``__init__`` arguments it finds as attributes
of the same name, so each argument is kept under its own name here. The receiver's module is
imported from the installed package at every site: a job that adds it must not copy it into
``custom/`` (``add_synergos_tracking`` calls ``set_app_packages``).
"""

from __future__ import annotations

import io
import json
import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from nvflare.apis.analytix import (
    ANALYTIC_EVENT_TYPE,
    AnalyticsData,
    AnalyticsDataType,
    LogWriterName,
)
from nvflare.apis.dxo import from_shareable
from nvflare.apis.fl_constant import ReservedKey
from nvflare.apis.fl_context import FLContext
from nvflare.apis.shareable import Shareable
from nvflare.app_common.widgets.streaming import AnalyticsReceiver

from synergos_mlops.errors import InvalidValueError
from synergos_mlops.federation import ExperimentIds, validate_id
from synergos_mlops.integrations.models import register_arrays

if TYPE_CHECKING:
    from synergos_mlops.tracking import FederatedRun, FederatedTracker

__all__ = ["MODEL_FILE", "SynergosReceiver", "add_synergos_tracking"]

MODEL_FILE = "global_model.npz"
_SINGLE = {
    AnalyticsDataType.METRIC: AnalyticsDataType.METRICS,
    AnalyticsDataType.PARAMETER: AnalyticsDataType.PARAMETERS,
    AnalyticsDataType.TAG: AnalyticsDataType.TAGS,
}


def _job_meta(meta: Mapping[str, Any] | None) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in (meta or {}).items():
        if isinstance(value, (str, int, float, bool)) or value is None:
            values[f"job/{key}"] = value
        else:
            values[f"job/{key}"] = json.dumps(value, default=str, sort_keys=True)
    return values


class SynergosReceiver(AnalyticsReceiver):  # type: ignore[misc,unused-ignore]
    """Log an NVFlare job as a Synergos federated run, each site a participant.

    ``tracking_uri`` is a server URL or a store folder (as for ``FederatedTracker``);
    ``run`` defaults to the job id (in the simulator always ``simulate_job``: give one).
    ``events`` defaults to the clients' federated analytics events; ``persistor_id`` names
    the component whose model is the global model (NVFlare's default ``persistor``).
    """

    def __init__(
        self,
        tracking_uri: str,
        collaboration: str,
        project: str,
        experiment: str,
        run: str | None = None,
        events: list[str] | None = None,
        persistor_id: str = "persistor",
        register_model: bool = True,
    ) -> None:
        super().__init__(events=events or [f"fed.{ANALYTIC_EVENT_TYPE}"])
        ExperimentIds(collaboration, project, experiment)
        if run is not None:
            validate_id("run", run)
        # Each argument under its own name: FedJob writes them into the job's config.
        self.tracking_uri = os.fspath(tracking_uri)
        self.collaboration = collaboration
        self.project = project
        self.experiment = experiment
        self.run = run
        self.persistor_id = persistor_id
        self.register_model = register_model
        self._synergos_tracker: FederatedTracker | None = None
        self._federated: FederatedRun | None = None
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self.model_version: str | None = None

    # AnalyticsReceiver ---------------------------------------------------------------------

    def initialize(self, fl_ctx: FLContext) -> None:
        from synergos_mlops.tracking import FederatedTracker

        engine = fl_ctx.get_engine()
        sites = [client.name for client in engine.get_clients()]
        run = self.run or fl_ctx.get_job_id()
        self._synergos_tracker = FederatedTracker(self.tracking_uri)
        self._federated = self._synergos_tracker.run(
            self.collaboration, self.project, self.experiment, run,
            hyperparameters=_job_meta(fl_ctx.get_prop(ReservedKey.JOB_META)),
            participants=sites,
        )  # fmt: skip
        self.log_info(fl_ctx, f"Synergos: job logged as run {run!r} of sites {sites}")

    def save(self, fl_ctx: FLContext, shareable: Shareable, record_origin: str) -> None:
        run = self._federated
        if run is None:
            return
        data = AnalyticsData.from_dxo(from_shareable(shareable), receiver=LogWriterName.MLFLOW)
        if data is None:
            return
        kind = _SINGLE.get(data.data_type, data.data_type)
        values = data.value if kind is data.data_type else {data.tag: data.value}
        with self._lock:
            try:
                if kind == AnalyticsDataType.METRICS:
                    self._log_metrics(fl_ctx, run, record_origin, values, data.step or 0)
                elif kind == AnalyticsDataType.PARAMETERS:
                    self._log_params_or_tags(fl_ctx, run, record_origin, values, tags=False)
                elif kind == AnalyticsDataType.TAGS:
                    self._log_params_or_tags(fl_ctx, run, record_origin, values, tags=True)
                elif kind == AnalyticsDataType.TEXT:
                    self._log_text(fl_ctx, run, record_origin, data)
                else:
                    self._warn(fl_ctx, str(kind), f"{kind} from {record_origin} is not kept")
            except Exception as exc:  # noqa: BLE001 - one bad item never costs the others
                self._warn(fl_ctx, type(exc).__name__, f"{record_origin}: {exc}")

    def finalize(self, fl_ctx: FLContext) -> None:
        run, tracker = self._federated, self._synergos_tracker
        if run is None or tracker is None:
            return
        try:
            self._log_model(fl_ctx, run)
        except Exception as exc:  # noqa: BLE001 - the series are kept all the same
            self.log_error(fl_ctx, f"Synergos: the global model was not kept: {exc}")
        finally:
            run.end("FINISHED")
            tracker.close()
            self._federated = self._synergos_tracker = None

    # Ours ----------------------------------------------------------------------------------

    def _warn(self, fl_ctx: FLContext, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            self.log_warning(fl_ctx, f"Synergos: {message}")

    def _log_metrics(
        self, fl_ctx: FLContext, run: FederatedRun, site: str, values: Mapping[str, Any], step: int
    ) -> None:
        try:
            run.log_metrics(values, step=step, participant=site, check_keys=False)
        except InvalidValueError:
            for key, value in values.items():
                try:
                    run.log_metrics({key: value}, step=step, participant=site, check_keys=False)
                except InvalidValueError as exc:
                    self._warn(fl_ctx, key, f"{exc}; left out")

    def _log_params_or_tags(
        self, fl_ctx: FLContext, run: FederatedRun, site: str, values: Mapping[str, Any],
        *, tags: bool,
    ) -> None:  # fmt: skip
        # Spooled with the points: kept while the destination is away; what MLflow or the
        # destination refuses (a reserved tag, a param changed) is counted there, one by one.
        values = {str(key): value for key, value in values.items()}
        log = run.set_tags if tags else run.log_params
        try:
            log(values, participant=site)
        except InvalidValueError:  # one beyond the bounds: the others one by one
            for key, value in values.items():
                try:
                    log({key: value}, participant=site)
                except InvalidValueError as exc:
                    self._warn(fl_ctx, key, f"{exc}; left out")

    def _log_text(
        self, fl_ctx: FLContext, run: FederatedRun, site: str, data: AnalyticsData
    ) -> None:
        # MLflowWriter.log_text(text, artifact_file_path): a file of the site's run, as
        # NVFlare's MLflowReceiver keeps it; without a path there is nowhere to put it.
        from synergos_mlops.tracking import TEXT_PATH_REFUSED, TEXT_WITHOUT_PATH

        path = (data.kwargs or {}).get("path")
        if not path:
            reason = TEXT_WITHOUT_PATH
        else:
            try:
                run.log_text(str(data.value), str(path), participant=site)
                return
            except InvalidValueError:
                reason = TEXT_PATH_REFUSED
        run.count_left_out("texts", reason)  # counted by the destination, as refused values
        self._warn(fl_ctx, reason, f"a text from {site} is not kept: {reason} ({path!r})")

    def _log_model(self, fl_ctx: FLContext, run: FederatedRun) -> None:
        import numpy as np

        persistor = fl_ctx.get_engine().get_component(self.persistor_id)
        if persistor is None:
            self._warn(fl_ctx, "persistor", f"no component {self.persistor_id!r}: no global model")
            return
        learnable = persistor.load(fl_ctx)
        weights = learnable.get("weights") if learnable else None
        if not weights:
            return
        buffer = io.BytesIO()
        arrays: dict[str, Any] = {str(k): np.asarray(v) for k, v in weights.items()}
        np.savez(buffer, **arrays)
        data = buffer.getvalue()
        run.log_model(data, name=MODEL_FILE)
        if self.register_model:
            run.flush()
            step = fl_ctx.get_prop("num_rounds") or 0
            self.model_version = register_arrays(
                run, data, MODEL_FILE, step=int(step), model_type="nvflare-weights"
            )


def add_synergos_tracking(
    recipe: Any,
    tracking_uri: str,
    collaboration: str,
    project: str,
    experiment: str,
    run: str | None = None,
    **options: Any,
) -> SynergosReceiver:
    """Add a :class:`SynergosReceiver` to a recipe's (or a ``FedJob``'s) server, as NVFlare's
    ``add_experiment_tracking`` adds its MLflow receiver, and keep ``synergos_mlops`` out of
    the job's ``custom/`` folder (it is imported from the installed package)."""
    job = getattr(recipe, "_job", recipe)  # a Recipe holds its FedJob; a FedJob is one
    receiver = SynergosReceiver(tracking_uri, collaboration, project, experiment, run, **options)
    job.to_server(receiver, "synergos_receiver")
    packages = list(getattr(job.job, "app_packages", []) or [])
    if "synergos_mlops" not in packages:
        job.set_app_packages([*packages, "synergos_mlops"])
    return receiver
