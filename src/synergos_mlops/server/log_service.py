"""Central logs beside the server, in the ``synmlops serve`` process: the GELF input and the
retention of old records.

:class:`GelfInput` listens on one port, TCP (messages ended by a null byte) and UDP (plain,
zlib or gzip, chunked), in one thread (``selectors``); parsed records wait in a bounded
queue that a second thread writes to the database in batches. Memory is bounded everywhere:
a TCP message longer than 1 MiB is skipped up to its end without being kept, chunked UDP is
held within :class:`~synergos_mlops.server.gelf.ChunkAssembler`'s bounds, the queue holds at
most ``max_backlog`` records (beyond: ``backlog_full``), connections are capped. Its counters
go to a small JSON file every second, which each server worker's ``/health`` reads (the
variable :data:`STATUS_ENV` names it).

:class:`LogRetention` deletes records older than N days, at start and every hour.
"""

from __future__ import annotations

import json
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from synergos_mlops.server.gelf import (
    CHUNK_MAGIC,
    MAX_MESSAGE_BYTES,
    ChunkAssembler,
    GelfRejected,
    decode_payload,
    record_from_gelf,
)
from synergos_mlops.storage.logs import LogRecord

__all__ = ["STATUS_ENV", "GelfInput", "LogRetention", "read_status"]

#: Where the serve process tells its workers the GELF status file is.
STATUS_ENV = "SYNMLOPS_GELF_STATUS"
_RECV = 256 * 1024
_MAX_CONNECTIONS = 512
_BATCH = 5000


def read_status(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


class _Connection:
    __slots__ = ("buffer", "skipping")

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.skipping = False  # inside a message already counted as oversize


class GelfInput:
    """GELF over TCP and UDP on ``host:port`` into the database at ``backend_uri``."""

    def __init__(
        self,
        backend_uri: str,
        host: str,
        port: int,
        status_path: Path,
        *,
        max_backlog: int = 200_000,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.backend_uri = backend_uri
        self.host = host
        self.port = port
        self.status_path = status_path
        self.max_backlog = max_backlog
        self.echo = echo
        self.accepted = 0  # parsed and queued
        self.stored = 0  # written to the database
        self.system_attached = 0  # SYS_ events attached to runs as hardware samples
        self.system_unmatched = 0  # SYS_ events within no run of their participant
        from synergos_mlops.server.gelf import SysmetricConverter

        self._sysmetrics = SysmetricConverter()
        self.rejected: dict[str, int] = {}
        self._queue: deque[LogRecord] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._assembler = ChunkAssembler()
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._runs: dict[tuple[Any, ...], tuple[str | None, float]] = {}

    # Life ---------------------------------------------------------------------------------

    def bind(self) -> None:
        """Open both sockets (OSError naming the problem when the port is taken)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp = socket.socket(family, socket.SOCK_DGRAM)
        try:
            tcp.bind((self.host, self.port))
            tcp.listen(128)
            udp.bind((self.host, self.port))
            udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        except OSError:
            tcp.close()
            udp.close()
            raise
        tcp.setblocking(False)
        udp.setblocking(False)
        self._tcp, self._udp = tcp, udp

    def start(self) -> None:
        if self._tcp is None:
            self.bind()
        for target, name in (
            (self._network, "synmlops-gelf"),
            (self._writer, "synmlops-gelf-writer"),
            (self._reporter, "synmlops-gelf-status"),
        ):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        for sock in (self._tcp, self._udp):
            if sock is not None:
                sock.close()
        self._write_status()

    # Counting -----------------------------------------------------------------------------

    def _reject(self, reason: str, count: int = 1) -> None:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + count

    def _take(self, payload: bytes) -> None:
        try:
            record = record_from_gelf(decode_payload(payload))
        except GelfRejected as exc:
            self._reject(exc.reason)
            return
        with self._lock:
            if len(self._queue) >= self.max_backlog:
                self.rejected["backlog_full"] = self.rejected.get("backlog_full", 0) + 1
                return
            self._queue.append(record)
            self.accepted += 1
            if len(self._queue) >= _BATCH:
                self._wake.notify_all()

    # The network thread -------------------------------------------------------------------

    def _network(self) -> None:
        assert self._tcp is not None and self._udp is not None
        selector = selectors.DefaultSelector()
        selector.register(self._tcp, selectors.EVENT_READ, "accept")
        selector.register(self._udp, selectors.EVENT_READ, "udp")
        connections: dict[socket.socket, _Connection] = {}
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.5):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    if key.data == "accept":
                        self._accept(selector, connections)
                    elif key.data == "udp":
                        self._datagrams(sock)
                    else:
                        self._receive(selector, connections, sock)
                self._assembler.expire()
                if self._assembler.dropped:
                    for reason, count in self._assembler.dropped.items():
                        self._reject(reason, count)
                    self._assembler.dropped.clear()
        except Exception as exc:  # noqa: BLE001 - report, never take the server down
            self.echo(f"gelf: the listener stopped: {exc}")
        finally:
            for sock in connections:
                sock.close()
            selector.close()

    def _accept(self, selector: Any, connections: dict[socket.socket, _Connection]) -> None:
        assert self._tcp is not None
        try:
            sock, _ = self._tcp.accept()
        except OSError:
            return
        if len(connections) >= _MAX_CONNECTIONS:
            sock.close()
            self._reject("too_many_connections")
            return
        sock.setblocking(False)
        connections[sock] = _Connection()
        selector.register(sock, selectors.EVENT_READ, "tcp")

    def _receive(
        self, selector: Any, connections: dict[socket.socket, _Connection], sock: socket.socket
    ) -> None:
        state = connections[sock]
        try:
            data = sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:  # closed: what is left without its null byte is one last message
            if state.buffer and not state.skipping:
                self._take(bytes(state.buffer))
            selector.unregister(sock)
            sock.close()
            del connections[sock]
            return
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                break
            if state.skipping:
                state.skipping = False
            else:
                state.buffer += data[start:end]
                if len(state.buffer) > MAX_MESSAGE_BYTES:
                    self._reject("oversize")
                elif state.buffer.strip():
                    self._take(bytes(state.buffer))
            state.buffer.clear()
            start = end + 1
        if not state.skipping:
            state.buffer += data[start:]
            if len(state.buffer) > MAX_MESSAGE_BYTES:
                self._reject("oversize")
                state.buffer.clear()
                state.skipping = True  # the rest of this message is read and dropped

    def _datagrams(self, sock: socket.socket) -> None:
        for _ in range(256):  # then let TCP have a turn
            try:
                datagram = sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if datagram[:2] == CHUNK_MAGIC:
                try:
                    whole = self._assembler.add(datagram)
                except GelfRejected as exc:
                    self._reject(exc.reason)
                    continue
                if whole is None:
                    continue
                datagram = whole
            self._take(datagram)

    # The writer thread --------------------------------------------------------------------

    def _run_uuid(self, engine: Any, record: LogRecord) -> str | None:
        from synergos_mlops.storage.logs import run_uuid_for

        ids = (record.collaboration, record.project, record.experiment, record.run)
        if None in ids:
            return None
        now = time.monotonic()
        cached = self._runs.get(ids)
        if cached is not None and cached[1] > now:
            return cached[0]
        if len(self._runs) > 10_000:
            self._runs.clear()
        found = run_uuid_for(engine, *ids)  # type: ignore[arg-type]
        self._runs[ids] = (found, now + (300 if found else 10))
        return found

    def _hardware(self, engine: Any, records: list[LogRecord]) -> None:
        """SYS_<participant> events also become that participant's hardware statistics."""
        from synergos_mlops.storage.system import attach_samples

        samples = self._sysmetrics.sample_batch([r for r in records if r.role == "SYS"])
        if not len(samples.points):
            return
        try:
            result = attach_samples(engine, samples)
        except Exception as exc:  # noqa: BLE001 - the records are stored; the samples wait
            self.echo(f"gelf: hardware samples not attached: {exc}")
            return
        with self._lock:
            self.system_attached += result.attached
            self.system_unmatched += result.unmatched

    def _writer(self) -> None:
        from sqlalchemy import create_engine

        from synergos_mlops.storage.logs import insert_records

        engine = create_engine(self.backend_uri, pool_pre_ping=True)
        pending: list[LogRecord] = []
        failures = 0
        try:
            while True:
                with self._lock:
                    if not self._queue and not pending and not self._stop.is_set():
                        self._wake.wait(0.2)
                    while self._queue and len(pending) < _BATCH:
                        pending.append(self._queue.popleft())
                    stopping = self._stop.is_set() and not self._queue
                if pending:
                    try:
                        batch = [replace(r, run_uuid=self._run_uuid(engine, r)) for r in pending]
                        insert_records(engine, batch)
                    except Exception as exc:  # noqa: BLE001 - the database is away: retry
                        failures += 1
                        if failures == 1:
                            self.echo(f"gelf: cannot write log records yet: {exc}")
                        if failures >= 30 or self._stop.is_set():
                            self._reject("database", len(pending))
                            pending, failures = [], 0
                        else:
                            self._stop.wait(1.0)
                        continue
                    with self._lock:
                        self.stored += len(pending)
                    self._hardware(engine, batch)
                    pending, failures = [], 0
                if stopping:
                    return
        finally:
            engine.dispose()

    # Status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "port": self.port,
                "accepted": self.accepted,
                "stored": self.stored,
                "hardware_samples": {
                    "attached": self.system_attached,
                    "unmatched": self.system_unmatched,
                },
                "backlog": len(self._queue),
                "rejected": dict(sorted(self.rejected.items())),
            }

    def _write_status(self) -> None:
        temporary = self.status_path.with_name(self.status_path.name + ".tmp")
        try:
            temporary.write_text(json.dumps(self.status()), encoding="utf-8")
            os.replace(temporary, self.status_path)
        except OSError as exc:
            self.echo(f"gelf: cannot write {self.status_path}: {exc.strerror}")

    def _reporter(self) -> None:
        last: dict[str, Any] | None = None
        while not self._stop.wait(0.5):
            now = self.status()
            if now != last:
                self._write_status()
                last = now


class LogRetention:
    """Delete log records older than ``days`` days, at start and every ``interval`` seconds."""

    def __init__(
        self,
        backend_uri: str,
        days: float,
        *,
        interval: float = 3600.0,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.backend_uri = backend_uri
        self.days = days
        self.interval = interval
        self.echo = echo
        self.deleted = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="synmlops-logs-retention")
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def run_once(self) -> int:
        from sqlalchemy import create_engine

        from synergos_mlops.storage.logs import delete_older_than

        engine = create_engine(self.backend_uri)
        try:
            cutoff = int((time.time() - self.days * 86400) * 1000)
            count = delete_older_than(engine, cutoff)
        finally:
            engine.dispose()
        self.deleted += count
        if count:
            self.echo(f"logs: deleted {count} records older than {self.days:g} days")
        return count

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.run_once()
            except Exception as exc:  # noqa: BLE001 - try again at the next interval
                self.echo(f"logs: retention pass failed: {exc}")
            self._stop.wait(self.interval)
