"""Every setting, declared once: name, environment variable, default and help.

The CLI builds its options from these, ``--help`` shows their help, and the README's
settings table is checked against this list by the test suite.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

__all__ = ["SETTINGS", "Setting", "setting"]


@dataclass(frozen=True)
class Setting:
    name: str
    env: str
    default: str | int | None
    help: str

    def get(self) -> str | None:
        """The value from the environment, else the default (as text), else None."""
        value = os.environ.get(self.env)
        if value not in (None, ""):
            return value
        return None if self.default is None else str(self.default)


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "store", "SYNMLOPS_STORE", "./mlflow",
        "Folder that holds the whole state: mlflow.db (SQLite, WAL mode) and artifacts/.",
    ),
    Setting("host", "SYNMLOPS_HOST", "127.0.0.1", "Address to listen on."),
    Setting("port", "SYNMLOPS_PORT", 5500, "Port to listen on."),
    Setting("workers", "SYNMLOPS_WORKERS", 2, "Number of server worker processes."),
    Setting(
        "backend_store_uri", "SYNMLOPS_BACKEND_STORE_URI", None,
        "Database URI (e.g. postgresql://user@host/db); overrides the store folder's SQLite file.",
    ),
    Setting(
        "artifacts_destination", "SYNMLOPS_ARTIFACTS_DESTINATION", None,
        "Where artifacts are kept (a folder or s3://bucket/prefix); overrides <store>/artifacts.",
    ),
    Setting(
        "frame_options", "SYNMLOPS_X_FRAME_OPTIONS", "SAMEORIGIN",
        "X-Frame-Options for the MLflow UI and Command Station (SAMEORIGIN, DENY or NONE to "
        "allow embedding in the Synergos portal's iframe).",
    ),
    Setting(
        "certfile", "SYNMLOPS_CERTFILE", None,
        "TLS certificate (PEM, with its chain) to serve HTTPS on the same port; needs --keyfile.",
    ),
    Setting(
        "keyfile", "SYNMLOPS_KEYFILE", None,
        "Private key (PEM) of --certfile; the two together turn HTTPS on.",
    ),
    Setting(
        "allowed_hosts", "SYNMLOPS_ALLOWED_HOSTS", None,
        "Host header values the server answers, comma-separated, wildcards allowed "
        "(default: localhost and private addresses); others get 403.",
    ),
    Setting(
        "cors_allowed_origins", "SYNMLOPS_CORS_ALLOWED_ORIGINS", None,
        "Origins (e.g. https://portal.example.org) whose pages may write through the API, "
        "comma-separated (default: localhost only).",
    ),
    Setting(
        "auth", "SYNMLOPS_AUTH", None,
        "Require an MLflow account (HTTP Basic) on every route but /health, with MLflow's "
        "per-experiment permissions and `synmlops auth` participant bindings; the first start "
        "needs MLFLOW_AUTH_ADMIN_PASSWORD.",
    ),
    Setting(
        "gelf_port", "SYNMLOPS_GELF_PORT", None,
        "Also take log records as GELF on this port, TCP and UDP (what the original "
        "synergos_logger sends through graypy), into the runs' central logs.",
    ),
    Setting(
        "gelf_host", "SYNMLOPS_GELF_HOST", "127.0.0.1",
        "Address the GELF input listens on (loopback by default: only this machine may send; "
        "0.0.0.0 for every interface, then restrict senders with --gelf-allow or TLS).",
    ),
    Setting(
        "gelf_allow", "SYNMLOPS_GELF_ALLOW", None,
        "Networks (CIDR, e.g. 10.0.0.0/8) whose senders the GELF input takes, comma-separated "
        "or repeated; others are refused and counted in /health (default: every sender that "
        "reaches --gelf-host).",
    ),
    Setting(
        "gelf_certfile", "SYNMLOPS_GELF_CERTFILE", None,
        "TLS certificate (PEM) for GELF over TCP (graypy's GELFTLSHandler); needs "
        "--gelf-keyfile. With TLS, GELF over UDP is off.",
    ),
    Setting(
        "gelf_keyfile", "SYNMLOPS_GELF_KEYFILE", None,
        "Private key (PEM) of --gelf-certfile.",
    ),
    Setting(
        "gelf_client_ca", "SYNMLOPS_GELF_CLIENT_CA", None,
        "CA certificates (PEM) that GELF senders' client certificates must be signed by; "
        "needs --gelf-certfile. Senders without one are refused and counted in /health.",
    ),
    Setting(
        "log_retention_days", "SYNMLOPS_LOG_RETENTION_DAYS", None,
        "Delete central log records older than this many days (checked hourly; default: "
        "keep them all).",
    ),
    Setting(
        "tracking_uri", "MLFLOW_TRACKING_URI", None,
        "Where demo, ingest, watch and export go (and the tracker, given no URI): a server "
        "URL (http://host:5500) or a store folder; the commands default to the store folder "
        "(SYNMLOPS_STORE, else ./mlflow).",
    ),
)  # fmt: skip

_BY_NAME = {s.name: s for s in SETTINGS}


def setting(name: str) -> Setting:
    return _BY_NAME[name]
