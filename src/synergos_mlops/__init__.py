"""Synergos MLOps: keep, see and manage the results of federated learning, on MLflow.

The public surface is small and cheap to import; heavy modules load on first use::

    from synergos_mlops import FederatedTracker
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synergos_mlops.errors import (
    FileStoreFoundError,
    IngestError,
    InvalidIdError,
    InvalidValueError,
    SchemaOutOfDateError,
    ServerUnavailableError,
    StoreError,
    SynergosError,
)

__version__ = "0.1.0"

__all__ = [
    "FederatedLogHandler",
    "FederatedTracker",
    "FileStoreFoundError",
    "IngestError",
    "InvalidIdError",
    "InvalidValueError",
    "SchemaOutOfDateError",
    "ServerUnavailableError",
    "StoreError",
    "SynergosError",
    "SystemMonitor",
    "TrackerConfig",
    "__version__",
]

if TYPE_CHECKING:
    from synergos_mlops.tracking import (
        FederatedLogHandler,
        FederatedTracker,
        SystemMonitor,
        TrackerConfig,
    )


def __getattr__(name: str) -> Any:
    if name in ("FederatedLogHandler", "FederatedTracker", "SystemMonitor", "TrackerConfig"):
        from synergos_mlops import tracking

        return getattr(tracking, name)
    raise AttributeError(f"module 'synergos_mlops' has no attribute {name!r}")
