"""The old client in the tests: mlflow 1.7.2 on Python 3.7, as the original Synergos TTP logs.

`legacy_python()` is .venv-ttp's interpreter, built by scripts/legacy-ttp.sh when missing (a
failed build is an error, never a skip); `ttp(store, *args)` runs tests/legacy_ttp/ttp.py under
it and returns the JSON line it prints.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "legacy-ttp.sh"
TTP = ROOT / "tests" / "legacy_ttp" / "ttp.py"
VENV = ROOT / ".venv-ttp"


@cache
def legacy_python() -> Path:
    """The Python 3.7 interpreter with mlflow 1.7.2, built on the first call of a session."""
    result = subprocess.run(
        ["bash", str(SCRIPT)], cwd=ROOT, capture_output=True, text=True, timeout=900
    )
    python = VENV / "bin" / "python"
    if result.returncode != 0 or not python.exists():
        raise RuntimeError(
            f"scripts/legacy-ttp.sh failed (exit {result.returncode}):\n"
            f"{result.stdout}{result.stderr}"
        )
    return python


def ttp(store: Path, *args: str, timeout: float = 120) -> dict[str, Any]:
    """Run one ttp.py subcommand (`args[0]`) on `store`; its JSON output, or an error."""
    if not args:
        raise ValueError("ttp() needs a subcommand: run, append, finish or list")
    command = [str(legacy_python()), str(TTP), args[0], "--store", str(store), *args[1:]]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PYTHON"))}
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
    if result.returncode != 0:
        raise RuntimeError(
            f"ttp.py {args[0]} exited {result.returncode}:\n{result.stderr}{result.stdout}"
        )
    lines = result.stdout.strip().splitlines()
    if not lines:
        raise RuntimeError(f"ttp.py {args[0]} printed nothing:\n{result.stderr}")
    parsed: dict[str, Any] = json.loads(lines[-1])
    return parsed


@pytest.fixture(scope="session")
def legacy_ttp() -> Callable[..., dict[str, Any]]:
    """`ttp` with the environment built once, before the first test that uses it."""
    legacy_python()
    return ttp
