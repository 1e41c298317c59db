"""The artifacts destination: can the server keep files there? One cheap check.

A folder is fine unless a file stands in its way (MLflow creates the folder on first write).
An ``s3://bucket/prefix`` destination is checked with one ``HeadBucket`` request, made the
way MLflow's own S3 artifact repository makes its requests: the endpoint from
``MLFLOW_S3_ENDPOINT_URL`` (an S3-compatible server such as MinIO), ``MLFLOW_S3_IGNORE_TLS``,
``MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE``, and boto3's usual credentials (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``, profiles). The request has short timeouts
and no retries, so ``synmlops serve`` and ``/health`` answer within seconds when the bucket
cannot be reached. Other schemes (``gs://``, ``wasbs://`` ...) are left to MLflow.
"""

from __future__ import annotations

import functools
import os
import threading
from typing import Any
from urllib.parse import urlparse

from synergos_mlops.errors import StoreError

__all__ = ["check_artifacts_destination", "destination_kind"]

#: Seconds to connect to, and to wait for, the S3 endpoint in the check.
CONNECT_TIMEOUT = 3.0
READ_TIMEOUT = 10.0


def destination_kind(destination: str) -> str:
    """``folder`` for a path, else the URI's scheme (``s3``, ``gs`` ...)."""
    return destination.split("://", 1)[0] if "://" in destination else "folder"


def check_artifacts_destination(destination: str) -> None:
    """Raise StoreError, in one sentence, when ``destination`` is unusable."""
    kind = destination_kind(destination)
    if kind == "folder":
        if os.path.isfile(destination):
            raise StoreError(f"artifact destination {destination} is a file, not a folder")
        return
    if kind in ("s3", "s3a"):
        _check_s3(destination)


_CLIENT_LOCK = threading.Lock()


@functools.lru_cache(maxsize=8)
def _client(endpoint: str | None, ignore_tls: bool, signature: str, addressing: str) -> Any:
    """One client per endpoint and configuration: building one costs ~0.1 s of CPU."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT,
        read_timeout=READ_TIMEOUT,
        retries={"max_attempts": 1, "mode": "standard"},
        signature_version=signature,
        s3={"addressing_style": addressing},
    )
    return boto3.client(
        "s3", endpoint_url=endpoint, config=config, verify=False if ignore_tls else None
    )


def _endpoint() -> str | None:
    return os.environ.get("MLFLOW_S3_ENDPOINT_URL") or None


def _check_s3(destination: str) -> None:
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    bucket = urlparse(destination).netloc
    if not bucket:
        raise StoreError(f"artifact destination {destination} names no bucket")
    endpoint = _endpoint()
    where = f"at {endpoint}" if endpoint else "on AWS S3"
    ignore_tls = os.environ.get("MLFLOW_S3_IGNORE_TLS", "").lower() in ("1", "true")
    signature = os.environ.get("MLFLOW_EXPERIMENTAL_S3_SIGNATURE_VERSION", "s3v4")
    addressing = os.environ.get("MLFLOW_BOTO_CLIENT_ADDRESSING_STYLE", "auto")
    try:
        with _CLIENT_LOCK:  # boto3's default session is not thread-safe
            client = _client(endpoint, ignore_tls, signature, addressing)
        client.head_bucket(Bucket=bucket)
    except NoCredentialsError:
        raise StoreError(
            f"no credentials for bucket {bucket!r} {where}: set AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        ) from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in ("404", "NoSuchBucket") or status == 404:
            reason = "does not exist (create it first)"
        elif code in ("403", "AccessDenied") or status == 403:
            reason = "refuses these credentials (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        else:
            reason = f"answered {code or status}"
        raise StoreError(f"bucket {bucket!r} {where} {reason}") from None
    except (BotoCoreError, ValueError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise StoreError(f"cannot reach bucket {bucket!r} {where}: {text}") from None
