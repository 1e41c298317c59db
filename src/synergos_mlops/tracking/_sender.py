"""The background sender: buffer points, put them in the spool, send them in order.

Points logged go to an in-memory columnar buffer. A daemon thread wakes every
``flush_interval`` seconds, or as soon as ``batch_size`` points wait, writes the buffer to the
spool in batches of at most ``batch_size`` points, and sends the spool's batches in order:
first those of earlier trackers that are gone (adopted), then its own. A batch leaves the spool
only once the destination has stored it. While the destination is away the thread retries
with a growing pause (at most ``retry_interval``); a batch the destination refuses (say, its
run was deleted meanwhile) is moved to ``rejected/`` and reported by the next ``flush()``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from synergos_mlops.errors import ServerUnavailableError, SynergosError
from synergos_mlops.storage.batch import MetricBatch, encode_batch
from synergos_mlops.tracking._config import TrackerConfig
from synergos_mlops.tracking._spool import Spool, SpoolFolder
from synergos_mlops.tracking._transport import Transport

__all__ = ["BatchRejectedError", "Sender"]

_log = logging.getLogger("synergos_mlops.tracking")


class BatchRejectedError(SynergosError):
    """The destination refused a batch for good; it is kept in the spool's rejected/ folder."""


class Sender:
    """``encode`` and ``send`` default to the metric batch's wire form and the transport's
    bulk write; the hardware monitor passes its own (``tracking._system``)."""

    def __init__(
        self,
        transport: Transport,
        spool: Spool,
        config: TrackerConfig,
        *,
        encode: Callable[[MetricBatch], bytes] = encode_batch,
        send: Callable[[bytes], object] | None = None,
        what: str = "metric points",
        thread_name: str = "synergos-tracker",
    ) -> None:
        self._transport = transport
        self._spool = spool
        self._config = config
        self._encode = encode
        self._write = send if send is not None else transport.write_metrics
        self._what = what
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._disk = threading.Lock()  # one writer of the buffer to disk at a time
        self._buffer = MetricBatch()
        self._logged = 0  # points accepted
        self._settled = 0  # points stored, or rejected and reported
        self._queue: deque[tuple[Path, int]] = deque()  # own spool files, in order
        self._orphans: list[SpoolFolder] = []
        self._adopt = True
        self._kick = False
        self._stop = False
        self._failures: list[str] = []
        self.last_problem: str | None = None
        self.retries = 0  # batches sent again after the destination was away
        self._thread = threading.Thread(target=self._run, name=thread_name, daemon=True)
        self._thread.start()

    # Called by the logging threads --------------------------------------------------------

    def add(self, batch: MetricBatch) -> None:
        with self._lock:
            buffer = self._buffer
            buffer.run_ids.extend(batch.run_ids)
            buffer.keys.extend(batch.keys)
            buffer.steps.extend(batch.steps)
            buffer.values.extend(batch.values)
            buffer.timestamps.extend(batch.timestamps)
            self._logged += len(batch)
            if len(buffer) >= self._config.batch_size:
                self._changed.notify_all()

    def persist(self) -> None:
        """Write what the buffer holds to the spool now."""
        size = self._config.batch_size
        with self._disk:
            with self._lock:
                buffer, self._buffer = self._buffer, MetricBatch()
            for start in range(0, len(buffer), size):
                part = MetricBatch(
                    buffer.run_ids[start : start + size],
                    buffer.keys[start : start + size],
                    buffer.steps[start : start + size],
                    buffer.values[start : start + size],
                    buffer.timestamps[start : start + size],
                )
                path = self._spool.write(self._encode(part))
                with self._lock:
                    self._queue.append((path, len(part)))

    def flush(self, timeout: float) -> int:
        """Wait until every point logged so far is stored; return how many are not (0 when
        all are). Raises BatchRejectedError once for batches the destination refused."""
        with self._lock:
            target = self._logged
        self.persist()
        deadline = time.monotonic() + timeout
        with self._lock:
            self._kick = True
            self._adopt = True
            self._changed.notify_all()
            while self._settled < target or self._orphans or self._adopt:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not self._thread.is_alive():
                    break
                self._changed.wait(min(remaining, 0.5))
            missing = max(target - self._settled, 0)
            failures, self._failures = self._failures, []
        if failures:
            raise BatchRejectedError("; ".join(failures))
        return missing

    def pending_points(self) -> int:
        with self._lock:
            return self._logged - self._settled

    def close(self, join_timeout: float = 5.0) -> None:
        with self._lock:
            self._stop = True
            self._changed.notify_all()
        self._thread.join(join_timeout)
        self.persist()

    # The thread ---------------------------------------------------------------------------

    def _run(self) -> None:
        pause = 0.0
        while True:
            with self._lock:
                idle = not self._stop and not self._kick
                if idle and len(self._buffer) < self._config.batch_size:
                    self._changed.wait(pause or self._config.flush_interval)
                stopping, self._kick = self._stop, False
                adopt = self._adopt
            try:
                if adopt:
                    orphans = self._spool.adopt_orphans()
                    with self._lock:
                        self._orphans.extend(orphans)
                        self._adopt = False
                        self._changed.notify_all()
                self.persist()
                done = self._send_pending()
            except Exception:  # noqa: BLE001 - the thread must live; say what happened
                _log.exception("the tracker's sender failed; it will try again")
                done = False
            if stopping:
                return
            pause = 0.0 if done else min(max(pause * 2, 0.1), self._config.retry_interval)

    def _send_pending(self) -> bool:
        while self._orphans:
            folder = self._orphans[0]
            for batch in folder.batches():
                outcome = self._send(batch)
                if outcome is None:
                    return False
                if outcome:
                    with self._lock:
                        self._failures.append(outcome)
            folder.release()
            with self._lock:
                self._orphans.pop(0)
                self._changed.notify_all()
        while True:
            with self._lock:
                if not self._queue:
                    return True
                path, count = self._queue[0]
            outcome = self._send(path)
            if outcome is None:
                return False
            with self._lock:
                self._queue.popleft()
                self._settled += count
                if outcome:
                    self._failures.append(outcome)
                self._changed.notify_all()

    def _send(self, path: Path) -> str | None:
        """Send one spool file: None when the destination is away (try later), "" when
        stored, else what went wrong (the file then sits in rejected/)."""
        try:
            body = path.read_bytes()
        except FileNotFoundError:  # another tracker sent it meanwhile
            return ""
        try:
            self._write(body)
        except ServerUnavailableError as exc:
            self.last_problem = str(exc)
            with self._lock:
                self.retries += 1
            return None
        except SynergosError as exc:
            kept = self._spool.reject(path)
            message = f"a batch of {self._what} was refused ({exc}); it is kept in {kept}"
            _log.error(message)
            return message
        self.last_problem = None
        path.unlink(missing_ok=True)
        return ""
