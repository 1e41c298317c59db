"""``synmlops serve --watch OUTPUTS``: the watcher (:class:`Watcher`) in a supervised thread of
serve's own process (a service ``serve`` starts once the server answers), and what it did in
``/health``.

The thread polls OUTPUTS and ingests into the served URL. What it does is written to a status
file (the one ``$SYNMLOPS_WATCH_STATUS`` names to the server's workers, beside the other
services' statuses) after every poll, and ``/health`` shows it as ``watch``: polls, runs by
outcome (new, updated, unchanged, skipped, failed), what it left out by reason (a catalogue
part's reason, or ``file not ingested`` for a file it could not read), ``down`` and
``restarts``. A poll that raises stops the thread: the status says ``down`` with the reason,
``/health`` answers 503 naming it, and serve's loop starts the thread again after 1 s,
doubling to 30 s while it keeps failing. The watcher keeps what it knew across restarts, so
runs already ingested whole are not read again.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from synergos_mlops.store import WATCH_STATUS_ENV

__all__ = ["FILE_LEFT_OUT", "WatchService"]

#: What a left-out file without a catalogue reason is counted under.
FILE_LEFT_OUT = "file not ingested"
_FIRST_PAUSE = 1.0
_LONGEST_PAUSE = 30.0


class WatchService:
    """Runs a watcher of ``outputs`` into a URL in a thread, writes its status, and starts
    it again when it stops (``supervise``, called by serve's loop every second)."""

    name = "watch"
    status_env = WATCH_STATUS_ENV

    def __init__(
        self,
        outputs: Path,
        workers: Sequence[Any],
        *,
        echo: Callable[[str], None] = print,
        interval: float = 2.0,
    ) -> None:
        self.outputs = outputs
        self.workers = tuple(workers)
        self.status_path: Path | None = None  # given by start
        self.echo = echo
        self.interval = interval
        self._watcher: Any = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._polls = 0
        self._down: str | None = None
        self._restarts = 0
        self._pause = _FIRST_PAUSE
        self._retry_at = 0.0

    # Serve's side ----------------------------------------------------------------------------

    def start(self, url: str, status_path: Path) -> None:
        from synergos_mlops.ingest._watch import Watcher

        self.status_path = status_path
        self.echo(f"  Watching {self.outputs} into {url}")
        self._watcher = Watcher(
            self.outputs, self.workers, tracking_uri=url, interval=self.interval, echo=self.echo
        )
        self._write_status()
        self._launch()

    def supervise(self) -> None:
        """Start the thread again once its pause is over, if it stopped."""
        thread = self._thread
        if thread is None or thread.is_alive() or self._stop.is_set():
            return
        if time.monotonic() < self._retry_at:
            return
        with self._lock:
            self._restarts += 1
        self.echo(f"watch: started again (restart {self._restarts})")
        self._launch()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._watcher is not None:
            self._watcher.close()

    def status(self) -> dict[str, Any]:
        report = self._watcher.report if self._watcher is not None else None
        runs: dict[str, int] = {}
        left_out: dict[str, int] = {}
        if report is not None:
            for outcome in report.outcomes:
                runs[outcome.status] = runs.get(outcome.status, 0) + 1
            for note in report.notes():
                reason = note.code or FILE_LEFT_OUT
                left_out[reason] = left_out.get(reason, 0) + 1
        with self._lock:
            return {
                "outputs": str(self.outputs),
                "polls": self._polls,
                "runs": dict(sorted(runs.items())),
                "left_out": dict(sorted(left_out.items())),
                "down": self._down,
                "restarts": self._restarts,
                "updated": time.time(),
            }

    # The thread ------------------------------------------------------------------------------

    def _launch(self) -> None:
        self._thread = threading.Thread(target=self._run, name="synmlops-watch", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        poll = self._watcher.poll
        try:
            while not self._stop.is_set():
                poll()
                with self._lock:
                    self._polls += 1
                    self._down = None
                    self._pause = _FIRST_PAUSE
                self._write_status()
                self._stop.wait(self.interval)
        except Exception as exc:  # noqa: BLE001 - said in /health, and started again
            reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
            with self._lock:
                self._down = reason
                self._retry_at = time.monotonic() + self._pause
                pause, self._pause = self._pause, min(self._pause * 2, _LONGEST_PAUSE)
            self.echo(f"watch stopped: {reason}; starting again in {pause:.0f} s")
            self._write_status()

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        temporary = self.status_path.with_name(self.status_path.name + ".tmp")
        try:
            temporary.write_text(json.dumps(self.status()), encoding="utf-8")
            os.replace(temporary, self.status_path)
        except OSError as exc:
            self.echo(f"watch: cannot write {self.status_path}: {exc.strerror}")
