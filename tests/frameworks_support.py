"""Running a federation framework's script in .venv-fl (scripts/frameworks-venv.sh), whose
Flower and NVIDIA FLARE cannot share .venv with the server; the tests read back through the
official MLflow client from this venv."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = Path(__file__).resolve().parent / "frameworks"


def frameworks_python() -> Path:
    """.venv-fl's interpreter, the venv built (or found up to date) first."""
    subprocess.run(["bash", str(ROOT / "scripts" / "frameworks-venv.sh")], check=True)
    return ROOT / ".venv-fl" / "bin" / "python"


def _stop(recorded: dict[int, float]) -> None:
    """SIGKILL each recorded process that still is the one recorded (same start time)."""
    for pid, started in recorded.items():
        with contextlib.suppress(psutil.Error):
            process = psutil.Process(pid)
            if process.create_time() == started:
                process.send_signal(signal.SIGKILL)


def run_in_frameworks_venv(
    args: list[str], *, log: Path, env: dict[str, str] | None = None, timeout: float = 540
) -> str:
    """Run ``.venv-fl/bin/python ARGS`` in ``log``'s folder with this tree's source first on
    the path; return its output, or fail with its tail. Every process it starts is recorded
    while it runs (Ray's workers, and the NVFlare simulator's, which start sessions of their
    own) and whatever of them is left at the end is stopped by its pid."""
    python = frameworks_python()
    environment = {
        **os.environ,
        "PYTHONPATH": str(ROOT / "src"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        **(env or {}),
    }
    recorded: dict[int, float] = {}
    code: int | None = None
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(python), *args], stdout=out, stderr=subprocess.STDOUT, env=environment,
            start_new_session=True, cwd=log.parent,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        try:
            while code is None and time.monotonic() < deadline:
                with contextlib.suppress(psutil.Error):
                    for child in psutil.Process(process.pid).children(recursive=True):
                        with contextlib.suppress(psutil.Error):
                            recorded.setdefault(child.pid, child.create_time())
                with contextlib.suppress(subprocess.TimeoutExpired):
                    code = process.wait(timeout=0.5)
        finally:
            if code is None:
                process.kill()
                process.wait()
            _stop(recorded)
    output = log.read_text(errors="replace")
    assert code == 0, (
        f"{args[0]} exited {code} (None: still running after {timeout:.0f} s):\n{output[-4000:]}"
    )
    return output


def wait_while_running(
    what: str, found: Callable[[], object], running: threading.Thread, timeout: float = 480
) -> None:
    """Wait until ``found()`` while the federation's thread ``running`` still runs; fail
    naming ``what`` when it ended first or ``timeout`` seconds passed."""
    deadline = time.monotonic() + timeout
    while not found():
        assert running.is_alive(), f"the federation ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout:.0f} s"
        time.sleep(0.2)
