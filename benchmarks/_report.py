"""The benchmark's one table: printed with rich, written as Markdown for the README."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from benchmarks._workload import STOCK_BATCH, Workload

if TYPE_CHECKING:
    from benchmarks.page_bench import PageRow


def _memory() -> str:
    try:
        with open("/proc/meminfo") as handle:
            kib = int(handle.readline().split()[1])
        return f"{kib / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        return "unknown"


def _nproc() -> int:
    try:
        return int(subprocess.run(["nproc"], capture_output=True, text=True).stdout)
    except (OSError, ValueError):
        return os.cpu_count() or 0


@dataclass(frozen=True)
class Machine:
    cpus: int
    memory: str
    python: str
    mlflow: str
    date: str
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float] | None = None

    @classmethod
    def now(cls) -> Machine:
        from importlib.metadata import version

        return cls(
            cpus=_nproc(),
            memory=_memory(),
            python=platform.python_version(),
            mlflow=version("mlflow"),
            date=datetime.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z"),
            load_before=os.getloadavg(),
        )

    def finished(self) -> Machine:
        return replace(self, load_after=os.getloadavg())

    def describe(self) -> str:
        load = "/".join(f"{x:.1f}" for x in self.load_before)
        if self.load_after:
            load += " before, " + "/".join(f"{x:.1f}" for x in self.load_after) + " after"
        return (f"{self.cpus} CPUs (nproc), {self.memory} memory, Python {self.python}, "
                f"MLflow {self.mlflow}, {self.date}; load average (1/5/15 min) {load}")  # fmt: skip


@dataclass
class Row:
    scenario: str
    store: str
    points: int
    stock_seconds: float
    ours_seconds: float
    goal: float | None
    stock_how: str
    ours_how: str
    stored: str
    ok: bool = True

    @property
    def ratio(self) -> float:
        return self.stock_seconds / self.ours_seconds

    def cells(self) -> list[str]:
        goal = "—" if self.goal is None else f"≥ {self.goal:g}×"
        met = "" if self.goal is None else (" ✓" if self.ratio >= self.goal else " ✗")
        stock = f"{self.points / self.stock_seconds:,.0f}"
        ours = f"{self.points / self.ours_seconds:,.0f}"
        return [
            self.scenario,
            self.store,
            f"{self.points:,}",
            f"{stock} ({self.stock_how}; {self.stock_seconds:.1f} s)",
            f"{ours} ({self.ours_how}; {self.ours_seconds:.2f} s)",
            f"**{self.ratio:.1f}×**{met}",
            goal,
            self.stored + ("" if self.ok else " — MISMATCH"),
        ]


HEADERS = ["scenario", "store", "points", "stock MLflow, points/s", "Synergos, points/s",
           "ratio", "goal", "check: points stored (stock / Synergos)"]  # fmt: skip


@dataclass
class Report:
    machine: Machine
    workload: Workload
    cycle: Workload
    cycles: int
    long: Workload
    rows: list[Row] = field(default_factory=list)
    seconds: float = 0.0
    page_rows: list[PageRow] = field(default_factory=list)
    narrow: Workload | None = None

    def workloads(self) -> list[str]:
        page = [
            "Run page: the run logged with `FederatedTracker` into `synmlops serve --workers 2`, "
            "opened in Debian's headless Chromium twice over: in a window tall enough for "
            "every chart to be in view (all fetched and drawn: the worst case) and in an "
            "ordinary 1440×900 window (the page fetches only the charts near the view). The "
            "time runs from navigation start to the page's own mark on the last chart in the "
            "window drawn; the median of the loads after a warm-up load."
        ]
        if not self.rows:
            return page if self.page_rows else []
        lines = [
            f"One federated cycle: {self.workload.describe()}; stock MLflow logs with "
            f"`log_batch`, {STOCK_BATCH:,} points per request, into `mlflow server --workers "
            f"2`; Synergos logs through `FederatedTracker` into `synmlops serve --workers 2`. "
            "Times are end to end (client and server), from the first point logged to the "
            "last one stored; creating the runs is not counted.",
            "Reads: every series of the run (each key of the global run and of every "
            "participant), what the Command Station's run view shows: many short series, "
            "one `get_metric_history` call each for stock MLflow, one request for Synergos. "
            f"Long series: a second run, {self.long.describe()}, logged both ways and read "
            "back the same two ways, so the stock calls' fixed cost is spread over "
            f"{self.long.rounds:,} points each.",
        ]
        if self.narrow is not None:
            lines.append(
                f"A few keys per call: {self.narrow.describe()}, each run's {self.narrow.keys} "
                "keys of a round in one logging call (stock: the same `log_batch` requests of "
                f"{STOCK_BATCH:,} points; Synergos: best of two runs, the first request of a "
                "run warming its pages). The ceiling: the same points inserted into the "
                "Synergos store's `metrics` table (holding the same rows already) with "
                "Python's `sqlite3`, one prepared `executemany` per 10,000 rows in primary-key "
                "order, each its own transaction, with the bulk write's connection settings "
                "(`PRAGMA` cache_size) — no HTTP, no MLflow, no `latest_metrics`; "
                "its ratio is Synergos' rate over the ceiling's."
            )
        if self.cycles:
            lines.append(
                f"Concurrent: {self.cycles} federated cycles at once (one process each), each "
                f"{self.cycle.describe()}, into servers with 4 workers; stored points are "
                "counted in the database afterwards."
            )
        return lines + (page if self.page_rows else [])

    def print(self) -> None:
        from rich.console import Console
        from rich.table import Table

        from benchmarks.page_bench import PAGE_HEADERS

        console = Console()
        if self.rows:
            table = Table(title="Synergos metric path vs stock MLflow (points/s)", show_lines=True)
            for header in HEADERS:
                table.add_column(header, overflow="fold")
            for row in self.rows:
                table.add_row(*(cell.replace("**", "") for cell in row.cells()))
            console.print(table)
        if self.page_rows:
            page = Table(
                title="The Command Station's run page in headless Chromium", show_lines=True
            )
            for header in PAGE_HEADERS:
                page.add_column(header, overflow="fold")
            for page_row in self.page_rows:
                page.add_row(*(cell.replace("**", "") for cell in page_row.cells()))
            console.print(page)
        for line in self.workloads():
            console.print(f"• {line}", markup=False)
        console.print(f"• {self.machine.describe()}; {self.seconds:.0f} s in all", markup=False)

    def markdown(self) -> str:
        lines = [
            "# `make bench` results",
            "",
            f"Machine: {self.machine.describe()}. The whole benchmark took {self.seconds:.0f} s.",
        ]
        if self.rows:
            lines += ["", "| " + " | ".join(HEADERS) + " |",
                      "| " + " | ".join("---" for _ in HEADERS) + " |"]  # fmt: skip
            lines += ["| " + " | ".join(row.cells()) + " |" for row in self.rows]
        if self.page_rows:
            from benchmarks.page_bench import PAGE_HEADERS

            lines += ["", "| " + " | ".join(PAGE_HEADERS) + " |",
                      "| " + " | ".join("---" for _ in PAGE_HEADERS) + " |"]  # fmt: skip
            lines += ["| " + " | ".join(row.cells()) + " |" for row in self.page_rows]
        lines += ["", *(f"- {line}" for line in self.workloads())]
        lines += ["", "Repeat with `make bench` (or `.venv/bin/python -m benchmarks --help`).", ""]
        return "\n".join(lines)
