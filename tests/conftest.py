"""Shared fixtures: real `synmlops serve` processes on free ports, temporary stores."""

from __future__ import annotations

import gc
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests
from hypothesis import settings

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# What commands keep in the user's cache (ingest's no-op manifests for URLs) stays in the run's
# own folder, never the real ~/.cache.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="synmlops-tests-cache-")
# The demo paces its rounds so its Hardware tab fills (docs/demo.md): the tests that read its
# hardware samples ask for that pace; the others train flat out.
os.environ["SYNMLOPS_DEMO_ROUND_SECONDS"] = "0"
# Hypothesis: bounded in the test suite; HYPOTHESIS_PROFILE=fuzz searches far longer.
settings.register_profile("default", max_examples=25, deadline=None)
settings.register_profile("fuzz", max_examples=2000, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
SYNMLOPS = [sys.executable, "-m", "synergos_mlops"]


def wait_for(check: Callable[[], object], timeout: float = 60.0) -> object:
    """The first truthy answer of ``check`` within ``timeout`` seconds, else its last answer
    (how soon is measured by make bench, not here)."""
    deadline = time.monotonic() + timeout
    while True:
        answer = check()
        if answer or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


#: pytest-xdist's worker ("gw0", "gw1", ...; "" when the run is serial).
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
#: Under xdist each worker takes ports from its own block below Linux's ephemeral range
#: (32768-60999), so two workers never pick the same port between a probe and a server's
#: bind, and no outgoing connection takes one either. A serial run asks the kernel.
PORT_BLOCK = 1000
_PORT_BASE = 20000
_next_port = [0]


def free_port() -> int:
    if not WORKER.removeprefix("gw").isdigit():
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            return int(probe.getsockname()[1])
    first = _PORT_BASE + (int(WORKER.removeprefix("gw")) % 12) * PORT_BLOCK
    for _ in range(PORT_BLOCK):
        port = first + _next_port[0] % PORT_BLOCK
        _next_port[0] += 1
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:  # taken, or still in TIME_WAIT from an earlier test
                continue
            return port
    raise RuntimeError(f"no free port in {first}-{first + PORT_BLOCK - 1} for worker {WORKER}")


#: What makes a test start real processes (a server, the CLI, Chromium, an S3 server, Ray),
#: found in its source or in the source of a fixture it uses. Those tests are marked
#: ``process``; ``make test-fast`` runs the others (``-m "not process"``).
_PROCESS_WORDS = (
    "start_server", "Popen", "subprocess.", "SYNMLOPS", "run_cli(", "sync_playwright",
    "s3_server", "ray.init", "legacy_ttp", "ProcessPoolExecutor",
)  # fmt: skip


def _starts_processes(item: pytest.Item) -> bool:
    """True when the test, a fixture it uses or a helper of this folder they call (at any
    depth) names one of :data:`_PROCESS_WORDS`."""
    import inspect
    import re

    here = str(Path(__file__).parent)
    pending = [getattr(item, "function", None)]
    fixture_info = getattr(item, "_fixtureinfo", None)
    if fixture_info is not None:
        for definitions in fixture_info.name2fixturedefs.values():
            pending += [definition.func for definition in definitions]
    seen: set[object] = set()
    while pending:
        function = pending.pop()
        code = getattr(function, "__code__", None)
        if code is None or function in seen or not code.co_filename.startswith(here):
            continue
        seen.add(function)
        try:
            source = inspect.getsource(function)  # type: ignore[arg-type]
        except (OSError, TypeError):
            continue
        if any(word in source for word in _PROCESS_WORDS):
            return True
        names = getattr(function, "__globals__", {})
        pending += [names[name] for name in set(re.findall(r"\b\w+\b", source)) if name in names]
    return False


#: Seconds each test module took in a recorded run (SYNMLOPS_RECORD_DURATIONS): make test
#: starts the longest first, so that no long module is left to run alone at the end.
DURATIONS = Path(__file__).with_name("durations.json")


def _module(nodeid: str) -> str:
    return nodeid.split("::", 1)[0]


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests that start processes, and order the modules longest first: pytest-xdist
    (``--dist loadfile --no-loadscope-reorder``) hands whole modules out in this order."""
    for item in items:
        if _starts_processes(item):
            item.add_marker(pytest.mark.process)
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(_module(item.nodeid), []).append(item)
    try:
        known = {str(k): float(v) for k, v in json.loads(DURATIONS.read_text()).items()}
    except (OSError, ValueError, AttributeError):
        known = {}
    unknown = sorted(known.values())[len(known) // 2] if known else 0.0  # a new module: median
    order = sorted(modules, key=lambda module: -known.get(module, unknown))  # stable
    items[:] = [item for module in order for item in modules[module]]


_RECORDED: dict[str, float] = {}
_RECORDED_CPU: dict[str, float] = {}
_CPU_START = pytest.StashKey[float]()


def _cpu_seconds() -> float:
    """CPU of this process and of the children it has reaped (servers, commands, browsers)."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item) -> Iterator[None]:
    item.stash[_CPU_START] = _cpu_seconds()
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With SYNMLOPS_RECORD_DURATIONS set, the teardown report carries the CPU the test used."""
    if call.when == "teardown" and os.environ.get("SYNMLOPS_RECORD_DURATIONS"):
        used = _cpu_seconds() - item.stash.get(_CPU_START, _cpu_seconds())
        item.user_properties.append(("cpu_seconds", used))
    yield


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """With SYNMLOPS_RECORD_DURATIONS set, add each test's time (and CPU) to its module's."""
    if os.environ.get("SYNMLOPS_RECORD_DURATIONS"):
        module = _module(report.nodeid)
        _RECORDED[module] = _RECORDED.get(module, 0.0) + report.duration
        for name, value in report.user_properties:
            if name == "cpu_seconds":
                _RECORDED_CPU[module] = _RECORDED_CPU.get(module, 0.0) + float(value)


def _write_by_module(path: Path, seconds: dict[str, float]) -> None:
    ordered = dict(sorted(((k, round(v, 1)) for k, v in seconds.items()), key=lambda kv: -kv[1]))
    path.write_text(json.dumps(ordered, indent=1) + "\n")


def pytest_sessionfinish(session: pytest.Session) -> None:
    """With SYNMLOPS_RECORD_DURATIONS=FILE, write the modules' times there, and the CPU their
    processes used beside it (FILE with ``.cpu.json``), in the controller, which sees every
    worker's reports."""
    target = os.environ.get("SYNMLOPS_RECORD_DURATIONS")
    if target and _RECORDED and not hasattr(session.config, "workerinput"):
        _write_by_module(Path(target), _RECORDED)
        if _RECORDED_CPU:
            _write_by_module(Path(target).with_suffix(".cpu.json"), _RECORDED_CPU)


@dataclass
class Server:
    """A running `synmlops serve` child process."""

    url: str
    port: int
    store: Path
    process: subprocess.Popen[bytes]
    log: Path
    args: list[str] = field(default_factory=list)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _die_with_pytest() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG


def die_with_pytest() -> Callable[[], None] | None:
    """``preexec_fn`` for a test's server: Linux sends it SIGTERM when this pytest process
    dies, even by SIGKILL, and ``synmlops serve`` then stops its whole process group. Only from
    the main thread: a ``preexec_fn`` is unsafe while other threads run (a server restarted
    from a test's thread goes without it)."""
    import threading

    return _die_with_pytest if threading.current_thread() is threading.main_thread() else None


def start_server(
    store: Path,
    *,
    port: int | None = None,
    workers: int = 1,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
    port_option: bool = True,
    drop_env: tuple[str, ...] = (),
    url: str | None = None,
    verify: bool | str = True,
    timeout: float = 240,
) -> Server:
    """Start `synmlops serve` and wait until it is healthy and has printed its URL.

    With ``port_option=False`` the port is not passed on the command line (the caller sets
    it another way, e.g. GUNICORN_CMD_ARGS) but is still where the server is awaited.
    ``drop_env`` names variables the server must not inherit; ``url`` and ``verify`` are for
    a server awaited over HTTPS (``url="https://localhost:PORT"``, ``verify=<cert path>``).
    """
    port = port or free_port()
    log = store.parent / f"serve-{port}.log"
    args = [*SYNMLOPS, "serve", "--store", str(store), "--workers", str(workers),
            *(["--port", str(port)] if port_option else []), *(extra or [])]  # fmt: skip
    inherited = {k: v for k, v in os.environ.items() if k not in drop_env}
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, stdout=out, stderr=subprocess.STDOUT, env={**inherited, **(env or {})},
            preexec_fn=die_with_pytest(),
        )  # fmt: skip
    server = Server(url or f"http://127.0.0.1:{port}", port, store, process, log, args)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"synmlops serve exited: {server.output()[-3000:]}")
        try:
            response = requests.get(f"{server.url}/health", timeout=2, verify=verify)
            healthy = response.status_code == 200
            # The serve process prints its URL once healthy; wait for that too.
            if healthy and "is serving" in server.output():
                # The attempts' sockets that failed mid-handshake sit in reference cycles:
                # closed now, not at the next collection (an HTTPS server would wait for them).
                gc.collect()
                return server
        except requests.RequestException:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"synmlops serve did not become healthy: {server.output()[-3000:]}")


def start_server_command(
    command: list[str], *, port: int, store: Path, env: dict[str, str], timeout: float = 240
) -> Server:
    """Run a given server command line (e.g. the Dockerfile's CMD) and wait until it serves."""
    import shutil

    executable = shutil.which(command[0], path=str(Path(sys.executable).parent))
    assert executable, f"{command[0]} is not installed next to {sys.executable}"
    store.parent.mkdir(parents=True, exist_ok=True)
    log = store.parent / f"command-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [executable, *command[1:]], stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **env}, preexec_fn=die_with_pytest(),
        )  # fmt: skip
    server = Server(f"http://127.0.0.1:{port}", port, store, process, log, command)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{command} exited: {server.output()[-3000:]}")
        if "is serving" in server.output():
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"{command} did not start: {server.output()[-3000:]}")


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start servers on demand; every one is stopped at the end of the test."""
    started: list[Server] = []

    def factory(store: Path | None = None, **kwargs: object) -> Server:
        server = start_server(store or tmp_path / "store", **kwargs)  # type: ignore[arg-type]
        started.append(server)
        return server

    yield factory
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def shared_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One server for the whole session, for tests that only add their own data."""
    server = start_server(tmp_path_factory.mktemp("shared") / "store", workers=2)
    yield server
    server.stop()


@pytest.fixture
def postgres_uri(request: pytest.FixtureRequest) -> Iterator[str]:
    """A new, empty PostgreSQL database on the machine's server, dropped afterwards."""
    from tracking_support import create_pg_database, drop_pg_database

    uri = create_pg_database(f"synmlops_{request.node.module.__name__.removeprefix('test_')}")
    yield uri
    drop_pg_database(uri)


@pytest.fixture(scope="session")
def postgres_store_template() -> Iterator[str]:
    """A PostgreSQL database holding MLflow's tables and ours, built once by the migrations
    (no rows), for ``sql_store`` to copy: a migration costs 2 s, a copy a fraction of it."""
    from mlflow.store.db.utils import _initialize_tables
    from sqlalchemy import create_engine
    from tracking_support import create_pg_database, drop_pg_database

    from synergos_mlops.storage.schema import upgrade_ours

    uri = create_pg_database("synmlops_template")
    engine = create_engine(uri)
    try:
        _initialize_tables(engine)
        upgrade_ours(engine)
    finally:
        engine.dispose()  # a template takes no copy while anyone is connected to it
    yield uri.rsplit("/", 1)[1]
    drop_pg_database(uri)


@pytest.fixture(params=["sqlite", "postgresql"])
def sql_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[object]:
    """MLflow's SqlAlchemyStore on a new SQLite file, then on a new PostgreSQL database, each
    created with MLflow's tables and ours as serve and the tracker create them."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from tracking_support import create_pg_database, drop_pg_database

    uri = None
    if request.param == "sqlite":
        from synergos_mlops.storage.new_store import create_sqlite_store

        create_sqlite_store(tmp_path / "mlflow.db")
        database = f"sqlite:///{tmp_path / 'mlflow.db'}"
    else:
        template = request.getfixturevalue("postgres_store_template")
        uri = database = create_pg_database("synmlops_store", template=template)
    store = SqlAlchemyStore(database, str(tmp_path / "artifacts"))
    yield store
    store.engine.dispose()
    if uri is not None:
        drop_pg_database(uri)


@pytest.fixture
def s3(tmp_path: Path) -> Iterator[object]:
    """An S3-compatible server (moto) on a free loopback port, with no bucket yet."""
    from cluster_support import s3_server

    with s3_server(tmp_path) as server:
        yield server


#: Debian's Chromium, which .ci/run installs; Playwright drives it (no browser download).
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Chromium for the page tests of one module; a missing browser is a failure."""
    if not os.path.exists(CHROMIUM):
        raise RuntimeError(f"{CHROMIUM} is missing: apt-get install chromium")
    from playwright.sync_api import sync_playwright

    manager = sync_playwright().start()
    try:
        launched = manager.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    except BaseException:
        manager.stop()
        raise
    yield launched
    launched.close()
    manager.stop()
