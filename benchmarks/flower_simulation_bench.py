"""What SynergosStrategy's logging costs a round of a Flower simulation: Flower's own simulation
engine (Ray), 100 simulated clients that each fit a small numpy model on their partition and
report 20 train and 20 evaluate metrics (``make bench`` runs it in .venv-fl; alone:
``PYTHONPATH=src .venv-fl/bin/python -m benchmarks.flower_simulation_bench [--clients 100]
[--metrics 20] [--blocks 12] [--block-rounds 4] [--flush-interval 5]``).

One simulation, FedAvg wrapped in SynergosStrategy logging into ``synmlops serve --workers 2``
(started from .venv, on SQLite, on the same machine), that logs in blocks of
``--block-rounds`` rounds: a first block logged and left out (Ray warming up; the
participants' runs created), then ``--blocks`` blocks of each kind in the order
unlogged, logged, logged, unlogged, and again (the wrapper hands an unlogged round straight to
FedAvg). Rounds of one simulation are compared, because two simulations, each with a fresh
Ray, differ by more than logging costs (measured here: 0.76 to 1.17 s the median round of the
same simulation alone); the mirrored order cancels a steady drift of the rounds' times
(rounds ran 1.3 s early in a simulation and 1.05 s late), which blocks taken logged first,
then unlogged, counted against logging. The first round of each block is left out. A
federation that logs every round never waits for its server: a round's points are stored
while the next round runs, and that is what a logged round here carries, the storing of the
round before it. The points of a logged block's last round are stored in the unlogged
block's first round (left out), which ends only once everything logged is stored, so no
logging work reaches a counted unlogged round, whatever ``--flush-interval`` (the tracker's)
is.
A round's time is taken between two rounds' ``configure_train`` calls (training,
aggregation, evaluation); the medians of the logged and the unlogged rounds are compared,
beside the CPU each kind of round cost the machine, the simulation's process (by thread) and
the server. ``benchmarks/frameworks_bench.py`` measures the worst case beside it: clients
that answer at once, so a round is the server's CPU alone. Written to
``benchmarks/flower_simulation_results.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import random
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


def _gc_totals() -> Any:
    """The garbage collector's passes and their time in this process so far, by generation,
    kept by a callback (a pass runs in whichever thread allocated when a threshold was
    crossed, often one of Flower's)."""
    import gc

    totals = {"seconds": [0.0, 0.0, 0.0], "passes": [0, 0, 0], "began": 0.0}

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            totals["began"] = time.perf_counter()
        else:
            totals["seconds"][info["generation"]] += time.perf_counter() - totals["began"]
            totals["passes"][info["generation"]] += 1

    gc.callbacks.append(callback)
    return totals


def logged_round(server_round: int, block: int) -> bool:
    """Whether the simulation logs ``server_round`` (1-based): blocks of ``block`` rounds, the
    first (warming up) logged, then unlogged, logged, logged, unlogged, and again."""
    index = (server_round - 1) // block
    return index == 0 or (index - 1) % 4 in (1, 2)


def stores_first(server_round: int, block: int) -> bool:
    """Whether ``server_round`` starts only once everything logged before it is stored: the
    second round of an unlogged block that follows a logged one, so the wait ends that
    block's first round, which is left out."""
    return (
        not logged_round(server_round, block)
        and (server_round - 2) % block == 0
        and logged_round(server_round - 2, block)
    )


def counted(server_round: int, block: int) -> bool:
    """Whether ``server_round`` is compared: neither in the warming-up block nor a block's
    first."""
    return server_round > block and (server_round - 1) % block != 0


def _child(args: argparse.Namespace) -> None:
    """The simulation: a snapshot at each round's start into ``--out``."""
    import logging

    import numpy as np
    from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
    from flwr.clientapp import ClientApp
    from flwr.serverapp import Grid, ServerApp
    from flwr.serverapp.strategy import FedAvg
    from flwr.simulation import run_simulation

    from benchmarks.frameworks_bench import ServerCPU
    from synergos_mlops.integrations.flower import SynergosStrategy
    from synergos_mlops.tracking import TrackerConfig

    logging.getLogger("flwr").setLevel(logging.WARNING)
    metrics = args.metrics
    block = args.block_rounds
    marks: list[dict[str, Any]] = []
    collections = _gc_totals()
    tracking = ServerCPU(args.server_pid)

    class TimedFedAvg(FedAvg):  # type: ignore[misc]
        def configure_train(self, server_round: int, *rest: Any, **kwargs: Any) -> Any:
            server = tracking.seconds()
            marks.append({
                "at": time.perf_counter(),
                "machine": busy_cpu_seconds(),
                "server": server,
                # Less the time spent asking for the server's CPU, which is not logging's.
                "own": time.process_time() - tracking.own,
                "threads": thread_cpu_seconds(),
                "gc_seconds": list(collections["seconds"]),
                "gc_passes": list(collections["passes"]),
            })  # fmt: skip
            return super().configure_train(server_round, *rest, **kwargs)

    class InBlocks(SynergosStrategy):
        """Logs the rounds of every other block; hands the others straight to FedAvg."""

    def in_blocks(name: str) -> Any:
        def hook(self: InBlocks, server_round: int, *rest: Any) -> Any:
            if logged_round(server_round, block):
                return getattr(super(InBlocks, self), name)(server_round, *rest)
            if name == "configure_train" and stores_first(server_round, block):
                # Everything logged is stored before this round's mark, so the storing of the
                # logged block's last round ends in this block's first (left out), never in a
                # counted unlogged round, whatever the flush interval.
                self._worker.drain()
                if self.federated_run is not None:
                    self.federated_run.flush()
            return getattr(self.strategy, name)(server_round, *rest)

        return hook

    for name in ("configure_train", "aggregate_train", "configure_evaluate", "aggregate_evaluate"):
        setattr(InBlocks, name, in_blocks(name))

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
        strategy = InBlocks(
            TimedFedAvg(min_train_nodes=n, min_evaluate_nodes=n, min_available_nodes=n),
            tracking_uri=args.url, collaboration="bench", project="flower",
            experiment="simulation", run="r1",
            config=TrackerConfig(
                spool_dir=Path(args.out).parent / "spool", flush_interval=args.flush_interval
            ),
        )  # fmt: skip
        strategy.start(
            grid=grid,
            initial_arrays=ArrayRecord([np.array([0.0]), np.array([0.0])]),
            num_rounds=(2 * args.blocks + 1) * block + 1,  # a round ends at the next one's start
        )
        Path(args.out).write_text(json.dumps({"marks": marks}))

    run_simulation(
        server_app=server,
        client_app=client,
        num_supernodes=args.clients,
        backend_config={
            "init_args": {"num_cpus": 2, "include_dashboard": False, "log_to_driver": False},
            "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        },
    )


def _simulate(args: argparse.Namespace, folder: Path, url: str, server_pid: int) -> Any:
    out = folder / "simulation.json"
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp, "RAY_USAGE_STATS_ENABLED": "0",
           "PYTHONPATH": str(ROOT / "src"), "MLFLOW_DISABLE_TELEMETRY": "true"}  # fmt: skip
    command = [sys.executable, "-m", "benchmarks.flower_simulation_bench", "--child",
               "--out", str(out), "--url", url, "--server-pid", str(server_pid),
               "--clients", str(args.clients), "--metrics", str(args.metrics),
               "--blocks", str(args.blocks), "--block-rounds", str(args.block_rounds),
               "--flush-interval", str(args.flush_interval)]  # fmt: skip
    with (folder / "simulation.log").open("wb") as log:
        subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                       check=True, timeout=1800)  # fmt: skip
    return json.loads(out.read_text())["marks"]


class Rounds:
    """The kept rounds of one kind (logged or not): each one's time and what it cost, from the
    snapshots at its start and at the next round's start."""

    def __init__(self, marks: list[dict[str, Any]], wanted: list[int]) -> None:
        # marks[i] was taken at the start of round i + 1.
        pairs = [(marks[r - 1], marks[r]) for r in wanted]
        self.count = len(pairs)
        self.seconds = [b["at"] - a["at"] for a, b in pairs]

        def mean(key: str) -> float:
            return statistics.mean(b[key] - a[key] for a, b in pairs)

        self.machine, self.own, self.server = mean("machine"), mean("own"), mean("server")
        self.threads: dict[str, float] = {}
        for a, b in pairs:
            for name, seconds in b["threads"].items():
                key = re.sub(r"\d+", "#", name)  # Thread-12 and Thread-13: one line
                spent = seconds - a["threads"].get(name, 0.0)
                self.threads[key] = self.threads.get(key, 0.0) + spent / self.count
        self.gc = [
            (
                statistics.mean(b["gc_passes"][g] - a["gc_passes"][g] for a, b in pairs),
                statistics.mean(b["gc_seconds"][g] - a["gc_seconds"][g] for a, b in pairs),
            )
            for g in range(3)
        ]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def middle(self) -> tuple[float, float]:
        quartiles = statistics.quantiles(self.seconds, n=4)
        return quartiles[0], quartiles[2]


def interval(logged: list[float], plain: list[float], draws: int = 10_000) -> tuple[float, float]:
    """The 95 % bootstrap interval of the mean round's overhead, in percent: both kinds of
    round drawn again with replacement, ``draws`` times (a fixed seed, so a result repeats)."""
    rng = random.Random(0)
    overheads = sorted(
        (statistics.fmean(rng.choices(logged, k=len(logged)))
         / statistics.fmean(rng.choices(plain, k=len(plain))) - 1) * 100
        for _ in range(draws)
    )  # fmt: skip
    return overheads[int(0.025 * draws)], overheads[int(0.975 * draws) - 1]


def main() -> None:
    from synergos_mlops.integrations.flower import SEND_INTERVAL

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--metrics", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=12, help="blocks of each kind")
    parser.add_argument("--block-rounds", type=int, default=4, help="rounds in a block")
    parser.add_argument("--flush-interval", type=float, default=SEND_INTERVAL,
                        help="the tracker's send interval, seconds")  # fmt: skip
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default="", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--server-pid", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args)
        return
    if args.block_rounds < 2 or args.blocks < 1 or args.blocks * (args.block_rounds - 1) < 2:
        parser.error("--block-rounds must be at least 2, --blocks at least 1, and a kind of "
                     "round needs two rounds that are not a block's first")  # fmt: skip
    import flwr

    from benchmarks.frameworks_bench import start_server

    folder = Path(tempfile.mkdtemp(prefix="synmlops-flower-simulation-"))
    load_before = os.getloadavg()[0]
    process, url = start_server(folder)
    try:
        marks = _simulate(args, folder, url, process.pid)
    finally:
        process.terminate()
        process.wait(timeout=60)
    with sqlite3.connect(folder / "store" / "mlflow.db") as db:
        (points,) = db.execute("SELECT count(*) FROM metrics").fetchone()
    block = args.block_rounds
    total = (2 * args.blocks + 1) * block
    kept = [r for r in range(1, total + 1) if counted(r, block)]
    logged = Rounds(marks, [r for r in kept if logged_round(r, block)])
    plain = Rounds(marks, [r for r in kept if not logged_round(r, block)])
    overhead = (logged.median - plain.median) / plain.median * 100
    spread = (plain.middle[1] - plain.middle[0]) / plain.median * 100
    mean_plain = statistics.mean(plain.seconds)
    mean_overhead = (statistics.mean(logged.seconds) - mean_plain) / mean_plain * 100
    low, high = interval(logged.seconds, plain.seconds)
    # The rounds that wait for the storing are left out; what they took beyond an unlogged
    # round, counted against the logged rounds, bounds what leaving them out hides.
    waits = Rounds(marks, [r - 1 for r in range(2, total + 1) if stores_first(r, block)])
    hidden = max(statistics.mean(waits.seconds) - mean_plain, 0.0) * waits.count / logged.count
    bound = (statistics.mean(logged.seconds) + hidden - mean_plain) / mean_plain * 100
    # The server's CPU for all that was logged, wherever it fell: after the warming-up block,
    # beyond an unlogged round's, per round whose values were logged.
    produced = sum(1 for r in range(block + 1, total + 1) if logged_round(r, block))
    beyond = marks[total]["server"] - marks[block]["server"] - plain.server * (total - block)
    logging_cpu = logged.machine - plain.machine
    n, m = args.clients, args.metrics
    names = sorted(
        set(plain.threads) | set(logged.threads),
        key=lambda k: -abs(logged.threads.get(k, 0.0) - plain.threads.get(k, 0.0)),
    )
    lines = [
        "# Flower simulation: logging overhead per round",
        "",
        f"`python -m benchmarks.flower_simulation_bench --clients {n} --metrics {m} --blocks "
        f"{args.blocks} --block-rounds {block} --flush-interval {args.flush_interval:g}` in "
        ".venv-fl: Flower's simulation engine (Ray, "
        f"2 CPUs for clients), {n} simulated clients each fitting a small numpy model and "
        f"reporting {m} train and {m} evaluate metrics a round; FedAvg in SynergosStrategy "
        "logging into `synmlops serve --workers 2` (SQLite) on the same machine, in blocks of "
        f"{block} rounds, a first logged block left out, then {args.blocks} blocks of each "
        "kind in the order unlogged, logged, logged, unlogged, and again, in one simulation; "
        "an unlogged block's first round lasts until everything logged before it is stored. "
        "A block's first round is left out: "
        f"{logged.count} logged and {plain.count} unlogged rounds compared.",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, Flower "
        f"{flwr.__version__}, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, load "
        f"average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after.",
        "",
        "| a round | not logged | logged |",
        "| --- | ---: | ---: |",
        f"| median | {plain.median:.3f} s | {logged.median:.3f} s |",
        f"| mean | {statistics.mean(plain.seconds):.3f} s | "
        f"{statistics.mean(logged.seconds):.3f} s |",
        f"| middle half | {plain.middle[0]:.3f}–{plain.middle[1]:.3f} s | "
        f"{logged.middle[0]:.3f}–{logged.middle[1]:.3f} s |",
        f"| the machine's busy CPU, mean | {plain.machine:.3f} s | {logged.machine:.3f} s |",
        f"| the simulation process's CPU, mean | {plain.own:.3f} s | {logged.own:.3f} s |",
        f"| the tracking server's CPU, mean | {plain.server:.3f} s | {logged.server:.3f} s |",
        "",
        f"Logging's overhead on the median round: **{overhead:+.1f} %** (goal ≤ 2 %), on the "
        f"mean round **{mean_overhead:+.1f} %** (95 % bootstrap interval {low:+.1f} % to "
        f"{high:+.1f} %), against a spread of {spread:.1f} % between "
        "the unlogged rounds (their middle half). Logging "
        f"cost the machine **{logging_cpu * 1000:.0f} ms** of CPU a round (the server "
        f"{(logged.server - plain.server) * 1000:+.0f} ms, the simulation's process "
        f"{(logged.own - plain.own) * 1000:+.0f} ms), on a machine busy "
        f"{plain.machine / plain.median / (os.cpu_count() or 1) * 100:.0f} % of the time in an "
        f"unlogged round. {points:,} points reached the store ({2 * n * m:,} client points a "
        "logged round, with the aggregates, counts and durations).",
        "",
        f"The {waits.count} rounds that wait for the storing (left out) took "
        f"{statistics.mean(waits.seconds):.3f} s on average, the server "
        f"{waits.server * 1000:.0f} ms of CPU in each; counted against the logged rounds, what "
        f"they took beyond an unlogged round would make the mean overhead {bound:+.1f} %. "
        "All that was logged, wherever it was stored, cost the server "
        f"**{beyond / produced * 1000:.0f} ms** of CPU a logged round ({produced} rounds).",
        "",
        "The simulation process's CPU a round by thread (the eight threads whose CPU differs "
        "most between the two kinds of round):",
        "",
        "| thread | not logged | logged |",
        "| --- | ---: | ---: |",
        *(
            f"| `{name}` | {plain.threads.get(name, 0.0) * 1000:.0f} ms | "
            f"{logged.threads.get(name, 0.0) * 1000:.0f} ms |"
            for name in names[:8]
        ),
        "",
        "The garbage collector in the simulation process a round (passes, and the time they "
        "took in whichever thread ran them), by generation:",
        "",
        "| generation | not logged | logged |",
        "| --- | ---: | ---: |",
        *(
            f"| {g} | {plain.gc[g][0]:.1f} passes, {plain.gc[g][1] * 1000:.1f} ms | "
            f"{logged.gc[g][0]:.1f} passes, {logged.gc[g][1] * 1000:.1f} ms |"
            for g in range(3)
        ),
        "",
        "Every round's time, block by block (in brackets: left out):",
        "",
        "| block | kind | rounds (s) |",
        "| ---: | --- | --- |",
        *(
            f"| {index} | {'logged' if logged_round(first, block) else 'not logged'} | "
            + " ".join(
                f"{seconds:.2f}" if counted(r, block) else f"[{seconds:.2f}]"
                for r in range(first, first + block)
                for seconds in [marks[r]["at"] - marks[r - 1]["at"]]
            )
            + " |"
            for index, first in enumerate(range(1, total + 1, block))
        ),
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
