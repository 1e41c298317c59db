"""The mirror's loop beside the server: a pass every second, its state in a small JSON file
that every server worker's ``/health`` reads, new problems printed once to the server log.

The loop is supervised: a pass that fails is reported and the next one runs; a thread that
stops anyway (its store cannot be opened, anything a pass did not catch) writes ``down`` with
the reason into the status, so ``/health`` answers 503, and :meth:`FileStoreSync.supervise`
(called by ``serve`` every second) starts it again after a pause that doubles up to 30 s."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synergos_mlops.legacy._filestore import PassReport, holds_experiments
from synergos_mlops.store import SYNC_STATUS_ENV

if TYPE_CHECKING:
    from synergos_mlops.legacy._mirror import FileStoreMirror

__all__ = ["STATUS_ENV", "FileStoreSync", "file_store_health_problem", "read_status"]

#: Where the serve process tells its workers the sync status file is.
STATUS_ENV = SYNC_STATUS_ENV
_REWRITE_SECONDS = 10.0
#: How often, at most, the first pass's progress is written.
PROGRESS_SECONDS = 0.5


def read_status(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def file_store_health_problem(status: dict[str, Any]) -> str | None:
    """Why ``/health`` must say 503 for this mirror status, or None while it works."""
    down = status.get("down")
    if down:
        return f"the file-store mirror stopped ({down}); it is being restarted"
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
        self.restarts = 0
        self._down: str | None = None
        self._pause = 0.5
        self._retry_at = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._guarded, name="synmlops-file-store", daemon=True
        )
        self._thread.start()

    def supervise(self) -> None:
        """Start the mirror's thread again if it stopped (once its pause is over)."""
        thread = self._thread
        if self.stop_event.is_set() or thread is None or thread.is_alive():
            return
        if self._down is None:  # ended without saying why
            self._mark_down("the thread ended")
        if time.monotonic() < self._retry_at:
            return
        self.restarts += 1
        self.start()

    def _guarded(self) -> None:
        started = time.monotonic()
        try:
            self._loop()
        except BaseException as exc:  # noqa: BLE001 - reported in /health, restarted by supervise
            if time.monotonic() - started > 60:  # it had worked: start over at a short pause
                self._pause = 0.5
            self._pause = min(30.0, self._pause * 2)
            self._retry_at = time.monotonic() + self._pause
            reason = f"{type(exc).__name__}: {exc}"[:300]
            # Said before the status turns down: whoever sees the status can find the line.
            self.echo(f"file store: the mirror stopped ({reason}); restarting in {self._pause:g} s")
            self._mark_down(reason)
            self._forget_engine()

    def _forget_engine(self) -> None:
        """MLflow's store keeps one engine per database URI for the process: drop ours, so a
        restart connects afresh instead of reusing a pooled connection to what failed."""
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        with SqlAlchemyStore._engine_map_lock:
            engine = SqlAlchemyStore._engine_map.pop(self.backend_uri, None)
        if engine is not None:
            engine.dispose()

    def _mark_down(self, reason: str) -> None:
        self._down = reason
        document = read_status(self.status_path) or {"root": str(self.root)}
        self._write({**document, "down": reason})
        self._written = None

    def stop(self, timeout: float = 10) -> None:
        self.stop_event.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self) -> None:
        # Until the folder holds a file-store experiment, a pass is a listing of it: neither
        # MLflow's store nor the mirror (nor MLflow itself) is loaded into the server's
        # process before a file store appears.
        mirror: FileStoreMirror | None = None
        first = True
        while not self.stop_event.is_set():
            if mirror is None and holds_experiments(self.root):
                mirror = self._open_mirror()
            try:
                # The first pass over a large store takes a while (a minute for 1,000 runs):
                # until it ends, the status says how far it is.
                report = (
                    mirror.sync(on_progress=self._progress if first else None)
                    if mirror is not None
                    else PassReport()
                )
            except Exception as exc:  # noqa: BLE001 - the loop reports and keeps going
                report = PassReport(problems={str(self.root): f"pass failed: {exc}"})
            first = mirror is None
            if self._down is not None:
                self.echo("file store: the mirror is running again")
                self._down = None
                self._written = None
            self._report(mirror, report)
            self.stop_event.wait(self.interval)

    def _open_mirror(self) -> FileStoreMirror:
        from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

        from synergos_mlops.legacy._mirror import FileStoreMirror

        return FileStoreMirror(self.root, SqlAlchemyStore(self.backend_uri, "mlflow-artifacts:/"))

    def _progress(self, read: int, found: int) -> None:
        """The first pass's progress, written at most every PROGRESS_SECONDS (and at its end)."""
        now = time.monotonic()
        if read and read < found and now - self._progress_written < PROGRESS_SECONDS:
            return
        self._progress_written = now
        document = {"root": str(self.root), "experiments": 0, "runs": 0, "skipped": [],
                    "events": [], "reading": {"runs_read": read, "runs_found": found}}  # fmt: skip
        if self._down is not None:  # restarted: down until a pass has run
            document["down"] = self._down
        self._write(document)

    def _report(self, mirror: FileStoreMirror | None, report: PassReport) -> None:
        for path, reason in report.problems.items():
            line = f"{path}: {reason}"
            if line not in self._shown:
                self.echo(f"file store: skipped {line}")
        self._shown = {f"{path}: {reason}" for path, reason in report.problems.items()}
        events = list(mirror.events) if mirror is not None else []
        count = mirror.event_count if mirror is not None else 0
        fresh = min(len(events), count - self._events_shown)
        for event in events[len(events) - fresh :] if fresh > 0 else []:
            self.echo(f"file store: {event}")
        self._events_shown = count
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
