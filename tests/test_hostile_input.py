"""Hostile input against a real server: paths that try to leave the store, bodies too big to
hold, foreign Host headers and origins. A secret file sits beside (outside) the store; it must
never appear in any answer, and nothing may be written outside the store."""

from __future__ import annotations

import base64
import contextlib
import gzip
import http.client
import io
import json
import os
import socket
import sys
import time
import uuid
import zipfile
import zlib
from array import array
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from conftest import Server, start_server
from federated_data import LoggedRun, log_federated_run
from mlflow import MlflowClient
from tracking_support import fast_config

from synergos_mlops import FederatedTracker
from synergos_mlops.errors import InvalidValueError
from synergos_mlops.export import ExportError, ExportRequest, export_run
from synergos_mlops.storage.batch import MAX_POINTS, MetricBatch, encode_batch

SECRET = f"TOP-SECRET-{uuid.uuid4().hex}"
API = "/api/synergos/v1"


class Hostile:
    def __init__(self, server: Server, logged: LoggedRun, secret: Path) -> None:
        self.server = server
        self.logged = logged
        self.secret = secret

    @property
    def run_path(self) -> str:
        return f"{API}/runs/{self.logged.path}"


@pytest.fixture(scope="module")
def hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hostile]:
    root = tmp_path_factory.mktemp("hostile")
    secret = root / "secret.txt"
    secret.write_text(SECRET)
    (root / "store").mkdir()
    server = start_server(root / "store", workers=1)
    try:
        logged = log_federated_run(server.url, collaboration="hostile", rounds=2)
        yield Hostile(server, logged, secret)
    finally:
        server.stop()


def raw_request(
    port: int, method: str, path: str, *, headers: dict[str, str] | None = None,
    body: bytes | None = None,
) -> tuple[int, dict[str, str], bytes]:  # fmt: skip
    """Send ``path`` exactly as given (no client-side normalisation of ``..`` or escapes)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        all_headers = {"Host": f"127.0.0.1:{port}", **(headers or {})}
        if body is not None:
            all_headers["Content-Length"] = str(len(body))
        for name, value in all_headers.items():
            connection.putheader(name, value)
        connection.endheaders(body)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def assert_json_error(status: int, headers: dict[str, str], body: bytes) -> dict[str, str]:
    assert 400 <= status < 500, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), (headers, body[:300])
    error = json.loads(body)["error"]
    assert set(error) >= {"code", "message"} and error["message"]
    return dict(error)


# Every spelling of "leave the run's folder" we know of, as it appears in the URL.
TRAVERSALS = [
    "../../../../secret.txt",
    "models/../../../../../secret.txt",
    "..%2f..%2f..%2f..%2fsecret.txt",
    "%2e%2e/%2e%2e/%2e%2e/%2e%2e/secret.txt",
    "%2e%2e%2f%2e%2e%2f%2e%2e%2f%2e%2e%2fsecret.txt",
    "%252e%252e%252f%252e%252e%252fsecret.txt",
    "..%252f..%252f..%252fsecret.txt",
    "models%00/global/global_model.pt",
    "secret.txt%00.pt",
    "..%5c..%5c..%5c..%5csecret.txt",
    "..\\..\\..\\..\\secret.txt",
    "/etc/passwd",
    "%2fetc%2fpasswd",
    "C:%5cWindows%5cwin.ini",
    "./models/global/global_model.pt",
    "models//global/global_model.pt",
]


@pytest.mark.parametrize("path", TRAVERSALS)
def test_run_artifact_route_refuses_every_form_of_traversal(hostile: Hostile, path: str) -> None:
    absolute = quote(str(hostile.secret), safe="")
    for target in (path, path.replace("secret.txt", absolute)):
        status, headers, body = raw_request(
            hostile.server.port, "GET", f"{hostile.run_path}/artifacts/{target}"
        )
        assert SECRET.encode() not in body
        assert_json_error(status, headers, body)


@pytest.mark.parametrize("path", TRAVERSALS)
def test_participant_artifact_route_refuses_every_form_of_traversal(
    hostile: Hostile, path: str
) -> None:
    participant = next(iter(hostile.logged.participants))
    status, headers, body = raw_request(
        hostile.server.port,
        "GET",
        f"{hostile.run_path}/participants/{participant}/artifacts/{path}",
    )
    assert SECRET.encode() not in body
    assert_json_error(status, headers, body)


@pytest.mark.parametrize(
    "ids",
    ["..", "%2e%2e", "..%2f..", "%252e%252e", "hostile%00", "..%5c.."],
)
def test_ids_that_look_like_paths_are_refused_or_not_found(hostile: Hostile, ids: str) -> None:
    logged = hostile.logged
    for path in (
        f"{API}/runs/{ids}/{quote(logged.project)}/{quote(logged.experiment)}/{ids}/bundle.zip",
        f"{hostile.run_path}/participants/{ids}/bundle.zip",
        f"{hostile.run_path}/participants/{ids}/artifacts/secret.txt",
    ):
        status, headers, body = raw_request(hostile.server.port, "GET", path)
        assert SECRET.encode() not in body
        assert_json_error(status, headers, body)


def test_a_valid_artifact_is_still_served(hostile: Hostile) -> None:
    name = hostile.logged.global_files[0]
    status, _, body = raw_request(
        hostile.server.port, "GET", f"{hostile.run_path}/artifacts/{quote(name)}"
    )
    assert status == 200 and body


@pytest.mark.parametrize("path", TRAVERSALS)
def test_mlflow_artifact_proxy_refuses_traversal(hostile: Hostile, path: str) -> None:
    port = hostile.server.port
    experiment = hostile.logged.experiment_id
    run = hostile.logged.parent_run_id
    for url in (
        f"/api/2.0/mlflow-artifacts/artifacts/{path}",
        f"/api/2.0/mlflow-artifacts/artifacts/{experiment}/{run}/artifacts/{path}",
        f"/api/2.0/mlflow-artifacts/artifacts?path={path}",
        f"/get-artifact?run_id={run}&path={path}",
        f"/ajax-api/2.0/mlflow/artifacts/list?run_id={run}&path={path}",
    ):
        status, _, body = raw_request(port, "GET", url)
        assert SECRET.encode() not in body, url
        assert status != 200 or b"secret" not in body.lower(), (url, body[:300])


def test_mlflow_artifact_proxy_writes_nothing_outside_the_store(hostile: Hostile) -> None:
    outside = hostile.secret.parent
    before = sorted(p.name for p in outside.iterdir())
    for path in ("../../evil.txt", "..%2f..%2fevil.txt", "%2e%2e/%2e%2e/evil.txt",
                 f"{quote(str(outside / 'evil.txt'), safe='')}", "..\\..\\evil.txt"):  # fmt: skip
        status, _, _ = raw_request(
            hostile.server.port, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{path}",
            body=b"evil",
        )  # fmt: skip
        assert status >= 400 or not (outside / "evil.txt").exists(), path
    assert sorted(p.name for p in outside.iterdir()) == before
    assert not list(outside.rglob("evil.txt"))


def test_an_experiment_pointed_outside_the_store_leaks_nothing(hostile: Hostile) -> None:
    """A client that creates an experiment whose artifact location is a folder outside the
    store, then asks the Synergos routes for that folder's files."""
    client = MlflowClient(hostile.server.url)
    outside = hostile.secret.parent
    try:
        experiment_id = client.create_experiment(
            "evil/outside/exp",
            artifact_location=str(outside),
            tags={"synergos.collaboration": "evil", "synergos.project": "outside",
                  "synergos.experiment": "exp"},
        )  # fmt: skip
    except Exception:  # MLflow refused the location itself: nothing to read through it
        return
    tags = {"synergos.run": "r", "synergos.role": "federation"}
    client.create_run(experiment_id, run_name="r", tags=tags)
    for path in (f"{API}/runs/evil/outside/exp/r", f"{API}/runs/evil/outside/exp/r/bundle.zip",
                 f"{API}/runs/evil/outside/exp/r/artifacts/secret.txt"):  # fmt: skip
        status, _, body = raw_request(hostile.server.port, "GET", path)
        assert SECRET.encode() not in body, path
        if path.endswith(".zip") and status == 200:
            names = zipfile.ZipFile(io.BytesIO(body)).namelist()
            assert not any("secret" in n for n in names)


def test_bundle_entry_names_never_leave_the_zip_root(hostile: Hostile) -> None:
    """A child run logged by any MLflow client may carry any participant tag: its ZIP entries
    must still be plain relative names (no zip slip for whoever unpacks the bundle)."""
    client = MlflowClient(hostile.server.url)
    experiment_id = client.create_experiment(
        "slip/p/e",
        tags={
            "synergos.collaboration": "slip",
            "synergos.project": "p",
            "synergos.experiment": "e",
        },
    )
    parent = client.create_run(
        experiment_id, run_name="r", tags={"synergos.run": "r", "synergos.role": "federation"}
    )
    for hostile_id in ("../../../../evil", "..", "/abs", "a\\..\\..\\b"):
        child = client.create_run(
            experiment_id,
            run_name="child",
            tags={"mlflow.parentRunId": parent.info.run_id, "synergos.role": "participant",
                  "synergos.participant": hostile_id},
        )  # fmt: skip
        client.log_text(child.info.run_id, "payload", "models/local/x.txt")
    response = requests.get(f"{hostile.server.url}{API}/runs/slip/p/e/r/bundle.zip", timeout=60)
    assert response.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(response.content)).namelist()
    from synergos_mlops.views.run_data import DATA_FILES

    assert len([n for n in names if n not in DATA_FILES]) == 4  # the four participants' files
    for name in names:
        assert not name.startswith("/") and "\\" not in name, name
        assert ".." not in name.split("/"), name


# -- the tracker and export, on the client side ----------------------------------------------


def test_tracker_refuses_artifact_names_that_leave_the_run(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    secret = tmp_path / "secret.txt"
    secret.write_text(SECRET)
    model = tmp_path / "model.pt"
    model.write_bytes(b"weights")
    with (
        FederatedTracker(str(store), fast_config(tmp_path)) as tracker,
        tracker.run(collaboration="c", project="p", experiment="e", run="r",
                    participants=["w"]) as run,
    ):  # fmt: skip
        for bad in ("../x", "../../../x", "/etc/x", "a/../../x", "..\\..\\x", "C:\\x", ".."):
            with pytest.raises(InvalidValueError):
                run.log_artifact(model, artifact_path=bad)
            with pytest.raises(InvalidValueError):
                run.log_model(b"weights", name=bad)
            with pytest.raises(InvalidValueError):
                run.log_model(b"weights", name=bad, participant="w")
            with pytest.raises(InvalidValueError):
                run.log_text("notes", bad, participant="w")
    written = {p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file()}
    assert all(
        str(p).startswith(("store/", "spool/")) or p.name in ("secret.txt", "model.pt")
        for p in written
    ), written
    assert not (tmp_path / "x").exists() and not Path("/etc/x").exists()


def test_export_replaces_a_link_named_as_output_and_never_writes_through_it(
    hostile: Hostile, tmp_path: Path
) -> None:
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    output = tmp_path / "bundle.zip"
    output.symlink_to(target)
    logged = hostile.logged
    request = ExportRequest(logged.collaboration, logged.project, logged.experiment, logged.run)
    export_run(request, output, hostile.server.url, progress=False)
    assert target.read_text() == "keep me"
    assert not output.is_symlink() and zipfile.is_zipfile(output)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle.zip", "elsewhere.txt"]


def test_export_of_a_refused_run_leaves_no_file(hostile: Hostile, tmp_path: Path) -> None:
    output = tmp_path / "bundle.zip"
    request = ExportRequest("hostile", "..", "..", "nope")
    with pytest.raises(ExportError, match="not found"):
        export_run(request, output, hostile.server.url, progress=False)
    assert list(tmp_path.iterdir()) == []


# -- oversized requests ------------------------------------------------------------------------


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        if parent == pid:
            child = int(entry.name)
            found += [child, *_descendants(child)]
    return found


def _status_kb(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    return 0


def worker_pid(server: Server) -> int:
    """The process that answers requests: the uvicorn process (one worker, so no supervisor)."""
    candidates = []
    for pid in _descendants(server.process.pid):
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
        if b"uvicorn" in command:
            candidates.append(pid)
    assert candidates, "no uvicorn process under the server"
    return max(candidates, key=lambda pid: _status_kb(pid, "VmRSS"))


def stream_body(
    port: int, path: str, head: dict[str, str], chunks: Iterator[bytes], *, limit: int
) -> tuple[int, bytes, int]:
    """Send a request whose body comes from ``chunks`` until the server answers (or ``limit``
    bytes went out); return the status, the body and the bytes sent."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=120)
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{port}"]
    lines += [f"{k}: {v}" for k, v in head.items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    sent = 0
    answer = b""
    sock.setblocking(False)
    try:
        for chunk in chunks:
            with contextlib.suppress(BlockingIOError):
                answer += sock.recv(65536)
            if answer or sent >= limit:
                break
            view = memoryview(chunk)
            while view:
                try:
                    done = sock.send(view)
                    view = view[done:]
                    sent += done
                except BlockingIOError:
                    time.sleep(0.001)
                    with contextlib.suppress(BlockingIOError):
                        answer += sock.recv(65536)
                    if answer:
                        break
                except (BrokenPipeError, ConnectionResetError):
                    view = view[:0]
                    break
            if answer:
                break
        sock.setblocking(True)
        sock.settimeout(60)
        deadline = time.monotonic() + 60
        while b"\r\n\r\n" not in answer and time.monotonic() < deadline:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            answer += data
        # Read the rest of a small body that follows the head.
        try:
            sock.settimeout(2)
            while data := sock.recv(65536):
                answer += data
        except (OSError, TimeoutError):
            pass
    finally:
        sock.close()
    assert answer, f"no answer after {sent} bytes"
    head_text, _, body = answer.partition(b"\r\n\r\n")
    status = int(head_text.split(b" ", 2)[1])
    if b"transfer-encoding: chunked" in head_text.lower():
        body = _unchunk(body)
    return status, body, sent


def _unchunk(data: bytes) -> bytes:
    out = b""
    while data:
        size_line, _, rest = data.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if size == 0:
            break
        out += rest[:size]
        data = rest[size + 2 :]
    return out


def _zeros(total: int, piece: int = 1024 * 1024) -> Iterator[bytes]:
    block = b"0" * piece
    for _ in range(total // piece):
        yield block


def _chunked(chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        yield f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n"


def _gzip_stream(parts: Iterator[bytes]) -> bytes:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    out = io.BytesIO()
    for part in parts:
        out.write(packer.compress(part))
    out.write(packer.flush())
    return out.getvalue()


def _many_points(count: int) -> Iterator[bytes]:
    yield b'{"format":"synergos.metrics/1","runs":["r"],"keys":["k"]'
    for column in ("run", "key", "step", "value", "timestamp"):
        yield f',"{column}":['.encode()
        block = 100_000
        for start in range(0, count, block):
            text = b"0," * min(block, count - start)
            yield text if start + block < count else text[:-1]
        yield b"]"
    yield b"}"


@pytest.fixture(scope="module")
def memory_before(hostile: Hostile) -> tuple[int, int]:
    pid = worker_pid(hostile.server)
    # Warm the route up so its imports are not counted as growth.
    requests.post(f"{hostile.server.url}{API}/metrics/bulk", data=b"{}", timeout=60)
    return pid, _status_kb(pid, "VmRSS")


BULK = f"{API}/metrics/bulk"


def test_a_declared_2gb_body_is_refused_before_it_is_read(
    hostile: Hostile, memory_before: tuple[int, int]
) -> None:
    status, body, sent = stream_body(
        hostile.server.port, BULK,
        {"Content-Length": str(2 * 1024**3), "Content-Type": "application/json"},
        _zeros(2 * 1024**3), limit=2 * 1024**3,
    )  # fmt: skip
    assert status == 413, body
    assert "bytes" in json.loads(body)["error"]["message"]
    assert sent < 1024**3  # the server answered long before the body's end


def test_a_chunked_body_that_keeps_going_is_cut_off(
    hostile: Hostile, memory_before: tuple[int, int]
) -> None:
    status, body, sent = stream_body(
        hostile.server.port, BULK,
        {"Transfer-Encoding": "chunked", "Content-Type": "application/json"},
        _chunked(_zeros(2 * 1024**3)), limit=2 * 1024**3,
    )  # fmt: skip
    assert status == 413, body
    assert json.loads(body)["error"]["code"] == "TOO_LARGE"
    assert sent < 1024**3


def test_a_gzip_bomb_is_refused_by_its_decompressed_size(
    hostile: Hostile, memory_before: tuple[int, int]
) -> None:
    bomb = _gzip_stream(b" " * (1024 * 1024) for _ in range(2048))  # 2 GB of JSON whitespace
    assert len(bomb) < 4 * 1024 * 1024
    response = requests.post(
        f"{hostile.server.url}{BULK}", data=bomb,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}, timeout=300,
    )  # fmt: skip
    assert response.status_code == 413, response.text
    assert "decompressed" in response.json()["error"]["message"]


def test_a_batch_of_ten_million_points_is_refused_by_count(
    hostile: Hostile, memory_before: tuple[int, int]
) -> None:
    body = _gzip_stream(_many_points(10_000_000))
    response = requests.post(
        f"{hostile.server.url}{BULK}", data=body,
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}, timeout=300,
    )  # fmt: skip
    assert response.status_code == 413, response.text
    assert f"{MAX_POINTS} points" in response.json()["error"]["message"]


def test_a_10kb_metric_key_is_refused_naming_the_limit(
    hostile: Hostile, memory_before: tuple[int, int]
) -> None:
    batch = MetricBatch()
    batch.append(hostile.logged.parent_run_id, "k" * 10_000, 0, 1.0, 0)
    batch.append(hostile.logged.parent_run_id, "hostile/beside-a-long-key", 0, 2.0, 0)
    response = requests.post(
        f"{hostile.server.url}{BULK}", data=encode_batch(batch),
        headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}, timeout=60,
    )  # fmt: skip
    # The key is left out and counted by a reason naming the limit; its neighbour is stored.
    assert response.status_code == 200, response.text
    assert response.json()["stored"] == 1
    assert response.json()["refused"] == {"metric key longer than 250 characters": 1}
    health = requests.get(f"{hostile.server.url}/health", timeout=60).json()
    assert health["refused"]["metrics"]["metric key longer than 250 characters"] >= 1
    long_key = requests.get(
        f"{hostile.server.url}{hostile.run_path}/metrics", params={"keys": "k" * 10_000},
        timeout=60,
    )  # fmt: skip
    assert long_key.status_code == 400 and long_key.json()["error"]["message"]


@pytest.mark.parametrize(
    "document",
    [
        {"run": [0], "key": [0], "step": [2**70], "value": [1.0], "timestamp": [0]},
        {"run": [0], "key": [0], "step": [0], "value": [10**400], "timestamp": [0]},
        {"run": [0], "key": [0], "step": [0], "value": [1.0], "timestamp": [2**64]},
        {"run": [-1], "key": [0], "step": [0], "value": [1.0], "timestamp": [0]},
        {"run": [0], "key": [True], "step": [0], "value": [1.0], "timestamp": [0]},
    ],
    ids=["huge-step", "huge-value", "huge-timestamp", "negative-index", "bool-index"],
)
def test_out_of_range_numbers_in_a_batch_are_a_400(hostile: Hostile, document: dict) -> None:  # type: ignore[type-arg]
    body = {"format": "synergos.metrics/1", "runs": [hostile.logged.parent_run_id],
            "keys": ["train/loss"], **document}  # fmt: skip
    response = requests.post(
        f"{hostile.server.url}{BULK}", data=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Encoding": "gzip"}, timeout=60,
    )  # fmt: skip
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "INVALID_VALUE"


def _packed(typecode: str, values: list[float] | list[int]) -> str:
    column = array(typecode, values)
    if sys.byteorder != "little":
        column.byteswap()
    return base64.b64encode(column.tobytes()).decode()


def _v2_document(run_id: str, **fields: object) -> dict[str, object]:
    """A one-point format 2 batch with ``fields`` replaced."""
    document: dict[str, object] = {
        "format": "synergos.metrics/2", "points": 1, "runs": [run_id], "keys": ["train/loss"],
        "run": _packed("I", [0]), "key": _packed("I", [0]), "step": _packed("q", [0]),
        "value": _packed("d", [1.0]), "timestamp": _packed("q", [0]),
    }  # fmt: skip
    document.update(fields)
    return document


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"run": _packed("I", [1])}, 400, "index outside 'runs'"),
        ({"key": _packed("I", [7])}, 400, "index outside 'keys'"),
        ({"timestamp": _packed("q", [-1])}, 400, "negative timestamp"),
        ({"step": "not base64!"}, 400, "'step' must be base64 of 1 entries of 8 bytes"),
        ({"value": "@@@@@@@@@@@@"}, 400, "'value' is not base64"),
        ({"points": 2}, 400, "'run' must be base64 of 2 entries of 4 bytes"),
        ({"points": -1}, 400, "'points' must be a count"),
        ({"points": True}, 400, "'points' must be a count"),
        ({"points": MAX_POINTS + 1}, 413, f"{MAX_POINTS} points"),
        ({"runs": [7]}, 400, "must hold strings"),
        ({"format": "synergos.metrics/9"}, 400, "format 'synergos.metrics/2'"),
    ],
    ids=[
        "run-index",
        "key-index",
        "negative-timestamp",
        "step-length",
        "value-alphabet",
        "points-mismatch",
        "points-negative",
        "points-bool",
        "points-too-many",
        "run-not-text",
        "unknown-format",
    ],  # fmt: skip
)
def test_a_malformed_binary_batch_is_refused_naming_the_field(
    hostile: Hostile, fields: dict[str, object], status: int, message: str
) -> None:
    body = _v2_document(hostile.logged.parent_run_id, **fields)
    before = requests.get(f"{hostile.server.url}{hostile.run_path}/metrics", timeout=60).json()
    response = requests.post(
        f"{hostile.server.url}{BULK}", data=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Encoding": "gzip"}, timeout=60,
    )  # fmt: skip
    assert response.status_code == status, response.text
    assert message in response.json()["error"]["message"]
    after = requests.get(f"{hostile.server.url}{hostile.run_path}/metrics", timeout=60).json()
    assert after == before


def test_resolve_with_10kb_ids_is_refused_as_json(hostile: Hostile) -> None:
    response = requests.post(
        f"{hostile.server.url}{API}/runs/resolve",
        json={"collaboration": "c" * 10_000, "project": "p", "experiment": "e", "run": "r"},
        timeout=60,
    )
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["error"]["message"]


def test_the_worker_memory_did_not_blow_up(
    hostile: Hostile, memory_before: tuple[int, int]
) -> None:
    """Runs after the oversized requests (file order): peak RSS of the worker stayed bounded."""
    pid, before_kb = memory_before
    peak_kb = _status_kb(pid, "VmHWM")
    assert pid == worker_pid(hostile.server)
    assert (peak_kb - before_kb) < 500 * 1024, (before_kb, peak_kb)


# -- Host header and CORS ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/synergos/v1/collaborations", "/api/synergos/v1/openapi.json", "/synergos/",
     "/synergos/static/js/main.js", "/api/2.0/mlflow/experiments/search?max_results=1", "/"],
)  # fmt: skip
def test_a_foreign_host_header_is_refused_everywhere(hostile: Hostile, path: str) -> None:
    status, _, body = raw_request(
        hostile.server.port, "GET", path, headers={"Host": "evil.example.com"}
    )
    assert status == 403, (path, body[:200])
    assert b"synergos" not in body.lower() or b"Invalid Host" in body
    ok, _, _ = raw_request(hostile.server.port, "GET", path)
    assert ok == 200, path


def test_a_foreign_origin_cannot_write_through_the_api(hostile: Hostile) -> None:
    body = json.dumps({"collaboration": "cors", "project": "p", "experiment": "e", "run": "r"})
    status, _, answer = raw_request(
        hostile.server.port, "POST", f"{API}/runs/resolve",
        headers={"Origin": "https://evil.example.com", "Content-Type": "application/json"},
        body=body.encode(),
    )  # fmt: skip
    assert status == 403, answer
    assert MlflowClient(hostile.server.url).get_experiment_by_name("cors/p/e") is None


def test_serve_keeps_the_protections_on_whatever_the_environment_says(
    tmp_path: Path,
) -> None:
    server = start_server(
        tmp_path / "store", env={"MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE": "true"}
    )
    try:
        status, _, _ = raw_request(
            server.port, "GET", f"{API}/collaborations", headers={"Host": "evil.example.com"}
        )
        assert status == 403
    finally:
        server.stop()


def test_allowed_hosts_and_origins_admit_the_portal(tmp_path: Path) -> None:
    server = start_server(
        tmp_path / "store",
        extra=["--allowed-hosts", "mlops.example.org,127.0.0.1:*,localhost:*",
               "--cors-allowed-origins", "https://portal.example.org",
               "--x-frame-options", "NONE"],
    )  # fmt: skip
    try:
        port = server.port
        status, headers, _ = raw_request(
            port, "GET", "/synergos/", headers={"Host": "mlops.example.org"}
        )
        assert status == 200 and "x-frame-options" not in {k.lower() for k in headers}
        status, _, _ = raw_request(port, "GET", "/synergos/", headers={"Host": "evil.example"})
        assert status == 403
        body = json.dumps({"collaboration": "portal", "project": "p", "experiment": "e",
                           "run": "r"}).encode()  # fmt: skip
        for origin, expected in (
            ("https://portal.example.org", 200),
            ("https://evil.example", 403),
        ):
            status, headers, _ = raw_request(
                port, "POST", f"{API}/runs/resolve", body=body,
                headers={"Origin": origin, "Content-Type": "application/json"},
            )  # fmt: skip
            assert status == expected, origin
    finally:
        server.stop()


def test_secret_never_appeared_in_the_server_log(hostile: Hostile) -> None:
    assert SECRET not in hostile.server.output()
    assert os.path.exists(hostile.secret)
