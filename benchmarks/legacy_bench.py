"""Serving an original Synergos TTP's file store live, against stock ``mlflow server`` on the
same folder (``make bench`` runs it after the main table; alone:
``.venv/bin/python -m benchmarks.legacy_bench [--experiments 10 --runs 100]``).

A store of experiments × runs is written in mlflow 1.7.2's layout (4 participants, 20 rounds
of losses and the old per-class statistics per run). Measured:

- the mirror's pass over the unchanged store (what every second costs the server), and its
  first pass (a server started on a store a TTP has filled for months);
- one experiment's runs with their metrics, as MLflow's UI asks for them (``search_runs``):
  stock reads every run's files on each request, ours answers from the database;
- the time from a TTP's append to a metric file to the point answering through the API:
  stock reads the file on the request, ours after its next pass (the honest cost of mirroring).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from legacy_store import append_points, write_experiment, write_run  # noqa: E402

from benchmarks._servers import ENV, Server, free_port, wait_healthy  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "legacy_results.md"
PARTICIPANTS = ("w1", "w2", "w3", "w4")


def write_store(root: Path, experiments: int, runs: int, rounds: int) -> list[tuple[str, Path]]:
    write_experiment(root, "0", "Default")
    folders = []
    for e in range(1, experiments + 1):
        write_experiment(root, str(e), f"bench_>_legacy_>_exp{e}")
        for r in range(runs):
            metrics: dict[str, list[tuple[int, float, int]]] = {
                "global_train_loss": [(1000 + i, 1 / (i + 1), i) for i in range(rounds)],
                "global_evaluate_loss": [(1000 + i, 2 / (i + 1), i) for i in range(rounds)],
            }
            for p in PARTICIPANTS:
                metrics[f"{p}_local_loss"] = [(1000 + i, 0.5 / (i + 1), i) for i in range(rounds)]
            for c in range(2):
                metrics[f"accuracy_class_{c}"] = [(2000 + k, 0.5, c + 1) for k in range(4)]
            folders.append(
                write_run(root, str(e), f"run-{r}", params={"rounds": rounds}, metrics=metrics)
            )
    return folders


def start(kind: str, root: Path, state: Path) -> Server:
    port = free_port()
    env = {**os.environ, **ENV}
    if kind == "stock":
        command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", str(root),
                   "--artifacts-destination", str(state / "stock-artifacts"),
                   "--host", "127.0.0.1", "--port", str(port), "--workers", "2"]  # fmt: skip
        env["MLFLOW_ALLOW_FILE_STORE"] = "true"
    else:
        command = [sys.executable, "-m", "synergos_mlops", "serve", "--store", str(root),
                   "--port", str(port), "--workers", "2"]  # fmt: skip
    log = state / f"{kind}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(kind, f"http://127.0.0.1:{port}", str(root), process, log)
    wait_healthy(server)
    return server


def search_seconds(url: str, experiment_id: str, runs: int, federated: bool) -> float:
    """Best of 3: one experiment's runs, metrics included, as the UI lists them (ours asks
    for the federated runs, not their participant runs, so both answer the same runs)."""
    best = float("inf")
    query: dict[str, object] = {"experiment_ids": [experiment_id], "max_results": 1000}
    if federated:
        query["filter"] = "tags.`synergos.role` = 'federation'"
    for _ in range(3):
        started = time.perf_counter()
        response = requests.post(f"{url}/api/2.0/mlflow/runs/search", json=query, timeout=600)
        elapsed = time.perf_counter() - started
        found = response.json().get("runs", [])
        parents = [r for r in found if "mlflow.parentRunId" not in str(r["data"].get("tags"))]
        assert len(parents) == runs, (len(parents), runs)
        best = min(best, elapsed)
    return best


def experiment_id(url: str, name: str) -> str:
    response = requests.get(
        f"{url}/api/2.0/mlflow/experiments/get-by-name",
        params={"experiment_name": name},
        timeout=60,
    )
    return str(response.json()["experiment"]["experiment_id"])


def appear_seconds(url: str, run_uuid: str, folder: Path, key: str, step: int, ours: bool) -> float:
    """Append one point as the TTP does; seconds until the server answers it."""
    asked = "train/loss" if ours else key
    append_points(folder, key, [(int(time.time() * 1000), 0.01, step)])
    started = time.perf_counter()
    while time.perf_counter() - started < 60:
        response = requests.get(
            f"{url}/api/2.0/mlflow/metrics/get-history",
            params={"run_id": run_uuid, "metric_key": asked},
            timeout=30,
        )
        if any(int(m["step"]) == step for m in response.json().get("metrics", [])):
            return time.perf_counter() - started
        time.sleep(0.02)
    raise RuntimeError(f"point at step {step} of {run_uuid} did not appear within 60 s")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.legacy_bench")
    parser.add_argument("--experiments", type=int, default=10)
    parser.add_argument("--runs", type=int, default=100, help="runs per experiment")
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--appends", type=int, default=10)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from synergos_mlops.legacy import FileStoreMirror

    total = args.experiments * args.runs
    with tempfile.TemporaryDirectory(prefix="synmlops-legacy-bench-") as tmp:
        root, state = Path(tmp) / "mlflow", Path(tmp) / "state"
        state.mkdir()
        print(f"writing a 1.7.2-layout store of {total:,} runs ...", flush=True)
        folders = write_store(root, args.experiments, args.runs, args.rounds)

        # The mirror in-process, on a copy of the database the server will not touch.
        store = SqlAlchemyStore(f"sqlite:///{state / 'pass.db'}", "mlflow-artifacts:/")
        mirror = FileStoreMirror(root, store)
        started = time.perf_counter()
        first = mirror.sync()
        first_seconds = time.perf_counter() - started
        assert first.runs == total and not first.problems, first
        unchanged = [mirror.sync().seconds for _ in range(5)]
        append_points(folders[0][1], "global_train_loss", [(9999, 0.1, args.rounds)])
        one_append = mirror.sync()
        assert one_append.points == 1
        print(f"  first pass {first_seconds:.1f} s ({first.points:,} points); unchanged pass "
              f"median {statistics.median(unchanged) * 1000:.0f} ms", flush=True)  # fmt: skip

        print("  stock mlflow server on the same folder ...", flush=True)
        stock = start("stock", root, state)
        try:
            stock_search = search_seconds(stock.url, "1", args.runs, federated=False)
            stock_appear = [
                appear_seconds(stock.url, folders[i][0], folders[i][1], "global_train_loss",
                               1000 + i, ours=False)
                for i in range(args.appends)
            ]  # fmt: skip
        finally:
            stock.stop()
        print("  synmlops serve on the same folder ...", flush=True)
        ours = start("synergos", root, state)
        try:
            while True:  # the server's own first pass over the store
                body = requests.get(f"{ours.url}/health", timeout=30).json()
                if body.get("file_store", {}).get("runs") == total:
                    break
                time.sleep(0.5)
            sql_id = experiment_id(ours.url, "bench/legacy/exp1")
            ours_search = search_seconds(ours.url, sql_id, args.runs, federated=True)
            ours_appear = [
                appear_seconds(ours.url, folders[i][0], folders[i][1], "global_train_loss",
                               2000 + i, ours=True)
                for i in range(args.appends)
            ]  # fmt: skip
        finally:
            ours.stop()

    median_stock, median_ours = statistics.median(stock_appear), statistics.median(ours_appear)
    rows = [
        ("pass over the unchanged store (every second)", "—",
         f"{statistics.median(unchanged) * 1000:.0f} ms", "—", "< 1 s"),
        ("first pass (server started on a full store)", "—", f"{first_seconds:.1f} s", "—", "—"),
        (f"search_runs of one experiment ({args.runs} runs)", f"{stock_search:.3f} s",
         f"{ours_search:.3f} s", f"{stock_search / ours_search:.1f}×", "—"),
        ("TTP append → answered, median", f"{median_stock:.2f} s", f"{median_ours:.2f} s",
         "stock reads on request", "< 5 s"),
        ("TTP append → answered, worst", f"{max(stock_appear):.2f} s",
         f"{max(ours_appear):.2f} s", "—", "< 5 s"),
    ]  # fmt: skip
    lines = [
        f"File store of {total:,} runs in mlflow 1.7.2's layout ({args.experiments} experiments, "
        f"4 participants, {args.rounds} rounds; {first.points:,} points), stock `mlflow server` "
        "and `synmlops serve` on the same folder, 2 workers each, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| scenario | stock mlflow server | synmlops serve | ratio | goal |",
        "| --- | --- | --- | --- | --- |",
        *(f"| {a} | {b} | {c} | {d} | {e} |" for a, b, c, d, e in rows),
    ]
    print("\n".join(lines))
    args.output.write_text("\n".join(lines) + "\n")
    print(f"written to {args.output}")


if __name__ == "__main__":
    main()
