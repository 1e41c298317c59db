"""How long `synmlops serve` takes to answer, and the CPU its processes spend getting there,
against stock `mlflow server` measured the same way in the same run.

    .venv/bin/python -m benchmarks.serve_start_bench [--starts 5]

Starts each server ``--starts`` times with one worker on one temporary SQLite store (the first
start creates it, the others find it at the current schema), waits until ``/health`` answers
200, reads the CPU time of every process of the server with psutil, and stops it. Prints the
medians, each process's share, and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import psutil

from benchmarks._servers import Server, start_stock, start_synergos, wait_healthy

ROOT = Path(__file__).resolve().parent.parent


def measure(start: Callable[[], Server]) -> tuple[float, float, dict[str, float]]:
    """Seconds until /health answers, the CPU its processes spent by then, and per process."""
    began = time.monotonic()
    server = start()
    try:
        wait_healthy(server, pause=0.05)
        answered = time.monotonic() - began
        root = psutil.Process(server.process.pid)
        shares: dict[str, float] = {}
        for member in [root, *root.children(recursive=True)]:
            name = " ".join(member.cmdline()[1:3]).replace(str(ROOT), ".")
            shares[name] = shares.get(name, 0.0) + sum(member.cpu_times()[:2])
    finally:
        server.stop()
    return answered, sum(shares.values()), shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="synmlops-start-"))
    servers: dict[str, Callable[[], Server]] = {
        "synmlops serve": lambda: start_synergos(folder / "ours", None, 1),
        "stock mlflow server": lambda: start_stock(folder / "stock", None, 1),
    }
    medians: dict[str, tuple[float, float]] = {}
    for label, start in servers.items():
        answered, spent = [], []
        shares: dict[str, list[float]] = {}
        for _ in range(args.starts):
            seconds, cpu, parts = measure(start)
            answered.append(seconds)
            spent.append(cpu)
            for name, value in parts.items():
                shares.setdefault(name, []).append(value)
        medians[label] = (statistics.median(answered), statistics.median(spent))
        print(f"{label}, {args.starts} starts, one worker, one SQLite store:")
        print(f"  until /health answers, median {medians[label][0]:.2f} s")
        print(f"  CPU of its processes by then, median {medians[label][1]:.2f} s")
        for name, values in shares.items():
            print(f"    {name}: {statistics.median(values):.2f} s")
    ours, stock = medians["synmlops serve"], medians["stock mlflow server"]
    print(f"stock / ours: time to answer {stock[0] / ours[0]:.2f}x, CPU {stock[1] / ours[1]:.2f}x")


if __name__ == "__main__":
    main()
