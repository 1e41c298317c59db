"""TLS options for the client's HTTP calls (the tracker's transport, ``export`` and
``lineage``), read from the variables MLflow's own client reads."""

from __future__ import annotations

import os
from typing import Any

from synergos_mlops.errors import StoreError

__all__ = ["tls_options"]


def tls_options() -> dict[str, Any]:
    """``verify``/``cert`` for requests, from the variables MLflow's own client reads:
    ``MLFLOW_TRACKING_INSECURE_TLS=true`` skips verification, ``MLFLOW_TRACKING_SERVER_CERT_PATH``
    names the CA bundle (or self-signed certificate) to trust, ``MLFLOW_TRACKING_CLIENT_CERT_PATH``
    a client certificate. Neither set: requests' default (``REQUESTS_CA_BUNDLE`` or certifi)."""
    options: dict[str, Any] = {}
    insecure = os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").strip().lower() in ("true", "1")
    server_cert = os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or None
    if insecure and server_cert:
        raise StoreError(
            "MLFLOW_TRACKING_INSECURE_TLS and MLFLOW_TRACKING_SERVER_CERT_PATH cannot both be set"
        )
    if insecure:
        options["verify"] = False
    elif server_cert:
        options["verify"] = server_cert
    client_cert = os.environ.get("MLFLOW_TRACKING_CLIENT_CERT_PATH") or None
    if client_cert:
        options["cert"] = client_cert
    return options
