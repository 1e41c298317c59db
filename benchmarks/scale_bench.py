"""What one question costs as the store grows (``make bench`` runs it; alone:
``.venv/bin/python -m benchmarks.scale_bench [--sizes empty,1M,10M,full] [--rounds 3]
[--no-postgres]``).

One store is written with bulk SQL (``benchmarks._bigstore``: a probe experiment of 5
federated runs and a study of 200 trials, then filler runs of 10 participants × 100 rounds ×
10 keys) and grown in place through the sizes asked for, a copy kept of each size. Then a
real ``synmlops serve`` is started on every copy at once (which applies our migrations, as
on any existing store) and every question below is asked through HTTP in rounds: each
round asks every size in turn (starting one size further on each round), and a question's
figure in a round is the best of at least 7 calls after one warm-up (as many more as fit in
half a second, for the quick ones). The table gives each cost (the median of the rounds)
and its ratio to the cost on the store holding only the probe ("empty"): the median of
the rounds' ratios, each taken between two sizes measured a minute apart, and their range.
The goal is at most 1.5×. The whole tree (no parameters) is listed for reference: its
answer grows with the store by nature, which is why the tree is paged and searched.

Sizes are metric points: ``empty`` (the probe alone, 79,000 points), ``1M``, ``3M``, ``10M``,
``full`` (30M: about 2,700 federated runs, 30,800 MLflow runs; the store the goal names,
1,000 runs × 10 participants × 100 rounds × 20 keys plus per-class statistics, holds 20 to
50 million points; on this 2-core machine every size up to it takes 11 minutes to build on
SQLite, 10 GB at 30M, and 12 minutes on PostgreSQL). Numbers on a machine shared with other
work are noisy: read them as a curve, not to the millisecond.
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

import requests

from benchmarks._bigstore import PROBE, PROBE_STUDY, STUDY_NAME, BigStore, Shape
from benchmarks._servers import (
    ENV,
    Server,
    free_port,
    postgres_available,
    postgres_copy,
    postgres_database,
)
from benchmarks._servers import wait_healthy as _wait_healthy

RESULTS = Path(__file__).resolve().parent / "scale_results.md"
CHART = Path(__file__).resolve().parents[1] / "docs" / "img" / "scale.png"
SIZES = {"empty": 0, "1M": 1_000_000, "3M": 3_000_000, "10M": 10_000_000, "full": 30_000_000}
API = "/api/synergos/v1"
#: Calls per question: at least REPEAT, and more while SPAN seconds last, at most MOST.
REPEAT = 7
SPAN = 0.5
MOST = 200

QUESTIONS = (
    "studies list",
    "tree: collaborations level",
    "tree: one experiment's runs, page of 50",
    "tree: search a run id",
    "run page data",
    "one series (train/loss, 11 × 100 points)",
    "study of 200 trials",
    "bulk write of one round (110 points)",
    "/health",
    "stock runs/search, one experiment",
    "legacy mirror pass, unchanged",
    "whole tree (answer grows with the store)",
)


def start(store: Path, backend: str | None) -> Server:
    import subprocess

    port = free_port()
    command = [sys.executable, "-m", "synergos_mlops", "serve", "--store", str(store),
               "--port", str(port), "--workers", "2"]  # fmt: skip
    if backend:
        command += ["--backend-store-uri", backend]
    log = store.parent / f"serve-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                   env={**os.environ, **ENV})  # fmt: skip
    server = Server("synmlops serve", f"http://127.0.0.1:{port}", backend or "", process, log)
    _wait_healthy(server, timeout=900)
    return server


def best_ms(call: Callable[[], object]) -> float:
    """The best of at least :data:`REPEAT` calls after one warm-up, and of as many more as fit
    in :data:`SPAN` seconds (at most :data:`MOST`): on a shared machine the fastest is the one
    least disturbed by other work, and a question of 2 ms needs more tries than one of 80 ms
    for its fastest to stand still."""
    call()
    times: list[float] = []
    began = time.perf_counter()
    while len(times) < REPEAT or (time.perf_counter() - began < SPAN and len(times) < MOST):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def get(url: str) -> Callable[[], object]:
    def call() -> object:
        response = requests.get(url, timeout=600)
        response.raise_for_status()
        return response.content

    return call


def questions(server: Server, uri: str, shape: Shape, tmp: Path) -> dict[str, Callable[[], object]]:
    """Each question of :data:`QUESTIONS` as a call to ``server``, whose store is ``uri``."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    from synergos_mlops.legacy import FileStoreMirror
    from synergos_mlops.storage.batch import MetricBatch, encode_batch

    url = server.url
    run = "/".join(quote(i, safe="") for i in (*PROBE, "run-2"))
    study = "/".join(quote(i, safe="") for i in (*PROBE_STUDY, STUDY_NAME))
    c, p, e = PROBE
    view = requests.get(f"{url}{API}/runs/{run}", timeout=60).json()
    owners = [view["mlflow"]["run_id"], *(x["mlflow_run_id"] for x in view["participants"])]
    step = [1000]

    def write_round() -> object:
        batch = MetricBatch()
        step[0] += 1
        for owner in owners:
            for key in shape.key_names():
                batch.append(owner, key, step[0], 0.5, int(time.time() * 1000))
        response = requests.post(
            f"{url}{API}/metrics/bulk", data=encode_batch(batch), timeout=60,
            headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        )  # fmt: skip
        response.raise_for_status()
        return response

    experiment_id = view["mlflow"]["experiment_id"]

    def search_runs() -> object:
        response = requests.post(
            f"{url}/api/2.0/mlflow/runs/search",
            timeout=60,
            json={"experiment_ids": [experiment_id], "max_results": 100},
        )
        response.raise_for_status()  # fmt: skip
        return response

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from benchmarks.legacy_bench import write_store

    legacy = tmp / f"legacy-{time.monotonic_ns()}"
    write_store(legacy, 2, 10, 20)
    mirror = FileStoreMirror(legacy, SqlAlchemyStore(uri, "mlflow-artifacts:/"))
    mirror.sync()

    return {
        "studies list": get(f"{url}{API}/studies"),
        "tree: collaborations level": get(f"{url}{API}/collaborations?depth=collaborations"),
        "tree: one experiment's runs, page of 50": get(
            f"{url}{API}/collaborations?collaboration={c}&project={p}&experiment={e}&limit=50"
        ),
        "tree: search a run id": get(f"{url}{API}/collaborations?search=run-3"),
        "run page data": get(f"{url}{API}/runs/{run}"),
        "one series (train/loss, 11 × 100 points)": get(
            f"{url}{API}/runs/{run}/metrics?keys=train/loss"
        ),
        "study of 200 trials": get(f"{url}{API}/studies/{study}"),
        "bulk write of one round (110 points)": write_round,
        "/health": get(f"{url}/health"),
        "stock runs/search, one experiment": search_runs,
        "legacy mirror pass, unchanged": mirror.sync,
        "whole tree (answer grows with the store)": get(f"{url}{API}/collaborations"),
    }


@dataclass
class Point:
    """One size of one curve: the points its store holds and, per round, each question's
    best time in ms."""

    size: str
    stored: int
    rounds: list[dict[str, float]] = field(default_factory=list)

    def median(self, question: str) -> float:
        return statistics.median(r[question] for r in self.rounds)

    def ratios(self, question: str, base: Point) -> list[float]:
        """This size's time over the base size's, round by round (the two measured minutes
        apart, not an hour)."""
        return [
            mine[question] / theirs[question] if theirs[question] else float("nan")
            for mine, theirs in zip(self.rounds, base.rounds, strict=True)
        ]


Curve = list[Point]


def snapshot(
    backend: str, big: BigStore, size: str, tmp: Path, stack: ExitStack
) -> tuple[Path, str]:
    """A copy of the store as it is now: its folder and URI (SQLite through the backup API,
    PostgreSQL as a template copy), so that every size can be served at once."""
    folder = tmp / f"store-{backend}-{size}"
    folder.mkdir(parents=True)
    if big.engine.dialect.name == "sqlite":
        source = Path(big.uri.removeprefix("sqlite:///"))
        with sqlite3.connect(source) as old, sqlite3.connect(folder / "mlflow.db") as new:
            old.backup(new, pages=65536)
        return folder, f"sqlite:///{folder / 'mlflow.db'}"
    big.engine.dispose()
    return folder, stack.enter_context(postgres_copy(big.uri, size.lower()))


def curve(backend: str, sizes: list[str], tmp: Path, pg_uri: str | None, rounds: int) -> Curve:
    """Build the store up through ``sizes`` (a copy kept of each), serve every size at once,
    and ask every question of every size in each of ``rounds`` rounds, the sizes in turn
    and each round starting one size further on: the machine's drift over the hour a build
    takes falls on every size alike."""
    shape = Shape()
    live = tmp / f"store-{backend}"
    live.mkdir(parents=True)
    uri = pg_uri or f"sqlite:///{live / 'mlflow.db'}"
    big = BigStore(uri, str(live / "artifacts"), shape)
    big.add_probe()
    points: Curve = []
    stores: list[tuple[Path, str]] = []
    with ExitStack() as stack:
        try:
            for n, size in enumerate(sizes):
                wanted = SIZES[size]
                have = big.points()
                if wanted > have:
                    runs = -(-(wanted - have) // shape.points)
                    started = time.monotonic()
                    print(f"{backend}: adding {runs} runs for {size} ...", flush=True)
                    big.grow(runs)
                    print(f"  built in {time.monotonic() - started:.0f} s", flush=True)
                big.settle()
                points.append(Point(size, big.points()))
                last = n == len(sizes) - 1
                stores.append((live, uri) if last else snapshot(backend, big, size, tmp, stack))
        finally:
            big.close()
        servers = []
        for (folder, store_uri), point in zip(stores, points, strict=True):
            server = start(folder, None if store_uri.startswith("sqlite") else store_uri)
            stack.callback(server.stop)
            servers.append((point, questions(server, store_uri, shape, tmp)))
        for r in range(rounds):
            for point, calls in servers[r % len(servers) :] + servers[: r % len(servers)]:
                figures = {name: best_ms(call) for name, call in calls.items()}
                point.rounds.append(figures)
                print(
                    f"{backend} {point.size} ({point.stored:,} points), round {r + 1}/{rounds}: "
                    + ", ".join(f"{k}: {v:.1f}" for k, v in figures.items()),
                    flush=True,
                )
    return points


def table(results: dict[str, Curve]) -> str:
    lines = []
    for backend, points in results.items():
        base = points[0]
        rounds = len(base.rounds)
        header = " | ".join(f"{p.size} ({p.stored / 1e6:.2g}M points)" for p in points)
        title = (
            f"**{backend}** (ms: each round's best of {REPEAT} to {MOST} calls, the median of "
            f"{rounds} rounds; ratio to the first column: the median of the rounds' ratios"
            + (", and their range" if rounds > 1 else "")
            + ")"
        )
        lines += [title, "", f"| question | {header} |", "|" + " --- |" * (len(points) + 1)]
        for question in QUESTIONS:
            cells = []
            for point in points:
                ratios = point.ratios(question, base)
                cell = f"{point.median(question):.1f} ({statistics.median(ratios):.2f}×"
                if rounds > 1 and point is not base:
                    cell += f"; {min(ratios):.2f}–{max(ratios):.2f}"
                cells.append(cell + ")")
            lines.append(f"| {question} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def chart(results: dict[str, Curve], path: Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart")
        return False
    figure, axes = plt.subplots(1, len(results), figsize=(7 * len(results), 5), squeeze=False)
    for ax, (backend, points) in zip(axes[0], results.items(), strict=True):
        xs = [point.stored for point in points]
        colours = plt.get_cmap("tab20").colors
        for i, question in enumerate(QUESTIONS):
            ys = [statistics.median(point.ratios(question, points[0])) for point in points]
            ax.plot(xs, ys, marker="o", label=question, color=colours[i % len(colours)],
                    linestyle="--" if i % 2 else "-")  # fmt: skip
        ax.axhline(1.5, color="grey", linestyle="--", linewidth=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("metric points in the store")
        ax.set_ylabel("cost / cost on the empty store (median of rounds)")
        ax.set_title(backend)
    axes[0][-1].legend(fontsize=7, loc="upper left")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=90)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale_bench", description=__doc__)
    parser.add_argument("--sizes", default="empty,1M,3M", help=f"of {', '.join(SIZES)}")
    parser.add_argument("--postgres-sizes", default="empty,1M")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of questions over every size (default 3)")  # fmt: skip
    parser.add_argument("--output", type=Path, default=RESULTS)
    parser.add_argument("--chart", type=Path, default=CHART)
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    for size in (*args.sizes.split(","), *args.postgres_sizes.split(",")):
        if size not in SIZES:
            parser.error(f"unknown size {size!r}: one of {', '.join(SIZES)}")
    results: dict[str, Curve] = {}
    with tempfile.TemporaryDirectory(prefix="synmlops-scale-") as folder, ExitStack() as stack:
        tmp = Path(folder)
        results["SQLite"] = curve("SQLite", args.sizes.split(","), tmp, None, args.rounds)
        if not args.no_postgres:
            reason = postgres_available()
            if reason is None:
                uri = stack.enter_context(postgres_database("synmlops_scale"))
                results["PostgreSQL"] = curve("PostgreSQL", args.postgres_sizes.split(","),
                                              tmp, uri, args.rounds)  # fmt: skip
            else:
                print(f"PostgreSQL skipped ({reason})")
    text = table(results)
    print(text)
    args.output.write_text(f"# Cost per question as the store grows\n\n{text}")
    print(f"written to {args.output}")
    if chart(results, args.chart):
        print(f"chart written to {args.chart}")


if __name__ == "__main__":
    main()
