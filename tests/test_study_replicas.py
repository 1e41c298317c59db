"""Two `synmlops serve` replicas on one PostgreSQL + S3 serve one study, and one of them is
SIGKILLed in the middle of it: nothing a replica keeps in memory is needed by the other.

The replicas stand behind a load balancer, as in a real Cluster deployment: every tracker
knows one URL (the balancer's), the balancer hands each new connection to the next replica
that accepts one, and stops sending to a replica that refuses connections. So when a replica
dies, the requests it was serving fail, the trackers retry them (their points wait in their
spool, which is keyed by that one URL) and the retries reach the surviving replica; nothing
is pointed anywhere by hand. Afterwards the killed replica is started again on its port (what
a supervisor would do) and, with nothing in its memory, must answer the study exactly as the
replica that served everything after the kill.

What was stored is read straight from MLflow's ``metrics`` table, so a point lost or stored
twice cannot hide behind an API.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from cluster_support import S3Server, stored_points
from conftest import Server, free_port, start_server

from synergos_mlops import FederatedTracker, TrackerConfig

BUCKET = "synergos-replicas"
IDS = ("replicas", "tuning", "fedavg")
STUDY = "lr search"
SPACE = {
    "lr": {"_type": "loguniform", "_value": [1e-5, 1.0]},
    "mu": {"_type": "choice", "_value": [0.0, 0.1]},
}
TRIALS = 16
PARTICIPANTS = [f"hospital_{i}" for i in range(4)]
ROUNDS = 4
KEYS = ["evaluate/accuracy", "evaluate/loss", "train/loss"]
PACE = 0.4  # seconds between rounds, so trials are in flight when the replica dies
KILL_AFTER = 6  # trials started before the kill


def hyperparameters(trial: int) -> dict[str, float]:
    """lr from 1e-4 to 1e-1 in 16 log steps; trial 10 has lr = 0.01 exactly (the best)."""
    return {"lr": 10 ** (-4 + 3 * trial / 15), "mu": 0.1 * (trial % 2)}


def value(trial: int, participant: int, key: int, step: int) -> float:
    """What a trial logs; participant -1 is the global run. Accuracy peaks at lr = 0.01."""
    accuracy = 0.9 - abs(math.log10(hyperparameters(trial)["lr"]) + 2) * 0.1
    base = accuracy if key == 0 else 1.0 - accuracy
    return round(base - 0.01 * (participant + 1) + 0.001 * step + 0.0001 * key, 9)


class Balancer:
    """A TCP load balancer on a free loopback port: each new connection goes to the next
    replica in turn that accepts it (a refused connect means the replica is down: the next
    one is tried). Counts the connections each replica was given."""

    def __init__(self, ports: list[int]) -> None:
        self.ports = ports
        self.port = free_port()
        self.given = {port: 0 for port in ports}
        self._turn = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _backend(self) -> socket.socket | None:
        with self._lock:
            start, self._turn = self._turn, self._turn + 1
        for offset in range(len(self.ports)):
            port = self.ports[(start + offset) % len(self.ports)]
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
            upstream.settimeout(None)
            with self._lock:
                self.given[port] += 1
            return upstream
        return None

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = self._backend()
            if upstream is None:
                client.close()
                continue
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        for end in (source, sink):  # one side gone: the connection is over for both
            with contextlib.suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()


def process_tree(root: int) -> list[int]:
    """``root`` and every process descended from it (the serve command, uvicorn's
    supervisor and its workers)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        tree += frontier
    return tree


def run_trial(url: str, trial: int, spool: Path, started: threading.Semaphore) -> dict[str, Any]:
    """One trial as a Director's worker runs it: its own tracker, the study found (not
    redefined), a numbered trial, rounds of every participant's and the global values."""
    config = TrackerConfig(
        spool_dir=spool, flush_interval=0.2, flush_timeout=180, connect_timeout=180,
        request_timeout=30, retry_interval=0.2,
    )  # fmt: skip
    tracker = FederatedTracker(url, config)
    study = tracker.study(*IDS, STUDY, SPACE, "evaluate/accuracy", "maximize")
    with study.trial(hyperparameters(trial), participants=PARTICIPANTS) as run:
        started.release()
        for step in range(ROUNDS):
            run.log_metrics({k: value(trial, -1, i, step) for i, k in enumerate(KEYS)}, step=step)
            for p, participant in enumerate(PARTICIPANTS):
                values = {k: value(trial, p, i, step) for i, k in enumerate(KEYS)}
                run.log_metrics(values, step=step, participant=participant)
            time.sleep(PACE)
        flushed = run.flush()
    tracker.close()
    return {
        "trial": trial, "run": run.run, "number": run.number, "run_id": run.run_id,
        "participants": [run.participant_run_id(p) for p in PARTICIPANTS],
        "flushed": flushed, "retries": tracker.retries,
    }  # fmt: skip


@pytest.fixture
def s3(s3: S3Server) -> S3Server:
    s3.create_bucket(BUCKET)
    return s3


def test_two_replicas_serve_one_study_and_lose_nothing_when_one_is_killed(
    tmp_path: Path,
    server_factory: Callable[..., Server],
    postgres_uri: str,
    s3: S3Server,
) -> None:
    began = time.monotonic()
    for replica in ("a", "b", "a2"):
        (tmp_path / replica).mkdir()
    options = {
        "workers": 1,
        "extra": ["--backend-store-uri", postgres_uri,
                  "--artifacts-destination", f"s3://{BUCKET}/mlops"],
        "env": s3.env,
    }  # fmt: skip
    victim = server_factory(tmp_path / "a" / "store", **options)
    survivor = server_factory(tmp_path / "b" / "store", **options)
    balancer = Balancer([victim.port, survivor.port])
    try:
        with FederatedTracker(balancer.url, TrackerConfig(spool_dir=tmp_path / "define")) as t:
            t.study(*IDS, STUDY, SPACE, "evaluate/accuracy", "maximize")

        started = threading.Semaphore(0)
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [
                pool.submit(run_trial, balancer.url, i, tmp_path / f"spool-{i}", started)
                for i in range(TRIALS)
            ]
            for _ in range(KILL_AFTER):
                assert started.acquire(timeout=180), "trials did not start"
            served_before_kill = dict(balancer.given)
            for pid in process_tree(victim.process.pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            victim.process.wait(timeout=30)
            killed_at = time.monotonic()
            reports = [future.result(timeout=600) for future in futures]
        after_kill = time.monotonic() - killed_at
    finally:
        balancer.close()
    assert all(count > 0 for count in served_before_kill.values()), served_before_kill

    # Every point of every trial reached the database once, with the value logged.
    assert all(r["flushed"] for r in reports), [r["trial"] for r in reports if not r["flushed"]]
    expected: dict[tuple[str, str, int], float] = {}
    for r in reports:
        for p, run_id in enumerate([r["run_id"], *r["participants"]], start=-1):
            for i, key in enumerate(KEYS):
                for step in range(ROUNDS):
                    expected[(run_id, key, step)] = value(r["trial"], p, i, step)
    stored = stored_points(postgres_uri, sorted({run for run, _, _ in expected}))
    twice = {point: values for point, values in stored.items() if len(values) != 1}
    assert not twice, f"{len(twice)} points stored more than once"
    assert stored.keys() == expected.keys(), (
        f"{len(expected.keys() - stored.keys())} missing, "
        f"{len(stored.keys() - expected.keys())} unexpected"
    )
    wrong = [p for p, v in expected.items() if abs(stored[p][0] - v) > 1e-9]
    assert not wrong, f"{len(wrong)} points hold another value, e.g. {wrong[:3]}"

    # One number per trial, 1..16, whichever replica numbered it.
    numbers = sorted(r["number"] for r in reports)
    assert numbers == list(range(1, TRIALS + 1)), numbers

    # The killed replica, started again on its port with nothing in memory, answers the
    # study exactly as the survivor does.
    restarted = start_server(tmp_path / "a2" / "store", port=victim.port, **options)  # type: ignore[arg-type]
    try:
        path = "/api/synergos/v1/studies/" + "/".join(quote(x, safe="") for x in (*IDS, STUDY))
        answers = [requests.get(s.url + path, timeout=120) for s in (restarted, survivor)]
    finally:
        restarted.stop()
    assert [a.status_code for a in answers] == [200, 200], [a.text for a in answers]
    study, other = (a.json() for a in answers)
    assert study == other
    trials = {t["run"]: t for t in study["trials"]}
    assert trials.keys() == {r["run"] for r in reports}
    assert sorted(t["number"] for t in study["trials"]) == numbers
    assert study["counts"].get("FINISHED") == TRIALS, study["counts"]
    for r in reports:
        assert trials[r["run"]]["number"] == r["number"]
        assert trials[r["run"]]["value"] == pytest.approx(value(r["trial"], -1, 0, ROUNDS - 1))
    best = next(r for r in reports if r["trial"] == 10)
    assert (study["best"]["run"], study["best"]["number"]) == (best["run"], best["number"])

    # A trial request whose answer is lost is sent again, perhaps to the other replica: it
    # carries the tracker's request id, so the retry finds the trial the first try numbered.
    body = {**dict(zip(("collaboration", "project", "experiment"), IDS, strict=True)),
            "study": STUDY, "participants": PARTICIPANTS, "request": "lost-answer"}  # fmt: skip
    resolve = f"{survivor.url}/api/synergos/v1/studies/trials/resolve"
    first, retried = (requests.post(resolve, json=body, timeout=120).json() for _ in range(2))
    assert (retried["run"], retried["number"]) == (first["run"], first["number"]) == (
        f"{STUDY}_run_{TRIALS + 1}", TRIALS + 1,
    )  # fmt: skip

    print(
        f"\n[replicas] connections before the kill {served_before_kill}; trials ended "
        f"{after_kill:.0f} s after it; retries {sum(r['retries'] for r in reports)}; "
        f"{len(expected)} points stored once; {time.monotonic() - began:.0f} s in all"
    )
