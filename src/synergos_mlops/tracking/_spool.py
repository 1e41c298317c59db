"""The on-disk spool: metric batches wait here until the destination has stored them.

::

    <spool root>/<destination id>/         one folder per server or store folder
        destination.txt                    which one (for people)
        <owner>/                           one per tracker: "<start time ns>-<pid>-<random>"
            lock                           flock-ed by the owner while it lives
            <sequence>.batch               wire-form batches, sent in name order
        rejected/                          batches the destination refused (kept, never sent)

A tracker writes each batch to its own folder before sending it and deletes it once stored.
A folder whose lock nobody holds belongs to a tracker that is gone (its process ended or
crashed); the next tracker for the same destination adopts it and sends its batches, oldest
owner first, before its own. Sending twice is harmless: the bulk write is idempotent.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import time
import uuid
from pathlib import Path
from typing import IO

__all__ = ["Spool", "SpoolFolder"]

_SUFFIX = ".batch"


class SpoolFolder:
    """One owner's folder, locked while in use."""

    def __init__(self, path: Path, lock: IO[bytes]) -> None:
        self.path = path
        self._lock: IO[bytes] | None = lock

    def batches(self) -> list[Path]:
        try:
            return sorted(p for p in self.path.iterdir() if p.name.endswith(_SUFFIX))
        except FileNotFoundError:
            return []

    def release(self, *, remove_if_empty: bool = True) -> None:
        if remove_if_empty and not self.batches():
            with contextlib.suppress(OSError):
                (self.path / "lock").unlink()
                self.path.rmdir()
        if self._lock is not None:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None


class Spool:
    """The spool of one destination; each tracker owns one folder in it."""

    def __init__(self, root: Path, destination_id: str, destination: str) -> None:
        self.path = root / destination_id
        self.path.mkdir(parents=True, exist_ok=True)
        note = self.path / "destination.txt"
        if not note.exists():
            note.write_text(destination + "\n")
        self.rejected = self.path / "rejected"
        name = f"{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        # Locked under a hidden name first, so no one adopts it between mkdir and flock.
        hidden = self.path / f".{name}"
        hidden.mkdir()
        handle = (hidden / "lock").open("a+b")
        fcntl.flock(handle, fcntl.LOCK_EX)
        folder = self.path / name
        hidden.rename(folder)
        self.own = SpoolFolder(folder, handle)
        self._sequence = 0

    def write(self, body: bytes) -> Path:
        """Put a batch on disk (atomically: a reader sees all of it or nothing)."""
        self._sequence += 1
        final = self.own.path / f"{self._sequence:012d}{_SUFFIX}"
        partial = final.with_suffix(".partial")
        partial.write_bytes(body)
        partial.replace(final)
        return final

    def reject(self, batch: Path) -> Path:
        self.rejected.mkdir(exist_ok=True)
        target = self.rejected / f"{batch.parent.name}-{batch.name}"
        batch.replace(target)
        return target

    def adopt_orphans(self) -> list[SpoolFolder]:
        """Lock and return the folders of trackers that are gone, oldest first."""
        adopted = []
        for candidate in sorted(self.path.iterdir()):
            if (
                not candidate.is_dir()
                or candidate.name.startswith(".")
                or candidate == self.own.path
                or candidate == self.rejected
            ):
                continue
            try:
                handle = (candidate / "lock").open("a+b")
            except OSError:
                continue
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                handle.close()  # its owner is alive
                continue
            if not candidate.is_dir():
                handle.close()
                continue
            adopted.append(SpoolFolder(candidate, handle))
        return adopted

    def pending_files(self) -> list[Path]:
        """Every batch waiting in this destination's spool (all owners)."""
        found: list[Path] = []
        for folder in self.path.iterdir():
            if folder.is_dir() and folder != self.rejected:
                found.extend(p for p in folder.iterdir() if p.name.endswith(_SUFFIX))
        return sorted(found)
