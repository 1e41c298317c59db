"""`synmlops export`: a run's bundle from a server URL or a store folder, never half-written."""

from __future__ import annotations

import csv
import http.server
import io
import json
import threading
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from federated_data import LoggedRun, log_federated_run
from mlflow import MlflowClient

from synergos_mlops.cli import main
from synergos_mlops.views.run_data import DATA_FILES


@pytest.fixture(scope="module")
def logged(shared_server) -> LoggedRun:  # type: ignore[no-untyped-def]
    return log_federated_run(
        shared_server.url,
        collaboration=f"export {uuid.uuid4().hex[:6]}",
        run="run ü 1",
        participants=["w 1", "w2"],
        rounds=3,
        epochs=1,
    )


@pytest.fixture(scope="module")
def log_lines(shared_server, logged: LoggedRun, tmp_path_factory) -> list[tuple[str | None, str]]:  # type: ignore[no-untyped-def]
    """Central log records of the run, the orchestrator's and participant "w 1"'s:
    ``(participant, message)`` in the order they were logged."""
    import logging

    from tracking_support import fast_config

    from synergos_mlops import FederatedTracker

    config = fast_config(tmp_path_factory.mktemp("logs"))
    lines = [(None, "round 0 aggregated"), ("w 1", "w 1 trained round 0")]
    with FederatedTracker(shared_server.url, config) as tracker:
        for participant, message in lines:
            handler = tracker.log_handler(*ids(logged), participant)
            logger = logging.getLogger(f"export-test.{participant}")
            logger.addHandler(handler)
            logger.propagate = False
            logger.warning(message)
            logger.removeHandler(handler)
    return lines


def ids(logged: LoggedRun) -> list[str]:
    return [logged.collaboration, logged.project, logged.experiment, logged.run]


def expected_names(logged: LoggedRun) -> set[str]:
    """The bundle's files once :func:`log_lines` has logged the run's records."""
    names = {f"global/{f}" for f in logged.global_files} | set(DATA_FILES) | {"logs.jsonl"}
    for participant, files in logged.participant_files.items():
        names |= {f"participants/{participant}/{f}" for f in files}
    return names


@pytest.fixture(scope="module")
def registered(shared_server, logged: LoggedRun) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    """Two model versions registered from the run (global) and from participant w2, and one
    from an unrelated run that the bundle must not hold: ``(name, version, run id)``."""
    client = MlflowClient(shared_server.url)
    name = f"export-model-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    versions = []
    for run_id in (logged.parent_run_id, logged.participants["w2"]):
        source = f"mlflow-artifacts:/{logged.experiment_id}/{run_id}/artifacts/models"
        version = client.create_model_version(name, source, run_id=run_id)
        versions.append((name, str(version.version), run_id))
    other = client.create_run(logged.experiment_id).info.run_id
    source = f"mlflow-artifacts:/{logged.experiment_id}/{other}/artifacts/models"
    client.create_model_version(name, source, run_id=other)
    return versions


def logged_points(url: str, logged: LoggedRun) -> list[tuple[str, str, int, float, int]]:
    """Every point of the run as MLflow's own client reads it back, one history per key."""
    client = MlflowClient(url)
    rows = []
    for participant, run_id in [("", logged.parent_run_id), *logged.participants.items()]:
        for key in client.get_run(run_id).data.metrics:
            rows += [
                (participant, key, m.step, m.value, m.timestamp)
                for m in client.get_metric_history(run_id, key)
            ]
    return rows


def assert_bundle_holds_the_runs_data(
    bundle: zipfile.ZipFile, url: str, logged: LoggedRun, registered: list[tuple[str, str, str]]
) -> None:
    assert json.loads(bundle.read("hyperparameters.json")) == {
        "algorithm": "FedProx", "epochs": "1", "lr": "0.001", "mu": "0.1", "rounds": "3",
    }  # fmt: skip
    metrics = list(csv.reader(io.StringIO(bundle.read("metrics.csv").decode())))
    assert metrics[0] == ["participant", "key", "step", "value", "timestamp"]
    points = logged_points(url, logged)
    assert len(metrics) - 1 == len(points) == (1 + len(logged.participants)) * 3 * 8
    read = [(p, k, int(s), float(v), int(t)) for p, k, s, v, t in metrics[1:]]
    assert sorted(read) == sorted(points)

    statistics = list(csv.reader(io.StringIO(bundle.read("statistics.csv").decode())))
    assert statistics[0] == ["participant", "stage", "statistic", "class", "step", "value"]
    per_class = [p for p in points if "/class_" in p[1]]
    assert len(statistics) - 1 == len(per_class) == (1 + len(logged.participants)) * 3 * 3
    assert ["w 1", "evaluate", "accuracy", "2", "1"] in [row[:5] for row in statistics]

    versions = json.loads(bundle.read("model_versions.json"))
    assert [(v["name"], v["version"], v["run_id"]) for v in versions] == registered
    assert [v["participant"] for v in versions] == [None, "w2"]
    assert all(v["status"] == "READY" and v["creation_time"].endswith("Z") for v in versions)
    assert versions[0]["source"].endswith(f"{logged.parent_run_id}/artifacts/models")


def test_bundle_from_the_server_holds_params_every_point_statistics_and_model_versions(
    shared_server, logged: LoggedRun, registered: list[tuple[str, str, str]]
) -> None:
    response = requests.get(
        f"{shared_server.url}/api/synergos/v1/runs/{logged.path}/bundle.zip", timeout=60
    )
    assert response.status_code == 200, response.text
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        assert_bundle_holds_the_runs_data(bundle, shared_server.url, logged, registered)


@pytest.mark.parametrize("source", ["server", "store folder"])
def test_export_holds_the_runs_data_and_log_records_too(
    shared_server, logged: LoggedRun, registered: list[tuple[str, str, str]],
    log_lines: list[tuple[str | None, str]], tmp_path: Path, source: str,
) -> None:  # fmt: skip
    uri = shared_server.url if source == "server" else str(shared_server.store)
    output = tmp_path / "run.zip"
    result = CliRunner().invoke(
        main, ["export", *ids(logged), "-o", str(output), "--tracking-uri", uri]
    )
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(output) as bundle:
        assert_bundle_holds_the_runs_data(bundle, shared_server.url, logged, registered)
        records = [json.loads(line) for line in bundle.read("logs.jsonl").splitlines()]
    assert [(r["participant"], r["message"]) for r in records] == log_lines


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_export_downloads_the_runs_bundle_from_a_server(
    shared_server, logged: LoggedRun, log_lines: list[tuple[str | None, str]], tmp_path: Path
) -> None:
    output = tmp_path / "run.zip"
    result = CliRunner().invoke(
        main, ["export", *ids(logged), "-o", str(output), "--tracking-uri", shared_server.url]
    )
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(output) as bundle:
        assert set(bundle.namelist()) == expected_names(logged)
        assert bundle.testzip() is None
    assert leftovers(tmp_path) == ["run.zip"]


def test_export_takes_the_server_from_mlflow_tracking_uri(
    shared_server, logged: LoggedRun, log_lines: list[tuple[str | None, str]], tmp_path: Path
) -> None:
    output = tmp_path / "one.zip"
    result = CliRunner().invoke(
        main,
        ["export", *ids(logged), "-o", str(output), "--participant", "w 1"],
        env={"MLFLOW_TRACKING_URI": shared_server.url},
    )
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(output) as bundle:
        # Its own artifacts and its own log records (not the orchestrator's).
        assert set(bundle.namelist()) == set(logged.participant_files["w 1"]) | {"logs.jsonl"}
        records = [json.loads(line) for line in bundle.read("logs.jsonl").splitlines()]
    assert [(r["participant"], r["message"]) for r in records] == [
        line for line in log_lines if line[0] == "w 1"
    ]


def test_export_writes_the_bundle_in_process_from_a_store_folder(
    shared_server, logged: LoggedRun, log_lines: list[tuple[str | None, str]], tmp_path: Path
) -> None:
    output = tmp_path / "local.zip"
    result = CliRunner().invoke(
        main,
        ["export", *ids(logged), "-o", str(output), "--tracking-uri", str(shared_server.store)],
    )
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(output) as bundle:
        assert set(bundle.namelist()) == expected_names(logged)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({3: "no such run"}, "run 'no such run' not found"),
        ({0: "nobody"}, "collaboration 'nobody' not found"),
    ],
)
def test_export_of_an_unknown_run_fails_in_one_line_and_writes_nothing(
    shared_server, logged: LoggedRun, tmp_path: Path, change: dict[int, str], message: str
) -> None:
    args = ids(logged)
    for index, value in change.items():
        args[index] = value
    for uri in (shared_server.url, str(shared_server.store)):
        result = CliRunner().invoke(
            main, ["export", *args, "-o", str(tmp_path / "x.zip"), "--tracking-uri", uri]
        )
        assert result.exit_code == 1
        assert message in result.output
        assert "Traceback" not in result.output
        assert leftovers(tmp_path) == []


def test_export_refuses_bad_ids_unreachable_servers_and_missing_folders(
    logged: LoggedRun, tmp_path: Path
) -> None:
    from conftest import free_port

    cases = [
        (["c", "p", "e", "a/b"], f"http://127.0.0.1:{free_port()}", "must not contain '/'"),
        (ids(logged), f"http://127.0.0.1:{free_port()}", "cannot be reached"),
        (ids(logged), str(tmp_path / "missing-store"), "does not exist"),
        (ids(logged), "ftp://example.invalid/x", "neither a server URL nor a store folder"),
    ]
    for args, uri, message in cases:
        result = CliRunner().invoke(
            main, ["export", *args, "-o", str(tmp_path / "x.zip"), "--tracking-uri", uri]
        )
        assert result.exit_code == 1, result.output
        assert message in result.output
        assert len(result.output.strip().splitlines()) == 1
    result = CliRunner().invoke(
        main, ["export", *ids(logged), "-o", str(tmp_path / "no" / "x.zip"), "--tracking-uri", "."]
    )
    assert result.exit_code == 1 and "does not exist" in result.output
    assert leftovers(tmp_path) == []


@pytest.fixture
def broken_server() -> Iterator[str]:
    """A server that starts a ZIP and then drops the connection."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(200)
            self.send_header("Content-Type", "application/zip")
            self.send_header("Content-Length", "100000")
            self.end_headers()
            self.wfile.write(b"PK\x03\x04" + b"\x00" * 2000)
            self.wfile.flush()
            self.connection.close()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_broken_download_leaves_no_half_written_file(broken_server: str, tmp_path: Path) -> None:
    output = tmp_path / "run.zip"
    output_before = tmp_path / "keep.zip"
    output_before.write_bytes(b"old")
    for target in (output, output_before):
        result = CliRunner().invoke(
            main, ["export", "c", "p", "e", "r", "-o", str(target), "--tracking-uri", broken_server]
        )
        assert result.exit_code == 1, result.output
    assert leftovers(tmp_path) == ["keep.zip"]
    assert output_before.read_bytes() == b"old"


def test_export_file_follows_the_umask_and_entries_carry_their_files_times(
    shared_server, logged: LoggedRun, log_lines: list[tuple[str | None, str]], tmp_path: Path
) -> None:
    import os
    import time

    output = tmp_path / "dated.zip"
    previous = os.umask(0o027)
    try:
        result = CliRunner().invoke(
            main,
            ["export", *ids(logged), "-o", str(output), "--tracking-uri", str(shared_server.store)],
        )
    finally:
        os.umask(previous)
    assert result.exit_code == 0, result.output
    assert output.stat().st_mode & 0o777 == 0o640  # 0666 less the umask, not mkstemp's 0600

    def zip_date(seconds: float) -> tuple[int, ...]:
        """As a ZIP keeps it: local time, to the even second below."""
        *date, second = tuple(time.localtime(seconds))[:6]
        return (*date, second - second % 2)

    ended = MlflowClient(shared_server.url).get_run(logged.parent_run_id).info.end_time
    assert ended
    artifacts = shared_server.store / "artifacts" / logged.experiment_id / logged.parent_run_id
    with zipfile.ZipFile(output) as bundle:
        for name in DATA_FILES:
            assert bundle.getinfo(name).date_time == zip_date(ended / 1000), name
        for relative in logged.global_files:
            stored = artifacts / "artifacts" / relative
            seconds = stored.stat().st_mtime
            assert bundle.getinfo(f"global/{relative}").date_time == zip_date(seconds), relative
        assert all(info.date_time[0] > 1980 for info in bundle.infolist())
