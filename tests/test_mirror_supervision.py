"""The file-store mirror's thread is supervised: when it stops, its status says so (so /health
answers 503) and it is started again until it runs."""

from __future__ import annotations

import time
from pathlib import Path

from conftest import wait_for

from synergos_mlops.legacy import FileStoreSync, file_store_health_problem, read_status


def test_a_mirror_that_cannot_open_its_database_is_reported_down_and_restarted_until_it_runs(
    tmp_path: Path,
) -> None:
    root = tmp_path / "filestore"
    root.mkdir()
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
