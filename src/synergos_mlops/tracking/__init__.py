"""The orchestrator's logging library: a federated cycle onto MLflow (see docs/tracking.md).

::

    from synergos_mlops import FederatedTracker

    tracker = FederatedTracker("http://localhost:5500")    # or a store folder
    with tracker.run(collaboration="c", project="p", experiment="e", run="r",
                     hyperparameters={"rounds": 10, "epochs": 5},
                     participants=["worker_1", "worker_2"]) as run:
        run.log_metrics({"train/loss": 0.71}, step=0)
        run.log_metrics({"train/loss": 0.83}, step=0, participant="worker_1")

Importing this package is cheap: MLflow, SQLAlchemy and requests load on first use.
"""

from __future__ import annotations

from synergos_mlops.tracking._config import TrackerConfig, default_spool_dir
from synergos_mlops.tracking._logs import FederatedLogHandler
from synergos_mlops.tracking._run import TEXT_PATH_REFUSED, TEXT_WITHOUT_PATH, FederatedRun
from synergos_mlops.tracking._sender import BatchRejectedError
from synergos_mlops.tracking._study import QueuedTrial, Study, TrialRun
from synergos_mlops.tracking._system import MonitorSummary, Sampler, SystemMonitor
from synergos_mlops.tracking._tracker import GLOBAL, PARAM_VALUE_LIMIT, FederatedTracker
from synergos_mlops.tracking._transport import (
    FolderTransport,
    HttpTransport,
    Resolved,
    Transport,
    transport_for,
)

__all__ = [
    "GLOBAL",
    "PARAM_VALUE_LIMIT",
    "TEXT_PATH_REFUSED",
    "TEXT_WITHOUT_PATH",
    "BatchRejectedError",
    "FederatedLogHandler",
    "FederatedRun",
    "FederatedTracker",
    "FolderTransport",
    "HttpTransport",
    "MonitorSummary",
    "QueuedTrial",
    "Resolved",
    "Sampler",
    "Study",
    "SystemMonitor",
    "TrackerConfig",
    "Transport",
    "TrialRun",
    "default_spool_dir",
    "transport_for",
]
