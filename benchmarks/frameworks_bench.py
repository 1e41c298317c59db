"""What SynergosStrategy's logging costs a Flower round, and how fast its points reach the store
(``make bench`` runs it in .venv-fl; alone: ``PYTHONPATH=src .venv-fl/bin/python -m
benchmarks.frameworks_bench [--clients 100] [--metrics 20] [--rounds 20]``).

Flower's own loop (``Strategy.start``) runs FedAvg over an in-process grid whose clients reply
at once with synthetic records (``--metrics`` values, ``num-examples`` and ``partition-id``,
and a small model), so what is measured is the server's side only: FedAvg alone, then FedAvg
wrapped in SynergosStrategy logging into ``synmlops serve --workers 2`` (started from .venv,
on SQLite). A round's time is taken by the grid between two rounds' training sends. Points
reaching the store are counted in the server's database after ``start`` returns (the run's
end waits until every point is stored). The wrapper's own time on Flower's thread (its hooks
less the wrapped strategy's) is timed apart: the hand-off, what logging costs the round's
path; the rest of the difference between the two rounds is the logging thread, the tracker's
sender and the server competing for the same CPUs. Written to
``benchmarks/frameworks_results.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import requests
from flwr.app import ArrayRecord, Message, MetricRecord, RecordDict
from flwr.app.message.message import make_message
from flwr.app.metadata import Metadata
from flwr.serverapp import Grid
from flwr.serverapp.strategy import FedAvg
from flwr.supercore.run import Run
from flwr.supercore.task_identity import TaskIdentity

from benchmarks._servers import free_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "frameworks_results.md"
RUN_ID = 7


class SyntheticGrid(Grid):
    """Every node answers at once: train with a small model and ``metrics`` values, evaluate
    with the values alone; the time of each training send is kept."""

    def __init__(self, clients: int, metrics: int) -> None:
        self._nodes = list(range(1000, 1000 + clients))
        self._metrics = metrics
        self._run = Run.create_empty(RUN_ID)
        self.train_sends: list[float] = []
        self.train_cpu: list[float] = []  # this process's CPU time (every thread) at each send
        self.server: Any = None  # ServerCPU, when a server is watched
        self.server_cpu: list[float] = []  # its CPU time at each send
        self.logging_cpu: list[float] = []  # the logging and sending threads' CPU time, each send
        rng = np.random.default_rng(0)
        self._values = rng.random((clients, metrics))

    def set_run(self, run: Run) -> None:
        self._run = run

    @property
    def run(self) -> Run:
        return self._run

    def create_message(self, *args: Any, **kwargs: Any) -> Message:
        raise NotImplementedError

    def get_node_ids(self) -> Iterable[int]:
        return list(self._nodes)

    def push_messages(self, messages: Iterable[Message]) -> Iterable[str]:
        raise NotImplementedError

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Message]:
        raise NotImplementedError

    def send_and_receive(self, messages: Iterable[Message], *, timeout: float | None = None
                         ) -> Iterable[Message]:  # fmt: skip
        replies = []
        for message in messages:
            node = message.metadata.dst_node_id
            index = node - 1000
            kind = message.metadata.message_type
            if kind.startswith("train") and not replies:
                self.train_sends.append(time.perf_counter())
                self.train_cpu.append(time.process_time())
                self.logging_cpu.append(logging_threads_cpu())
                if self.server is not None:
                    self.server_cpu.append(self.server.seconds())
            values: dict[str, Any] = {
                f"m{k}": float(self._values[index, k]) for k in range(self._metrics)
            }
            values.update({"num-examples": 50 + index, "partition-id": index})
            content = RecordDict({"metrics": MetricRecord(values)})
            if kind.startswith("train"):
                content["arrays"] = ArrayRecord([np.full(10, index, dtype=np.float64)])
            metadata = Metadata(
                run_id=RUN_ID, message_id=f"{node}-{time.perf_counter_ns()}", src_node_id=node,
                dst_node_id=0, reply_to_message_id=message.metadata.message_id, group_id="",
                created_at=time.time(), ttl=3600.0, message_type=kind,
            )  # fmt: skip
            replies.append(make_message(metadata, content))
        return replies


def start_server(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    python = ROOT / ".venv" / "bin" / "python"
    port = free_port()
    log = (folder / "serve.log").open("wb")
    process = subprocess.Popen(
        [str(python if python.exists() else sys.executable), "-m", "synergos_mlops", "serve",
         "--store", str(folder / "store"), "--port", str(port), "--workers", "2"],
        stdout=log, stderr=subprocess.STDOUT,
        env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}/health", timeout=2).status_code == 200:
                return process, url
        except requests.RequestException:
            time.sleep(0.3)
    process.kill()
    raise RuntimeError("synmlops serve did not become healthy")


HOOKS = ("configure_train", "aggregate_train", "configure_evaluate", "aggregate_evaluate")


def timed(strategy: Any, spent: list[float]) -> None:
    """Add the time each of ``strategy``'s hooks takes to ``spent[0]`` (wall) and the CPU time
    of the calling thread to ``spent[1]``."""
    for name in HOOKS:
        method = getattr(strategy, name)

        def call(*args: Any, _method: Any = method, **kwargs: Any) -> Any:
            began, cpu = time.perf_counter(), time.thread_time()
            try:
                return _method(*args, **kwargs)
            finally:
                spent[0] += time.perf_counter() - began
                spent[1] += time.thread_time() - cpu

        setattr(strategy, name, call)


def federate(
    strategy: Any, clients: int, metrics: int, rounds: int, server: ServerCPU | None = None
) -> tuple[list[float], list[float], float, float, float]:
    """Per-round times (s), this process's CPU time per round (s, every thread), the whole
    ``start`` (s), and the server's and the logging threads' CPU seconds a round from round 2
    on (means: their work comes in batches, a flush interval apart)."""
    grid = SyntheticGrid(clients, metrics)
    grid.server = server
    began = time.perf_counter()
    strategy.start(grid=grid, initial_arrays=ArrayRecord([np.zeros(10)]), num_rounds=rounds)
    total = time.perf_counter() - began
    sends, cpu = grid.train_sends, grid.train_cpu
    if server is not None:  # what asking the server's CPU cost this process, a round
        cpu = [c - server.own * i / len(cpu) for i, c in enumerate(cpu)]

    def mean(samples: list[float]) -> float:
        return (samples[-1] - samples[1]) / (len(samples) - 2)

    return (
        [b - a for a, b in zip(sends, sends[1:], strict=False)],
        [b - a for a, b in zip(cpu, cpu[1:], strict=False)],
        total,
        mean(grid.server_cpu) if server else 0.0,
        mean(grid.logging_cpu),
    )


def logging_threads_cpu() -> float:
    """CPU seconds so far of this process's logging threads: the wrapper's logging thread
    and the tracker's senders (their names start with ``synergos``)."""
    import threading

    total = 0.0
    for thread in threading.enumerate():
        if thread.name.startswith("synergos") and thread.ident is not None:
            try:
                total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
            except OSError:  # it ended meanwhile
                continue
    return total


class ServerCPU:
    """CPU seconds (user + system) of the server's process tree so far; the time this process
    spends asking is kept apart (``own``), so it is not counted as logging's."""

    def __init__(self, pid: int) -> None:
        import psutil

        root = psutil.Process(pid)
        self._processes = [root, *root.children(recursive=True)]
        self.own = 0.0

    def seconds(self) -> float:
        began = time.process_time()
        total = 0.0
        for process in self._processes:
            try:
                times = process.cpu_times()
            except Exception:  # noqa: BLE001 - a worker gone: its time is no longer counted
                continue
            total += times.user + times.system
        self.own += time.process_time() - began
        return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    import logging

    import flwr
    import mlflow

    from synergos_mlops.integrations.flower import SynergosStrategy
    from synergos_mlops.tracking import TrackerConfig

    logging.getLogger("flwr").setLevel(logging.WARNING)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = RUN_ID, 0, 0
    n = args.clients
    fedavg = {"min_train_nodes": n, "min_evaluate_nodes": n, "min_available_nodes": n}
    load_before = os.getloadavg()[0]

    plain_rounds, plain_cpu, plain_total, _, _ = federate(
        FedAvg(**fedavg), n, args.metrics, args.rounds
    )

    folder = Path(tempfile.mkdtemp(prefix="synmlops-frameworks-bench-"))
    process, url = start_server(folder)
    try:
        inner = FedAvg(**fedavg)
        strategy = SynergosStrategy(
            inner, tracking_uri=url, collaboration="bench", project="flower",
            experiment="synthetic", run="r1", config=TrackerConfig(spool_dir=folder / "spool"),
        )  # fmt: skip
        inner_spent, hooks_spent = [0.0, 0.0], [0.0, 0.0]
        timed(inner, inner_spent)
        timed(strategy, hooks_spent)
        wrapped_rounds, wrapped_cpu, wrapped_total, server_cpu, threads_cpu = federate(
            strategy, n, args.metrics, args.rounds, ServerCPU(process.pid)
        )
    finally:
        process.terminate()
        process.wait(timeout=60)
    with sqlite3.connect(folder / "store" / "mlflow.db") as db:
        (points,) = db.execute("SELECT count(*) FROM metrics").fetchone()
    expected = args.rounds * (2 * n * args.metrics + 2 * args.metrics + 9)

    hand_off = (hooks_spent[0] - inner_spent[0]) / args.rounds
    hand_off_cpu = (hooks_spent[1] - inner_spent[1]) / args.rounds
    plain = statistics.median(plain_rounds[1:])
    wrapped = statistics.median(wrapped_rounds[1:])
    # Means from round 2 on: the sender's work comes in batches, a flush interval apart.
    plain_round_cpu = statistics.mean(plain_cpu[1:])
    client_cpu = hand_off_cpu + threads_cpu
    logging_cpu = client_cpu + server_cpu
    lines = [
        "# Flower strategy wrapper: logging overhead",
        "",
        f"`python -m benchmarks.frameworks_bench --clients {n} --metrics {args.metrics} "
        f"--rounds {args.rounds}` in .venv-fl: FedAvg over {n} synthetic clients each "
        f"reporting {args.metrics} train and {args.metrics} evaluate metrics a round, alone "
        "and wrapped in SynergosStrategy logging into `synmlops serve --workers 2` (SQLite).",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, Flower "
        f"{flwr.__version__}, MLflow {mlflow.__version__}, "
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load average "
        f"{load_before:.1f} before, {os.getloadavg()[0]:.1f} after; a shared machine, so the "
        "figures are noisy.",
        "",
        "| | FedAvg alone | FedAvg in SynergosStrategy |",
        "| --- | ---: | ---: |",
        f"| round after the first, median | {plain * 1000:.1f} ms | {wrapped * 1000:.1f} ms |",
        f"| first round | {plain_rounds[0] * 1000:.1f} ms | {wrapped_rounds[0] * 1000:.1f} ms "
        f"(the {n} participants' runs are created then, in one request, on the wrapper's "
        "logging thread) |",
        f"| the wrapper's own hooks on Flower's thread, a round (hand-off): wall, CPU | | "
        f"{hand_off * 1000:.1f} ms, {hand_off_cpu * 1000:.1f} ms |",
        f"| slowest later round | {max(plain_rounds[1:]) * 1000:.1f} ms | "
        f"{max(wrapped_rounds[1:]) * 1000:.1f} ms |",
        f"| whole `start` ({args.rounds} rounds) | {plain_total:.2f} s | {wrapped_total:.2f} s "
        "(with the run's creation, the end that waits for every point, the model's "
        "registration) |",
        f"| CPU a round, mean from round 2 on: this process (every thread) | "
        f"{plain_round_cpu * 1000:.1f} ms | {statistics.mean(wrapped_cpu[1:]) * 1000:.1f} ms |",
        f"| logging's CPU a round: the orchestrator's process (hooks' hand-off + the logging "
        f"thread and senders, by their thread clocks) | | {client_cpu * 1000:.1f} ms "
        f"({hand_off_cpu * 1000:.1f} + {threads_cpu * 1000:.1f}) |",
        f"| logging's CPU a round: the server (every worker; a mean from round 2 on) | | "
        f"{server_cpu * 1000:.1f} ms |",
        "",
        f"In CPU time, less noisy than wall time on a shared machine: logging costs "
        f"**{logging_cpu * 1000:.1f} ms of CPU a round**, {client_cpu * 1000:.1f} ms in the "
        f"orchestrator's process (**{client_cpu / plain_round_cpu * 100:.1f} %** of the round's "
        f"own {plain_round_cpu * 1000:.1f} ms of CPU) and {server_cpu * 1000:.1f} ms in the "
        "server, which decodes and inserts "
        f"{2 * n * args.metrics:,} points a round into SQLite.",
        "",
        f"The hand-off holds Flower's loop **{hand_off * 1000:.1f} ms** a round "
        f"(**{hand_off / wrapped * 100:.1f} %** of the median round), of which "
        f"{hand_off_cpu * 1000:.1f} ms ({hand_off_cpu / wrapped * 100:.1f} %) is its own CPU "
        "work and the rest waiting for a CPU or for Python's lock. Measured end to end, "
        f"logging adds **{(wrapped - plain) * 1000:.1f} ms** to the median round "
        f"({(wrapped - plain) / wrapped * 100:.0f} % of it): here a round is CPU work alone "
        "(the clients answer at once), so the logging thread, the sender and the server, on the "
        f"same {os.cpu_count()} CPUs, take their time from it; in a federation whose rounds "
        "wait for clients, they work meanwhile. Its points reached the store at "
        f"**{points / wrapped_total:,.0f} points/s** over the whole `start` ({points:,} points "
        f"stored, {expected:,} expected).",
        "",
    ]
    text = "\n".join(lines)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
