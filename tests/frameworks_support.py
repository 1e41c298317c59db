"""Running a federation framework's script in .venv-fl (scripts/frameworks-venv.sh), whose
Flower and NVIDIA FLARE cannot share .venv with the server; the tests read back through the
official MLflow client from this venv."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "frameworks"


def frameworks_python() -> Path:
    """.venv-fl's interpreter, the venv built (or found up to date) first."""
    subprocess.run(["bash", str(ROOT / "scripts" / "frameworks-venv.sh")], check=True)
    return ROOT / ".venv-fl" / "bin" / "python"


def run_in_frameworks_venv(
    args: list[str], *, log: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> str:
    """Run ``.venv-fl/bin/python ARGS`` with this tree's source first on the path; return its
    output, or fail with its tail. The child gets a session of its own, and whatever it left
    running there (Ray's and the simulator's workers) is stopped by that session's id."""
    python = frameworks_python()
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **(env or {}),
    }
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), *args], stdout=out, stderr=subprocess.STDOUT, env=environment,
            start_new_session=True, cwd=log.parent,
        )  # fmt: skip
        try:
            code = process.wait(timeout=timeout)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
    output = log.read_text(errors="replace")
    assert code == 0, f"{args[0]} exited {code}:\n{output[-4000:]}"
    return output
