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
import subprocess
import tempfile
import time
from pathlib import Path

import psutil
import requests

from benchmarks._servers import free_port

ROOT = Path(__file__).resolve().parent.parent


def measure(command: list[str], port: int) -> tuple[float, float, dict[str, float]]:
    """Seconds until /health answers, the CPU its processes spent by then, and per process."""
    began = time.monotonic()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.05)
        answered = time.monotonic() - began
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
        shares: dict[str, float] = {}
        for member in tree:
            name = " ".join(member.cmdline()[1:3]).replace(str(ROOT), ".")
            shares[name] = shares.get(name, 0.0) + sum(member.cpu_times()[:2])
    finally:
        process.terminate()
        process.wait(timeout=60)
    return answered, sum(shares.values()), shares


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=5)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="synmlops-start-"))
    bin_ = ROOT / ".venv" / "bin"
    servers = {
        "synmlops serve": lambda port: [
            str(bin_ / "synmlops"), "serve", "--store", str(folder / "store"),
            "--port", str(port), "--workers", "1",
        ],
        "stock mlflow server": lambda port: [
            str(bin_ / "mlflow"), "server", "--backend-store-uri",
            f"sqlite:///{folder / 'stock.db'}", "--port", str(port), "--workers", "1",
        ],
    }  # fmt: skip
    medians: dict[str, tuple[float, float]] = {}
    for label, command in servers.items():
        answered, spent = [], []
        shares: dict[str, list[float]] = {}
        for _ in range(args.starts):
            port = free_port()
            seconds, cpu, parts = measure(command(port), port)
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
