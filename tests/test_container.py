"""The container's command, run outside a container (no Docker engine runs here).

The test reads the Dockerfile's ENV lines and CMD, and runs exactly that command with that
environment, the documented `GUNICORN_CMD_ARGS="--bind=0.0.0.0"` plus a free port, and a
temporary folder standing in for the volume mounted at /mlflow.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import requests
from conftest import free_port, start_server_command
from mlflow import MlflowClient

DOCKERFILE = Path(__file__).resolve().parent.parent / "Dockerfile"


def dockerfile() -> tuple[dict[str, str], list[str]]:
    env: dict[str, str] = {}
    command: list[str] = []
    for line in DOCKERFILE.read_text().splitlines():
        if line.startswith("ENV "):
            key, _, value = line[4:].partition("=")
            env[key.strip()] = shlex.split(value)[0]
        elif line.startswith("CMD "):
            command = json.loads(line[4:])
    return env, command


def test_dockerfile_serves_the_mounted_folder_with_the_documented_environment(
    tmp_path: Path,
) -> None:
    env, command = dockerfile()
    assert command[:2] == ["synmlops", "serve"]
    assert env["SYNMLOPS_STORE"] == "/mlflow"
    volume = tmp_path / "mlflow"  # what `-v /path/to/mlflow/:/mlflow` mounts
    port = free_port()
    server = start_server_command(
        command,
        port=port,
        store=volume,
        env={**env, "SYNMLOPS_STORE": str(volume), "GUNICORN_CMD_ARGS": f"--bind=0.0.0.0:{port}"},
    )
    try:
        assert requests.get(f"{server.url}/health", timeout=10).json()["status"] == "ok"
        client = MlflowClient(tracking_uri=server.url)
        client.create_experiment("container-check")
        assert (volume / "mlflow.db").is_file()
        assert "http://localhost:" in server.output()
    finally:
        server.stop()
