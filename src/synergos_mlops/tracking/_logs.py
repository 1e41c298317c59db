"""FederatedLogHandler: Python's logging into the run's central logs (see docs/logs.md).

::

    handler = run.log_handler()                      # the orchestrator's records
    logging.getLogger("TTP_main").addHandler(handler)
    worker = run.log_handler(participant="worker_1") # a participant's records

A record becomes one log record of the run: its time, level, logger name, message (with the
traceback, if any) and, as ``fields``, everything given through ``extra=`` plus where it was
logged (``file_path``, ``function``, ``line``). Records go through the tracker's second
sender and its own spool (``<spool>/logs/``), so they survive the server being away and are
sent later; each carries an id made here, so a batch sent twice is stored once. ``emit``
never blocks on the network and never raises.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

from synergos_mlops.federation import validate_id

__all__ = ["FederatedLogHandler"]

#: LogRecord attributes that are not a caller's ``extra=`` fields.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}


def _json_safe(value: Any) -> Any:
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    return str(value)


class FederatedLogHandler(logging.Handler):
    """A logging handler bound to one federated run and, optionally, one participant.

    Made by :meth:`FederatedRun.log_handler`; or directly, with the ids and a ``submit``
    callable that takes a list of wire-form records (the tracker's log sender's ``add``).
    """

    def __init__(
        self,
        collaboration: str,
        project: str,
        experiment: str,
        run: str,
        participant: str | None,
        submit: Callable[[list[dict[str, Any]]], None],
        *,
        level: int = logging.NOTSET,
        skip_thread: threading.Thread | None = None,
    ) -> None:
        super().__init__(level)
        self.ids = {
            kind: validate_id(kind, value)
            for kind, value in (
                ("collaboration", collaboration), ("project", project),
                ("experiment", experiment), ("run", run),
            )
        }  # fmt: skip
        self.participant = None if participant is None else validate_id("participant", participant)
        self._submit = submit
        self._skip_thread = skip_thread
        self._prefix = uuid.uuid4().hex[:16]
        self._count = 0
        self._count_lock = threading.Lock()

    def _record_id(self) -> str:
        with self._count_lock:
            self._count += 1
            return f"{self._prefix}-{self._count:x}"

    def record_for(self, record: logging.LogRecord) -> dict[str, Any]:
        """The wire form of ``record`` (``storage.log_batch``)."""
        message = record.getMessage()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            message = f"{message}\n{record.exc_text}"
        if record.stack_info:
            message = f"{message}\n{record.stack_info}"
        fields = {
            key: _json_safe(value)
            for key, value in record.__dict__.items()
            if key not in _STANDARD and not key.startswith("_")
        }
        fields.setdefault("file_path", record.pathname)
        fields.setdefault("function", record.funcName)
        fields.setdefault("line", record.lineno)
        return {
            "id": self._record_id(),
            **self.ids,
            "participant": self.participant,
            "timestamp": int(record.created * 1000),
            "level": int(record.levelno),
            "logger": record.name[:250] or "root",
            "message": message[: 1024 * 1024],
            "fields": fields,
        }

    def emit(self, record: logging.LogRecord) -> None:
        # What the sender's own thread logs (its retries, the HTTP library) stays out, or
        # sending would log, and the log would be sent, for ever.
        if self._skip_thread is not None and threading.current_thread() is self._skip_thread:
            return
        try:
            self._submit([self.record_for(record)])
        except Exception:  # noqa: BLE001 - logging never raises into the caller
            self.handleError(record)
