"""`synmlops serve`: a real server process, the stock MLflow client and plain HTTP."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
import requests
from conftest import SYNMLOPS, Server, free_port, start_server
from mlflow import MlflowClient
from mlflow.entities import Metric, Param, RunTag


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 60):
    return subprocess.run(
        [*SYNMLOPS, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def test_health_answers_json_with_version_and_backend(shared_server: Server) -> None:
    response = requests.get(f"{shared_server.url}/health", timeout=10)
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ok"
    assert body["version"]
    assert body["mlflow_version"] == mlflow.__version__
    assert body["backend"] == "sqlite"


def test_store_folder_holds_the_sqlite_database_in_wal_mode_and_the_artifacts(
    shared_server: Server,
) -> None:
    import sqlite3

    assert (shared_server.store / "mlflow.db").is_file()
    assert (shared_server.store / "artifacts").is_dir()
    connection = sqlite3.connect(shared_server.store / "mlflow.db")
    try:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        connection.close()


def test_stock_mlflow_client_logs_and_plain_rest_reads_it_back(
    shared_server: Server, tmp_path: Path
) -> None:
    client = MlflowClient(tracking_uri=shared_server.url)
    experiment_id = client.create_experiment("stock-client-check")
    run = client.create_run(experiment_id, run_name="plain")
    client.log_batch(
        run.info.run_id,
        metrics=[Metric("loss", 1.0 / (s + 1), 1_700_000_000_000 + s, s) for s in range(5)],
        params=[Param("lr", "0.01")],
        tags=[RunTag("team", "a")],
    )
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00\x01" * 100)
    client.log_artifact(run.info.run_id, str(weights), "models")
    client.set_terminated(run.info.run_id)

    got = requests.get(
        f"{shared_server.url}/api/2.0/mlflow/runs/get",
        params={"run_id": run.info.run_id},
        timeout=10,
    ).json()["run"]
    assert got["data"]["params"] == [{"key": "lr", "value": "0.01"}]
    assert got["info"]["status"] == "FINISHED"
    history = requests.get(
        f"{shared_server.url}/api/2.0/mlflow/metrics/get-history",
        params={"run_id": run.info.run_id, "metric_key": "loss"},
        timeout=10,
    ).json()["metrics"]
    assert [m["step"] for m in history] == [0, 1, 2, 3, 4]
    assert got["info"]["artifact_uri"].startswith("mlflow-artifacts:/")
    downloaded = client.download_artifacts(run.info.run_id, "models/weights.bin", str(tmp_path))
    assert Path(downloaded).read_bytes() == weights.read_bytes()
    assert (shared_server.store / "artifacts" / experiment_id / run.info.run_id).is_dir()


def test_stock_mlflow_ui_is_served_at_the_root(shared_server: Server) -> None:
    response = requests.get(f"{shared_server.url}/", timeout=10)
    assert response.status_code == 200
    assert "<html" in response.text.lower()


def test_startup_prints_the_url_to_open(shared_server: Server) -> None:
    assert f"http://localhost:{shared_server.port}" in shared_server.output()


def test_startup_names_the_store_and_prints_no_warnings_of_its_dependencies(
    shared_server: Server,
) -> None:
    output = shared_server.output()
    expected = f"Synergos MLOps is serving store {shared_server.store} at http://localhost:"
    assert expected in output
    assert "Registry store URI not provided" not in output
    assert "DeprecationWarning" not in output


def test_sigterm_stops_the_server_and_every_worker(tmp_path: Path) -> None:
    server = start_server(tmp_path / "store", workers=2)
    children = subprocess.run(
        ["pgrep", "-f", "--", f"--port {server.port}"], capture_output=True, text=True
    ).stdout.split()
    assert len(children) >= 2  # synmlops, its guard, uvicorn and its workers
    assert server.stop(signal.SIGTERM) is not None
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        left = subprocess.run(["pgrep", "-f", "--", f"--port {server.port}"], capture_output=True)
        if left.returncode == 1:
            break
        time.sleep(0.2)
    assert left.returncode == 1, "server processes outlived SIGTERM"
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", server.port))  # nothing listens on the port any more


def test_the_worker_environment_serve_writes_is_the_one_mlflow_server_writes() -> None:
    """serve starts uvicorn itself with the environment `mlflow server` would hand it: the
    names are spelled in our module, so an MLflow that renames one must fail here."""
    import mlflow.environment_variables as mlflow_env
    import mlflow.server as mlflow_server
    import mlflow.server.constants as constants

    from synergos_mlops.server.mlflow_server_env import (
        APP_FACTORY,
        MLFLOW_UVICORN_LOG_CONFIG,
        WORKER_ENV_NAMES,
    )

    for name, value in WORKER_ENV_NAMES.items():
        spelled = getattr(constants, name, None) or getattr(mlflow_env, name).name
        assert spelled == value, name
    assert MLFLOW_UVICORN_LOG_CONFIG == mlflow_server._UVICORN_LOG_CONFIG
    assert MLFLOW_UVICORN_LOG_CONFIG.is_file()
    assert mlflow_server._find_app("synergos") == APP_FACTORY
    # Every variable `mlflow server` hands its workers is one of ours (or not for our set-up).
    source = Path(mlflow_server.__file__).read_text()
    run_server = source[source.index("def _run_server(") : source.index("server_proc = _exec_cmd(")]
    handed = set(re.findall(r"env_map\[([A-Za-z_.]+?)(?:\.name)?\]", run_server))
    ours = set(WORKER_ENV_NAMES)
    not_ours = {
        "READ_REPLICA_BACKEND_STORE_URI_ENV_VAR", "ARTIFACTS_ONLY_ENV_VAR",
        "STATIC_PREFIX_ENV_VAR", "PROMETHEUS_EXPORTER_ENV_VAR", "SECRETS_CACHE_TTL_ENV_VAR",
        "SECRETS_CACHE_MAX_SIZE_ENV_VAR", "MLFLOW_FLASK_SERVER_SECRET_KEY",
        "_MLFLOW_AUTH_ADMIN_BOOTSTRAPPED", "_MLFLOW_INTERNAL_GATEWAY_AUTH_TOKEN",
        "HUEY_STORAGE_PATH_ENV_VAR",
    }  # fmt: skip
    assert handed - ours - not_ours == set(), "mlflow server hands its workers something new"


def test_gunicorn_bind_in_the_environment_sets_host_and_port(tmp_path: Path) -> None:
    port = free_port()
    server = start_server(
        tmp_path / "store",
        port=port,
        port_option=False,
        env={"GUNICORN_CMD_ARGS": f"--bind=127.0.0.1:{port}"},
    )
    try:
        assert requests.get(f"{server.url}/health", timeout=5).json()["status"] == "ok"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--bogus"], {}, "No such option"),
        (["--port", "notaport"], {}, "notaport"),
        ([], {"GUNICORN_CMD_ARGS": "--bind=0.0.0.0:http"}, "GUNICORN_CMD_ARGS"),
        ([], {"GUNICORN_CMD_ARGS": "--bind 'unclosed"}, "GUNICORN_CMD_ARGS"),
        ([], {"GUNICORN_CMD_ARGS": "--bind=unix:/tmp/sock"}, "GUNICORN_CMD_ARGS"),
        (["--workers", "0"], {}, "workers"),
    ],
)
def test_bad_options_give_one_clear_line_and_a_non_zero_exit(
    tmp_path: Path, args: list[str], env: dict[str, str], message: str
) -> None:
    result = run_cli("serve", "--store", str(tmp_path / "s"), *args, env=env)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert message in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("Error:")


def test_store_that_is_a_file_is_refused_in_one_line(tmp_path: Path) -> None:
    a_file = tmp_path / "store"
    a_file.write_text("not a folder")
    result = run_cli("serve", "--store", str(a_file), "--port", str(free_port()))
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: store {a_file} is a file, not a folder"
    assert a_file.read_text() == "not a folder"


def test_store_that_cannot_be_created_is_refused_in_one_line() -> None:
    result = run_cli("serve", "--store", "/proc/synmlops-store", "--port", str(free_port()))
    assert result.returncode == 1
    assert result.stderr.strip().startswith("Error: cannot create store /proc/synmlops-store")
    assert len(result.stderr.strip().splitlines()) == 1


def test_store_that_is_not_writable_is_refused_in_one_line(tmp_path: Path) -> None:
    store = tmp_path / "readonly"
    store.mkdir()
    # chmod means nothing to root; an immutable folder refuses root's writes too.
    lock = ["chattr", "+i", str(store)] if os.geteuid() == 0 else ["chmod", "500", str(store)]
    unlock = ["chattr", "-i", str(store)] if os.geteuid() == 0 else ["chmod", "700", str(store)]
    subprocess.run(lock, check=True)
    try:
        result = run_cli("serve", "--store", str(store), "--port", str(free_port()))
    finally:
        subprocess.run(unlock, check=True)
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: store {store} is not writable"
    assert list(store.iterdir()) == []


def test_port_in_use_is_refused_and_the_store_is_untouched(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli("serve", "--store", str(tmp_path / "s"), "--port", str(port))
    assert result.returncode == 1
    assert result.stderr.strip() == f"Error: port {port} on 127.0.0.1 is already in use"


def _descendants(pid: int) -> list[int]:
    import psutil

    return [child.pid for child in psutil.Process(pid).children(recursive=True)]


def _gone(pids: list[int]) -> bool:
    import psutil

    return not any(
        psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        for pid in pids
    )


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_sigkill_of_serve_takes_mlflow_uvicorn_and_every_worker_with_it(tmp_path: Path) -> None:
    from conftest import wait_for

    server = start_server(tmp_path / "store", workers=2)
    assert f"New empty store: created {tmp_path / 'store' / 'mlflow.db'}" in server.output()
    descendants = _descendants(server.process.pid)
    # the guard, uvicorn, its two workers and multiprocessing's helper
    assert len(descendants) >= 4, descendants
    server.process.kill()
    server.process.wait()
    assert wait_for(lambda: _gone(descendants), timeout=60), "server processes outlived serve"
    assert wait_for(lambda: _port_free(server.port), timeout=10)


_TEST_SESSION = """
import sys, time
sys.path.insert(0, sys.argv[1])
from conftest import start_server
from pathlib import Path
server = start_server(Path(sys.argv[2]))
print(server.process.pid, server.port, flush=True)
time.sleep(600)
"""


def test_a_test_server_stops_when_the_pytest_that_started_it_is_killed(tmp_path: Path) -> None:
    from conftest import wait_for

    session = subprocess.Popen(
        [sys.executable, "-c", _TEST_SESSION, str(Path(__file__).parent), str(tmp_path / "s")],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert session.stdout is not None
    serve_pid, port = (int(word) for word in session.stdout.readline().split())
    descendants = [serve_pid, *_descendants(serve_pid)]
    session.kill()  # as a SIGKILLed pytest: no fixture teardown runs
    session.wait()
    assert wait_for(lambda: _gone(descendants), timeout=60), "the server outlived its pytest"
    assert wait_for(lambda: _port_free(port), timeout=10)


def test_mlflow_server_app_name_synergos_serves_our_routes_and_its_orphan_is_named(
    tmp_path: Path,
) -> None:
    """``mlflow server --app-name synergos`` (our app, started by MLflow's own command) serves
    the Synergos routes; left without a parent, as a server of an older synmlops serve killed
    with SIGKILL was, it holds its port, and serve names it in one line."""
    import psutil
    from conftest import wait_for

    from synergos_mlops.storage.new_store import create_sqlite_store

    port = free_port()
    create_sqlite_store(tmp_path / "db.sqlite")  # MLflow finds its tables: no migrations to run
    command = [sys.executable, "-m", "mlflow", "server", "--app-name", "synergos",
               "--backend-store-uri", f"sqlite:///{tmp_path / 'db.sqlite'}",
               "--port", str(port), "--workers", "1"]  # fmt: skip
    # Started by a shell that exits at once: the server is left without a parent of ours,
    # as a server of an older synmlops serve killed with SIGKILL was.
    # Without MLflow's job runner (a process of its own that serve never starts either).
    quiet = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    launcher = subprocess.run(
        ["sh", "-c", 'setsid "$@" >/dev/null 2>&1 </dev/null & echo $!', "sh", *command],
        capture_output=True, text=True, check=True, cwd=tmp_path, env=quiet,
    )  # fmt: skip
    orphan = int(launcher.stdout.strip())
    try:

        def serving() -> bool:
            try:
                return requests.get(f"http://127.0.0.1:{port}/health", timeout=2).ok
            except requests.RequestException:
                return False

        assert wait_for(serving, timeout=240), "the orphan did not start"
        health = requests.get(f"http://127.0.0.1:{port}/health", timeout=60).json()
        assert health["status"] == "ok" and "version" in health, health
        runs = requests.get(f"http://127.0.0.1:{port}/api/synergos/v1/runs", timeout=60)
        assert runs.status_code == 200 and runs.json()["runs"] == [], runs.text
        result = run_cli("serve", "--store", str(tmp_path / "s"), "--port", str(port))
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"Error: port {port} is held by an orphaned synmlops server (pid {orphan}); "
            f"stop it with kill {orphan}"
        )
    finally:
        process = psutil.Process(orphan)
        workers = process.children(recursive=True)
        os.kill(orphan, signal.SIGTERM)
        # Gone, or a zombie: its parent is this machine's init, which may never reap it.
        wait_for(lambda: _gone([p.pid for p in (process, *workers)]), timeout=30)
    assert wait_for(lambda: _port_free(port), timeout=30)


def test_port_held_by_a_running_synmlops_serve_names_its_pid(
    shared_server: Server, tmp_path: Path
) -> None:
    result = run_cli("serve", "--store", str(tmp_path / "s"), "--port", str(shared_server.port))
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"Error: port {shared_server.port} is held by a running synmlops server "
        f"(pid {shared_server.process.pid})"
    )


def test_a_worker_builds_its_app_without_collections_and_collects_again_after(
    tmp_path: Path,
) -> None:
    """A server worker turns the garbage collector off while it imports MLflow's server and
    builds the app (objects that live as long as it does), then on again, with what it built
    frozen out of later collections; an app built outside a worker leaves the collector be."""
    code = (
        "import gc\n"
        "from synergos_mlops.server.app import create_app\n"
        "seen = []\n"
        "gc.callbacks.append(lambda phase, info: seen.append(phase))\n"
        "create_app()\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 0, seen.count('start'))\n"
    )
    from mlflow.server import BACKEND_STORE_URI_ENV_VAR  # what app.py reads by its name

    worker = {**os.environ, BACKEND_STORE_URI_ENV_VAR: f"sqlite:///{tmp_path / 'mlflow.db'}"}
    outside = {k: v for k, v in os.environ.items() if k != BACKEND_STORE_URI_ENV_VAR}
    answers = [
        subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        ).stdout.split()
        for env in (worker, outside)
    ]
    # In a worker: enabled again, startup frozen, one collection (the one before freezing).
    assert answers[0] == ["True", "True", "1"]
    # Elsewhere: collections ran as usual while MLflow was imported; nothing frozen.
    assert answers[1][:2] == ["True", "False"] and int(answers[1][2]) > 1
