"""Serving an MLflow file store that another process (the original Synergos TTP, on
mlflow 1.7.2) keeps writing: read it incrementally and mirror it into the server's database.

Nothing here writes to the file store. See docs/legacy.md.
"""

from __future__ import annotations

from synergos_mlops.legacy._filestore import FileStoreError, MetricCursor
from synergos_mlops.legacy._mirror import (
    SOURCE_FILE_STORE,
    TAG_LEGACY_RUN,
    TAG_SOURCE,
    FileStoreMirror,
    PassReport,
    legacy_participant_of_artifact,
)
from synergos_mlops.legacy._sync import (
    STATUS_ENV,
    FileStoreSync,
    file_store_health_problem,
    read_status,
)

__all__ = [
    "SOURCE_FILE_STORE",
    "STATUS_ENV",
    "TAG_LEGACY_RUN",
    "TAG_SOURCE",
    "FileStoreError",
    "FileStoreMirror",
    "FileStoreSync",
    "MetricCursor",
    "PassReport",
    "file_store_health_problem",
    "legacy_participant_of_artifact",
    "read_status",
]
