"""`synmlops export`: a run's bundle from a server URL or a store folder, never half-written."""

from __future__ import annotations

import http.server
import threading
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from federated_data import LoggedRun, log_federated_run

from synergos_mlops.cli import main


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


def ids(logged: LoggedRun) -> list[str]:
    return [logged.collaboration, logged.project, logged.experiment, logged.run]


def expected_names(logged: LoggedRun) -> set[str]:
    names = {f"global/{f}" for f in logged.global_files}
    for participant, files in logged.participant_files.items():
        names |= {f"participants/{participant}/{f}" for f in files}
    return names


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_export_downloads_the_runs_bundle_from_a_server(
    shared_server, logged: LoggedRun, tmp_path: Path
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
    shared_server, logged: LoggedRun, tmp_path: Path
) -> None:
    output = tmp_path / "one.zip"
    result = CliRunner().invoke(
        main,
        ["export", *ids(logged), "-o", str(output), "--participant", "w 1"],
        env={"MLFLOW_TRACKING_URI": shared_server.url},
    )
    assert result.exit_code == 0, result.output
    with zipfile.ZipFile(output) as bundle:
        assert set(bundle.namelist()) == set(logged.participant_files["w 1"])


def test_export_writes_the_bundle_in_process_from_a_store_folder(
    shared_server, logged: LoggedRun, tmp_path: Path
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
