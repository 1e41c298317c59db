"""What an ingested parent run keeps in the tracker (shared by the pass and the no-op check)."""

from __future__ import annotations

__all__ = ["DIGEST_TAG", "MANIFEST_PATH"]

#: The parent run's tag: the digest of its files' (name, size, mtime_ns) as last ingested.
DIGEST_TAG = "synergos.ingest.digest"
#: The parent run's artifact: name, size, mtime_ns and sha256 of every file ingested.
MANIFEST_PATH = "ingest/manifest.json"
