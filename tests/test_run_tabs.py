"""The run page's Hardware and Logs tabs in headless Chromium against a real server: charts
per hardware statistic from a real SystemMonitor, the participants × rounds heatmap, log
records from the tracker's handler with filters and a live tail, 100,000 records scrolled in
a virtualized list, deep links and the layout at phone and desktop widths."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest
from sqlalchemy import create_engine
from test_command_station import OVERFLOW
from tracking_support import fast_config

from synergos_mlops import FederatedTracker
from synergos_mlops.storage.logs import LogRecord, insert_records

PARTICIPANTS = ["w1", "w2"]
ROUNDS = 3
#: The layout check's boxes, with the tabs' own.
BOXED = (
    ".card, .chart, .uplot, .scroll, .charts, .sub, h1, .tabs, .log-table, .log-filters, .log-row"
)


@dataclass
class Logged:
    collaboration: str
    url: str

    def page(self, run: str, tab: str = "") -> str:
        path = "/".join(quote(x, safe="") for x in (self.collaboration, "p", "e", run))
        return f"{self.url}/synergos/runs/{path}" + (f"#{tab}" if tab else "")


def _logger(name: str, handler: logging.Handler) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    return logger


@pytest.fixture(scope="module")
def logged(shared_server, tmp_path_factory: pytest.TempPathFactory) -> Logged:  # type: ignore[no-untyped-def]
    """A run of two monitored participants over three rounds, w2 the straggler, with log
    records from the orchestrator and both workers."""
    collaboration = f"tabs {uuid.uuid4().hex[:6]}"
    config = fast_config(tmp_path_factory.mktemp("tabs-tracker"))
    with (
        FederatedTracker(shared_server.url, config) as tracker,
        tracker.run(collaboration, "p", "e", "monitored", participants=PARTICIPANTS) as run,
    ):  # fmt: skip
        ttp = _logger("TTP_main", run.log_handler())
        workers = {p: _logger(f"WKR_{p}", run.log_handler(participant=p)) for p in PARTICIPANTS}
        with run.monitor("w1", interval=0.2), run.monitor("w2", interval=0.2):
            for r in range(ROUNDS):
                ttp.info("round %d starts", r, extra={"round": r})
                time.sleep(0.5)
                run.log_metrics({"train/loss": 1.0 / (r + 1)}, step=r, participant="w1")
                workers["w1"].debug("w1 local training done in round %d", r)
                time.sleep(0.5)
                run.log_metrics({"train/loss": 1.2 / (r + 1)}, step=r, participant="w2")
                workers["w2"].warning("w2 is slow in round %d", r, extra={"round": r})
                run.log_metrics({"train/loss": 1.1 / (r + 1)}, step=r)
        run.flush()
    return Logged(collaboration, shared_server.url)


@pytest.fixture
def page(browser) -> Iterator[object]:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    page.close()
    assert not errors, errors


def test_hardware_tab_draws_a_chart_per_statistic_and_a_cell_per_participant_and_round(
    logged: Logged, page
) -> None:  # type: ignore[no-untyped-def]
    page.goto(logged.page("monitored"))
    page.locator("#latest-metrics").wait_for()
    # The Overview's charts leave the hardware statistics to their tab.
    assert page.locator('.chart[data-metric^="system/"]').count() == 0
    assert "system/" not in page.locator("#latest-metrics").inner_text()
    page.locator("#tab-hardware").click()
    assert page.url.endswith("#hardware")
    page.locator("#hardware-charts .chart").first.wait_for()
    charts = page.locator("#hardware-charts .chart")
    keys = [charts.nth(i).get_attribute("data-system-key") for i in range(charts.count())]
    assert "system/cpu_utilization_percentage" in keys
    assert "system/process_memory_rss_megabytes" in keys
    assert all(k and k.startswith("system/") for k in keys)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#hardware-charts .chart')]"
        ".every(c => ['drawn', 'empty'].includes(c.dataset.state))"
    )
    cpu = page.locator('.chart[data-system-key="system/cpu_utilization_percentage"]')
    assert cpu.get_attribute("data-state") == "drawn"
    assert cpu.get_attribute("data-lines") == "2" and cpu.get_attribute("data-rounds") == str(
        ROUNDS
    )

    heatmap = page.locator("#heatmap")
    assert heatmap.locator("tbody tr").count() == len(PARTICIPANTS)
    assert heatmap.locator("td.heat").count() == len(PARTICIPANTS) * ROUNDS
    # Round durations: w2, the straggler, is the longer in every round after the first.
    durations = page.evaluate(
        """() => [...document.querySelectorAll('#heatmap tbody tr')].map(tr =>
             [...tr.querySelectorAll('td.heat')].map(td => parseFloat(td.textContent)))"""
    )
    assert all(b > a for a, b in zip(durations[0][1:], durations[1][1:], strict=True))
    assert "w2, round 1:" in (heatmap.locator('tr[data-participant="w2"] td[data-round="1"]')
                              .get_attribute("title") or "")  # fmt: skip
    page.select_option("#heatmap-figure", "cpu_mean_percentage")
    assert heatmap.get_attribute("data-figure") == "cpu_mean_percentage"
    assert page.locator("#heatmap td.heat").count() == len(PARTICIPANTS) * ROUNDS
    # Back to the Overview without reloading: its charts are still there.
    page.locator("#tab-overview").click()
    assert page.locator("#panel-overview").is_visible()
    assert not page.locator("#panel-hardware").is_visible()


def test_a_run_without_samples_says_how_to_record_them(
    logged: Logged, page, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with (
        FederatedTracker(logged.url, fast_config(tmp_path)) as tracker,
        tracker.run(logged.collaboration, "p", "e", "unmonitored", participants=["w1"]) as run,
    ):  # fmt: skip
        run.log_metrics({"train/loss": 1.0}, step=0, participant="w1")
    page.goto(logged.page("unmonitored", "hardware"))
    empty = page.locator("#hardware-empty")
    empty.wait_for()
    assert "synmlops monitor" in empty.inner_text()
    page.locator("#tab-logs").click()
    page.locator("#logs-empty").wait_for(state="visible")
    assert "run.log_handler()" in page.locator("#logs-empty").inner_text()
    assert "--gelf-port" in page.locator("#logs-empty").inner_text()


def _messages(page) -> list[str]:  # type: ignore[no-untyped-def]
    return list(
        page.eval_on_selector_all(
            "#log-scroll .log-row .log-message", "els => els.map(e => e.textContent)"
        )
    )


def _wait_rows(page, count: int, contains: str = "") -> None:  # type: ignore[no-untyped-def]
    """Wait until the list shows ``count`` rows, each message holding ``contains``."""
    page.wait_for_function(
        """([count, text]) => {
             const m = [...document.querySelectorAll('#log-scroll .log-message')];
             return m.length === count && m.every(e => e.textContent.includes(text)); }""",
        arg=[count, contains],
    )


def test_logs_tab_lists_the_records_and_the_filters_narrow_them(logged: Logged, page) -> None:  # type: ignore[no-untyped-def]
    page.goto(logged.page("monitored", "logs"))  # the deep link opens the tab
    page.locator('#log-scroll[data-state="loaded"]').wait_for()
    assert (
        page.locator("#panel-logs").is_visible()
        and not page.locator("#panel-overview").is_visible()
    )
    assert page.locator("#tab-logs").get_attribute("aria-selected") == "true"
    assert len(_messages(page)) == 3 * ROUNDS
    assert "round 0 starts" in _messages(page)
    # The header counts the records and gives their times, not the store's record ids.
    status = page.locator("#log-status").inner_text()
    assert status.startswith(f"{3 * ROUNDS} records, ") and "#" not in status

    page.select_option("#log-level", "WARNING")
    _wait_rows(page, ROUNDS, "w2 is slow")
    page.select_option("#log-level", "")
    page.select_option("#log-participant", "w1")
    _wait_rows(page, ROUNDS, "w1 local training")
    page.select_option("#log-participant", "")
    page.select_option("#log-role", "TTP")
    _wait_rows(page, ROUNDS, "starts")
    page.select_option("#log-role", "")
    page.fill("#log-text", "round 2")
    _wait_rows(page, 3, "round 2")
    page.fill("#log-text", "no such text anywhere")
    page.locator("#logs-empty", has_text="No records match").wait_for()

    # A record's fields open on click.
    page.fill("#log-text", "slow in round 1")
    _wait_rows(page, 1, "slow in round 1")
    page.locator("#log-scroll .log-row").click()
    detail = page.locator("#log-detail")
    detail.wait_for(state="visible")
    assert '"round": 1' in detail.inner_text() and "WKR_w2" in detail.inner_text()


def test_a_record_logged_while_the_run_is_running_appears_without_reload(
    logged: Logged, page, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with (
        FederatedTracker(logged.url, fast_config(tmp_path)) as tracker,
        tracker.run(logged.collaboration, "p", "e", "live", participants=["w1"]) as run,
    ):  # fmt: skip
        worker = _logger("WKR_w1", run.log_handler(participant="w1"))
        worker.info("first record")
        run.flush()
        page.goto(logged.page("live", "logs"))
        page.locator("#log-scroll .log-row", has_text="first record").wait_for()
        worker.error("second record, while running")
        run.flush()
        page.locator("#log-scroll .log-row", has_text="second record").wait_for(timeout=15000)
        assert _messages(page) == ["first record", "second record, while running"]
        # The list was at the bottom and stays there.
        assert page.evaluate(
            "() => { const s = document.getElementById('log-scroll');"
            " return s.scrollTop + s.clientHeight >= s.scrollHeight - 24; }"
        )


def test_a_hundred_thousand_records_scroll_in_a_virtualized_list(
    shared_server, logged: Logged, page, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    with (
        FederatedTracker(logged.url, fast_config(tmp_path)) as tracker,
        tracker.run(logged.collaboration, "p", "e", "chatty", participants=["w1"]),
    ):  # fmt: skip
        pass
    engine = create_engine(f"sqlite:///{shared_server.store / 'mlflow.db'}")
    run_key = logged.collaboration
    total = 100_000
    try:
        for start in range(0, total, 20_000):
            insert_records(engine, [
                LogRecord(
                    timestamp=1_700_000_000_000 + n, level=20, logger="TTP_main", role="TTP",
                    message=f"record {n}", collaboration=logged.collaboration, project="p",
                    experiment="e", run="chatty", fields={"n": n}, record_id=f"{run_key}-{n}",
                )
                for n in range(start, start + 20_000)
            ])  # fmt: skip
    finally:
        engine.dispose()
    page.goto(logged.page("chatty", "logs"))
    page.locator('#log-scroll[data-state="loaded"]').wait_for()
    # Opened at the newest record, at the bottom.
    page.locator("#log-scroll .log-row", has_text=f"record {total - 1}").wait_for()
    rows = page.locator("#log-scroll .log-row").count()
    assert 0 < rows < 200
    held = lambda: int(page.locator("#log-scroll").get_attribute("data-records") or 0)  # noqa: E731
    first = lambda: int(page.locator("#log-scroll").get_attribute("data-first") or 0)  # noqa: E731
    before = first()
    # Scrolling to the top loads older pages, and the rows in view stay put.
    for _ in range(25):
        # Read the first record before scrolling: a quick page would otherwise already be
        # in, and the wait would be for one more that no scroll asks for.
        older = f"() => +document.getElementById('log-scroll').dataset.first < {first()}"
        page.locator("#log-scroll").evaluate("s => { s.scrollTop = 0; }")
        page.wait_for_function(older, timeout=15000)
    assert first() < before
    assert held() <= 20_000  # bounded, far below 100,000
    assert page.locator("#log-scroll .log-row").count() < 200
    shown = _messages(page)
    numbers = [int(m.split()[1]) for m in shown]
    assert numbers == sorted(numbers) and numbers == list(
        range(numbers[0], numbers[0] + len(numbers))
    )
    # Back down to the newest: the dropped newer pages come back.
    for _ in range(30):
        page.locator("#log-scroll").evaluate("s => { s.scrollTop = s.scrollHeight; }")
        if page.locator("#log-scroll .log-row", has_text=f"record {total - 1}").count():
            break
        page.wait_for_timeout(300)
    page.locator("#log-scroll .log-row", has_text=f"record {total - 1}").wait_for()


@pytest.mark.parametrize("width", [390, 1440])
@pytest.mark.parametrize("tab", ["hardware", "logs"])
def test_tabs_have_no_horizontal_overflow(logged: Logged, browser, width: int, tab: str) -> None:  # type: ignore[no-untyped-def]
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(logged.page("monitored", tab))
    if tab == "hardware":
        page.locator("#heatmap").wait_for()
        page.wait_for_function(
            "() => [...document.querySelectorAll('#hardware-charts .chart')]"
            ".every(c => ['drawn', 'empty'].includes(c.dataset.state))"
        )
    else:
        page.locator('#log-scroll[data-state="loaded"]').wait_for()
    page.locator("#main").evaluate("main => { main.scrollTop = main.scrollHeight / 2; }")
    found = page.evaluate(OVERFLOW, BOXED)
    page.screenshot(path=f"/tmp/run-tabs-{tab}-{width}.png", full_page=False)
    assert found["page"] <= 0, f"{tab} at {width}: the page scrolls sideways by {found['page']} px"
    assert found["main"] <= 0, (
        f"{tab} at {width}: the content scrolls sideways by {found['main']} px"
    )
    assert found["out"] == [], f"{tab} at {width}: boxes wider than their container"
    page.close()


def test_the_demo_runs_hardware_tab_shows_samples_in_every_round(
    shared_server,
    page,
    tmp_path: Path,  # type: ignore[no-untyped-def]
) -> None:
    """The demo trains in hundredths of a second a round; it paces its rounds so that each holds
    hardware samples: every heatmap cell has a value, every chart is drawn."""
    from synergos_mlops.demo import DemoConfig, TrainingConfig, run_demo

    config = DemoConfig(
        training=TrainingConfig(rounds=3, epochs=1, participants=2),
        collaboration=f"demo-{uuid.uuid4().hex[:6]}",
        run="paced",
    )
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        run_demo(tracker, config)
    path = "/".join(
        quote(x, safe="")
        for x in (config.collaboration, config.project, config.experiment, "paced")
    )
    page.goto(f"{shared_server.url}/synergos/runs/{path}#hardware")
    page.locator("#heatmap").wait_for()
    for figure in ("samples", "cpu_mean_percentage", "duration_seconds"):
        page.select_option("#heatmap-figure", figure)
        cells = page.locator("#heatmap td.heat").evaluate_all(
            "cells => cells.map(c => c.textContent)"
        )
        assert len(cells) == 2 * 3 and "·" not in cells, (figure, cells)
        assert all(float(c) > 0 for c in cells), (figure, cells)
    # The figure's unit is said once, in its name; the cells are bare numbers.
    assert "(s)" in page.locator("#heatmap-figure option[value=duration_seconds]").inner_text()
    charts = page.locator("#hardware-charts .chart")
    assert charts.count() > 0
    page.wait_for_function(
        "() => [...document.querySelectorAll('#hardware-charts .chart')]"
        ".every(c => c.dataset.state === 'drawn')"
    )
