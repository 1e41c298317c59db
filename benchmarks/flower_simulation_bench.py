"""What SynergosStrategy's logging costs a round of a Flower simulation: Flower's own simulation
engine (Ray), 100 simulated clients that each fit a small numpy model on their partition and
report 20 train and 20 evaluate metrics (``make bench`` runs it in .venv-fl; alone:
``PYTHONPATH=src .venv-fl/bin/python -m benchmarks.flower_simulation_bench [--clients 100]
[--metrics 20] [--rounds 16]``).

The same simulation runs twice, each in a process of its own with a fresh Ray: FedAvg alone,
then FedAvg wrapped in SynergosStrategy logging into ``synmlops serve --workers 2`` (started
from .venv, on SQLite, on the same machine). A round's time is taken between two rounds'
``configure_train`` calls (training, aggregation, evaluation, the server-side evaluation);
the median of the rounds after the first is compared. ``benchmarks/frameworks_bench.py``
measures the worst case beside it: clients that answer at once, so a round is the server's
CPU alone. Written to ``benchmarks/flower_simulation_results.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "flower_simulation_results.md"


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy since boot (every core, every process:
    Ray's workers, the server, this one), from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds of each thread of this process so far, summed by thread name (Flower's and
    Ray's threads, the wrapper's and the tracker's), from /proc/self/task."""
    import threading

    tick = os.sysconf("SC_CLK_TCK")
    python = {thread.native_id: thread.name for thread in threading.enumerate()}
    found: dict[str, float] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:  # a thread gone between the listing and the read
            continue
        name = python.get(int(task.name)) or stat[stat.index("(") + 1 : stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2 :].split()
        found[name] = found.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return found


def _child(args: argparse.Namespace) -> None:
    """One simulation (``--child plain|logged``): the rounds' start times into ``--out``."""
    import logging

    import numpy as np
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    logging.getLogger("flwr").setLevel(logging.WARNING)
    metrics = args.metrics
    starts: list[float] = []
    machine: list[float] = []  # the machine's busy CPU seconds (every process) at each start
    own: list[float] = []  # this process's CPU seconds (Flower's server and the logging)
    served: list[float] = []  # the tracking server's CPU seconds (logged run only)
    threads: list[dict[str, float]] = []  # this process's CPU seconds by thread name
    tracking = None
    if args.server_pid:
        from benchmarks.frameworks_bench import ServerCPU

        tracking = ServerCPU(args.server_pid)

    class TimedFedAvg(FedAvg):  # type: ignore[misc]
        def configure_train(self, server_round: int, *rest: Any, **kwargs: Any) -> Any:
            starts.append(time.perf_counter())
            machine.append(busy_cpu_seconds())
            if tracking is not None:
                served.append(tracking.seconds())
            # Less the time spent asking for the server's CPU, which is not logging's.
            own.append(time.process_time() - (tracking.own if tracking is not None else 0.0))
            threads.append(thread_cpu_seconds())
            return super().configure_train(server_round, *rest, **kwargs)

    def data(partition: int) -> tuple[Any, Any]:
        rng = np.random.default_rng(partition)
        x = rng.uniform(-1, 1, size=50)
        return x, 2 * x + 1 + 0.01 * partition + rng.normal(0, 0.05, size=x.size)

    def values(prefix: float, partition: int, size: int) -> dict[str, Any]:
        found: dict[str, Any] = {f"m{i:02d}": prefix + i / 100 for i in range(metrics)}
        return {**found, "num-examples": size, "partition-id": partition}

    client = ClientApp()

    @client.train()  # type: ignore[misc]
    def train(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        w, b = (float(a[0]) for a in msg.content["arrays"].to_numpy_ndarrays())
        x, y = data(partition)
        for _ in range(5):
            error = w * x + b - y
            w -= 0.3 * float(np.mean(2 * error * x))
            b -= 0.3 * float(np.mean(2 * error))
        loss = float(np.mean((w * x + b - y) ** 2))
        content = {
            "arrays": ArrayRecord([np.array([w]), np.array([b])]),
            "metrics": MetricRecord(values(loss, partition, x.size)),
        }
        return Message(RecordDict(content), reply_to=msg)

    @client.evaluate()  # type: ignore[misc]
    def evaluate(msg: Message, context: Context) -> Message:
        partition = int(context.node_config["partition-id"])
        w, b = (float(a[0]) for a in msg.content["arrays"].to_numpy_ndarrays())
        x, y = data(partition)
        loss = float(np.mean((w * x + b - y) ** 2))
        content = {"metrics": MetricRecord(values(loss, partition, x.size))}
        return Message(RecordDict(content), reply_to=msg)

    server = ServerApp()

    @server.main()  # type: ignore[misc]
    def main(grid: Grid, context: Context) -> None:
        n = args.clients
        strategy: Any = TimedFedAvg(min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n)
        if args.child == "logged":
            from synergos_mlops.integrations.flower import SynergosStrategy
            from synergos_mlops.tracking import TrackerConfig

            strategy = SynergosStrategy(
                strategy, tracking_uri=args.url, collaboration="bench", project="flower",
                experiment="simulation", run="r1",
                config=TrackerConfig(spool_dir=Path(args.out).parent / "spool"),
            )  # fmt: skip
        began = time.perf_counter()
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord([np.array([0.0]), np.array([0.0])]),
            num_rounds=args.rounds,
        )
        total = time.perf_counter() - began

        def steps(marks: list[float]) -> list[float]:
            return [b - a for a, b in zip(marks, marks[1:], strict=False)]

        Path(args.out).write_text(json.dumps({
            "rounds": steps(starts), "machine_cpu": steps(machine), "own_cpu": steps(own),
            "server_cpu": steps(served),
            "thread_cpu": {
                name: (threads[-1].get(name, 0.0) - threads[1].get(name, 0.0))
                / max(len(threads) - 2, 1)
                for name in threads[-1]
            },
            "total": total,
        }))  # fmt: skip

    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=args.clients,
        backend_config={
            "init_args": {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False},
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        },
    )


def _simulate(
    kind: str, args: argparse.Namespace, folder: Path, url: str = "", server_pid: int = 0
) -> dict[str, Any]:
    out = folder / f"{kind}.json"
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(ROOT / "src"), "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip
    command = [sys.executable, "-m", "benchmarks.flower_simulation_bench", "--child", kind,
               "--out", str(out), "--url", url, "--server-pid", str(server_pid),
               "--clients", str(args.clients),
               "--metrics", str(args.metrics), "--rounds", str(args.rounds)]  # fmt: skip
    with (folder / f"{kind}.log").open("wb") as log:
        subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                       check=True, timeout=1800)  # fmt: skip
    return dict(json.loads(out.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=16)
    parser.add_argument("--child", choices=["plain", "logged"], default=None)
    parser.add_argument("--out", default="")
    parser.add_argument("--url", default="")
    parser.add_argument("--server-pid", type=int, default=0)
    args = parser.parse_args()
    if args.child is not None:
        _child(args)
        return
    import flwr

    from benchmarks.frameworks_bench import ServerCPU, start_server

    folder = Path(tempfile.mkdtemp(prefix="synmlops-flower-simulation-"))
    load_before = os.getloadavg()[0]
    plain = _simulate("plain", args, folder)
    process, url = start_server(folder)
    try:
        server = ServerCPU(process.pid)
        server_before = server.seconds()
        logged = _simulate("logged", args, folder, url, process.pid)
        server_cpu = server.seconds() - server_before
    finally:
        process.terminate()
        process.wait(timeout=60)
    with sqlite3.connect(folder / "store" / "mlflow.db") as db:
        (points,) = db.execute("SELECT count(*) FROM metrics").fetchone()
    alone = statistics.median(plain["rounds"][1:])
    wrapped = statistics.median(logged["rounds"][1:])
    overhead = (wrapped - alone) / alone * 100
    # How much a round varies by itself: the spread of the rounds alone, as a share of their
    # median (the middle half of them), to read the overhead against.
    quartiles = statistics.quantiles(plain["rounds"][1:], n=4)
    spread = (quartiles[2] - quartiles[0]) / alone * 100

    # What logging costs in CPU, the resource a saturated machine's round is made of: the
    # server's process tree over the logged simulation, per round, plus what the simulation's
    # own process (Flower's server, the wrapper's thread, the tracker) spends more a round.
    def per_round(result: dict[str, Any], key: str) -> float:
        return statistics.median(result[key][1:])

    machine_alone, machine_logged = (
        per_round(plain, "machine_cpu"),
        per_round(logged, "machine_cpu"),
    )
    server_per_round = per_round(logged, "server_cpu")
    driver_more = per_round(logged, "own_cpu") - per_round(plain, "own_cpu")
    logging_cpu = server_per_round + driver_more
    share = logging_cpu / machine_alone * 100
    n, m = args.clients, args.metrics

    def by_thread(result: dict[str, Any]) -> dict[str, float]:
        # Threads numbered by creation (Thread-12) are summed under one name (Thread-#).
        summed: dict[str, float] = {}
        for name, seconds in result["thread_cpu"].items():
            name = re.sub(r"\d+", "#", name)
            summed[name] = summed.get(name, 0.0) + seconds
        return summed

    plain_threads, logged_threads = by_thread(plain), by_thread(logged)
    names = sorted(
        set(plain_threads) | set(logged_threads),
        key=lambda k: -abs(logged_threads.get(k, 0.0) - plain_threads.get(k, 0.0)),
    )
    thread_rows = [
        f"| `{name}` | {plain_threads.get(name, 0.0) * 1000:.0f} ms | "
        f"{logged_threads.get(name, 0.0) * 1000:.0f} ms |"
        for name in names[:8]
    ]
    lines = [
        "# Flower simulation: logging overhead per round",
        "",
        f"`python -m benchmarks.flower_simulation_bench --clients {n} --metrics {m} --rounds "
        f"{args.rounds}` in .venv-fl: Flower's simulation engine (Ray, 2 CPUs for clients), {n} "
        f"simulated clients each fitting a small numpy model and reporting {m} train and {m} "
        "evaluate metrics a round; FedAvg alone, then wrapped in SynergosStrategy logging into "
        "`synmlops serve --workers 2` (SQLite) on the same machine.",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, Flower "
        f"{flwr.__version__}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load "
        f"average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.",
        "",
        "| | FedAvg alone | FedAvg in SynergosStrategy |",
        "| --- | ---: | ---: |",
        f"| round after the first, median | {alone:.3f} s | {wrapped:.3f} s |",
        f"| rounds after the first, mean | {statistics.mean(plain['rounds'][1:]):.3f} s | "
        f"{statistics.mean(logged['rounds'][1:]):.3f} s |",
        f"| rounds after the first, middle half | {quartiles[0]:.3f}–{quartiles[2]:.3f} s | "
        + "–".join(f"{q:.3f}" for q in statistics.quantiles(logged["rounds"][1:], n=4)[::2])
        + " s |",
        f"| whole `start` ({args.rounds} rounds) | {plain['total']:.1f} s | "
        f"{logged['total']:.1f} s |",
        f"| the machine's busy CPU a round, median | {machine_alone:.2f} s | "
        f"{machine_logged:.2f} s |",
        f"| the simulation process's CPU a round, median | {per_round(plain, 'own_cpu'):.3f} s | "
        f"{per_round(logged, 'own_cpu'):.3f} s |",
        f"| the server's CPU a round, median | — | {server_per_round:.3f} s |",
        f"| the server's CPU over the whole run | — | {server_cpu:.1f} s |",
        "",
        f"Logging's CPU a round: **{logging_cpu * 1000:.0f} ms** (the server's "
        f"{server_per_round * 1000:.0f} ms, the simulation process's "
        f"{driver_more * 1000:+.0f} ms), "
        f"**{share:.1f} %** of the {machine_alone:.2f} CPU-s a round costs the machine alone. "
        f"The machine is not saturated ({machine_alone:.2f} busy CPU-s in a {alone:.2f} s round "
        f"on {os.cpu_count()} CPUs): Flower's simulation process paces the round, so the "
        "wall-clock difference below also holds whatever slows that process, not only "
        "logging's CPU.",
        "",
        f"Logging's overhead on the median round: **{overhead:+.1f} %** (goal ≤ 2 %), against "
        f"a round-to-round spread of {spread:.1f} % (the middle half of the rounds alone); "
        f"{points:,} points reached the store ({2 * n * m:,} client points a round, with the "
        "aggregates, counts and durations).",
        "",
        "The simulation process's CPU a round by thread (mean over the rounds after the first; "
        "the eight threads whose CPU differs most between the two runs):",
        "",
        "| thread | FedAvg alone | FedAvg in SynergosStrategy |",
        "| --- | ---: | ---: |",
        *thread_rows,
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
