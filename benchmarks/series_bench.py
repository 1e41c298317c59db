"""Reading a federated run's series: the Synergos API versus stock get_metric_history.

    .venv/bin/python benchmarks/series_bench.py [--participants 50] [--rounds 500]

Starts `synmlops serve` on a free port with a temporary store, logs one federated run
(the global run and N participants, round- and epoch-level metrics) straight into the
store, then reads the series of a few keys for every run, every point of each, three ways:
with one `GET .../metrics?keys=...` answered as JSON lists, the same with `format=typed`
(base64 int64 steps and float64 values, decoded here with numpy), and with one
`MlflowClient.get_metric_history` call per run and key; it prints the timings (medians)
and the ratios.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import base64  # noqa: E402

import numpy as np  # noqa: E402
import requests  # noqa: E402
from conftest import start_server  # noqa: E402
from federated_data import log_federated_run  # noqa: E402
from mlflow import MlflowClient  # noqa: E402

KEYS = ["train/loss", "evaluate/loss", "evaluate/accuracy"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=500)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="synmlops-bench-") as tmp:
        server = start_server(Path(tmp) / "store", workers=2)
        try:
            started = time.perf_counter()
            logged = log_federated_run(
                f"sqlite:///{server.store / 'mlflow.db'}",
                participants=[f"w{i:03d}" for i in range(args.participants)],
                rounds=args.rounds,
                epochs=1,
                classes=2,
                artifacts=False,
            )
            print(f"logged {args.participants} participants × {args.rounds} rounds "
                  f"in {time.perf_counter() - started:.1f} s")  # fmt: skip
            url = f"{server.url}/api/synergos/v1/runs/{logged.path}/metrics"
            client = MlflowClient(server.url)
            run_ids = [logged.parent_run_id, *logged.participants.values()]
            ours, typed, stock = [], [], []
            for _ in range(args.repeat):
                t = time.perf_counter()
                response = requests.get(url, params={"keys": ",".join(KEYS)}, timeout=600)
                response.raise_for_status()
                points = sum(
                    len(line["steps"])
                    for entry in response.json()["series"].values()
                    for line in [entry["global"], *entry["participants"].values()]
                )
                ours.append(time.perf_counter() - t)
                t = time.perf_counter()
                response = requests.get(
                    url, params={"keys": ",".join(KEYS), "format": "typed"}, timeout=600
                )
                response.raise_for_status()
                typed_points = sum(
                    len(np.frombuffer(base64.b64decode(line["values"]), dtype="<f8"))
                    for entry in response.json()["series"].values()
                    for line in [entry["global"], *entry["participants"].values()]
                )
                typed.append(time.perf_counter() - t)
                t = time.perf_counter()
                stock_points = sum(
                    len(client.get_metric_history(run_id, key))
                    for run_id in run_ids
                    for key in KEYS
                )
                stock.append(time.perf_counter() - t)
                assert points == typed_points == stock_points, (points, typed_points, stock_points)
            a, c, b = statistics.median(ours), statistics.median(typed), statistics.median(stock)
            print(f"{points} points of {len(KEYS)} keys × {len(run_ids)} runs")
            print(f"Synergos API, one request (lists):  {a:.3f} s  ratio {b / a:.1f}×")
            print(f"Synergos API, one request (typed):  {c:.3f} s  ratio {b / c:.1f}×")
            print(f"get_metric_history, {len(run_ids) * len(KEYS)} calls: {b:.3f} s")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
