"""Central logs beside the server, in the ``synmlops serve`` process: the GELF input and the
retention of old records.

:class:`GelfInput` listens on one port, TCP (messages ended by a null byte; TLS when given a
certificate) and UDP (plain, zlib or gzip, chunked; not with TLS), in one thread
(``selectors``); parsed records wait in a bounded queue that a second thread writes to the
database in batches. Memory is bounded everywhere: a TCP message longer than 1 MiB is skipped
up to its end without being kept, chunked UDP is held within
:class:`~synergos_mlops.server.services.gelf.ChunkAssembler`'s bounds, the queue holds at most
``max_backlog`` records (beyond: ``backlog_full``), connections are capped. Senders outside
``allow`` (CIDR networks) and TLS handshakes that fail are refused and counted.

One bad item never costs a good one: each message is decoded on its own; a batch the
database refuses is split in halves until the rows it refuses are found (each counted as
``database`` and named in the log), while a database that does not answer at all keeps the
batch waiting, never dropped. Both threads are supervised: what a loop did not expect rejects
the item at hand and the loop goes on; a thread that stops anyway (memory exhausted) is named
in the status as ``down`` (``/health`` 503 with the reason) and started again after a pause
(1 s, doubling up to 30 s). Its counters go to a small JSON file every half second, which
each server worker's ``/health`` reads (the variable :data:`STATUS_ENV` names it); a file not
renewed for :data:`STALE_AFTER` seconds is also a 503.

:class:`LogRetention` deletes records older than N days, at start and every hour.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import selectors
import socket
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from synergos_mlops.server.services.gelf import (
    CHUNK_MAGIC,
    MAX_MESSAGE_BYTES,
    ChunkAssembler,
    GelfRejected,
    SysmetricConverter,
    decode_payload,
    record_from_gelf,
)
from synergos_mlops.storage.logs import LogRecord

__all__ = [
    "STALE_AFTER",
    "STATUS_ENV",
    "GelfInput",
    "GelfSecurity",
    "LogRetention",
    "LogTableMissingError",
    "RETENTION_STATUS_ENV",
    "gelf_health_problem",
    "retention_health_problem",
    "read_status",
]

#: Where the serve process tells its workers the GELF status file is.
STATUS_ENV = "SYNMLOPS_GELF_STATUS"
#: Where the serve process tells its workers the log retention's status file is.
RETENTION_STATUS_ENV = "SYNMLOPS_RETENTION_STATUS"
#: A status file older than this (seconds) means the GELF input is stuck: /health says 503.
STALE_AFTER = 15.0
_RECV = 256 * 1024
_MAX_CONNECTIONS = 512
_BATCH = 5000
_NAMED_LIMIT = 1000  # addresses named in the log at most once each, up to this many
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def read_status(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    try:
        return dict(json.loads(Path(path).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return None


def gelf_health_problem(status: dict[str, Any], now: float | None = None) -> str | None:
    """Why ``/health`` must say 503 for this GELF status, or None when it is working."""
    down = status.get("down") or {}
    if down:
        name, reason = sorted(down.items())[0]
        return f"the GELF input's {name} thread stopped ({reason}); it is being restarted"
    updated = status.get("updated")
    if isinstance(updated, (int, float)) and not status.get("stopped"):
        age = (time.time() if now is None else now) - updated
        if age > STALE_AFTER:
            return f"the GELF input has not reported for {age:.0f} s"
    return None


@dataclass(frozen=True)
class GelfSecurity:
    """Who may send: ``allow`` networks (empty: anyone who reaches the address), and TLS
    for TCP (``certfile``/``keyfile``; with ``client_ca``, a client certificate signed by it
    is required)."""

    allow: tuple[Network, ...] = ()
    certfile: Path | None = None
    keyfile: Path | None = None
    client_ca: Path | None = None

    @property
    def tls(self) -> bool:
        return self.certfile is not None

    def context(self) -> ssl.SSLContext | None:
        if self.certfile is None:
            return None
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.certfile, self.keyfile, password=lambda: b"")
        if self.client_ca is not None:
            context.verify_mode = ssl.CERT_REQUIRED
            context.load_verify_locations(self.client_ca)
        return context

    def allows(self, address: str) -> bool:
        if not self.allow:
            return True
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.allow)


class _Connection:
    __slots__ = ("address", "buffer", "handshaking", "skipping")

    def __init__(self, address: str, handshaking: bool) -> None:
        self.address = address
        self.buffer = bytearray()
        self.skipping = False  # inside a message already counted as oversize
        self.handshaking = handshaking


class LogTableMissingError(RuntimeError):
    """The database answers but has no ``synergos_logs`` table: the writer cannot go on
    (it stops, ``/health`` says 503, and it is started again until the table is back)."""


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
        security: GelfSecurity | None = None,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.backend_uri = backend_uri
        self.host = host
        self.port = port
        self.status_path = status_path
        self.max_backlog = max_backlog
        self.security = security or GelfSecurity()
        self.echo = echo
        self.accepted = 0  # parsed and queued
        self.stored = 0  # written to the database
        self.hardware: dict[str, int] = {"attached": 0, "unmatched": 0}
        self._sysmetrics = SysmetricConverter()
        self.rejected: dict[str, int] = {}
        self.refused: dict[str, int] = {}
        self._queue: deque[LogRecord] = deque()
        self._lock = threading.RLock()
        self._wake = threading.Condition(self._lock)
        self._stop = threading.Event()
        self._assembler = ChunkAssembler()
        self._tls = self.security.context()
        self._tcp: socket.socket | None = None
        self._udp: socket.socket | None = None
        self._runs: dict[tuple[Any, ...], tuple[str | None, float]] = {}
        self._named: set[str] = set()
        # Supervision: name -> (loop, thread); what stopped, when to try again, how often.
        self._workers: dict[str, Callable[[], None]] = {
            "network": self._network,
            "writer": self._writer,
        }
        self._threads: dict[str, threading.Thread] = {}
        self._down: dict[str, str] = {}
        self._retry_at: dict[str, float] = {}
        self._pause: dict[str, float] = {}
        self.restarts: dict[str, int] = {}
        self._in_hand = 0  # records the writer holds
        self._hand: deque[list[LogRecord]] = deque()  # and the parts they are in
        self._supervisor: threading.Thread | None = None

    # Life ---------------------------------------------------------------------------------

    def bind(self) -> None:
        """Open the sockets (OSError naming the problem when the port is taken)."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        tcp = socket.socket(family, socket.SOCK_STREAM)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        udp = None if self._tls is not None else socket.socket(family, socket.SOCK_DGRAM)
        try:
            tcp.bind((self.host, self.port))
            tcp.listen(128)
            if udp is not None:
                udp.bind((self.host, self.port))
                udp.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        except OSError:
            tcp.close()
            if udp is not None:
                udp.close()
            raise
        tcp.setblocking(False)
        if udp is not None:
            udp.setblocking(False)
        self._tcp, self._udp = tcp, udp

    def start(self) -> None:
        if self._tcp is None:
            self.bind()
        for name in self._workers:
            self._launch(name)
        self._write_status()
        self._supervisor = threading.Thread(
            target=self._supervise_loop, name="synmlops-gelf-status", daemon=True
        )
        self._supervisor.start()

    def stop(self, timeout: float = 10) -> None:
        self._stop.set()
        with self._lock:
            self._wake.notify_all()
        for thread in [*self._threads.values(), self._supervisor]:
            if thread is not None:
                thread.join(timeout)
        for sock in (self._tcp, self._udp):
            if sock is not None:
                sock.close()
        self._write_status(stopped=True)

    # Supervision --------------------------------------------------------------------------

    def _launch(self, name: str) -> None:
        loop = self._workers[name]

        def guarded() -> None:
            started = time.monotonic()
            try:
                loop()
            except BaseException as exc:  # noqa: BLE001 - recorded; the supervisor restarts it
                reason = f"{type(exc).__name__}: {exc}".rstrip(": ")[:300]
                with self._lock:
                    self._down[name] = reason
                    kept = 0
                    if name == "writer":  # what it held waits again, first in line
                        held = [r for part in self._hand for r in part]
                        self._queue.extendleft(reversed(held))
                        self._hand, self._in_hand, kept = deque(), 0, len(held)
                    if time.monotonic() - started > 60:  # it had worked: start over at 1 s
                        self._pause.pop(name, None)
                    pause = min(30.0, self._pause.get(name, 0.5) * 2)
                    self._pause[name] = pause
                    self._retry_at[name] = time.monotonic() + pause
                self._say(f"gelf: the {name} thread stopped ({reason}); restarting in {pause:g} s"
                          + (f"; the {kept} records it held wait" if kept else ""))  # fmt: skip

        thread = threading.Thread(target=guarded, name=f"synmlops-gelf-{name}", daemon=True)
        thread.start()
        self._threads[name] = thread

    def supervise(self) -> None:
        """Start again every worker thread that stopped, once its pause is over (called
        every half second by the status thread, and by ``serve``, which also starts the status
        thread again if it stopped)."""
        if self._stop.is_set():
            return
        status = self._supervisor
        here = threading.current_thread()
        if status is not None and status is not here and not status.is_alive():
            self._say("gelf: the status thread stopped; restarting it")
            self._supervisor = threading.Thread(
                target=self._supervise_loop, name="synmlops-gelf-status", daemon=True
            )
            self._supervisor.start()
        with self._lock:
            for name, thread in list(self._threads.items()):
                if thread.is_alive() or time.monotonic() < self._retry_at.get(name, 0.0):
                    continue
                if name not in self._down:  # ended without the guard's word: say so
                    self._down[name] = "ended"
                try:
                    self._launch(name)
                except Exception as exc:  # noqa: BLE001 - cannot start a thread now: later
                    self._down[name] = f"cannot restart: {type(exc).__name__}: {exc}"[:300]
                    self._retry_at[name] = time.monotonic() + 1.0
                    continue
                self.restarts[name] = self.restarts.get(name, 0) + 1

    def _alive(self, name: str) -> None:
        """A worker loop says it runs: it is no longer down."""
        with self._lock:
            if self._down.pop(name, None) is not None:
                self._say(f"gelf: the {name} thread is running again")

    def _supervise_loop(self) -> None:
        last = 0.0
        while not self._stop.wait(0.5):
            try:
                self.supervise()
                now = time.monotonic()
                if now - last >= 0.5:
                    self._write_status()
                    last = now
            except Exception:  # noqa: BLE001 - the next pass tries again; stale means 503
                continue

    # Counting -----------------------------------------------------------------------------

    def _say(self, line: str) -> None:
        with contextlib.suppress(Exception):  # the log is away: the counters still say it
            self.echo(line)

    def _name_once(self, key: str, line: str) -> None:
        with self._lock:
            if key in self._named or len(self._named) >= _NAMED_LIMIT:
                return
            self._named.add(key)
        self._say(line)

    def _reject(self, reason: str, count: int = 1, detail: str = "") -> None:
        with self._lock:
            self.rejected[reason] = self.rejected.get(reason, 0) + count
        self._name_once(
            f"reject:{reason}",
            f"gelf: a message was not stored ({reason}{': ' + detail if detail else ''}); "
            f"further ones are counted in /health",
        )

    def _refuse(self, reason: str, address: str, detail: str = "") -> None:
        with self._lock:
            self.refused[reason] = self.refused.get(reason, 0) + 1
        why = "not in --gelf-allow" if reason == "address" else f"TLS failed: {detail}"
        self._name_once(
            f"refuse:{reason}:{address}", f"gelf: refused {address} ({why}); counted in /health"
        )

    def _take(self, payload: bytes) -> None:
        try:
            record = record_from_gelf(decode_payload(payload))
        except GelfRejected as exc:
            self._reject(exc.reason, detail=str(exc).partition(": ")[2])
            return
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - one odd message, never the listener
            self._reject("unreadable", detail=f"{type(exc).__name__}: {exc}"[:200])
            return
        with self._lock:
            full = len(self._queue) >= self.max_backlog
            if not full:
                self._queue.append(record)
                self.accepted += 1
                if len(self._queue) >= _BATCH:
                    self._wake.notify_all()
        if full:
            self._reject("backlog_full", detail=f"{self.max_backlog} records wait already")

    # The network thread -------------------------------------------------------------------

    def _network(self) -> None:
        assert self._tcp is not None
        selector = selectors.DefaultSelector()
        selector.register(self._tcp, selectors.EVENT_READ, "accept")
        if self._udp is not None:
            selector.register(self._udp, selectors.EVENT_READ, "udp")
        connections: dict[socket.socket, _Connection] = {}
        self._alive("network")
        try:
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.5):
                    sock = key.fileobj
                    assert isinstance(sock, socket.socket)
                    try:
                        if key.data == "accept":
                            self._accept(selector, connections)
                        elif key.data == "udp":
                            self._datagrams(sock)
                        else:
                            self._receive(selector, connections, sock)
                    except MemoryError:
                        raise
                    except Exception as exc:  # noqa: BLE001 - that sender's input, not ours
                        self._reject("unreadable", detail=f"{type(exc).__name__}: {exc}"[:200])
                        if sock in connections:
                            self._close(selector, connections, sock)
                self._assembler.expire()
                if self._assembler.dropped:
                    for reason, count in self._assembler.dropped.items():
                        self._reject(reason, count)
                    self._assembler.dropped.clear()
        finally:
            for sock in connections:
                sock.close()
            selector.close()

    def _close(
        self, selector: Any, connections: dict[socket.socket, _Connection], sock: socket.socket
    ) -> None:
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(sock)
        sock.close()
        connections.pop(sock, None)

    def _accept(self, selector: Any, connections: dict[socket.socket, _Connection]) -> None:
        assert self._tcp is not None
        try:
            sock, peer = self._tcp.accept()
        except OSError:
            return
        address = str(peer[0])
        if not self.security.allows(address):
            sock.close()
            self._refuse("address", address)
            return
        if len(connections) >= _MAX_CONNECTIONS:
            sock.close()
            self._reject("too_many_connections")
            return
        sock.setblocking(False)
        if self._tls is not None:
            sock = self._tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        connections[sock] = _Connection(address, handshaking=self._tls is not None)
        selector.register(sock, selectors.EVENT_READ, "tcp")

    def _handshake(
        self, selector: Any, connections: dict[socket.socket, _Connection], sock: socket.socket
    ) -> bool:
        """Go on with a TLS handshake; True once done."""
        state = connections[sock]
        assert isinstance(sock, ssl.SSLSocket)
        try:
            sock.do_handshake()
        except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return False
        except (ssl.SSLError, OSError) as exc:
            detail = getattr(exc, "reason", None) or type(exc).__name__
            self._refuse("tls", state.address, str(detail))
            self._close(selector, connections, sock)
            return False
        state.handshaking = False
        return True

    def _receive(
        self, selector: Any, connections: dict[socket.socket, _Connection], sock: socket.socket
    ) -> None:
        state = connections[sock]
        if state.handshaking and not self._handshake(selector, connections, sock):
            return
        for _ in range(64):  # a TLS socket may hold decrypted data the selector cannot see
            try:
                data = sock.recv(_RECV)
            except (BlockingIOError, InterruptedError, ssl.SSLWantReadError):
                return
            except ssl.SSLWantWriteError:
                return
            except OSError:
                data = b""
            if not data:  # closed: what is left without its null byte is one last message
                if state.buffer and not state.skipping:
                    self._take(bytes(state.buffer))
                self._close(selector, connections, sock)
                return
            self._frames(state, data)
            if not isinstance(sock, ssl.SSLSocket) or not sock.pending():
                return

    def _frames(self, state: _Connection, data: bytes) -> None:
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
                datagram, peer = sock.recvfrom(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            if self.security.allow and not self.security.allows(str(peer[0])):
                self._refuse("address", str(peer[0]))
                continue
            try:
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
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - one datagram, never the listener
                self._reject("unreadable", detail=f"{type(exc).__name__}: {exc}"[:200])

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

    def _insert(self, engine: Any, records: Sequence[LogRecord]) -> None:
        from synergos_mlops.storage.logs import insert_records

        insert_records(engine, [replace(r, run_uuid=self._run_uuid(engine, r)) for r in records])

    @staticmethod
    def _answers(engine: Any) -> bool:
        """Whether the database answers at all (then a row it refuses is that row's fault);
        LogTableMissingError when it answers without the log table."""
        from sqlalchemy import text

        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except MemoryError:
            raise
        except Exception:  # noqa: BLE001 - away, locked, refusing connections
            return False
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1 FROM synergos_logs WHERE 1 = 0"))
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - judged: the table is not there
            first = str(getattr(exc, "orig", exc)).strip().splitlines()
            raise LogTableMissingError(
                f"the database has no usable synergos_logs table ({first[0] if first else exc!r})"
            ) from None
        return True

    def _store(self, engine: Any, batch: list[LogRecord]) -> None:
        """Write ``batch``; a part the database refuses is split until its bad rows are found
        (each counted and named); while the database does not answer, wait and keep it."""
        parts = self._hand = deque([batch])
        waiting = False
        while parts:
            part = parts[0]
            try:
                self._insert(engine, part)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - judged below: the database or the row
                if not self._answers(engine):
                    if self._stop.is_set():
                        left = sum(len(p) for p in parts)
                        self._reject("database", left, "the database is away at shutdown")
                        parts.clear()
                        self._in_hand = 0
                        return
                    if not waiting:
                        why = str(exc).splitlines()[0][:200] if str(exc) else repr(exc)
                        self._say(f"gelf: the database does not answer, records wait: {why}")
                        waiting = True
                    self._stop.wait(1.0)
                    continue
                parts.popleft()
                if len(part) > 1:
                    middle = len(part) // 2
                    parts.appendleft(part[middle:])
                    parts.appendleft(part[:middle])
                    continue
                self._refuse_row(part[0], exc)
                with self._lock:
                    self._in_hand -= 1
                continue
            if waiting:
                self._say("gelf: the database answers again")
                waiting = False
            parts.popleft()
            with self._lock:
                self.stored += len(part)
                self._in_hand -= len(part)
            self._attach_hardware(engine, part)

    def _refuse_row(self, record: LogRecord, exc: BaseException) -> None:
        with self._lock:
            self.rejected["database"] = self.rejected.get("database", 0) + 1
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        self._say(f"gelf: the database refused a record of {record.logger!r} "
                  f"({record.message[:80]!r}): {reason}")  # fmt: skip

    def _attach_hardware(self, engine: Any, records: list[LogRecord]) -> None:
        """SYS_<participant> events also become that participant's hardware statistics:
        attached per participant, one participant's failure never costing another's."""
        from synergos_mlops.storage.system import attach_samples

        system = [r for r in records if r.role == "SYS"]
        if not system:
            return
        try:
            batches, skipped = self._sysmetrics.sample_batches(system)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - the records are stored; count the samples
            self._hardware_count("failed", len(system), f"{type(exc).__name__}: {exc}")
            return
        for reason, count in skipped.items():
            self._hardware_count(reason, count)
        for batch in batches:
            try:
                result = attach_samples(engine, batch, any_collaboration=True)
            except MemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - this participant's samples only
                samples = len(set(batch.points.timestamps))
                self._hardware_count("failed", samples, f"{type(exc).__name__}: {exc}")
                continue
            self._hardware_count("attached", result.attached)
            self._hardware_count("unmatched", result.unmatched)

    def _hardware_count(self, reason: str, count: int, detail: str = "") -> None:
        if not count:
            return
        with self._lock:
            self.hardware[reason] = self.hardware.get(reason, 0) + count
        if reason not in ("attached", "unmatched"):
            self._name_once(
                f"hardware:{reason}",
                f"gelf: hardware samples not attached ({reason}"
                f"{': ' + detail[:200] if detail else ''}); further ones are counted in /health",
            )

    def _next_batch(self) -> list[LogRecord] | None:
        """Up to a batch of waiting records; None once stopping with nothing left."""
        with self._lock:
            if not self._queue and not self._stop.is_set():
                self._wake.wait(0.2)
            batch: list[LogRecord] = []
            while self._queue and len(batch) < _BATCH:
                batch.append(self._queue.popleft())
            self._in_hand = len(batch)
            if not batch and self._stop.is_set():
                return None
            return batch

    def _writer(self) -> None:
        from sqlalchemy import create_engine

        engine = create_engine(self.backend_uri, pool_pre_ping=True)
        try:
            self._answers(engine)  # a missing table stops it here, before it says it runs
            self._alive("writer")
            while True:
                batch = self._next_batch()
                if batch is None:
                    return
                if batch:
                    self._store(engine, batch)
        finally:
            engine.dispose()

    # Status -------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "host": self.host,
                "port": self.port,
                "tls": self._tls is not None,
                "udp": self._udp is not None,
                "accepted": self.accepted,
                "stored": self.stored,
                "hardware_samples": dict(sorted(self.hardware.items())),
                "backlog": len(self._queue) + max(0, self._in_hand),
                "rejected": dict(sorted(self.rejected.items())),
                "refused": dict(sorted(self.refused.items())),
                "down": dict(sorted(self._down.items())),
                "restarts": dict(sorted(self.restarts.items())),
            }

    def _write_status(self, *, stopped: bool = False) -> None:
        document = {**self.status(), "updated": time.time()}
        if stopped:
            document["stopped"] = True
        temporary = self.status_path.with_name(self.status_path.name + ".tmp")
        try:
            temporary.write_text(json.dumps(document), encoding="utf-8")
            os.replace(temporary, self.status_path)
        except OSError as exc:
            self._name_once("status", f"gelf: cannot write {self.status_path}: {exc.strerror}")


class LogRetention:
    """Delete log records older than ``days`` days, at start and every ``interval`` seconds.

    A pass that fails is tried again after ``retry`` seconds. Each pass writes its outcome to
    ``status_path`` (when given), where ``/health`` reads it: while the last pass failed,
    ``/health`` says 503 with the reason (:func:`retention_health_problem`)."""

    def __init__(
        self,
        backend_uri: str,
        days: float,
        *,
        interval: float = 3600.0,
        retry: float = 60.0,
        status_path: Path | None = None,
        echo: Callable[[str], None] = print,
    ) -> None:
        self.backend_uri = backend_uri
        self.days = days
        self.interval = interval
        self.retry = min(retry, interval)
        self.status_path = status_path
        self.echo = echo
        self.deleted = 0
        self.passes = 0
        self.failed_passes = 0
        self.last_error: str | None = None
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

    def supervise(self) -> None:
        """Start the retention thread again if it stopped (``serve`` calls this every second)."""
        if not self._stop.is_set() and self._thread is not None and not self._thread.is_alive():
            self.echo("logs: the retention thread stopped; restarting it")
            self.start()

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

    def status(self) -> dict[str, Any]:
        return {
            "days": self.days, "passes": self.passes, "deleted": self.deleted,
            "failed_passes": self.failed_passes, "last_error": self.last_error,
            "retry_seconds": self.retry, "updated": time.time(),
        }  # fmt: skip

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.passes += 1
            try:
                self.run_once()
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - said in /health; tried again soon
                self.failed_passes += 1
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                self.last_error = first[:300]
                self.echo(f"logs: retention pass failed ({self.last_error}); "
                          f"trying again in {self.retry:g} s")  # fmt: skip
            self._write_status()
            self._stop.wait(self.interval if self.last_error is None else self.retry)

    def _write_status(self) -> None:
        if self.status_path is None:
            return
        temporary = self.status_path.with_name(self.status_path.name + ".tmp")
        try:
            temporary.write_text(json.dumps(self.status()), encoding="utf-8")
            os.replace(temporary, self.status_path)
        except OSError as exc:
            self.echo(f"logs: cannot write {self.status_path}: {exc.strerror}")


def retention_health_problem(status: dict[str, Any]) -> str | None:
    """Why ``/health`` must say 503 for this retention status, or None when its last pass
    worked."""
    error = status.get("last_error")
    if not error:
        return None
    return (
        f"log retention failed ({error}); records older than {status.get('days')} days are "
        f"kept until a pass works, tried every {status.get('retry_seconds')} s"
    )
