"""The background sender: buffer points, put them in the spool, send them in order.

One sender carries one kind of batch: metric points (:data:`METRICS`), or log records
(:data:`LOGS`, the tracker's second sender, with its own spool). What differs between the two
is said by a small :class:`BatchKind`; buffering, spooling and retrying are the same.

Points logged go to an in-memory columnar buffer. A daemon thread wakes every
``flush_interval`` seconds, or as soon as ``batch_size`` points wait, writes the buffer to the
spool in batches of at most ``batch_size`` points, and sends the spool's batches in order:
first those of earlier trackers that are gone (adopted), then its own. A batch leaves the spool
only once the destination has stored it. While the destination is away the thread retries
with a growing pause (at most ``retry_interval``); a batch the destination refuses (say, its
run was deleted meanwhile) is moved to ``rejected/`` and reported by the next ``flush()``.

The metrics spool also carries, in their place among the batches, what must follow the points
logged before it: params and tags (:func:`run_data_body`) and the end of runs
(:func:`end_body`), each a file of its own that starts with its mark.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from synergos_mlops.errors import ServerUnavailableError, SynergosError
from synergos_mlops.storage.batch import MetricBatch, encode_batch
from synergos_mlops.tracking._config import TrackerConfig
from synergos_mlops.tracking._spool import Spool, SpoolFolder
from synergos_mlops.tracking._transport import Transport

__all__ = [
    "END_MARK",
    "RUN_DATA_MARK",
    "LOGS",
    "METRICS",
    "BatchKind",
    "BatchRejectedError",
    "MetricsKind",
    "Sender",
    "end_body",
    "run_data_body",
]

_log = logging.getLogger("synergos_mlops.tracking")


class BatchRejectedError(SynergosError):
    """The destination refused a batch for good; it is kept in the spool's rejected/ folder."""


class BatchKind(Protocol):
    """What a sender needs to know about the items it carries."""

    noun: str  #: "metric points", for messages

    def new(self) -> Any: ...

    def size(self, buffer: Any) -> int: ...

    def extend(self, buffer: Any, items: Any) -> int:
        """Add ``items`` to ``buffer``; return how many."""

    def parts(self, buffer: Any, size: int) -> Iterator[tuple[bytes, int]]:
        """The buffer as wire-form batches of at most ``size`` items, with their counts."""

    def send(self, transport: Transport, body: bytes) -> None: ...


class MetricsKind:
    noun = "metric points"

    def new(self) -> MetricBatch:
        return MetricBatch()

    def size(self, buffer: MetricBatch) -> int:
        return len(buffer)

    def extend(self, buffer: MetricBatch, items: MetricBatch) -> int:
        buffer.run_ids.extend(items.run_ids)
        buffer.keys.extend(items.keys)
        buffer.steps.extend(items.steps)
        buffer.values.extend(items.values)
        buffer.timestamps.extend(items.timestamps)
        if items.refused:
            buffer.count_refused(items.refused, items.named)
        return len(items)

    def parts(self, buffer: MetricBatch, size: int) -> Iterator[tuple[bytes, int]]:
        """The first part also carries what the sender left out (``refused``); a buffer
        holding only that is one part without points."""
        starts = range(0, len(buffer), size) or (range(1) if buffer.refused else ())
        for start in starts:
            part = MetricBatch(
                buffer.run_ids[start : start + size],
                buffer.keys[start : start + size],
                buffer.steps[start : start + size],
                buffer.values[start : start + size],
                buffer.timestamps[start : start + size],
            )
            if start == 0:
                part.refused, part.named = buffer.refused, buffer.named
            yield self.encode(part), len(part)

    def encode(self, part: MetricBatch) -> bytes:
        return encode_batch(part)

    def noun_of(self, body: bytes) -> str:
        """What a spool file of this kind holds, for a message: points, or what rides with
        them (params and tags, the end of runs)."""
        if body.startswith(RUN_DATA_MARK):
            return "params and tags"
        return "run ends" if body.startswith(END_MARK) else self.noun

    def send(self, transport: Transport, body: bytes) -> None:
        if body.startswith(END_MARK):  # an end that found the destination away (end_body)
            request = json.loads(body[len(END_MARK) :])
            run_ids, status, end_time = request["run_ids"], request["status"], request["end_time"]
            if hasattr(transport, "end_runs"):
                transport.end_runs(run_ids, status, end_time)
            else:  # a transport of one's own without it
                for run_id in run_ids:
                    transport.set_status(run_id, status, end_time)
            return
        if body.startswith(RUN_DATA_MARK):  # params and tags, in their place (run_data_body)
            document = json.loads(body[len(RUN_DATA_MARK) :])
            transport.write_run_data(document["items"], document.get("refused") or {})
            return
        transport.write_metrics(body)


#: The first line of a spool file that ends runs instead of holding points: written after the
#: run's last points, so it is sent after them, by this tracker or the next one.
END_MARK = b"synergos-end-runs\n"


def end_body(run_ids: list[str], status: str, end_time: int) -> bytes:
    """A spool file's content that ends ``run_ids`` with ``status`` once sent."""
    request = {"run_ids": run_ids, "status": status, "end_time": end_time}
    return END_MARK + json.dumps(request).encode()


#: The first line of a spool file that holds params and tags of runs instead of points.
RUN_DATA_MARK = b"synergos-run-data\n"


def run_data_body(
    items: list[tuple[str, str, str, str]], refused: dict[str, dict[str, int]] | None = None
) -> bytes:
    """A spool file's content that stores params and tags, ``(run id, "param" | "tag", key,
    value)`` items, once sent (``Transport.write_run_data``), with what the sender left out
    (``refused``: by kind and reason) for the destination to count."""
    return RUN_DATA_MARK + json.dumps({"items": items, "refused": refused or {}}).encode()


class _Logs:
    """Log records as the wire form's dicts (``storage.log_batch``)."""

    noun = "log records"

    def new(self) -> list[dict[str, Any]]:
        return []

    def size(self, buffer: list[dict[str, Any]]) -> int:
        return len(buffer)

    def extend(self, buffer: list[dict[str, Any]], items: list[dict[str, Any]]) -> int:
        buffer.extend(items)
        return len(items)

    def parts(self, buffer: list[dict[str, Any]], size: int) -> Iterator[tuple[bytes, int]]:
        from synergos_mlops.storage.log_batch import encode_log_batch

        for start in range(0, len(buffer), size):
            part = buffer[start : start + size]
            yield encode_log_batch(part), len(part)

    def send(self, transport: Transport, body: bytes) -> None:
        transport.write_logs(body)


METRICS: BatchKind = MetricsKind()
LOGS: BatchKind = _Logs()


class Sender:
    def __init__(
        self,
        transport: Transport,
        spool: Spool,
        config: TrackerConfig,
        kind: BatchKind = METRICS,
        *,
        name: str = "synergos-tracker",
    ) -> None:
        self._transport = transport
        self._spool = spool
        self._config = config
        self._kind = kind
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._disk = threading.Lock()  # one writer of the buffer to disk at a time
        self._buffer = kind.new()
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
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread:
        """The sending thread (a log handler leaves out what this thread itself logs)."""
        return self._thread

    # Called by the logging threads --------------------------------------------------------

    def add(self, items: Any) -> None:
        with self._lock:
            self._logged += self._kind.extend(self._buffer, items)
            if self._kind.size(self._buffer) >= self._config.batch_size:
                self._changed.notify_all()

    def persist(self) -> None:
        """Write what the buffer holds to the spool now."""
        size = self._config.batch_size
        with self._disk:
            with self._lock:
                buffer, self._buffer = self._buffer, self._kind.new()
            for body, count in self._kind.parts(buffer, size):
                path = self._spool.write(body)
                with self._lock:
                    self._queue.append((path, count))

    def defer(self, body: bytes, count: int = 0) -> None:
        """Spool ``body`` after everything logged so far, to be sent in its turn (by the next
        tracker of this spool if this one closes first); ``count`` items that ``flush`` waits
        for with the points."""
        self.persist()
        with self._disk:
            path = self._spool.write(body)
            with self._lock:
                self._logged += count
                self._queue.append((path, count))
                self._changed.notify_all()

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
                if idle and self._kind.size(self._buffer) < self._config.batch_size:
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
            self._kind.send(self._transport, body)
        except ServerUnavailableError as exc:
            self.last_problem = str(exc)
            with self._lock:
                self.retries += 1
            return None
        except SynergosError as exc:
            kept = self._spool.reject(path)
            noun = getattr(self._kind, "noun_of", lambda _: self._kind.noun)(body)
            message = f"a batch of {noun} was refused ({exc}); it is kept in {kept}"
            _log.error(message)
            return message
        self.last_problem = None
        path.unlink(missing_ok=True)
        return ""
