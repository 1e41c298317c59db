"""One bad GELF item never costs a good one, and the GELF port takes only whom it should:
against a real `synmlops serve --gelf-port`, with graypy's handlers (what synergos_logger
sends through) and raw TCP/UDP frames shaped as synergos_logger's records."""

from __future__ import annotations

import json
import logging
import socket
import sqlite3
import struct
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import graypy
import pytest
import requests
from conftest import Server, free_port, start_server, wait_for

from synergos_mlops import FederatedTracker, TrackerConfig

API = "/api/synergos/v1"
RUN_IDS = {"_collab_id": "c", "_project_id": "p", "_expt_id": "e"}


@pytest.fixture(scope="module")
def gelf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, int]]:
    folder = tmp_path_factory.mktemp("isolation")
    port = free_port()
    server = start_server(folder / "store", workers=1, extra=["--gelf-port", str(port)])
    with FederatedTracker(server.url, TrackerConfig(spool_dir=folder / "spool")) as tracker:
        for run in ("big", "surrogate", "poison", "plain", "levels"):
            tracker.run("c", "p", "e", run, participants=["w1"]).end()
    yield server, port
    server.stop()


def health(server: Server) -> dict[str, Any]:
    response = requests.get(f"{server.url}/health", timeout=10)
    assert response.status_code == 200, response.text
    return dict(response.json())


def gelf_status(server: Server) -> dict[str, Any]:
    return dict(health(server)["gelf"])


def records(server: Server, run: str, **params: Any) -> list[dict[str, Any]]:
    response = requests.get(
        f"{server.url}{API}/runs/c/p/e/{run}/logs", params={"limit": 5000, **params}, timeout=30
    )
    assert response.status_code == 200, response.text
    return list(response.json()["records"])


def frame(message: str, run: str, logger: str = "WKR_w1", **fields: Any) -> bytes:
    """One GELF TCP frame as graypy sends synergos_logger's structlog event."""
    document = {
        "version": "1.0", "host": "worker-host", "short_message": message,
        "timestamp": 1_700_000_000.5, "level": 6, "facility": logger, "_logger": logger,
        "_level_number": 20, "_event": message, "_file_path": "/worker/main.py",
        **RUN_IDS, "_run_id": run, **{f"_{k}": v for k, v in fields.items()},
    }  # fmt: skip
    return json.dumps(document).encode() + b"\x00"


def send_tcp(port: int, *frames: bytes, source: str | None = None) -> None:
    with socket.create_connection(
        ("127.0.0.1", port), source_address=(source, 0) if source else None
    ) as tcp:
        tcp.sendall(b"".join(frames))


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}


def test_an_event_with_a_number_too_large_for_a_float_never_stops_the_writer(
    gelf: tuple[Server, int],
) -> None:
    server, port = gelf
    before = gelf_status(server)
    huge = frame("Probed system's hardware usage successfully.", "big", "SYS_w1",
                 cpu_percent=12.0, memory_used=10**400, memory_total=10**401)  # fmt: skip
    send_tcp(port, huge)
    send_tcp(port, frame("after the huge one", "big"))
    wait_for(lambda: {r["message"] for r in records(gelf[0], "big")} >= {"after the huge one"})
    stored = {r["message"]: r for r in records(server, "big")}
    assert stored["Probed system's hardware usage successfully."]["fields"]["memory_used"] == (
        10**400
    )
    assert wait_for(lambda: gelf_status(server)["stored"] - before["stored"] == 2)
    after = gelf_status(server)
    assert after["backlog"] == 0 and after["down"] == {}
    send_tcp(port, frame("and the writer goes on", "big"))
    wait_for(lambda: "and the writer goes on" in {r["message"] for r in records(server, "big")})


def test_a_lone_surrogate_is_stored_replaced_and_costs_its_neighbours_nothing(
    gelf: tuple[Server, int],
) -> None:
    server, port = gelf
    before = gelf_status(server)
    handler = graypy.GELFTCPHandler("127.0.0.1", port, facility="", level_names=True)
    logger = logging.getLogger("WKR_w1")
    logger.handlers, logger.propagate = [handler], False
    ids = {"collab_id": "c", "project_id": "p", "expt_id": "e", "run_id": "surrogate"}
    name = b"data_\xe9t\xe9.csv".decode("utf-8", "surrogateescape")  # a non-UTF-8 file name
    try:
        logger.warning("before", extra=ids)
        logger.warning("cannot read %s", name, extra={**ids, "file": name})
        logger.warning("after", extra=ids)
    finally:
        handler.close()
    wait_for(lambda: len(records(server, "surrogate")) == 3)
    stored = [r["message"] for r in records(server, "surrogate")]
    assert stored == ["before", "cannot read data_\ufffdt\ufffd.csv", "after"]
    assert records(server, "surrogate")[1]["fields"]["file"] == "data_\ufffdt\ufffd.csv"
    assert "database" not in delta(before["rejected"], gelf_status(server)["rejected"])


def test_a_batch_the_database_refuses_is_split_until_the_bad_row_alone_is_left_out(
    gelf: tuple[Server, int],
) -> None:
    server, port = gelf
    # The database itself refuses one row (a trigger, as a DBA's rule would).
    with sqlite3.connect(server.store / "mlflow.db") as db:
        db.execute(
            "CREATE TRIGGER IF NOT EXISTS refuse_poison BEFORE INSERT ON synergos_logs "
            "WHEN NEW.message = 'poison' BEGIN SELECT RAISE(ABORT, 'poison refused'); END"
        )
    before = gelf_status(server)
    frames = [frame(f"good {n}", "poison") for n in range(300)]
    frames.insert(137, frame("poison", "poison"))
    send_tcp(port, *frames)  # one burst: one batch for the writer
    wait_for(lambda: len(records(server, "poison")) == 300)
    assert wait_for(lambda: delta(before["rejected"], gelf_status(server)["rejected"]))
    assert delta(before["rejected"], gelf_status(server)["rejected"]) == {"database": 1}
    assert sorted(r["message"] for r in records(server, "poison")) == sorted(
        f"good {n}" for n in range(300)
    )
    assert server.output().count("poison refused") == 1  # named once in the server log
    with sqlite3.connect(server.store / "mlflow.db") as db:
        db.execute("DROP TRIGGER refuse_poison")


def test_a_plain_graypy_handler_gives_the_logger_role_and_participant(
    gelf: tuple[Server, int],
) -> None:
    server, port = gelf
    handler = graypy.GELFTCPHandler("127.0.0.1", port)  # no facility, no structlog
    logger = logging.getLogger("WKR_worker_1")
    logger.handlers, logger.propagate = [handler], False
    try:
        logger.error("plain graypy", extra={"collab_id": "c", "project_id": "p",
                                            "expt_id": "e", "run_id": "plain"})  # fmt: skip
    finally:
        handler.close()
    wait_for(lambda: len(records(server, "plain")) == 1)
    (record,) = records(server, "plain")
    assert (record["logger"], record["role"], record["participant"]) == (
        "WKR_worker_1", "WKR", "worker_1",
    )  # fmt: skip
    assert record["level_name"] == "ERROR"


@pytest.mark.parametrize("level", ["99999999999999999999", "²", "1²", "101", "-1"])
def test_a_level_that_is_no_level_number_is_a_400_in_the_error_shape(
    gelf: tuple[Server, int], level: str
) -> None:
    server, _ = gelf
    response = requests.get(
        f"{server.url}{API}/runs/c/p/e/levels/logs", params={"level": level}, timeout=30
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "BAD_REQUEST"
    assert "level" in response.json()["error"]["message"]


def _chunks(message_id: int, payload: bytes, size: int) -> list[bytes]:
    pieces = [payload[i : i + size] for i in range(0, len(payload), size)]
    head = b"\x1e\x0f" + struct.pack(">Q", message_id)
    return [head + bytes([n, len(pieces)]) + piece for n, piece in enumerate(pieces)]


def test_a_chunked_message_over_the_limit_is_counted_once(gelf: tuple[Server, int]) -> None:
    import time

    server, port = gelf
    before = gelf_status(server)["rejected"]
    big = json.dumps({"short_message": "x" * (1300 * 1024), "host": "h"}).encode()
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for datagram in _chunks(1, big, 60_000):
            udp.sendto(datagram, ("127.0.0.1", port))
            time.sleep(0.002)  # within the receive buffer
        wait_for(lambda: delta(before, gelf_status(server)["rejected"]).get("oversize") == 1)
        # A marker never finished: once it is counted incomplete, so would the other be.
        udp.sendto(_chunks(2, b'{"short_message": "m"}', 8)[0], ("127.0.0.1", port))
    finally:
        udp.close()
    wait_for(lambda: "incomplete" in delta(before, gelf_status(server)["rejected"]))
    assert delta(before, gelf_status(server)["rejected"]) == {"oversize": 1, "incomplete": 1}


def test_sysmetric_events_of_an_unchanged_worker_attach_by_participant_and_time(
    gelf: tuple[Server, int], tmp_path: Path
) -> None:
    """The worker's main.py calls SysmetricLogger.track(file_path, class_name,
    function_name, resolution): its events name no collaboration nor run."""
    from mlflow import MlflowClient

    server, port = gelf
    before = gelf_status(server)["hardware_samples"]
    with FederatedTracker(server.url, TrackerConfig(spool_dir=tmp_path / "spool")) as tracker:
        run = tracker.run("c", "p", "e", "unchanged-worker", participants=["w9"])
        handler = graypy.GELFTCPHandler("127.0.0.1", port, facility="", level_names=True)
        logger = logging.getLogger("SYS_w9")
        logger.handlers, logger.propagate = [handler], False
        logger.setLevel(logging.DEBUG)
        descriptors = {"ID_path": "/worker/main.py", "ID_class": "", "ID_function": "main",
                       "resolution": 1, "logger": "SYS_w9", "level_number": 10}  # fmt: skip
        try:
            for cpu in (10.0, 30.0):
                logger.debug("Probed system's hardware usage successfully.",
                             extra={**descriptors, "cpu_percent": cpu, "memory_used": 3e9,
                                    "memory_total": 6e9})  # fmt: skip
            logging.getLogger("SYS_nobody").handlers = [handler]
            logging.getLogger("SYS_nobody").propagate = False
            logging.getLogger("SYS_nobody").warning(
                "Probed", extra={**descriptors, "logger": "SYS_nobody", "cpu_percent": 1.0}
            )
        finally:
            handler.close()
        child = run.participant_run_id("w9")
        client = MlflowClient(server.url)

        def cpu() -> list[float]:
            history = client.get_metric_history(child, "system/cpu_utilization_percentage")
            return sorted(m.value for m in history)

        wait_for(lambda: len(cpu()) >= 1)
        memory = client.get_metric_history(child, "system/system_memory_usage_percentage")
        assert {m.value for m in memory} == {50.0}
        run.end()

    def counted() -> dict[str, int]:
        return delta(before, gelf_status(server)["hardware_samples"])

    wait_for(lambda: counted().get("unmatched") == 1 and counted().get("attached", 0) >= 1)
    assert set(counted()) == {"attached", "unmatched"}


def test_records_on_postgresql_keep_surrogates_nul_and_huge_numbers_apart_from_good_ones(
    server_factory: Callable[..., Server], postgres_uri: str, tmp_path: Path
) -> None:
    port = free_port()
    server = server_factory(extra=["--backend-store-uri", postgres_uri, "--gelf-port", str(port)])
    with FederatedTracker(server.url, TrackerConfig(spool_dir=tmp_path / "spool")) as tracker:
        tracker.run("c", "p", "e", "pg", participants=["w1"]).end()
    odd = json.dumps({"version": "1.1", "host": "h", "short_message": "nul \x00 and \udce9",
                      "_logger": "WKR_w1", **RUN_IDS, "_run_id": "pg", "_big": 10**400,
                      "_nested": {"\udce9": [float("nan"), 1e308 * 10]}}).encode()  # fmt: skip
    send_tcp(port, frame("first", "pg"), odd + b"\x00", frame("last", "pg"))
    wait_for(lambda: len(records(server, "pg")) == 3)
    first, middle, last = records(server, "pg")
    assert (first["message"], last["message"]) == ("first", "last")
    assert middle["message"] == "nul \ufffd and \ufffd"
    assert middle["fields"]["big"] == 10**400
    assert middle["fields"]["nested"] == {"\ufffd": ["nan", "inf"]}
    assert health(server)["gelf"]["rejected"] == {}


# Who may send --------------------------------------------------------------------------


def _outward_address() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: only the route is looked up
        return str(probe.getsockname()[0])


def test_the_gelf_port_listens_on_loopback_unless_told_otherwise(
    gelf: tuple[Server, int],
) -> None:
    server, port = gelf
    address = _outward_address()
    assert not address.startswith("127.")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((address, port), timeout=5).close()
    assert gelf_status(server)["host"] == "127.0.0.1"
    assert f"GELF log input: 127.0.0.1:{port} (TCP and UDP)" in server.output()


def test_senders_outside_gelf_allow_are_refused_counted_and_named_once(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    port = free_port()
    server = server_factory(extra=["--gelf-port", str(port), "--gelf-allow", "127.0.0.2/32",
                                   "--gelf-allow", "10.0.0.0/8"])  # fmt: skip
    with FederatedTracker(server.url, TrackerConfig(spool_dir=tmp_path / "spool")) as tracker:
        tracker.run("c", "p", "e", "allow", participants=["w1"]).end()
    send_tcp(port, frame("from 127.0.0.1", "allow"))
    send_tcp(port, frame("from 127.0.0.1 again", "allow"))
    send_tcp(port, frame("from 127.0.0.2", "allow"), source="127.0.0.2")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.sendto(frame("udp from 127.0.0.1", "allow")[:-1], ("127.0.0.1", port))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind(("127.0.0.2", 0))
        udp.sendto(frame("udp from 127.0.0.2", "allow")[:-1], ("127.0.0.1", port))
    wait_for(lambda: len(records(server, "allow")) == 2)
    wait_for(lambda: gelf_status(server)["refused"].get("address") == 3)
    assert sorted(r["message"] for r in records(server, "allow")) == [
        "from 127.0.0.2", "udp from 127.0.0.2",
    ]  # fmt: skip
    assert server.output().count("gelf: refused 127.0.0.1") == 1


def _certificates(folder: Path) -> dict[str, Path]:
    """A CA, a server certificate for localhost and a client certificate signed by the CA,
    and a client certificate signed by nobody the server trusts."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    paths: dict[str, Path] = {}

    def write(name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
        paths[name] = folder / f"{name}.pem"
        paths[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        paths[f"{name}-key"] = folder / f"{name}-key.pem"
        paths[f"{name}-key"].write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ))  # fmt: skip

    def issue(name: str, issuer: tuple[x509.Name, Any] | None, ca: bool = False) -> Any:
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        issuer_name, issuer_key = issuer or (subject, key)
        builder = (
            x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )  # fmt: skip
        if name == "localhost":
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False
            )
        cert = builder.sign(issuer_key, hashes.SHA256())
        write(name, cert, key)
        return subject, key

    authority = issue("ca", None, ca=True)
    issue("localhost", authority)
    issue("worker", authority)
    issue("stranger", None)
    return paths


def test_gelf_over_tls_takes_graypy_with_a_client_certificate_and_refuses_others(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    certs = _certificates(tmp_path)
    port = free_port()
    server = server_factory(extra=[
        "--gelf-port", str(port), "--gelf-certfile", str(certs["localhost"]),
        "--gelf-keyfile", str(certs["localhost-key"]), "--gelf-client-ca", str(certs["ca"]),
    ])  # fmt: skip
    with FederatedTracker(server.url, TrackerConfig(spool_dir=tmp_path / "spool")) as tracker:
        tracker.run("c", "p", "e", "tls", participants=["w1"]).end()
    ids = {"collab_id": "c", "project_id": "p", "expt_id": "e", "run_id": "tls"}

    def log_through(name: str, message: str, **tls: Any) -> None:
        handler = graypy.GELFTLSHandler("127.0.0.1", port, facility="", **tls)
        logger = logging.getLogger(f"WKR_{name}")
        logger.handlers, logger.propagate = [handler], False
        try:
            with warnings.catch_warnings():  # graypy 2.1 calls ssl.wrap_socket (deprecated)
                warnings.simplefilter("ignore", DeprecationWarning)
                logger.warning(message, extra=ids)
        finally:
            handler.close()

    log_through("w1", "over TLS", validate=True, ca_certs=str(certs["ca"]),
                certfile=str(certs["worker"]), keyfile=str(certs["worker-key"]))  # fmt: skip
    wait_for(lambda: len(records(server, "tls")) == 1)
    assert records(server, "tls")[0]["message"] == "over TLS"
    refused_before = gelf_status(server)["refused"].get("tls", 0)
    log_through("w2", "no client certificate")
    log_through("w3", "a stranger's certificate", certfile=str(certs["stranger"]),
                keyfile=str(certs["stranger-key"]))  # fmt: skip
    send_tcp(port, frame("plain text to the TLS port", "tls"))
    wait_for(lambda: gelf_status(server)["refused"].get("tls", 0) - refused_before == 3)
    assert [r["message"] for r in records(server, "tls")] == ["over TLS"]
    status = gelf_status(server)
    assert status["tls"] is True and status["udp"] is False
    assert "TCP with TLS, client certificates required" in server.output()


def test_serve_refuses_bad_gelf_security_settings_in_one_line(tmp_path: Path) -> None:
    import subprocess
    import sys

    def serve(*extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "synergos_mlops", "serve", "--store", str(tmp_path / "s"),
             "--port", str(free_port()), "--gelf-port", str(free_port()), *extra],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip

    for extra, said in (
        (["--gelf-allow", "10.0.0.0/33"], "--gelf-allow '10.0.0.0/33' is not a network"),
        (["--gelf-client-ca", str(tmp_path)], "--gelf-client-ca needs --gelf-certfile"),
        (["--gelf-certfile", str(tmp_path / "none.pem")], "--gelf-certfile needs --gelf-keyfile"),
    ):
        result = serve(*extra)
        assert result.returncode == 1, result.stderr
        assert said in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert not (tmp_path / "s").exists()  # a refused start creates no store


# Supervision ---------------------------------------------------------------------------


def test_a_writer_that_stops_turns_health_503_with_the_reason_and_is_restarted(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """A real failure: the log table disappears under the running server (a restore of an
    old database, a hand's DROP). The writer cannot go on, stops, and /health says so until
    the table is back; then the restarted writer stores everything that waited."""
    from sqlalchemy import create_engine

    from synergos_mlops.storage.schema import logs

    port = free_port()
    server = server_factory(extra=["--gelf-port", str(port)])
    with FederatedTracker(server.url, TrackerConfig(spool_dir=tmp_path / "spool")) as tracker:
        tracker.run("c", "p", "e", "down", participants=["w1"]).end()
    send_tcp(port, frame("before", "down"))
    wait_for(lambda: len(records(server, "down")) == 1)
    engine = create_engine(f"sqlite:///{server.store / 'mlflow.db'}")
    try:
        logs.drop(engine)
        send_tcp(port, *(frame(f"while down {n}", "down") for n in range(50)))

        def unhealthy() -> dict[str, Any] | None:
            """The 503 answer once all 50 records wait (the writer may stop more than once
            while they arrive)."""
            response = requests.get(f"{server.url}/health", timeout=10)
            if response.status_code != 503 or response.json()["gelf"]["backlog"] != 50:
                return None
            return dict(response.json())

        answer = wait_for(unhealthy)
        assert answer, "health never said 503"
        assert answer["status"] == "unavailable"  # type: ignore[index]
        assert "writer thread stopped" in answer["reason"]  # type: ignore[index]
        assert "synergos_logs" in answer["reason"]  # type: ignore[index]
        logs.create(engine)  # the table is back
    finally:
        engine.dispose()
    wait_for(lambda: requests.get(f"{server.url}/health", timeout=10).status_code == 200)
    status = gelf_status(server)
    assert status["down"] == {} and status["restarts"]["writer"] >= 1
    wait_for(lambda: len(records(server, "down")) == 50)
    assert sorted(r["message"] for r in records(server, "down")) == sorted(
        f"while down {n}" for n in range(50)
    )
    assert gelf_status(server)["rejected"] == {}
    assert server.output().count("gelf: the writer thread stopped") >= 1
    assert "gelf: the writer thread is running again" in server.output()
