"""Accounts for the tests of `synmlops serve --auth`: MLflow users made through the server's
own REST API, and participant bindings made with `synmlops auth bind`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import requests
from conftest import SYNMLOPS

ADMIN = ("admin", "admin-password-for-tests")
ALICE = ("alice", "alice-password-123")


def create_accounts(url: str, *accounts: tuple[str, str], admin: tuple[str, str] = ADMIN) -> None:
    """Create each ``(user, password)`` as an MLflow account, through the server, as admin."""
    for user, password in accounts:
        created = requests.post(
            f"{url}/api/2.0/mlflow/users/create",
            json={"username": user, "password": password}, auth=admin, timeout=60,
        )  # fmt: skip
        assert created.status_code == 200, created.text


def bind(store: Path, user: str, collaboration: str, participant: str) -> str:
    """`synmlops auth bind` the account to one participant; answer what the command printed."""
    bound = subprocess.run(
        [*SYNMLOPS, "auth", "bind", user, "--collaboration", collaboration,
         "--participant", participant, "--store", str(store)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert bound.returncode == 0, bound.stderr
    return bound.stdout
