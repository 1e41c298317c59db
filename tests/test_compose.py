"""docker-compose.yml, checked without a Docker engine (none runs here).

The file is parsed with PyYAML and its variables are resolved the way Compose resolves them
(``${VAR}``, ``${VAR:-default}``, ``${VAR:?message}``, ``$$``). The cluster service's command is
then run exactly as written, with the image's environment (the Dockerfile's ENV lines) and the
service's resolved environment, against the local PostgreSQL and an S3-compatible server
(moto), as tests/test_container.py runs the Dockerfile's CMD.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cluster_support import S3Server
from conftest import free_port, start_server_command
from test_container import dockerfile

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
CLUSTER_DOC = ROOT / "docs" / "cluster.md"
SYNMLOPS_SERVICES = ("synmlops", "synmlops-cluster")

_VARIABLE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|(?P<plain>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(Exception):
    pass


def interpolate(value: Any, variables: Mapping[str, str]) -> Any:
    """``value`` (a parsed compose file or part of it) with its variables resolved."""
    if isinstance(value, dict):
        return {key: interpolate(item, variables) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, variables) for item in value]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match[str]) -> str:
        if match.group("escaped"):
            return "$"
        name = match.group("braced") or match.group("plain")
        op, arg = match.group("op"), match.group("arg") or ""
        found = variables.get(name)
        missing = not found if op and op.startswith(":") else found is None
        if op in (":-", "-") and missing:
            return arg
        if op in (":?", "?") and missing:
            raise MissingVariableError(f"required variable {name} is missing a value: {arg}")
        return found or ""

    return _VARIABLE.sub(resolve, value)


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def variables_used(text: str) -> set[str]:
    return {m.group("braced") or m.group("plain") for m in _VARIABLE.finditer(text)} - {None}


def env_example() -> dict[str, str]:
    values: dict[str, str] = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    return values


def test_compose_has_a_profile_per_tier_with_the_cluster_services() -> None:
    services = compose()["services"]
    profiles = {name: tuple(service.get("profiles", ())) for name, service in services.items()}
    assert profiles == {
        "synmlops": ("basic",),
        "synmlops-cluster": ("cluster",),
        "postgres": ("cluster",),
        "minio": ("cluster",),
        "minio-bucket": ("cluster",),
    }
    assert services["postgres"]["image"].startswith("${POSTGRES_IMAGE:-postgres:15")
    assert "minio/minio" in services["minio"]["image"]
    cluster = services["synmlops-cluster"]
    assert cluster["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert cluster["depends_on"]["minio-bucket"]["condition"] == "service_completed_successfully"
    assert services["synmlops"]["volumes"] == ["${SYNMLOPS_DATA_DIR:-./mlflow}:/mlflow"]
    for name in ("SYNMLOPS_BACKEND_STORE_URI", "SYNMLOPS_ARTIFACTS_DESTINATION",
                 "MLFLOW_S3_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY",
                 "SYNMLOPS_WORKERS"):  # fmt: skip
        assert name in cluster["environment"], name


@pytest.mark.parametrize("name", SYNMLOPS_SERVICES)
def test_the_synmlops_services_run_a_plain_synmlops_serve_line(name: str) -> None:
    service = compose()["services"][name]
    command = service["command"]
    assert isinstance(command, str), "a plain command line, not a list or a shell script"
    assert shlex.split(command)[:2] == ["synmlops", "serve"]
    assert not set(command) & set("$;&|`<>()"), f"{command!r} needs a shell"
    assert "entrypoint" not in service


def test_every_variable_of_the_compose_file_is_documented_and_in_env_example() -> None:
    text = COMPOSE.read_text()
    used = variables_used(text)
    for name in SYNMLOPS_SERVICES:
        used |= set(compose()["services"][name]["environment"])
    documented = CLUSTER_DOC.read_text()  # ($$VAR, read by an image's own shell, is not ours)
    undocumented = sorted(v for v in used if f"`{v}`" not in documented)
    assert not undocumented, f"not documented in docs/cluster.md: {undocumented}"
    missing = sorted(variables_used(text) - set(env_example()))
    assert not missing, f"not in .env.example: {missing}"


def test_cluster_secrets_are_required_and_only_placeholders_are_committed() -> None:
    example = env_example()
    for secret in ("POSTGRES_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert re.fullmatch(r"<[a-z0-9-]+>", example[secret]), f"{secret} is not a placeholder"
        without = {k: v for k, v in example.items() if k != secret}
        with pytest.raises(MissingVariableError, match=f"{secret} is missing"):
            interpolate(compose()["services"]["synmlops-cluster"]["environment"], without)
    tracked = subprocess.run(
        ["git", "ls-files", ".env"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert tracked.stdout.strip() == "", ".env must never be committed"
    resolved = interpolate(compose()["services"]["synmlops"]["environment"], {})
    assert resolved["SYNMLOPS_WORKERS"] == "2" and resolved["SYNMLOPS_STORE"] == "/mlflow"


def test_the_cluster_service_command_serves_postgresql_and_the_bucket(
    tmp_path: Path, postgres_uri: str, s3: S3Server
) -> None:
    database = postgres_uri.rsplit("/", 1)[1]
    variables = {
        **env_example(),
        # What a user's .env says on this machine: local PostgreSQL and S3-compatible server.
        "POSTGRES_USER": "synmlops",
        "POSTGRES_PASSWORD": "synmlops",
        "POSTGRES_HOST": "127.0.0.1",
        "POSTGRES_DB": database,
        "MLFLOW_S3_ENDPOINT_URL": s3.endpoint,
        "AWS_ACCESS_KEY_ID": s3.env["AWS_ACCESS_KEY_ID"],
        "AWS_SECRET_ACCESS_KEY": s3.env["AWS_SECRET_ACCESS_KEY"],
        "SYNMLOPS_BUCKET": "compose-check",
        "SYNMLOPS_WORKERS": "2",
    }
    service = interpolate(compose()["services"]["synmlops-cluster"], variables)
    image_env, _ = dockerfile()
    command = shlex.split(service["command"])
    port = free_port()
    volume = tmp_path / "mlflow"  # stands in for the image's /mlflow
    env = {**image_env, **service["environment"], "SYNMLOPS_STORE": str(volume),
           "SYNMLOPS_PORT": str(port)}  # fmt: skip

    # What minio-bucket does before the server starts; without it serve refuses in one line.
    synmlops = Path(sys.executable).parent / command[0]
    refused = subprocess.run(
        [str(synmlops), *command[1:]], env={**os.environ, **env},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert line == (
        f"Error: bucket 'compose-check' at {s3.endpoint} does not exist (create it first)"
    )
    s3.create_bucket("compose-check")

    server = start_server_command(command, port=port, store=volume, env=env)
    try:
        health = requests.get(f"{server.url}/health", timeout=30).json()
        assert (health["status"], health["backend"], health["artifacts"]) == (
            "ok", "postgresql", "s3",
        )  # fmt: skip
        from synergos_mlops import FederatedTracker, TrackerConfig

        tracker = FederatedTracker(server.url, TrackerConfig(spool_dir=tmp_path / "spool"))
        with tracker, tracker.run("compose", "p", "e", "r1", participants=["w1"]) as run:
            run.log_metrics({"train/loss": 0.5}, step=0)
            run.log_model(b"weights", round=0)
        keys = s3.keys("compose-check")
        assert [k for k in keys if k.endswith("/checkpoints/round_0/model.pt")], keys
        assert all(k.startswith("mlops/") for k in keys)
        assert not volume.joinpath("mlflow.db").exists(), "the cluster keeps no SQLite file"
    finally:
        server.stop()
