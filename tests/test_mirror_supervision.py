"""The file-store mirror's thread is supervised: when it stops, its status says so (so /health
answers 503) and it is started again until it runs."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from conftest import wait_for
from legacy_store import write_experiment

from synergos_mlops.legacy import FileStoreSync, file_store_health_problem, read_status


def test_a_mirror_that_cannot_open_its_database_is_reported_down_and_restarted_until_it_runs(
    tmp_path: Path,
) -> None:
    root = tmp_path / "filestore"
    root.mkdir()
    # The mirror opens the database once the folder holds a file store to mirror.
    write_experiment(root, "1", "hospital")
    database = tmp_path / "mlflow.db"
    database.write_bytes(b"this is not a SQLite database\n" * 200)  # the store cannot open it
    status = tmp_path / "status.json"
    lines: list[str] = []
    sync = FileStoreSync(root, f"sqlite:///{database}", status, interval=0.2, echo=lines.append)
    sync.start()
    try:
        down = wait_for(lambda: (read_status(status) or {}).get("down"), timeout=60)
        assert down, lines
        problem = file_store_health_problem(read_status(status) or {})
        assert problem is not None and "file-store mirror stopped" in problem
        assert any("the mirror stopped" in line for line in lines)

        sync.supervise()  # within its pause: not started yet
        assert sync.restarts == 0
        database.unlink()  # the cause goes away: MLflow makes a new database there
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (read_status(status) or {}).get("down"):
            sync.supervise()
            time.sleep(0.2)
        final = read_status(status) or {}
        assert "down" not in final and file_store_health_problem(final) is None
        assert sync.restarts >= 1
        assert any("running again" in line for line in lines)
        assert database.exists()
    finally:
        sync.stop()


def test_a_healthy_mirror_status_is_no_health_problem() -> None:
    assert file_store_health_problem({"root": "/x", "experiments": 2, "runs": 5}) is None


def test_a_mirror_loads_mlflow_only_once_a_file_store_appears(tmp_path: Path) -> None:
    """A server's folder with no file store costs the serve process a listing a second, not
    MLflow: the mirror opens its store when the first experiment folder appears, and mirrors
    it."""
    root = tmp_path / "filestore"
    root.mkdir()
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from synergos_mlops.legacy import FileStoreSync, read_status
        status = Path({str(tmp_path / "status.json")!r})
        sync = FileStoreSync(Path({str(root)!r}), "sqlite:///{tmp_path / "mlflow.db"}", status,
                             interval=0.1, echo=print)
        sync.start()
        while read_status(status) is None:
            time.sleep(0.05)
        print("empty", read_status(status)["experiments"], "mlflow" in sys.modules, flush=True)
        sys.stdin.readline()  # the test writes an experiment
        while (read_status(status) or {{}}).get("experiments") != 1:
            time.sleep(0.05)
        print("mirrored", "mlflow" in sys.modules, flush=True)
        sync.stop()
    """)
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdin is not None and process.stdout is not None
    try:
        assert process.stdout.readline().split() == ["empty", "0", "False"]
        write_experiment(root, "1", "hospital")
        process.stdin.write("go\n")
        process.stdin.flush()
        assert process.stdout.readline().split() == ["mirrored", "True"]
        assert process.wait(timeout=120) == 0
    finally:
        process.kill()
