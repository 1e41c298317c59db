"""The Command Station's run page at scale: time from opening the page to every chart drawn.

``python -m benchmarks --only page`` runs this scenario alone. A run of 50 participants ×
500 rounds × 10 chartable keys (plus the global run) is logged with the ``FederatedTracker``
into a real ``synmlops serve``; Debian's headless Chromium then opens the run page, tall
enough for all ten charts to be in view at once (so every series is fetched and drawn, the
worst case), and the page itself reports when the last chart is drawn
(``document.body.dataset.chartsDrawnMs``, milliseconds since navigation started). The
breakdown comes from the browser's Resource Timing of the series request and the page's
own marks around parsing and drawing.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks._servers import running, start_synergos
from benchmarks._workload import STAGES, STATISTICS, Ids, Workload, log_tracker, open_tracker

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TARGET_SECONDS = 1.0
#: (what is measured, window): every chart in view at once (the worst case: all ten fetched
#: and drawn), and an ordinary window, where only the charts near the view are fetched.
VIEWPORTS = [
    ("every chart drawn", {"width": 1440, "height": 2600}),
    ("every chart in view drawn", {"width": 1440, "height": 900}),
]
#: Milliseconds since navigation began at which every chart in the window was drawn, by the
#: page's own marks (charts below the window are not waited for); false until then.
IN_VIEW_DRAWN = """() => {
  const charts = [...document.querySelectorAll(".chart")];
  const inView = charts.filter((c) => c.getBoundingClientRect().top < window.innerHeight);
  if (!inView.length || !inView.every((c) => c.dataset.drawnMs)) return false;
  return Math.max(...inView.map((c) => +c.dataset.drawnMs));
}"""

#: What the page measured of its own load, read once every chart is drawn.
TIMINGS = """() => {
  const body = document.body.dataset;
  const series = performance.getEntriesByType("resource")
    .filter((e) => e.name.includes("/metrics?") && e.responseEnd);
  const marks = window.__synergos.timings || {};
  return {
    charts: +body.charts,
    drawn: +body.chartsDrawn,
    requests: series.length,
    waiting: Math.max(...series.map((e) => e.responseStart - e.requestStart)),
    transfer: Math.max(...series.map((e) => e.responseEnd - e.responseStart)),
    bytes: series.reduce((n, e) => n + e.encodedBodySize, 0),
    decoded: series.reduce((n, e) => n + e.decodedBodySize, 0),
    firstRequest: Math.min(...series.map((e) => e.startTime)),
    lastResponse: Math.max(...series.map((e) => e.responseEnd)),
    parse: marks.parse || 0,
    draw: marks.draw || 0,
  };
}"""


@dataclass(frozen=True)
class ChartWorkload(Workload):
    """Round-level keys the run page draws as charts (``train/accuracy``, ...), not the
    per-class keys the default workload logs."""

    def key_names(self) -> list[str]:
        names = [f"{stage}/{statistic}" for statistic in STATISTICS for stage in STAGES]
        return names[: self.keys]


@dataclass
class PageRow:
    scenario: str
    points: int
    seconds: float  # median page load to every chart drawn
    loads: list[float]
    breakdown: str

    def cells(self) -> list[str]:
        met = " ✓" if self.seconds < TARGET_SECONDS else " ✗"
        runs = ", ".join(f"{s:.2f}" for s in self.loads)
        return [self.scenario, f"{self.points:,}", f"**{self.seconds:.2f} s**{met} (loads: {runs})",
                f"< {TARGET_SECONDS:g} s", self.breakdown]  # fmt: skip


PAGE_HEADERS = ["scenario", "points", "open the run page → every chart drawn (median)",
                "target", "where the time goes (median load)"]  # fmt: skip


def _breakdown(t: dict[str, Any]) -> str:
    span = (t["lastResponse"] - t["firstRequest"]) / 1000
    return (
        f"until the series are asked for {t['firstRequest'] / 1000:.2f} s (page, tree and "
        f"run JSON); series request{'s' if t['requests'] > 1 else ''} ×{t['requests']} "
        f"{span:.2f} s (server "
        f"≤ {t['waiting'] / 1000:.2f} s to first byte, transfer ≤ {t['transfer'] / 1000:.2f} s, "
        f"{t['decoded'] / 1e6:.1f} MB JSON); JSON parse {t['parse'] / 1000:.2f} s; preparing "
        f"and drawing {t['drawn']} uPlot charts {t['draw'] / 1000:.2f} s"
    )


def chromium_available() -> str | None:
    if not os.path.exists(CHROMIUM):
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    return None


def page_scenario(tmp: Path, workload: ChartWorkload, loads: int, workers: int) -> list[PageRow]:
    from playwright.sync_api import sync_playwright

    ids = Ids("bench", "page", "mlp", "run-page")
    with running(lambda: start_synergos(tmp / "synergos-page", None, workers)) as (ours,):
        print(f"  page: logging {workload.points:,} points with the FederatedTracker ...")
        with tempfile.TemporaryDirectory(prefix="synmlops-spool-") as spool:
            tracker, _ = open_tracker(ours.url, Path(spool))
            try:
                run = tracker.run(*ids.parts, participants=workload.participant_ids())
                started = time.perf_counter()
                log_tracker(run, workload, workload.values(seed=3))
                run.end()
            finally:
                tracker.close()
        print(f"  page: logged in {time.perf_counter() - started:.1f} s; opening the page ...")
        url = f"{ours.url}/synergos/runs/{ids.path}"
        rows = []
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                for what, viewport in VIEWPORTS:
                    timings = _loads(browser, url, viewport, loads)
                    timings.sort(key=lambda t: t["total"])
                    rows.append(
                        PageRow(
                            f"run page, {workload.describe()}: {what} "
                            f"({viewport['width']}×{viewport['height']} px)",
                            workload.points,
                            statistics.median(t["total"] for t in timings) / 1000,
                            [t["total"] / 1000 for t in timings],
                            _breakdown(timings[len(timings) // 2]),
                        )
                    )
            finally:
                browser.close()
    return rows


def _loads(browser: Any, url: str, viewport: dict[str, int], loads: int) -> list[dict[str, Any]]:
    timings = []
    for attempt in range(loads + 1):  # the first load warms the server and the browser
        page = browser.new_page(viewport=viewport)
        page.goto(url)
        total = page.wait_for_function(IN_VIEW_DRAWN, timeout=120_000)
        found = {"total": total.json_value(), **page.evaluate(TIMINGS)}
        page.close()
        if attempt:
            timings.append(found)
            size = f"{viewport['width']}×{viewport['height']}"
            print(f"  page {size}: {found['drawn']} of {found['charts']} charts drawn "
                  f"after {found['total'] / 1000:.2f} s")  # fmt: skip
    return timings
