"""``python -m benchmarks`` (``make bench``): see the package docstring.

.venv/bin/python -m benchmarks [--participants 20 --rounds 50 --keys 100] [--no-postgres]
.venv/bin/python -m benchmarks --only page    # the run page in headless Chromium, alone
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import TypeVar

from benchmarks._concurrent import run_concurrent
from benchmarks._report import Machine, Report, Row
from benchmarks._servers import (
    Server,
    count_points,
    postgres_available,
    postgres_database,
    running,
    start_stock,
    start_synergos,
)
from benchmarks._workload import (
    STOCK_BATCH,
    Ids,
    Workload,
    create_stock_run,
    log_stock,
    log_tracker,
    open_tracker,
    raw_sqlite_ceiling,
    read_stock,
    read_synergos,
)
from benchmarks.page_bench import ChartWorkload, chromium_available, page_scenario

T = TypeVar("T")
RESULTS = Path(__file__).resolve().parent / "results.md"


def _timed(call: Callable[[], T]) -> tuple[float, T]:
    started = time.perf_counter()
    result = call()
    return time.perf_counter() - started, result


def single_cycle(
    tmp: Path, store: str, backends: tuple[str | None, str | None], workload: Workload,
    workers: int, repeat: int, long: Workload, narrow: Workload,
) -> list[Row]:  # fmt: skip
    """One federated cycle written and read both ways, then a run of long series read both
    ways, then a cycle logged a few keys per call written both ways (and, on SQLite, straight
    into the table: the ceiling); four rows, five on SQLite (write, read, read long series,
    write a few keys per call, its share of the ceiling)."""
    ids = Ids("bench", "speed", "mlp", "run-1")
    keys = workload.key_names()
    values = workload.values(seed=1)
    with running(
        lambda: start_stock(tmp / f"stock-{store}", backends[0], workers),
        lambda: start_synergos(tmp / f"synergos-{store}", backends[1], workers),
    ) as (stock, ours):
        print(f"  {store}: servers up; stock log_batch ...", flush=True)
        stock_run = create_stock_run(stock.url, ids, workload.participant_ids())
        stock_write, (sent, failed) = _timed(lambda: log_stock(stock_run, workload, values))
        assert failed == 0, f"{failed} stock log_batch requests failed"

        print(f"  {store}: FederatedTracker ...", flush=True)
        with ExitStack() as stack:
            spool = stack.enter_context(tempfile.TemporaryDirectory(prefix="synmlops-spool-"))
            tracker, transport = open_tracker(ours.url, Path(spool))
            stack.callback(tracker.close)
            federated = tracker.run(*ids.parts, participants=workload.participant_ids())
            ours_write, logged = _timed(lambda: log_tracker(federated, workload, values))
            federated.end()
        stored = (count_points(stock.backend_uri), count_points(ours.backend_uri))
        assert stored == (sent, logged) == (workload.points,) * 2, (stored, sent, logged)

        print(f"  {store}: reading every series ...", flush=True)
        read_stock(stock_run, keys[:1])  # warm both servers' first request
        read_synergos(ours.url, ids, keys[:1])
        # One stock pass (thousands of calls, minutes); the one Synergos request, best of a few.
        stock_read, stock_points = _timed(lambda: read_stock(stock_run, keys))
        ours_reads = [_timed(lambda: read_synergos(ours.url, ids, keys)) for _ in range(repeat)]
        assert {stock_points, *(n for _, n in ours_reads)} == {workload.points}

        print(f"  {store}: long series: logging {long.points:,} points both ways ...", flush=True)
        long_ids = Ids("bench", "speed", "mlp", "run-long")
        long_keys = long.key_names()
        long_values = long.values(seed=2)
        long_stock = create_stock_run(stock.url, long_ids, long.participant_ids())
        assert log_stock(long_stock, long, long_values)[1] == 0
        with ExitStack() as stack:
            spool = stack.enter_context(tempfile.TemporaryDirectory(prefix="synmlops-spool-"))
            tracker, _ = open_tracker(ours.url, Path(spool))
            stack.callback(tracker.close)
            federated = tracker.run(*long_ids.parts, participants=long.participant_ids())
            log_tracker(federated, long, long_values)
            federated.end()
        print(f"  {store}: long series: reading ...", flush=True)
        stock_long, long_points = _timed(lambda: read_stock(long_stock, long_keys))
        ours_longs = [
            _timed(lambda: read_synergos(ours.url, long_ids, long_keys)) for _ in range(repeat)
        ]
        assert {long_points, *(n for _, n in ours_longs)} == {long.points}

        narrow_rows = narrow_write(store, stock, ours, narrow)

    ours_read = min(t for t, _ in ours_reads)
    ours_long = min(t for t, _ in ours_longs)
    print(f"  {store}: write {stock_write:.1f} s vs {ours_write:.2f} s, "
          f"read {stock_read:.1f} s vs {ours_read:.2f} s, "
          f"long series {stock_long:.1f} s vs {ours_long:.2f} s", flush=True)  # fmt: skip
    runs_keys = workload.runs * len(keys)
    long_series = long.runs * len(long_keys)
    return [
        Row(
            "write one cycle", store, workload.points, stock_write, ours_write,
            goal=10 if store == "SQLite" else 5,
            stock_how=f"log_batch, {STOCK_BATCH:,} points/request",
            ours_how=f"FederatedTracker, {transport.sent} requests",
            stored=f"{stored[0]:,} / {stored[1]:,}",
        ),
        Row(
            "read every series of the run", store, workload.points, stock_read, ours_read,
            goal=10, stock_how=f"get_metric_history × {runs_keys:,}",
            ours_how="GET …/metrics?keys=… × 1", stored=f"best of {repeat} requests",
        ),
        Row(
            f"read {long_series} series of {long.rounds:,} steps", store, long.points,
            stock_long, ours_long, goal=10,
            stock_how=f"get_metric_history × {long_series}",
            ours_how="GET …/metrics?keys=… × 1", stored=f"best of {repeat} requests",
        ),
        *narrow_rows,
    ]  # fmt: skip


def narrow_write(store: str, stock: Server, ours: Server, workload: Workload) -> list[Row]:
    """A cycle logged ``workload.keys`` keys per call, written both ways into fresh runs
    (Synergos: best of two runs, as the first request of a run pays for warming its pages);
    on SQLite, also the same points inserted straight into the Synergos store's ``metrics``
    table (``raw_sqlite_ceiling``) while the server idles, as many rows into a table that
    holds as many, so both paths meet the same indexes."""
    label = f"write one cycle, {workload.keys} keys per call"
    print(f"  {store}: {label}: stock log_batch ...", flush=True)
    values = workload.values(seed=3)
    stock_run = create_stock_run(
        stock.url, Ids("bench", "speed", "mlp", "run-narrow"), workload.participant_ids()
    )
    before = count_points(stock.backend_uri)
    stock_write, (sent, failed) = _timed(lambda: log_stock(stock_run, workload, values))
    stock_stored = count_points(stock.backend_uri) - before
    assert (sent, failed, stock_stored) == (workload.points, 0, workload.points)
    print(f"  {store}: {label}: FederatedTracker ...", flush=True)
    times: list[float] = []
    requests: list[int] = []
    ours_stored: list[int] = []
    for attempt in range(2):
        before = count_points(ours.backend_uri)
        ids = Ids("bench", "speed", "mlp", f"run-narrow-{attempt}")
        with ExitStack() as stack:
            spool = stack.enter_context(tempfile.TemporaryDirectory(prefix="synmlops-spool-"))
            tracker, transport = open_tracker(ours.url, Path(spool))
            stack.callback(tracker.close)
            federated = tracker.run(*ids.parts, participants=workload.participant_ids())
            seconds, logged = _timed(lambda run=federated: log_tracker(run, workload, values))
            federated.end()
            assert logged == workload.points
            times.append(seconds)
            requests.append(transport.sent)
        ours_stored.append(count_points(ours.backend_uri) - before)
    assert ours_stored == [workload.points] * 2, ours_stored
    ours_write = min(times)
    rows = [
        Row(
            label, store, workload.points, stock_write, ours_write,
            goal=20 if store == "SQLite" else 10,
            stock_how=f"log_batch, {STOCK_BATCH:,} points/request",
            ours_how=f"FederatedTracker, {requests[times.index(ours_write)]} requests, "
            "best of 2 runs",
            stored=f"{stock_stored:,} / {ours_stored[0]:,} and {ours_stored[1]:,}",
        ),
    ]  # fmt: skip
    print(f"  {store}: {label}: {stock_write:.1f} s vs {ours_write:.2f} s "
          f"({', '.join(f'{t:.2f}' for t in times)})", flush=True)  # fmt: skip
    if store == "SQLite":
        with ExitStack() as stack:
            spool = stack.enter_context(tempfile.TemporaryDirectory(prefix="synmlops-spool-"))
            tracker, _ = open_tracker(ours.url, Path(spool))
            stack.callback(tracker.close)
            ids = Ids("bench", "speed", "mlp", "run-ceiling")
            federated = tracker.run(*ids.parts, participants=workload.participant_ids())
            run_ids = [federated.run_id, *map(federated.participant_run_id,
                                              workload.participant_ids())]  # fmt: skip
        database = Path(ours.backend_uri.removeprefix("sqlite:///"))
        before = count_points(ours.backend_uri)
        ceiling = raw_sqlite_ceiling(database, run_ids, workload, values)
        raw = count_points(ours.backend_uri) - before
        print(f"  {store}: raw insert ceiling {ceiling:.2f} s", flush=True)
        rows.append(
            Row(
                f"{label}: share of the raw insert ceiling", store, workload.points,
                ceiling, ours_write, goal=0.75,
                stock_how="no MLflow: sqlite3 executemany into `metrics`, commit per 10,000 rows",
                ours_how="FederatedTracker, as above",
                stored=f"{raw:,} inserted raw",
            )
        )  # fmt: skip
    return rows


def concurrent(
    tmp: Path, store: str, backends: tuple[str | None, str | None], workload: Workload,
    cycles: int, workers: int,
) -> Row:  # fmt: skip
    with running(
        lambda: start_stock(tmp / f"stock-cluster-{store}", backends[0], workers),
        lambda: start_synergos(tmp / f"synergos-cluster-{store}", backends[1], workers),
    ) as (stock, ours):
        print(f"  {store}: {cycles} stock cycles at once ...", flush=True)
        a = run_concurrent("stock", stock.url, cycles, workload)
        print(f"  {store}: {cycles} tracker cycles at once ...", flush=True)
        b = run_concurrent("synergos", ours.url, cycles, workload)
        stored = (count_points(stock.backend_uri), count_points(ours.backend_uri))
    print(f"  {store}: {a.seconds:.1f} s vs {b.seconds:.2f} s, stored {stored}", flush=True)
    return Row(
        f"{cycles} cycles at once, {workers} workers", store, a.sent, a.seconds, b.seconds,
        goal=10.0, stock_how=f"log_batch; {a.failed} failed requests",
        ours_how=f"FederatedTracker; {b.failed} failed requests",
        stored=f"{stored[0]:,} / {stored[1]:,} of {a.sent:,}",
        ok=stored == (a.sent, b.sent) and a.sent == b.sent,
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("--participants", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=50)
    parser.add_argument("--keys", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--read-repeat", type=int, default=3, help="Synergos reads, best of")
    parser.add_argument("--long-participants", type=int, default=2)
    parser.add_argument("--long-steps", type=int, default=5000, help="points per long series")
    parser.add_argument("--long-keys", type=int, default=10)
    parser.add_argument("--narrow-participants", type=int, default=10)
    parser.add_argument("--narrow-rounds", type=int, default=1250)
    parser.add_argument("--narrow-keys", type=int, default=8, help="keys per logging call")
    parser.add_argument("--cycles", type=int, default=8, help="concurrent federated cycles")
    parser.add_argument("--cycle-participants", type=int, default=5)
    parser.add_argument("--cycle-rounds", type=int, default=50)
    parser.add_argument("--cycle-keys", type=int, default=20)
    parser.add_argument("--cluster-workers", type=int, default=4)
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-concurrent", action="store_true")
    parser.add_argument("--page-participants", type=int, default=50)
    parser.add_argument("--page-rounds", type=int, default=500)
    parser.add_argument("--page-keys", type=int, default=10, help="charts on the run page")
    parser.add_argument("--page-loads", type=int, default=9, help="page loads, median of")
    parser.add_argument("--no-page", action="store_true", help="skip the run page scenario")
    parser.add_argument(
        "--only", choices=["page", "write"], help="run the page scenario alone, or only the "
        "write scenarios (a few keys per call, the ceiling, concurrent cycles); the table is "
        "printed, and written only to an explicit --output",
    )  # fmt: skip
    parser.add_argument("--output", type=Path, default=None, help=f"Markdown table ({RESULTS})")
    args = parser.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    page = ChartWorkload(args.page_participants, args.page_rounds, args.page_keys)
    if args.only == "page":
        only_page(page, args)
        return
    write_only = args.only == "write"
    output = args.output or (None if write_only else RESULTS)

    workload = Workload(args.participants, args.rounds, args.keys)
    long = Workload(args.long_participants, args.long_steps, args.long_keys)
    cycle = Workload(args.cycle_participants, args.cycle_rounds, args.cycle_keys)
    narrow = Workload(args.narrow_participants, args.narrow_rounds, args.narrow_keys)
    cycles = 0 if args.no_concurrent else args.cycles
    report = Report(Machine.now(), workload, cycle, cycles, long, narrow=narrow)
    started = time.monotonic()
    stores: list[str] = ["SQLite"]
    if not args.no_postgres:
        reason = postgres_available()
        if reason is None:
            stores.append("PostgreSQL")
        else:
            print(f"PostgreSQL skipped ({reason}); `bash scripts/services.sh` starts it")
    with tempfile.TemporaryDirectory(prefix="synmlops-bench-") as folder:
        tmp = Path(folder)
        for store in stores:
            with ExitStack() as stack:

                def backends(store: str = store) -> tuple[str | None, str | None]:
                    if store == "SQLite":
                        return None, None
                    stock = stack.enter_context(postgres_database("synmlops_bench_stock"))
                    ours = stack.enter_context(postgres_database("synmlops_bench_ours"))
                    return stock, ours

                if write_only:
                    print(f"{store}: {narrow.describe()}", flush=True)
                    rows = write_cycle(tmp, store, backends(), narrow, args.workers)
                else:
                    print(f"{store}: {workload.describe()}", flush=True)
                    rows = single_cycle(tmp, store, backends(), workload, args.workers,
                                        args.read_repeat, long, narrow)  # fmt: skip
                if not args.no_concurrent:
                    print(f"{store}: {args.cycles} × {cycle.describe()}", flush=True)
                    rows.append(concurrent(tmp, store, backends(), cycle, args.cycles,
                                           args.cluster_workers))  # fmt: skip
                report.rows += rows
        if not args.no_page and not write_only:
            reason = chromium_available()
            if reason is None:
                print(f"Run page: {page.describe()}", flush=True)
                report.page_rows += page_scenario(tmp, page, args.page_loads, args.workers)
            else:
                print(f"Run page skipped ({reason})")
    report.machine = report.machine.finished()
    report.seconds = time.monotonic() - started
    report.print()
    if output is not None:
        output.write_text(report.markdown())
        print(f"written to {output}")


def write_cycle(
    tmp: Path, store: str, backends: tuple[str | None, str | None], narrow: Workload,
    workers: int,
) -> list[Row]:  # fmt: skip
    """``--only write``: the cycle logged a few keys per call (and its ceiling) alone."""
    with running(
        lambda: start_stock(tmp / f"stock-write-{store}", backends[0], workers),
        lambda: start_synergos(tmp / f"synergos-write-{store}", backends[1], workers),
    ) as (stock, ours):
        return narrow_write(store, stock, ours, narrow)


def only_page(page: ChartWorkload, args: argparse.Namespace) -> None:
    """``--only page``: the run page scenario alone."""
    reason = chromium_available()
    if reason is not None:
        raise SystemExit(f"the run page scenario needs Chromium: {reason}")
    empty = Workload(0, 0, 0)
    report = Report(Machine.now(), empty, empty, 0, empty)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="synmlops-bench-") as folder:
        print(f"Run page: {page.describe()}", flush=True)
        report.page_rows += page_scenario(Path(folder), page, args.page_loads, args.workers)
    report.machine = report.machine.finished()
    report.seconds = time.monotonic() - started
    report.print()
    if args.output:
        args.output.write_text(report.markdown())
        print(f"written to {args.output}")


if __name__ == "__main__":
    main()
