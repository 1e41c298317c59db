"""The mirror's loop beside the server: a pass every second, its state in a small JSON file
that every server worker's ``/health`` reads, new problems printed once to the server log."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from synergos_mlops.legacy._mirror import FileStoreMirror, PassReport

__all__ = ["STATUS_ENV", "FileStoreSync", "read_status"]

#: Where the serve process tells its workers the sync status file is.
STATUS_ENV = "SYNMLOPS_SYNC_STATUS"
_REWRITE_SECONDS = 10.0
#: How often, at most, the first pass's progress is written.
PROGRESS_SECONDS = 0.5


def read_status(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


class FileStoreSync:
    """Mirror ``root`` into the database at ``backend_uri`` every ``interval`` seconds in a
    daemon thread, until :meth:`stop`."""

    def __init__(
        self,
        root: Path,
        backend_uri: str,
        status_path: Path,
        *,
        interval: float = 1.0,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.root = root
        self.backend_uri = backend_uri
        self.status_path = status_path
        self.interval = interval
        self.echo = echo
        self.stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._shown: set[str] = set()
        self._events_shown = 0
        self._written: tuple[Any, float] | None = None
        self._progress_written = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="synmlops-file-store", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        store = SqlAlchemyStore(self.backend_uri, "mlflow-artifacts:/")
        mirror = FileStoreMirror(self.root, store)
        first = True
        while not self.stop_event.is_set():
            try:
                # The first pass over a large store takes a while (a minute for 1,000 runs):
                # until it ends, the status says how far it is.
                report = mirror.sync(on_progress=self._progress if first else None)
            except Exception as exc:  # noqa: BLE001 - the loop reports and keeps going
                report = PassReport(problems={str(self.root): f"pass failed: {exc}"})
            first = False
            self._report(mirror, report)
            self.stop_event.wait(self.interval)

    def _progress(self, read: int, found: int) -> None:
        """The first pass's progress, written at most every PROGRESS_SECONDS (and at its end)."""
        now = time.monotonic()
        if read and read < found and now - self._progress_written < PROGRESS_SECONDS:
            return
        self._progress_written = now
        document = {"root": str(self.root), "experiments": 0, "runs": 0, "skipped": [],
                    "events": [], "reading": {"runs_read": read, "runs_found": found}}  # fmt: skip
        self._write(document)

    def _report(self, mirror: FileStoreMirror, report: PassReport) -> None:
        for path, reason in report.problems.items():
            line = f"{path}: {reason}"
            if line not in self._shown:
                self.echo(f"file store: skipped {line}")
        self._shown = {f"{path}: {reason}" for path, reason in report.problems.items()}
        events = list(mirror.events)
        fresh = min(len(events), mirror.event_count - self._events_shown)
        for event in events[len(events) - fresh :] if fresh > 0 else []:
            self.echo(f"file store: {event}")
        self._events_shown = mirror.event_count
        content = {
            "root": str(self.root),
            "experiments": report.experiments,
            "runs": report.runs,
            "skipped": [{"path": p, "reason": r} for p, r in sorted(report.problems.items())],
            "events": events,
        }
        now = time.monotonic()
        if (
            self._written
            and self._written[0] == content
            and now - self._written[1] < _REWRITE_SECONDS
        ):
            return
        document = {
            **content,
            "last_pass": datetime.now(tz=UTC).isoformat(timespec="seconds"),
            "pass_seconds": round(report.seconds, 4),
        }
        self._write(document)
        self._written = (content, now)

    def _write(self, document: dict[str, Any]) -> None:
        temporary = self.status_path.with_name(self.status_path.name + ".tmp")
        try:
            temporary.write_text(json.dumps(document), encoding="utf-8")
            os.replace(temporary, self.status_path)
        except OSError as exc:
            self.echo(f"file store: cannot write {self.status_path}: {exc.strerror}")
