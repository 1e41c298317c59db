"""Serving an MLflow file store that another process (the original Synergos TTP, on
mlflow 1.7.2) keeps writing: read it incrementally and mirror it into the server's database.

Nothing here writes to the file store. See docs/legacy.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from synergos_mlops.legacy._filestore import FileStoreError, MetricCursor, PassReport
from synergos_mlops.legacy._sync import (
    STATUS_ENV,
    FileStoreSync,
    file_store_health_problem,
    read_status,
)

if TYPE_CHECKING:
    from synergos_mlops.legacy._mirror import (
        SOURCE_FILE_STORE,
        TAG_LEGACY_RUN,
        TAG_SOURCE,
        FileStoreMirror,
        legacy_participant_of_artifact,
    )

#: Names of the mirror, which loads MLflow: imported when first used, so that a server whose
#: folder holds no file store (and ``/health``) never loads it for them.
_MIRROR = frozenset(
    {"SOURCE_FILE_STORE", "TAG_LEGACY_RUN", "TAG_SOURCE", "FileStoreMirror",
     "legacy_participant_of_artifact"}
)  # fmt: skip


def __getattr__(name: str) -> Any:
    if name in _MIRROR:
        from synergos_mlops.legacy import _mirror

        return getattr(_mirror, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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
