"""GELF messages (what the original synergos_logger sends through graypy) into log records.

Pure functions, no sockets (those are in ``log_service.py``):

- :func:`decode_payload`: one datagram or one TCP frame -> the GELF JSON object: plain,
  zlib- or gzip-compressed, never more than :data:`MAX_MESSAGE_BYTES` once decompressed;
- :class:`ChunkAssembler`: chunked UDP GELF (magic ``0x1e 0x0f``, 8-byte message id,
  sequence number, count) put back together, incomplete messages dropped after a timeout,
  the memory it holds bounded;
- :func:`record_from_gelf`: a GELF object -> a :class:`~synergos_mlops.storage.logs.LogRecord`;
- :func:`system_samples_from_gelf`: the hardware sample a ``SYS_<participant>`` event carries.

Every refusal is a :class:`GelfRejected` whose ``reason`` is a short name counted in
``/health`` (``not_json``, ``missing_field``, ``oversize``, ``too_deep``, ``bad_chunk``,
``incomplete``, ``chunk_flood``, ``backlog_full``).

What can be stored is stored as faithfully as the database allows: bytes that are not UTF-8
and lone surrogates (a ``\\udce9`` escape, what Python's ``surrogateescape`` makes of a
non-UTF-8 file name) become U+FFFD, a NUL in the message too (PostgreSQL's text has none),
and numbers JSON cannot carry back (NaN, infinities, ``1e400``) are kept as text.

How synergos_logger's fields map (graypy puts a structlog event's keys in ``_<key>``):
``short_message`` -> message (``full_message`` kept in fields); ``timestamp`` (seconds) -> ms;
``_level_number`` (Python's number) or else the syslog ``level`` -> level; ``_logger``
(structlog's), else ``_logger_name`` (other GELF libraries'), else ``facility`` (what a plain
graypy handler sets to the logger's name) -> logger and, by its prefix, role (TTP, WKR, DIR,
SYS) and the participant of ``WKR_<p>`` / ``SYS_<p>``; the run from
``_collaboration``/``_collab_id``, ``_project``/``_project_id``, ``_experiment``/``_expt_id``,
``_run``/``_run_id``, ``_participant``/``_participant_id``;
every other ``_`` field (``_event``, ``_file_path``, ``_ID_path``, ``_ID_class``,
``_ID_function``, the hardware statistics ...) goes into fields, without its underscore.
"""

from __future__ import annotations

import json
import math
import re
import time
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from synergos_mlops.storage.logs import LogRecord, participant_of_logger, role_of_logger

__all__ = [
    "CHUNK_MAGIC",
    "MAX_MESSAGE_BYTES",
    "SYSTEM_FIELDS",
    "ChunkAssembler",
    "GelfRejected",
    "decode_payload",
    "record_from_gelf",
    "system_samples_from_gelf",
    "SysmetricConverter",
]

#: Largest GELF message once decompressed.
MAX_MESSAGE_BYTES = 1024 * 1024
#: Deepest nesting of a message's fields that is stored.
MAX_DEPTH = 64
CHUNK_MAGIC = b"\x1e\x0f"
_CHUNK_HEADER = 12
_MAX_CHUNKS = 128  # the GELF specification's limit

#: syslog severity -> Python level.
_SYSLOG = {0: 50, 1: 50, 2: 50, 3: 40, 4: 30, 5: 20, 6: 20, 7: 10}
_ID_FIELDS = {
    "collaboration": ("collaboration", "collab_id", "collaboration_id"),
    "project": ("project", "project_id"),
    "experiment": ("experiment", "expt_id", "experiment_id"),
    "run": ("run", "run_id"),
    "participant": ("participant", "participant_id"),
}
#: The hardware statistics synergos_logger's SysmetricLogger adds to each event.
SYSTEM_FIELDS = (
    "cpu_percent",
    "memory_total", "memory_available", "memory_used", "memory_free",
    "disk_read_counter", "disk_write_counter", "disk_read_bytes", "disk_write_bytes",
    "net_bytes_sent", "net_bytes_recv", "net_packets_sent", "net_packets_recv",
)  # fmt: skip


class GelfRejected(ValueError):
    """A message that is not stored; ``reason`` is counted in /health."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def _inflate(data: bytes, wbits: int) -> bytes:
    inflater = zlib.decompressobj(wbits)
    try:
        out = inflater.decompress(data, MAX_MESSAGE_BYTES + 1)
    except zlib.error as exc:
        raise GelfRejected("not_json", f"bad compressed data ({exc})") from None
    if len(out) > MAX_MESSAGE_BYTES:
        raise GelfRejected("oversize", f"more than {MAX_MESSAGE_BYTES} bytes decompressed")
    return out


def decode_payload(data: bytes) -> dict[str, Any]:
    """One whole GELF message (a datagram put together, or a TCP frame) -> its JSON object."""
    if data[:2] == b"\x1f\x8b":
        data = _inflate(data, 16 + zlib.MAX_WBITS)
    elif data[:1] == b"\x78":
        data = _inflate(data, zlib.MAX_WBITS)
    elif len(data) > MAX_MESSAGE_BYTES:
        raise GelfRejected("oversize", f"more than {MAX_MESSAGE_BYTES} bytes")
    try:
        # Not UTF-8 (a sender's Latin-1 file name): stored with U+FFFD, not refused.
        document = json.loads(data.decode("utf-8", "replace"))
    except (ValueError, RecursionError):
        raise GelfRejected("not_json") from None
    if not isinstance(document, dict):
        raise GelfRejected("not_json", "not a JSON object")
    return document


class ChunkAssembler:
    """Chunked UDP GELF put back together.

    At most ``max_messages`` messages and ``max_bytes`` of chunks are held; beyond either,
    the oldest incomplete message is dropped (``chunk_flood``). A message still incomplete
    after ``timeout`` seconds is dropped (``incomplete``), as the specification says.
    """

    def __init__(
        self, *, timeout: float = 5.0, max_messages: int = 1000, max_bytes: int = 16 << 20
    ) -> None:
        self.timeout = timeout
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._pending: OrderedDict[bytes, tuple[float, int, dict[int, bytes]]] = OrderedDict()
        # Messages already dropped (and counted) whose later chunks are ignored, not counted
        # again: message id -> when it was dropped.
        self._dropped_ids: OrderedDict[bytes, float] = OrderedDict()
        self._bytes = 0
        self.dropped: dict[str, int] = {}

    @property
    def held_bytes(self) -> int:
        return self._bytes

    def _drop(self, message_id: bytes, reason: str, now: float | None = None) -> None:
        _, _, parts = self._pending.pop(message_id)
        self._bytes -= sum(len(p) for p in parts.values())
        self.dropped[reason] = self.dropped.get(reason, 0) + 1
        if now is not None:
            self._dropped_ids[message_id] = now
            self._dropped_ids.move_to_end(message_id)
            while len(self._dropped_ids) > self.max_messages:
                self._dropped_ids.popitem(last=False)

    def expire(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        while self._dropped_ids:
            message_id, dropped = next(iter(self._dropped_ids.items()))
            if now - dropped < self.timeout:
                break
            del self._dropped_ids[message_id]
        while self._pending:
            message_id, (started, _, _) = next(iter(self._pending.items()))
            if now - started < self.timeout:
                return
            self._drop(message_id, "incomplete")

    def add(self, datagram: bytes, now: float | None = None) -> bytes | None:
        """Take one chunk; the whole message once its last chunk arrives, else None."""
        now = time.monotonic() if now is None else now
        self.expire(now)
        if len(datagram) <= _CHUNK_HEADER:
            raise GelfRejected("bad_chunk", "a chunk without data")
        message_id = datagram[2:10]
        sequence, count = datagram[10], datagram[11]
        if not 0 < count <= _MAX_CHUNKS or sequence >= count:
            raise GelfRejected("bad_chunk", f"chunk {sequence} of {count}")
        data = datagram[_CHUNK_HEADER:]
        if count == 1:
            return data
        if message_id in self._dropped_ids:
            return None  # the rest of a message dropped already: counted once, then
        entry = self._pending.get(message_id)
        if entry is None:
            entry = (now, count, {})
            self._pending[message_id] = entry
        elif entry[1] != count:
            self._drop(message_id, "bad_chunk", now)
            raise GelfRejected("bad_chunk", "chunks of one message disagree on their count")
        parts = entry[2]
        if sequence not in parts:
            parts[sequence] = data
            self._bytes += len(data)
        if sum(len(p) for p in parts.values()) > MAX_MESSAGE_BYTES:
            self._drop(message_id, "oversize", now)
            return None
        if len(parts) == count:
            self._pending.pop(message_id)
            self._bytes -= sum(len(p) for p in parts.values())
            return b"".join(parts[i] for i in range(count))
        while self._pending and (
            len(self._pending) > self.max_messages or self._bytes > self.max_bytes
        ):
            self._drop(next(iter(self._pending)), "chunk_flood", now)
        return None


def _text(value: object, limit: int = 250) -> str | None:
    if value is None or isinstance(value, (dict, list)):
        return None
    text = str(value)
    if not text or len(text) > limit or "/" in text or not text.isprintable():
        return None
    return text


_SURROGATES = re.compile("[\ud800-\udfff]")


def clean_text(text: str) -> str:
    """``text`` without lone surrogates (U+FFFD instead): what a database can store."""
    return _SURROGATES.sub("\ufffd", text)


def _clean(value: Any, depth: int = 0) -> Any:
    """A field's value as it can be stored and read back as JSON."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        if depth >= MAX_DEPTH:
            raise GelfRejected("too_deep", f"fields nested deeper than {MAX_DEPTH}")
        return {clean_text(k): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        if depth >= MAX_DEPTH:
            raise GelfRejected("too_deep", f"fields nested deeper than {MAX_DEPTH}")
        return [_clean(v, depth + 1) for v in value]
    return value


def _number(value: object) -> float | None:
    """A JSON number as a finite float, else None (booleans, 10**400, NaN: None)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _level(document: Mapping[str, Any]) -> int:
    number = document.get("_level_number")
    if isinstance(number, int) and not isinstance(number, bool) and 0 <= number <= 100:
        return number
    syslog = _number(document.get("level"))
    if syslog is not None:
        return _SYSLOG.get(int(syslog), 20) if 0 <= syslog < 8 else 20
    return 20


def _timestamp(document: Mapping[str, Any]) -> int:
    stamp = _number(document.get("timestamp"))
    if stamp is not None and 0 <= stamp < 1e11:
        return int(stamp * 1000)
    return int(time.time() * 1000)


def record_from_gelf(document: Mapping[str, Any]) -> LogRecord:
    """A GELF object -> the record stored (see the module docstring for the mapping)."""
    message = document.get("short_message")
    if not isinstance(message, str):
        raise GelfRejected("missing_field", "short_message")
    message = clean_text(message)
    if "\x00" in message:
        message = message.replace("\x00", "\ufffd")
    extra = {
        clean_text(key[1:]): _clean(value)
        for key, value in document.items()
        if key.startswith("_") and key[1:]
    }
    extra.pop("id", None)  # reserved by GELF
    logger = (
        _text(extra.pop("logger", None))
        or _text(extra.pop("logger_name", None))
        or _text(document.get("facility"))
        or "gelf"
    )
    ids: dict[str, str | None] = {}
    for column, names in _ID_FIELDS.items():
        found = None
        for name in names:
            if name in extra:
                found = _text(extra[name])
                if found is not None:
                    extra.pop(name)
                    break
        ids[column] = found
    if ids["participant"] is None:
        ids["participant"] = _text(participant_of_logger(logger))
    fields: dict[str, Any] = extra
    for key in ("host", "full_message", "facility"):
        if document.get(key) not in (None, ""):
            fields[key] = _clean(document[key])
    fields.pop("level_number", None)
    return LogRecord(
        timestamp=_timestamp(document),
        level=_level(document),
        logger=logger,
        message=message,
        role=role_of_logger(logger),
        fields=fields,
        **ids,
    )


def system_samples_from_gelf(record: LogRecord | Mapping[str, Any]) -> dict[str, Any] | None:
    """The hardware sample of a ``SYS_<participant>`` event, for ``system/...`` metrics.

    Takes a stored :class:`LogRecord` (or a raw GELF object). Returns None when the record
    is not a SysmetricLogger event or carries no statistic, else::

        {"participant": "worker_1" | None, "timestamp": <ms>,
         "collaboration", "project", "experiment", "run": <ids or None>,
         "values": {"cpu_percent": 12.5, "memory_used": 1.2e9, ...}}   # numbers only
    """
    if not isinstance(record, LogRecord):
        try:
            record = record_from_gelf(record)
        except GelfRejected:
            return None
    if record.role != "SYS":
        return None
    values = {
        key: number
        for key in SYSTEM_FIELDS
        if (number := _number(record.fields.get(key))) is not None
    }
    if not values:
        return None
    return {
        "participant": record.participant,
        "timestamp": record.timestamp,
        "collaboration": record.collaboration,
        "project": record.project,
        "experiment": record.experiment,
        "run": record.run,
        "values": values,
    }


_MB = 1e6  # MLflow's system metrics count 10^6 bytes
#: SysmetricLogger's counters since boot, as the monitor's keys count them: since the first
#: sample seen of that participant.
_COUNTERS = {
    "net_bytes_recv": ("system/network_receive_megabytes", _MB),
    "net_bytes_sent": ("system/network_transmit_megabytes", _MB),
    "net_packets_recv": ("system/network_receive_packets", 1.0),
    "net_packets_sent": ("system/network_transmit_packets", 1.0),
    "disk_read_bytes": ("system/disk_read_megabytes", _MB),
    "disk_write_bytes": ("system/disk_write_megabytes", _MB),
}


class SysmetricConverter:
    """Turn ``SYS_<participant>`` events (the original SysmetricLogger's psutil fields) into
    the hardware monitor's ``system/...`` points, so they are attached to that participant's
    runs by time exactly as ``synmlops monitor`` samples are (``storage.system``).

    An event that names no collaboration (the unchanged worker's ``track()`` passes no
    ids) is attached to that participant's runs in any collaboration."""

    #: Participants whose counters' first values are remembered, at most.
    MAX_PARTICIPANTS = 10_000

    def __init__(self) -> None:
        self._baselines: dict[str, dict[str, float]] = {}

    def sample_batches(self, records: list[LogRecord]) -> tuple[list[Any], dict[str, int]]:
        """One ``storage.samples.SampleBatch`` per participant named by the records'
        hardware samples, and the samples left out by reason (``no_participant``)."""
        from synergos_mlops.storage.samples import SampleBatch, any_target, target

        batches: dict[str, Any] = {}
        skipped: dict[str, int] = {}
        for record in records:
            sample = system_samples_from_gelf(record)
            if sample is None:
                continue
            participant = sample["participant"]
            try:
                if not participant:
                    raise ValueError("no participant")
                name = (
                    target(sample["collaboration"], participant)
                    if sample["collaboration"]
                    else any_target(participant)
                )
            except ValueError:  # InvalidIdError too
                skipped["no_participant"] = skipped.get("no_participant", 0) + 1
                continue
            batch = batches.setdefault(name, SampleBatch())
            for key, value in self._points(name, sample["values"]).items():
                batch.points.append(name, key, 0, value, int(sample["timestamp"]))
        return [b for b in batches.values() if len(b.points)], skipped

    def _points(self, name: str, values: dict[str, float]) -> dict[str, float]:
        out: dict[str, float] = {}
        if "cpu_percent" in values:
            out["system/cpu_utilization_percentage"] = values["cpu_percent"]
        used, total = values.get("memory_used"), values.get("memory_total")
        if used is not None:
            out["system/system_memory_usage_megabytes"] = used / _MB
            if total:
                out["system/system_memory_usage_percentage"] = used / total * 100
        if name not in self._baselines and len(self._baselines) >= self.MAX_PARTICIPANTS:
            self._baselines.clear()
        baseline = self._baselines.setdefault(name, {})
        for field, (key, unit) in _COUNTERS.items():
            if field in values:
                start = baseline.setdefault(field, values[field])
                out[key] = max(0.0, values[field] - start) / unit
        return {key: value for key, value in out.items() if math.isfinite(value)}
