"""The cluster tier's case: several federated cycles logging at once, one process each."""

from __future__ import annotations

import multiprocessing
import queue
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._workload import (
    Ids,
    Workload,
    create_stock_run,
    log_stock,
    log_tracker,
    open_tracker,
)


@dataclass(frozen=True)
class Outcome:
    sent: int
    failed: int
    started: float
    ended: float


def _cycle(kind: str, url: str, index: int, workload: Workload, barrier: Any, out: Any) -> None:
    ids = Ids("bench", "cluster", "tuning", f"cycle-{index}")
    values = workload.values(seed=index)
    if kind == "stock":
        run = create_stock_run(url, ids, workload.participant_ids())
        barrier.wait()
        started = time.time()
        sent, failed = log_stock(run, workload, values)
        out.put(Outcome(sent, failed, started, time.time()))
        return
    import mlflow.utils.validation  # noqa: F401 - the key check's import, paid before the start
    # as the stock client's imports are: an orchestrator has imported both long before.

    with tempfile.TemporaryDirectory(prefix="synmlops-bench-spool-") as spool:
        tracker, transport = open_tracker(url, Path(spool))
        with tracker.run(ids.collaboration, ids.project, ids.experiment, ids.run,
                         participants=workload.participant_ids()) as federated:  # fmt: skip
            barrier.wait()
            started = time.time()
            sent = log_tracker(federated, workload, values)
            ended = time.time()
        tracker.close()
        out.put(Outcome(sent, transport.failed, started, ended))


@dataclass(frozen=True)
class ConcurrentResult:
    cycles: int
    sent: int
    failed: int
    seconds: float

    @property
    def rate(self) -> float:
        return self.sent / self.seconds


def run_concurrent(kind: str, url: str, cycles: int, workload: Workload) -> ConcurrentResult:
    """``cycles`` processes log one cycle each, released together once their runs exist;
    the time is from the first start to the last point stored."""
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(cycles, timeout=600)
    out = context.Queue()
    processes = [
        context.Process(target=_cycle, args=(kind, url, index, workload, barrier, out))
        for index in range(cycles)
    ]
    for process in processes:
        process.start()
    outcomes: list[Outcome] = []
    while len(outcomes) < cycles:
        try:
            outcomes.append(out.get(timeout=1))
        except queue.Empty:
            dead = [p.exitcode for p in processes if p.exitcode not in (None, 0)]
            if dead:
                for process in processes:
                    process.terminate()
                raise RuntimeError(f"a {kind} cycle process failed (exit {dead[0]})") from None
    for process in processes:
        process.join(60)
        if process.exitcode != 0:
            raise RuntimeError(f"a {kind} cycle process failed (exit {process.exitcode})")
    return ConcurrentResult(
        cycles=cycles,
        sent=sum(o.sent for o in outcomes),
        failed=sum(o.failed for o in outcomes),
        seconds=max(o.ended for o in outcomes) - min(o.started for o in outcomes),
    )
