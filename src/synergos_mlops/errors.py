"""The exceptions Synergos MLOps raises, in one place.

::

    SynergosError                      every error of ours; catch this to catch them all
    ├── InvalidIdError                 an id is empty, not printable, or contains "/"
    ├── InvalidValueError              a metric value, key or hyperparameter MLflow would refuse
    ├── StoreError                     a store folder or URI that cannot be used
    │   ├── FileStoreFoundError        an old MLflow file store that cannot be used as asked
    │   └── SchemaOutOfDateError       the database needs `synmlops db upgrade`
    ├── ServerUnavailableError         the tracking server did not answer in time
    └── IngestError                    an output folder that cannot be ingested

Every message is one sentence that names the offending id, key, path or setting, so the
command line can print it as it is.
"""

from __future__ import annotations

__all__ = [
    "FileStoreFoundError",
    "IngestError",
    "InvalidIdError",
    "InvalidValueError",
    "SchemaOutOfDateError",
    "ServerUnavailableError",
    "StoreError",
    "SynergosError",
]


class SynergosError(Exception):
    """Base class of every Synergos MLOps error."""


class InvalidIdError(SynergosError, ValueError):
    """A collaboration, project, experiment, run or participant id that cannot be used."""


class InvalidValueError(SynergosError, ValueError):
    """A metric key or value, or a hyperparameter, that MLflow would refuse."""


class StoreError(SynergosError):
    """A store folder or backend URI that cannot be used."""


class FileStoreFoundError(StoreError):
    """An MLflow file store where it cannot be used as asked (``serve`` mirrors file stores
    live and no longer raises it; kept for callers that catch it)."""


class SchemaOutOfDateError(StoreError):
    """The database schema is older than this MLflow release expects."""


class ServerUnavailableError(SynergosError):
    """The tracking server could not be reached in the time allowed."""


class IngestError(SynergosError):
    """An orchestrator output folder that cannot be ingested."""
