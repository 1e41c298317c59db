"""What a participant's hardware monitor costs, against MLflow's own system-metrics monitor
(``make bench`` runs it; alone: ``.venv/bin/python -m benchmarks.system_bench [--seconds 30]``).

Both monitors run side by side in this process for the same wall time, at the same interval
(1 s, our default), writing into one store folder: ours as ``SystemMonitor`` (a sampling
thread, and the sender thread that spools and writes the samples), MLflow's as
``mlflow.system_metrics.SystemMetricsMonitor`` on a run of the same store (one thread that
samples, checks the run's status and logs). Each thread's CPU time (user + system, from
``/proc`` through psutil) over the wall time is its CPU %, in percent of one core. Written to
``benchmarks/system_results.md``.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import tempfile
import threading
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "system_results.md"


def _thread_cpu(native_id: int | None) -> float:
    import psutil

    for thread in psutil.Process().threads():
        if thread.id == native_id:
            return float(thread.user_time + thread.system_time)
    return 0.0


def _native(name_prefix: str) -> int | None:
    for thread in threading.enumerate():
        if thread.name.startswith(name_prefix):
            return thread.native_id
    return None


def measure(seconds: float, interval: float) -> dict[str, tuple[float, int]]:
    """``{monitor: (CPU seconds, samples)}`` over ``seconds`` of wall time."""
    import mlflow
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    from synergos_mlops import FederatedTracker, TrackerConfig

    folder = Path(tempfile.mkdtemp(prefix="synmlops-system-bench-"))
    config = TrackerConfig(spool_dir=folder / "spool")
    tracker = FederatedTracker(folder / "store", config)
    run = tracker.run(collaboration="bench", project="p", experiment="e", run="r",
                      participants=["worker_1"])  # fmt: skip
    uri = f"sqlite:///{folder / 'store' / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    stock_run = mlflow.MlflowClient(uri).create_run(run.experiment_id, run_name="stock")
    stock = SystemMetricsMonitor(stock_run.info.run_id, sampling_interval=interval,
                                 tracking_uri=uri)  # fmt: skip
    ours = run.monitor("worker_1", interval=interval)
    ours.start()
    stock.start()
    time.sleep(0.5)  # both threads exist
    ids = {
        "sampler": _native("synergos-system-worker_1"),
        "sender": _native("synergos-system-sender-worker_1"),
        "stock": stock._process.native_id if stock._process is not None else None,
    }
    begin = {name: _thread_cpu(native) for name, native in ids.items()}
    time.sleep(seconds)
    end = {name: _thread_cpu(native) for name, native in ids.items()}
    samples_ours = ours.samples
    stock.finish()
    ours.stop()
    stock_points = mlflow.MlflowClient(uri).get_metric_history(
        stock_run.info.run_id, "system/cpu_utilization_percentage"
    )
    run.end()
    tracker.close()
    used = {name: end[name] - begin[name] for name in ids}
    return {
        "ours: sampling thread": (used["sampler"], samples_ours),
        "ours: sender thread (spool, write)": (used["sender"], samples_ours),
        "ours: both threads": (used["sampler"] + used["sender"], samples_ours),
        "MLflow SystemMetricsMonitor": (used["stock"], len(stock_points)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--interval", type=float, default=1.0)
    args = parser.parse_args()
    import mlflow

    found = measure(args.seconds, args.interval)
    lines = [
        "# Hardware monitor overhead",
        "",
        f"`python -m benchmarks.system_bench --seconds {args.seconds:g}`: both monitors side by "
        f"side for {args.seconds:g} s at a {args.interval:g} s interval, writing into one store "
        "folder; CPU % is the thread's CPU time (user + system) over the wall time, in percent "
        "of one core.",
        "",
        f"Machine: {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"MLflow {mlflow.__version__}, {datetime.date.today().isoformat()}, "
        f"load {os.getloadavg()[0]:.2f}.",
        "",
        "| monitor | CPU seconds | CPU % of one core | samples |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name, (cpu, samples) in found.items():
        lines.append(f"| {name} | {cpu:.3f} | {100 * cpu / args.seconds:.2f} | {samples} |")
    lines += [
        "",
        "Ours samples the machine and the training process (18 keys without GPUs); MLflow's "
        "samples the machine (8 keys) and, every sample, asks the tracking store for the "
        "run's status. The sender's CPU includes gzip, the spool file and the database write.",
        "",
    ]
    text = "\n".join(lines)
    RESULTS.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
