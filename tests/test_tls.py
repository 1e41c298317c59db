"""HTTPS: ``synmlops serve --certfile --keyfile`` serves TLS on its one port, and every client
(the stock MlflowClient, the tracker, export) verifies it the way MLflow's client does."""

from __future__ import annotations

import datetime
import ipaddress
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from conftest import Server, free_port, start_server
from federated_data import log_federated_run
from mlflow import MlflowClient
from tracking_support import fast_config

from synergos_mlops import FederatedTracker
from synergos_mlops.cli import main
from synergos_mlops.errors import ServerUnavailableError
from synergos_mlops.export import ExportRequest, export_run
from synergos_mlops.federation import ExperimentIds
from synergos_mlops.tracking._transport import HttpTransport

#: MLFLOW_TRACKING_INSECURE_TLS does what it says; urllib3 warns about it, as it should.
INSECURE_WARNING_EXPECTED = pytest.mark.filterwarnings(
    "ignore::urllib3.exceptions.InsecureRequestWarning"
)
TLS_ENV = ("MLFLOW_TRACKING_SERVER_CERT_PATH", "MLFLOW_TRACKING_INSECURE_TLS", "REQUESTS_CA_BUNDLE")


def make_certificate(folder: Path, name: str = "localhost") -> tuple[Path, Path]:
    """A self-signed certificate for localhost and 127.0.0.1, and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / f"{name}.crt", folder / f"{name}.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def start_tls_server(store: Path, cert: Path, key: Path) -> Server:
    """``synmlops serve --certfile --keyfile`` on a free port, awaited over verified HTTPS."""
    port = free_port()
    return start_server(
        store,
        port=port,
        extra=["--certfile", str(cert), "--keyfile", str(key)],
        drop_env=TLS_ENV,
        url=f"https://localhost:{port}",
        verify=str(cert),
    )


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return make_certificate(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def tls_server(
    tmp_path_factory: pytest.TempPathFactory, certificate: tuple[Path, Path]
) -> Iterator[Server]:
    cert, key = certificate
    server = start_tls_server(tmp_path_factory.mktemp("tls-store") / "store", cert, key)
    yield server
    server.stop()


@pytest.fixture
def clean_tls_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in TLS_ENV:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_serve_prints_the_https_url_and_health_answers_over_https(
    tls_server: Server, certificate: tuple[Path, Path]
) -> None:
    cert, _ = certificate
    assert f"at https://localhost:{tls_server.port}" in tls_server.output()
    response = requests.get(f"{tls_server.url}/health", verify=str(cert), timeout=30)
    assert response.status_code == 200 and response.json()["status"] == "ok"


def test_plain_http_to_the_https_port_gets_no_answer(tls_server: Server) -> None:
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{tls_server.port}/health", timeout=30)


def test_an_unknown_certificate_is_refused_by_default(tls_server: Server) -> None:
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_server.url}/health", timeout=30)


def test_the_stock_mlflow_client_works_over_https_with_the_server_certificate(
    tls_server: Server, certificate: tuple[Path, Path], clean_tls_env: pytest.MonkeyPatch
) -> None:
    clean_tls_env.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(certificate[0]))
    client = MlflowClient(tls_server.url)
    experiment_id = client.create_experiment("tls-stock-client")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "train/loss", 0.5, step=1)
    assert client.get_metric_history(run.info.run_id, "train/loss")[0].value == 0.5


@INSECURE_WARNING_EXPECTED
def test_the_stock_mlflow_client_works_over_https_with_insecure_tls(
    tls_server: Server, clean_tls_env: pytest.MonkeyPatch
) -> None:
    clean_tls_env.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    client = MlflowClient(tls_server.url)
    assert client.search_experiments()


def test_the_tracker_logs_over_https_trusting_the_server_certificate(
    tls_server: Server,
    certificate: tuple[Path, Path],
    clean_tls_env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    clean_tls_env.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(certificate[0]))
    model = tmp_path / "global_model.pt"
    model.write_bytes(b"weights")
    with (
        FederatedTracker(tls_server.url, fast_config(tmp_path)) as tracker,
        tracker.run(
            collaboration="tls", project="p", experiment="e", run="r1",
            hyperparameters={"lr": 0.1}, participants=["w1"],
        ) as run,
    ):  # fmt: skip
        run.log_metrics({"train/loss": 0.4}, step=0)
        run.log_metrics({"train/loss": 0.3}, step=0, participant="w1")
        run.log_model(model)
    client = MlflowClient(tls_server.url)
    assert [m.value for m in client.get_metric_history(run.run_id, "train/loss")] == [0.4]
    assert client.get_run(run.run_id).data.params == {"lr": "0.1"}
    assert "models/global" in {a.path for a in client.list_artifacts(run.run_id, "models")}


@INSECURE_WARNING_EXPECTED
def test_the_tracker_transport_honours_insecure_tls(
    tls_server: Server, clean_tls_env: pytest.MonkeyPatch
) -> None:
    clean_tls_env.setenv("MLFLOW_TRACKING_INSECURE_TLS", "true")
    transport = HttpTransport(tls_server.url)
    try:
        resolved = transport.resolve(ExperimentIds("tls", "p", "insecure"), "r", ["w"], None)
    finally:
        transport.close()
    assert resolved.run_id and set(resolved.participants) == {"w"}


def test_the_tracker_transport_refuses_an_unknown_certificate(
    tls_server: Server, clean_tls_env: pytest.MonkeyPatch
) -> None:
    transport = HttpTransport(tls_server.url)
    try:
        with pytest.raises(ServerUnavailableError, match="SSLError"):
            transport.resolve(ExperimentIds("tls", "p", "untrusted"), "r", [], None)
    finally:
        transport.close()


def test_export_downloads_a_bundle_over_https(
    tls_server: Server,
    certificate: tuple[Path, Path],
    clean_tls_env: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    clean_tls_env.setenv("MLFLOW_TRACKING_SERVER_CERT_PATH", str(certificate[0]))
    logged = log_federated_run(tls_server.url, collaboration="tls-export", rounds=2)
    output = tmp_path / "bundle.zip"
    request = ExportRequest(logged.collaboration, logged.project, logged.experiment, logged.run)
    assert export_run(request, output, tls_server.url, progress=False) > 0


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["--certfile", "{cert}"], "--certfile needs --keyfile"),
        (["--keyfile", "{key}"], "--keyfile needs --certfile"),
        (["--certfile", "{missing}", "--keyfile", "{key}"], "is not a file"),
        (["--certfile", "{cert}", "--keyfile", "{garbage}"], "are not a PEM certificate"),
        (["--certfile", "{cert}", "--keyfile", "{other_key}"], "are not a PEM certificate"),
    ],
    ids=["cert-alone", "key-alone", "missing-cert", "garbage-key", "key-of-another-cert"],
)
def test_serve_refuses_bad_tls_files_in_one_line(
    tmp_path: Path, certificate: tuple[Path, Path], given: list[str], message: str
) -> None:
    cert, key = certificate
    _, other_key = make_certificate(tmp_path / "other", "other")
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key\n")
    names = {"cert": cert, "key": key, "missing": tmp_path / "nope.crt", "garbage": garbage,
             "other_key": other_key}  # fmt: skip
    args = [a.format(**names) for a in given]
    result = CliRunner().invoke(
        main, ["serve", "--store", str(tmp_path / "store"), "--port", str(free_port()), *args]
    )
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "store").exists()


def test_an_idle_https_connection_whose_client_never_reads_does_not_hold_the_stop(
    tmp_path: Path, certificate: tuple[Path, Path]
) -> None:
    """An orchestrator's pooled connection reads nothing until its next request, so TLS's
    close handshake never completes: the server stops cleanly all the same, not killed."""
    import socket
    import ssl

    from synergos_mlops.server.serve import SHUTDOWN_SECONDS

    cert, key = certificate
    server = start_tls_server(tmp_path / "store", cert, key)
    context = ssl.create_default_context(cafile=str(cert))
    raw = socket.create_connection(("127.0.0.1", server.port), timeout=30)
    idle = context.wrap_socket(raw, server_hostname="localhost")
    try:
        idle.sendall(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n")
        assert idle.recv(4096).startswith(b"HTTP/1.1 200")
        # Stopped by uvicorn's own shutdown limit, well before TLS's 30 s close timeout
        # (a stop that takes longer is killed, and returns -9).
        stopped = server.stop(signal.SIGTERM, timeout=SHUTDOWN_SECONDS + 15)
        assert stopped == 0, server.output()[-2000:]
        assert "timeout graceful shutdown exceeded" in server.output()
    finally:
        idle.close()
