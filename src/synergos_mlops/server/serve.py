"""``synmlops serve``: check the store and the address, then run MLflow's server with the
Synergos app as a child process: uvicorn with N workers, each serving MLflow's FastAPI app
with our routes (what ``mlflow server --app-name synergos`` runs, without MLflow's CLI
process in between: see ``server/mlflow_server_env.py``).

Checks happen before anything starts, so a user's mistake is one clear sentence, not a
traceback from a worker. uvicorn forwards SIGTERM/SIGINT to its workers; we forward the same
signals to it and wait. The child runs under a guard (``synergos_mlops.server.guard``) that
stops every process of the server when ``synmlops serve`` dies, even by SIGKILL, so no orphan
keeps the port. A port held by such an orphan all the same (a server started by an older
version) is named in the refusal.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import ssl
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Protocol

import requests
from urllib3.exceptions import InsecureRequestWarning

from synergos_mlops.errors import StoreError, SynergosError
from synergos_mlops.server.artifacts import check_artifacts_destination
from synergos_mlops.server.database import check_schema, ensure_our_tables
from synergos_mlops.server.guard import GRACE, guarded_command
from synergos_mlops.server.mlflow_server_env import (
    ALLOWED_HOSTS_ENV,
    APP_FACTORY,
    CORS_ORIGINS_ENV,
    FRAME_OPTIONS_ENV,
    MLFLOW_UVICORN_LOG_CONFIG,
    WORKER_ENV_NAMES,
    mlflow_worker_env,
)
from synergos_mlops.store import StoreFolder

__all__ = ["ServeConfig", "parse_gunicorn_bind", "serve"]


class ServeError(SynergosError):
    """The server cannot start as asked."""


def parse_gunicorn_bind(args: str) -> tuple[str | None, int | None]:
    """The host and port of a ``--bind``/``-b`` in ``GUNICORN_CMD_ARGS`` (None when absent).

    Accepts ``HOST``, ``HOST:PORT``, ``:PORT`` and ``[IPV6]:PORT``, as gunicorn does.
    """
    try:
        words = shlex.split(args)
    except ValueError as exc:
        raise ServeError(f"GUNICORN_CMD_ARGS cannot be parsed: {exc}") from None
    bind: str | None = None
    for index, word in enumerate(words):
        if word.startswith("--bind="):
            bind = word.removeprefix("--bind=")
        elif word in ("--bind", "-b"):
            if index + 1 >= len(words):
                raise ServeError(f"GUNICORN_CMD_ARGS {args!r}: {word} needs HOST[:PORT]")
            bind = words[index + 1]
        elif word.startswith("-b") and len(word) > 2:
            bind = word[2:]
    if bind is None:
        return None, None
    if not bind or bind.startswith("unix:") or bind.startswith("fd://"):
        raise ServeError(f"GUNICORN_CMD_ARGS bind {bind!r} is not HOST[:PORT]")
    host: str | None
    port_text: str | None
    if bind.startswith("["):
        end = bind.find("]")
        if end < 0:
            raise ServeError(f"GUNICORN_CMD_ARGS bind {bind!r} is not HOST[:PORT]")
        host, rest = bind[1:end], bind[end + 1 :]
        port_text = rest[1:] if rest.startswith(":") else (None if not rest else "x")
    elif bind.count(":") == 1:
        host, port_text = bind.split(":")
    else:
        host, port_text = bind, None
    port: int | None = None
    if port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ServeError(f"GUNICORN_CMD_ARGS bind {bind!r} has no valid port")
        port = int(port_text)
    return host or None, port


@dataclass
class ServeConfig:
    store: Path
    host: str = "127.0.0.1"
    port: int = 5500
    workers: int = 2
    backend_store_uri: str | None = None
    artifacts_destination: str | None = None
    frame_options: str = "SAMEORIGIN"
    certfile: Path | None = None
    keyfile: Path | None = None
    allowed_hosts: str | None = None
    cors_allowed_origins: str | None = None
    auth: bool = False
    gelf_port: int | None = None
    gelf_host: str = "127.0.0.1"
    gelf_allow: tuple[str, ...] = ()
    gelf_certfile: Path | None = None
    gelf_keyfile: Path | None = None
    gelf_client_ca: Path | None = None
    log_retention_days: float | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def scheme(self) -> str:
        return "https" if self.certfile is not None else "http"


def check_tls(
    certfile: Path | None,
    keyfile: Path | None,
    flags: tuple[str, str] = ("--certfile", "--keyfile"),
) -> None:
    """Both or neither; both readable PEM files that belong together."""
    if certfile is None and keyfile is None:
        return
    cert_flag, key_flag = flags
    if certfile is None or keyfile is None:
        given, missing = (cert_flag, key_flag) if keyfile is None else (key_flag, cert_flag)
        raise ServeError(f"{given} needs {missing}: TLS takes a certificate and its key")
    for flag, path in ((cert_flag, certfile), (key_flag, keyfile)):
        if not path.is_file():
            raise ServeError(f"{flag} {path} is not a file")
        if not os.access(path, os.R_OK):
            raise ServeError(f"{flag} {path} cannot be read")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    try:
        # An encrypted key would ask for a password on the terminal; answer with none.
        context.load_cert_chain(certfile, keyfile, password=lambda: b"")
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or str(exc)
        raise ServeError(
            f"{cert_flag} {certfile} and {key_flag} {keyfile} are not a PEM certificate and its "
            f"unencrypted private key ({reason})"
        ) from None


def gelf_security(config: ServeConfig) -> Any:
    """The GELF input's :class:`~synergos_mlops.server.services.log_service.GelfSecurity`, its
    settings checked (ServeError naming the bad one)."""
    import ipaddress

    from synergos_mlops.server.services.log_service import GelfSecurity

    networks = []
    for item in config.gelf_allow:
        for text in item.replace(",", " ").split():
            try:
                networks.append(ipaddress.ip_network(text, strict=False))
            except ValueError:
                raise ServeError(
                    f"--gelf-allow {text!r} is not a network (CIDR such as 10.0.0.0/8 or an "
                    "address)"
                ) from None
    check_tls(config.gelf_certfile, config.gelf_keyfile, ("--gelf-certfile", "--gelf-keyfile"))
    ca = config.gelf_client_ca
    if ca is not None:
        if config.gelf_certfile is None:
            raise ServeError("--gelf-client-ca needs --gelf-certfile: client certificates need TLS")
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        try:
            context.load_verify_locations(ca)
        except (ssl.SSLError, OSError) as exc:
            reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
            raise ServeError(
                f"--gelf-client-ca {ca} is not a PEM file of CA certificates ({reason})"
            ) from None
    return GelfSecurity(
        tuple(networks), config.gelf_certfile, config.gelf_keyfile, config.gelf_client_ca
    )


def check_port_free(host: str, port: int) -> None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == 98:  # EADDRINUSE
                holder = synergos_server_holding(port)
                if holder is not None:
                    pid, orphaned = holder
                    if orphaned:
                        raise ServeError(
                            f"port {port} is held by an orphaned synmlops server (pid {pid}); "
                            f"stop it with kill {pid}"
                        ) from None
                    raise ServeError(
                        f"port {port} is held by a running synmlops server (pid {pid})"
                    ) from None
                raise ServeError(f"port {port} on {host} is already in use") from None
            raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def _is_synergos_mlflow_server(cmdline: list[str]) -> bool:
    """The process that runs our app: ``python -m uvicorn ... --factory APP_FACTORY`` (what
    ``serve`` starts), or ``mlflow server ... --app-name synergos`` (what older releases
    started, and what a user may start by hand)."""
    from synergos_mlops.server.guard import GUARD_MODULE

    if GUARD_MODULE in cmdline:  # the guard names its child's command line
        return False
    if "uvicorn" in cmdline and APP_FACTORY in cmdline:
        return True
    if "server" not in cmdline or "--app-name" not in cmdline:
        return False
    at = cmdline.index("--app-name")
    if at + 1 >= len(cmdline) or cmdline[at + 1] != "synergos":
        return False
    before = cmdline[: cmdline.index("server")]
    return any(word == "mlflow" or word.endswith("/mlflow") for word in before)


def synergos_server_holding(port: int) -> tuple[int, bool] | None:
    """Who holds ``port`` when it is one of our servers: ``(pid, True)`` for an orphaned
    ``mlflow server --app-name synergos`` (no ``synmlops serve`` guard above it; ``pid`` is
    that process), ``(pid, False)`` for a running ``synmlops serve`` (``pid`` is serve's).
    None when the port is someone else's or its listener cannot be seen."""
    import psutil

    from synergos_mlops.server.guard import GUARD_MODULE

    try:
        listeners = {
            conn.pid
            for conn in psutil.net_connections(kind="tcp")
            if conn.pid and conn.status == psutil.CONN_LISTEN and conn.laddr
            and conn.laddr.port == port
        }  # fmt: skip
    except (psutil.Error, OSError):
        return None
    for pid in sorted(listeners):
        try:
            process = psutil.Process(pid)
            lineage = [process, *process.parents()]
            ours = [i for i, p in enumerate(lineage) if _is_synergos_mlflow_server(p.cmdline())]
            if not ours:
                continue
            # The outermost: `mlflow server` above the uvicorn it started, when started so.
            top = max(ours)
            parent = lineage[top + 1] if top + 1 < len(lineage) else None
            if parent is not None and GUARD_MODULE in " ".join(parent.cmdline()):
                return parent.ppid(), False  # synmlops serve, above its guard
            return lineage[top].pid, True
        except psutil.Error:
            continue
    return None


def prepare(
    config: ServeConfig, *, echo: Callable[[str], None] = print
) -> tuple[list[str], dict[str, str]]:
    """Check everything and return the child's command and environment."""
    if config.workers < 1:
        raise ServeError("--workers must be at least 1")
    check_tls(config.certfile, config.keyfile)
    if config.gelf_port is not None:
        if config.gelf_port == config.port:
            raise ServeError(f"--gelf-port {config.gelf_port} is the server's own --port")
        gelf_security(config)
    check_port_free(config.host, config.port)  # before the store: a refusal creates nothing
    folder = StoreFolder.at(config.store)
    backend = config.backend_store_uri
    destination = config.artifacts_destination
    if backend is None or destination is None:
        folder.check()
    if backend is None:
        backend = folder.backend_store_uri
        if not folder.db_path.exists():
            from synergos_mlops.storage.new_store import create_sqlite_store

            try:
                create_sqlite_store(folder.db_path)
            except Exception as exc:  # the migrations failed in a folder that checked out
                raise StoreError(f"database {folder.db_path} cannot be created: {exc}") from None
            echo(f"New empty store: created {folder.db_path}")
        try:
            folder.enable_wal()
        except Exception as exc:  # sqlite3.DatabaseError and friends
            raise StoreError(f"database {folder.db_path} cannot be opened: {exc}") from None
    if destination is None:
        destination = str(folder.artifacts_path)
    from synergos_mlops.storage.heads import sqlite_store_is_current

    # A store folder already at this release's schema is known as such from its file alone:
    # MLflow and Alembic are then not imported by this process, which serves nothing itself.
    if not (config.backend_store_uri is None and sqlite_store_is_current(folder.db_path)):
        check_schema(backend)
        ensure_our_tables(backend)
    check_artifacts_destination(destination)
    auth_env: dict[str, str] = {}
    if config.auth:
        from synergos_mlops.server.auth import prepare_auth

        auth_env = prepare_auth(folder.path, backend, {**os.environ, **config.extra_env})
    command = [
        sys.executable, "-m", "uvicorn",
        "--log-config", str(MLFLOW_UVICORN_LOG_CONFIG),
        "--host", config.host,
        "--port", str(config.port),
        "--workers", str(config.workers),
        "--timeout-graceful-shutdown", str(SHUTDOWN_SECONDS),
    ]  # fmt: skip
    if config.certfile is not None and config.keyfile is not None:
        command += ["--ssl-certfile", str(config.certfile.resolve())]
        command += ["--ssl-keyfile", str(config.keyfile.resolve())]
    command += ["--factory", APP_FACTORY]
    env = dict(os.environ)
    env.pop("GUNICORN_CMD_ARGS", None)
    # MLflow's host-header, CORS and frame protections stay on whatever the environment says.
    env.pop("MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE", None)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    env.update(mlflow_worker_env(backend, destination))
    from synergos_mlops.server.database import page_cost_is_default, worker_options

    # The workers' PostgreSQL plans for pages on SSD or in memory, unless the database's
    # operator chose a cost.
    options = worker_options(env.get("PGOPTIONS"), cached_pages=page_cost_is_default(backend))
    if options:
        env["PGOPTIONS"] = options
    for name, value in (
        (ALLOWED_HOSTS_ENV, config.allowed_hosts),
        (CORS_ORIGINS_ENV, config.cors_allowed_origins),
        (FRAME_OPTIONS_ENV, config.frame_options),
    ):
        if value:  # else MLflow's default, or what the environment says
            env[name] = value
    # MLflow's job runner serves GenAI features (online scoring, trace archival) that a
    # federated run does not use; it is one more process per server. Set it to true to keep it.
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    env["SYNMLOPS_STORE"] = str(folder.path)
    from synergos_mlops.store import SYNC_STATUS_ENV as STATUS_ENV

    env[STATUS_ENV] = str(folder.sync_status_path)
    from synergos_mlops.server.intake import STATUS_ENV as INTAKE_STATUS_ENV

    env[INTAKE_STATUS_ENV] = str(_intake_status_path(config))
    from synergos_mlops.server.auth import AUTH_APP_ENV

    env.pop(AUTH_APP_ENV, None)
    from synergos_mlops.server.services.log_service import STATUS_ENV as GELF_STATUS_ENV

    env.pop(GELF_STATUS_ENV, None)
    if config.gelf_port is not None:
        env[GELF_STATUS_ENV] = str(_gelf_status_path(config))
    from synergos_mlops.server.services.log_service import RETENTION_STATUS_ENV

    env.pop(RETENTION_STATUS_ENV, None)
    if config.log_retention_days is not None:
        env[RETENTION_STATUS_ENV] = str(_status_path(config, "retention"))
    from synergos_mlops.store import WATCH_STATUS_ENV

    env.pop(WATCH_STATUS_ENV, None)
    env.update(auth_env)
    env.update(config.extra_env)
    return command, env


def url_for(host: str, port: int, scheme: str = "http") -> str:
    shown = "localhost" if host in ("127.0.0.1", "0.0.0.0", "::", "localhost") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{scheme}://{shown}:{port}"


#: Seconds uvicorn gives requests in flight to finish once told to stop, before it stops all
#: the same. Without it, one idle HTTPS connection whose client does not read (a pooled
#: connection of an orchestrator's MLflow client) holds the stop for Python's 30 s TLS close
#: timeout.
SHUTDOWN_SECONDS = 10

#: How long serve waits for the first healthy answer; a loaded machine may need minutes.
STARTUP_TIMEOUT = float(os.environ.get("SYNMLOPS_STARTUP_TIMEOUT", "300"))


def wait_until_healthy(
    url: str, process: subprocess.Popen[bytes], timeout: float = STARTUP_TIMEOUT
) -> dict[str, object]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ServeError(f"the server exited during start-up (exit code {process.returncode})")
        try:
            # Our own child on loopback: its certificate need not name 127.0.0.1.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", InsecureRequestWarning)
                response = requests.get(f"{url}/health", timeout=2, verify=False)
            if response.status_code == 200:
                return dict(response.json())
        except requests.RequestException:
            pass
        time.sleep(0.25)
    raise ServeError(f"the server did not answer on {url}/health within {timeout:.0f} s")


class Service(Protocol):
    """A background service of the caller's that runs in serve's own process beside the
    server (``serve --watch``): ``name`` names its status file, which the server's workers
    find through ``status_env`` (and ``/health`` reads)."""

    name: str
    status_env: str

    def start(self, url: str, status_path: Path) -> None: ...

    def supervise(self) -> None:
        """Called every second: start again what stopped."""

    def stop(self) -> None: ...


def serve(
    config: ServeConfig,
    *,
    echo: Callable[[str], None] = print,
    services: Sequence[Service] = (),
) -> int:
    """Run the server until it stops or a signal arrives; return its exit code. ``services``
    are started once it answers, supervised every second, and stopped with it."""
    command, env = prepare(config, echo=echo)
    statuses = {service.name: _status_path(config, service.name) for service in services}
    for service in services:
        env[service.status_env] = str(statuses[service.name])
    backend = env[WORKER_ENV_NAMES["BACKEND_STORE_URI_ENV_VAR"]]
    logs = _start_log_services(config, backend, echo)  # before the child: a taken port stops here
    from synergos_mlops.server.intake import STATUS_ENV as INTAKE_STATUS_ENV

    Path(env[INTAKE_STATUS_ENV]).unlink(missing_ok=True)  # counts of this server's life
    process = subprocess.Popen(guarded_command(command), env=env)
    sync = None
    started: list[Service] = []

    def forward(signum: int, _frame: FrameType | None) -> None:
        if process.poll() is None:
            process.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        url = url_for(config.host, config.port, config.scheme)
        try:
            wait_until_healthy(f"{config.scheme}://{_loopback(config.host)}:{config.port}", process)
        except ServeError:
            _stop(process)
            raise
        sync = _start_file_store_sync(config, backend, echo)
        echo(f"Synergos MLOps is serving {_what(config)} at {url}")
        echo(f"  Command Station: {url}/synergos/   MLflow UI: {url}/")
        for service in services:
            service.start(url, statuses[service.name])
            started.append(service)
        while True:
            try:
                return process.wait(timeout=1.0)
            except subprocess.TimeoutExpired:
                if sync is not None:  # the file-store mirror, started again if it stopped
                    sync.supervise()
                for service in started:  # the caller's (the watch of an outputs folder)
                    service.supervise()
                for service in logs:  # in case a service's own supervisor stopped
                    supervise = getattr(service, "supervise", None)
                    if supervise is not None:
                        supervise()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop(process)
        if sync is not None:
            sync.stop()
        for service in started:
            service.stop()
        for service in logs:
            service.stop()


def _intake_status_path(config: ServeConfig) -> Path:
    """The intake's counts (server/intake.py), beside the GELF status."""
    gelf = _gelf_status_path(config)
    return gelf.with_name(gelf.name.replace("-gelf", "-intake"))


def _gelf_status_path(config: ServeConfig) -> Path:
    return _status_path(config, "gelf")


def _status_path(config: ServeConfig, service: str) -> Path:
    """A service's status file, beside the file-store sync's status in the store folder (a
    temporary folder when the server keeps nothing there)."""
    import tempfile

    folder = StoreFolder.at(config.store)
    if folder.path.is_dir():
        return folder.path / f"synergos-mlops-{service}.json"
    return Path(tempfile.gettempdir()) / f"synergos-mlops-{service}-{config.port}.json"


def _start_log_services(
    config: ServeConfig, backend: str, echo: Callable[[str], None]
) -> list[Any]:
    """The GELF input (``--gelf-port``) and the retention of log records
    (``--log-retention-days``), threads of this process beside the server."""
    from synergos_mlops.server.services.log_service import GelfInput, LogRetention

    services: list[Any] = []
    if config.gelf_port is not None:
        security = gelf_security(config)
        host = config.gelf_host
        gelf = GelfInput(backend, host, config.gelf_port, _gelf_status_path(config),
                         security=security, echo=echo)  # fmt: skip
        try:
            gelf.bind()
        except OSError as exc:
            raise ServeError(
                f"cannot take GELF on {host}:{config.gelf_port}: {exc.strerror}"
            ) from None
        gelf.start()
        services.append(gelf)
        how = "TCP with TLS" if security.tls else "TCP and UDP"
        if security.client_ca is not None:
            how += ", client certificates required"
        if security.allow:
            how += ", from " + ", ".join(str(n) for n in security.allow)
        echo(f"  GELF log input: {host}:{config.gelf_port} ({how})")
        if not _is_loopback(host) and not security.allow and security.client_ca is None:
            echo(
                f"  warning: GELF on {host} takes records from anyone who reaches it; "
                "restrict senders with --gelf-allow or --gelf-client-ca"
            )
    if config.log_retention_days is not None:
        status_path = _status_path(config, "retention")
        status_path.unlink(missing_ok=True)  # a past server's outcome is not this one's
        retention = LogRetention(
            backend, config.log_retention_days, status_path=status_path, echo=echo
        )
        retention.start()
        services.append(retention)
    return services


def _start_file_store_sync(config: ServeConfig, backend: str, echo: Callable[[str], None]) -> Any:
    """Mirror the store folder's file-store experiments (an original Synergos TTP writing
    beside the server) into the database, a pass a second, for as long as the server runs."""
    from synergos_mlops.legacy import FileStoreSync

    folder = StoreFolder.at(config.store)
    sync = FileStoreSync(
        folder.path,
        backend,
        folder.sync_status_path,
        echo=lambda line: echo(line) if line else None,
    )
    sync.start()
    return sync


def _what(config: ServeConfig) -> str:
    """What is served, as the user named it: ``store ./mlflow`` or ``the postgresql database``."""
    if config.backend_store_uri:
        return f"the {config.backend_store_uri.split(':', 1)[0]} database"
    store = str(config.store)
    if not config.store.is_absolute() and not store.startswith("."):
        store = f"./{store}"  # "mlflow" alone reads like the product
    return f"store {store}"


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=GRACE + 10)  # the guard stops the server's group within GRACE
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
