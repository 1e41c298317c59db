"""The Command Station page: served at /synergos/, deep links, iframes, and a real browser
(Debian's headless Chromium through Playwright) following the tree to a run."""

from __future__ import annotations

import os
import re
import uuid
import zipfile
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
from federated_data import LoggedRun, log_federated_run
from mlflow import MlflowClient
from mlflow.entities import Metric

from synergos_mlops.server.routes.station import STATIC
from synergos_mlops.views.run_data import DATA_FILES

SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "img" / "run-page.png"


@pytest.fixture(scope="module")
def logged(shared_server) -> LoggedRun:  # type: ignore[no-untyped-def]
    return log_federated_run(
        shared_server.url,
        collaboration=f"Cardiac Alliance {uuid.uuid4().hex[:4]}",
        project="heart failure",
        experiment="fedprox μ=0.1",
        run="cycle 1",
        participants=["hospital-a", "hospital b", "klinik-ü", "clinic-4"],
        rounds=15,
        epochs=3,
    )


def test_page_is_served_at_synergos_with_its_assets(shared_server) -> None:
    response = requests.get(f"{shared_server.url}/synergos/", timeout=30)
    assert response.status_code == 200
    assert '<base href="/synergos/">' in response.text
    for asset in ("static/js/main.js", "static/app.css", "static/vendor/uPlot.iife.min.js"):
        assert requests.get(f"{shared_server.url}/synergos/{asset}", timeout=30).status_code == 200
    redirect = requests.get(f"{shared_server.url}/synergos", timeout=30, allow_redirects=False)
    assert redirect.headers["location"].endswith("/synergos/")


def test_every_module_is_served_as_javascript_and_imports_only_served_modules(
    shared_server,
) -> None:
    # A module script runs only with a JavaScript type; a module importing a missing file
    # stops the whole page.
    static = STATIC / "js"
    modules = sorted(p.name for p in static.glob("*.js"))
    assert "main.js" in modules
    for name in modules:
        response = requests.get(f"{shared_server.url}/synergos/static/js/{name}", timeout=30)
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/javascript"), name
        for imported in re.findall(r'^import .* from "\./([\w-]+\.js)";$', response.text, re.M):
            assert imported in modules, (name, imported)
        assert len(response.text.splitlines()) <= 300, f"{name} is over 300 lines"


def test_deep_links_answer_with_the_page(shared_server, logged: LoggedRun) -> None:
    for view in (f"runs/{logged.path}", f"c/{quote(logged.collaboration, safe='')}"):
        response = requests.get(f"{shared_server.url}/synergos/{view}", timeout=30)
        assert response.status_code == 200 and "js/main.js" in response.text


def test_static_files_never_leave_the_static_folder(shared_server) -> None:
    for path in (
        "static/..%2F..%2Fapp.py",
        "static/%2e%2e/station.py",
        "static/",
        "static/nope.js",
    ):
        response = requests.get(f"{shared_server.url}/synergos/{path}", timeout=30)
        assert response.status_code == 404, path


def test_frame_options_follow_the_serve_setting(server_factory) -> None:
    server = server_factory(extra=["--x-frame-options", "NONE"])
    for url in (f"{server.url}/synergos/", f"{server.url}/api/synergos/v1/collaborations"):
        assert "x-frame-options" not in requests.get(url, timeout=30).headers


def test_browser_follows_the_tree_to_a_run_and_downloads_everything(
    shared_server, logged: LoggedRun, browser, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{shared_server.url}/synergos/")

    tree = page.locator("#tree")
    tree.get_by_role("link", name=logged.collaboration).wait_for()
    # The tree comes down to experiments; opening one reads its runs.
    experiment_path = logged.path.rsplit("/", 1)[0]
    tree.locator(f'details.experiment[data-path="{experiment_path}"] > summary .kind').click()
    tree.locator(f'a.run[href="runs/{logged.path}"]').click()
    page.wait_for_url(f"**/synergos/runs/{logged.path}")
    page.locator("h1", has_text="cycle 1").wait_for()
    assert f"{len(logged.participants)} participants" in page.locator(".sub").nth(1).inner_text()

    # The sidebar's run row shows its participant count whole, and a legend says what ◆ is.
    row = tree.locator(f'a.run[href="runs/{logged.path}"]')
    count_box = row.locator(".count").bounding_box()
    row_box = row.bounding_box()
    assert (
        count_box
        and row_box
        and count_box["x"] + count_box["width"] <= row_box["x"] + row_box["width"]
    )
    assert (
        page.locator("#tree-legend").is_visible()
        and "◆ participants" in page.locator("#tree-legend").inner_text()
    )

    # One chart per metric, one line per participant plus the global line.
    chart = page.locator('.chart[data-metric="train/loss"]')
    chart.scroll_into_view_if_needed()  # charts are drawn when scrolled into view
    page.locator('.chart[data-metric="train/loss"][data-lines]').wait_for()
    assert chart.get_attribute("data-lines") == str(len(logged.participants) + 1)
    labels = page.evaluate(
        "() => window.__synergos.charts['train/loss'].u.series.slice(1).map(s => s.label)"
    )
    assert labels == ["clinic-4", "hospital b", "hospital-a", "klinik-ü", "Global"]

    # Lines toggle; values show on hover.
    page.locator('#series-toggles .chip[data-series="klinik-ü"]').click()
    shown = page.evaluate("() => window.__synergos.charts['train/loss'].u.series.map(s => s.show)")
    assert shown[4] is False and shown[5] is True
    box = chart.locator(".u-over").bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tip = chart.locator(".tip")
    tip.wait_for(state="visible")
    assert "Global" in tip.inner_text()
    page.locator('#series-toggles .chip[data-series="klinik-ü"]').click()

    # Hyperparameters, participants' latest metrics with best and worst, per-class.
    assert "FedProx" in page.locator("#hyperparameters").inner_text()
    latest = page.locator("#latest-metrics")
    assert latest.locator("td.best").count() >= 1 and latest.locator("td.worst").count() >= 1
    assert page.locator("#class-table tbody tr").count() == len(logged.participants) + 1

    # The MLflow UI link points at the same run.
    mlflow_link = page.locator("#open-mlflow").get_attribute("href") or ""
    assert mlflow_link.endswith(
        f"/#/experiments/{logged.experiment_id}/runs/{logged.parent_run_id}"
    )

    # Epoch axis.
    page.locator('button[data-axis="epoch"]').click()
    page.locator('.chart[data-metric="train/epoch/loss"]').scroll_into_view_if_needed()
    page.locator('.chart[data-metric="train/epoch/loss"][data-lines]').wait_for()
    page.locator('button[data-axis="round"]').click()
    page.set_viewport_size({"width": 1440, "height": 1480})
    page.locator("#main").evaluate("main => { main.scrollTop = 0; }")
    for metric in ("evaluate/accuracy", "train/loss"):
        page.locator(f'.chart[data-metric="{metric}"][data-lines]').wait_for()
    over = chart.locator(".u-over").bounding_box()
    assert over is not None
    page.mouse.move(over["x"] + over["width"] * 0.35, over["y"] + over["height"] * 0.3)
    tip.wait_for(state="visible")

    # SYNMLOPS_UPDATE_SCREENSHOT=1 refreshes the documentation's screenshot of this view.
    shot = SCREENSHOT if os.environ.get("SYNMLOPS_UPDATE_SCREENSHOT") else tmp_path / "run.png"
    shot.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(shot))
    assert shot.stat().st_size > 10_000

    with page.expect_download() as download_info:
        page.locator("#download-all").click()
    download = download_info.value
    target = tmp_path / "bundle.zip"
    download.save_as(str(target))
    with zipfile.ZipFile(target) as bundle:
        names = set(bundle.namelist())
    expected = {f"global/{f}" for f in logged.global_files} | set(DATA_FILES)
    for participant, files in logged.participant_files.items():
        expected |= {f"participants/{participant}/{f}" for f in files}
    assert names == expected
    assert not errors
    context.close()


def test_deep_link_loads_the_run_directly_inside_an_iframe(
    shared_server, logged: LoggedRun, browser
) -> None:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{shared_server.url}/synergos/")
    # A same-origin portal page embedding a deep link (the server sends SAMEORIGIN).
    page.evaluate(
        "url => { const f = document.createElement('iframe'); f.id = 'portal';"
        " f.style.width = '1200px'; f.style.height = '800px'; f.src = url;"
        " document.body.append(f); }",
        f"/synergos/runs/{logged.path}",
    )
    frame = page.frame_locator("#portal")
    frame.locator("h1", has_text="cycle 1").wait_for()
    frame.locator('.chart[data-metric="evaluate/loss"]').scroll_into_view_if_needed()
    frame.locator('.chart[data-metric="evaluate/loss"][data-lines]').wait_for()
    assert not errors
    page.close()


def test_unknown_run_deep_link_shows_the_apis_message(shared_server, browser) -> None:
    page = browser.new_page()
    page.goto(f"{shared_server.url}/synergos/runs/nobody/p/e/r")
    page.locator("#error").wait_for()
    assert "collaboration 'nobody' not found" in page.locator("#error").inner_text()
    page.close()


def test_fifty_participants_each_draw_a_line_that_toggles_alone(shared_server, browser) -> None:
    # Logged straight into the server's store (WAL lets both write). How fast the page is at
    # 50 x 500 rounds is measured in benchmarks/ (page_bench), not here.
    logged = log_federated_run(
        f"sqlite:///{shared_server.store / 'mlflow.db'}",
        collaboration=f"scale {uuid.uuid4().hex[:4]}",
        participants=[f"w{i:02d}" for i in range(50)],
        rounds=20,
        epochs=1,
        classes=2,
        artifacts=False,
    )
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(f"{shared_server.url}/synergos/runs/{logged.path}")
    page.locator('.chart[data-metric="train/loss"]').scroll_into_view_if_needed(timeout=60000)
    page.locator('.chart[data-metric="train/loss"][data-lines="51"]').wait_for(timeout=60000)
    series = "() => window.__synergos.charts['train/loss'].u.series.slice(1)"
    labels = page.evaluate(f"() => ({series})().map(s => s.label)")
    assert sorted(labels) == sorted([*logged.participants, "Global"])
    page.locator('#series-toggles .chip[data-series="w07"]').click()
    shown = page.evaluate(f"() => Object.fromEntries(({series})().map(s => [s.label, s.show]))")
    assert [name for name, show in shown.items() if not show] == ["w07"]
    page.close()


WIDTHS = [390, 800, 1440]
#: The overflow checks also take the narrowest phone and a wide screen.
ALL_WIDTHS = [360, *WIDTHS, 2560]
#: Every element whose box must stay inside its parent's: no card, chart or table sticks out.
BOXED = ".card, .chart, .uplot, .stat, .scroll, .grid2, .charts, .chips, .sub, h1"
OVERFLOW = """(selector) => {
  const out = [];
  for (const el of document.querySelectorAll(selector)) {
    const box = el.getBoundingClientRect(), parent = el.parentElement.getBoundingClientRect();
    if (box.width && (box.right > parent.right + 0.5 || box.left < parent.left - 0.5))
      out.push(el.className + " " + (el.dataset.metric || "") + ": "
               + Math.round(box.width) + " px in " + Math.round(parent.width) + " px");
  }
  const doc = document.documentElement, main = document.getElementById("main");
  return {page: doc.scrollWidth - window.innerWidth,
          main: main.scrollWidth - main.clientWidth, out};
}"""


def _assert_fits(page, name: str) -> None:  # type: ignore[no-untyped-def]
    found = page.evaluate(OVERFLOW, BOXED)
    page.screenshot(path=f"/tmp/command-station-{name}.png", full_page=False)
    assert found["page"] <= 0, f"{name}: the page scrolls sideways by {found['page']} px"
    assert found["main"] <= 0, f"{name}: the content scrolls sideways by {found['main']} px"
    assert found["out"] == [], f"{name}: boxes wider than their container"


@pytest.mark.parametrize("width", ALL_WIDTHS)
def test_collaborations_view_has_no_horizontal_overflow(
    shared_server, logged: LoggedRun, browser, width: int
) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    page.goto(f"{shared_server.url}/synergos/c/{quote(logged.collaboration, safe='')}")
    page.locator("h1", has_text=logged.collaboration).wait_for()
    # A collaboration's own page counts its projects and runs, not collaborations; nouns agree.
    stats = page.locator(".stats").inner_text()
    assert "collaboration" not in stats and "1\nproject" in stats and "projects" not in stats
    # The breadcrumb's last step is whole on narrow screens too.
    here = page.locator("#crumbs .here")
    assert here.evaluate("el => el.scrollWidth <= el.clientWidth + 1")
    _assert_fits(page, f"collaboration-{width}")
    page.close()


@pytest.mark.parametrize("width", ALL_WIDTHS)
def test_run_page_has_no_horizontal_overflow(
    shared_server, logged: LoggedRun, browser, width: int
) -> None:
    page = browser.new_page(viewport={"width": width, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{shared_server.url}/synergos/runs/{logged.path}")
    page.locator("#latest-metrics td.worst").first.wait_for()
    _assert_fits(page, f"run-{width}")
    # The best/worst marker stays on the value's line.
    worst = page.locator("#latest-metrics td.worst").first
    assert worst.evaluate("td => td.getClientRects().length === 1 && td.offsetHeight < 40")
    # Every chart, once drawn, fits its box.
    for chart in page.locator(".chart").all():
        chart.scroll_into_view_if_needed()
        page.locator(f'.chart[data-metric="{chart.get_attribute("data-metric")}"]'
                     '[data-state="drawn"]').wait_for()  # fmt: skip
    page.locator("#main").evaluate("main => { main.scrollTop = main.scrollHeight; }")
    _assert_fits(page, f"run-{width}-charts")
    assert not errors
    page.close()


def test_charts_follow_their_box_when_the_window_narrows(
    shared_server, logged: LoggedRun, browser
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 1400})
    page.goto(f"{shared_server.url}/synergos/runs/{logged.path}")
    chart = page.locator('.chart[data-metric="train/loss"]')
    chart.scroll_into_view_if_needed()
    page.locator('.chart[data-metric="train/loss"][data-state="drawn"]').wait_for()
    size = (
        "() => { const c = window.__synergos.charts['train/loss'];"
        " return [c.u.width, c.el.querySelector('.plot').clientWidth]; }"
    )
    before, box = page.evaluate(size)
    assert before == box
    # At 800 px the sidebar collapses and the charts go from two columns to one.
    page.set_viewport_size({"width": 800, "height": 1400})
    page.wait_for_function(f"() => ({size})()[0] !== {before}", timeout=10000)
    after, box = page.evaluate(size)
    assert after == box
    _assert_fits(page, "run-1440-to-800")
    page.close()


@pytest.mark.parametrize("width", WIDTHS)
def test_sidebar_collapses_and_expands_with_the_toggle(
    shared_server, logged: LoggedRun, browser, width: int
) -> None:
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(f"{shared_server.url}/synergos/runs/{logged.path}")
    page.locator("h1", has_text="cycle 1").wait_for()
    sidebar, toggle = page.locator("#sidebar"), page.locator("#sidebar-toggle")
    narrow = width < 900
    # Narrow screens start with the sidebar collapsed; wide ones with it open.
    assert sidebar.is_visible() is not narrow
    toggle.click()
    assert sidebar.is_visible() is narrow
    assert toggle.get_attribute("aria-expanded") == str(narrow).lower()
    if narrow:  # opened over the page; following a run closes it again
        page.screenshot(path=f"/tmp/command-station-sidebar-{width}.png")
        sidebar.locator("a.run").first.click()
        sidebar.wait_for(state="hidden")
    else:
        page.screenshot(path=f"/tmp/command-station-collapsed-{width}.png")
        page.reload()  # the choice is remembered
        page.locator("h1", has_text="cycle 1").wait_for()
        assert not sidebar.is_visible()
        toggle.click()
        assert sidebar.is_visible()
        _assert_fits(page, f"sidebar-{width}")
    context.close()


@pytest.fixture(scope="module")
def sparse(shared_server) -> LoggedRun:  # type: ignore[no-untyped-def]
    """A run where only participant p2 logs evaluate/f1: the global line has no points."""
    logged = log_federated_run(
        shared_server.url,
        collaboration=f"sparse {uuid.uuid4().hex[:4]}",
        participants=["p1", "p2"],
        rounds=4,
        epochs=1,
        classes=0,
        artifacts=False,
    )
    MlflowClient(shared_server.url).log_batch(
        logged.participants["p2"],
        metrics=[Metric("evaluate/f1", 0.5 + r / 10, 0, r) for r in range(4)],
    )
    return logged


def test_a_chart_whose_shown_lines_have_no_points_says_so(
    shared_server, sparse: LoggedRun, browser
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 2000})
    page.goto(f"{shared_server.url}/synergos/runs/{sparse.path}")
    chart = page.locator('.chart[data-metric="evaluate/f1"]')
    chart.scroll_into_view_if_needed()
    page.locator('.chart[data-metric="evaluate/f1"][data-state="drawn"]').wait_for()
    assert not chart.locator(".chart-state").is_visible()
    page.get_by_role("button", name="Global only").click()
    note = chart.locator(".chart-state.empty")
    note.wait_for()
    assert "no points logged for this key" in note.inner_text()
    page.get_by_role("button", name="Show all").click()
    note.wait_for(state="hidden")
    page.close()


def test_charts_say_loading_then_show_the_error_of_a_failing_request(
    shared_server, logged: LoggedRun, browser
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 2000})
    body = '{"error": {"code": "UNAVAILABLE", "message": "the stores cannot be read"}}'
    held: list = []  # type: ignore[type-arg]

    def answer(route) -> None:  # type: ignore[no-untyped-def]
        route.fulfill(status=500, content_type="application/json", body=body)

    # The browser's own network layer: the first series request is held until the charts
    # have been seen loading, then every one is answered with a 500.
    page.route("**/metrics?*", lambda route: held.append(route) if not held else answer(route))
    page.goto(f"{shared_server.url}/synergos/runs/{logged.path}")
    chart = page.locator('.chart[data-metric="train/loss"]')
    chart.locator(".chart-state.loading", has_text="loading…").wait_for()
    while not held:
        page.wait_for_timeout(50)
    answer(held[0])
    error = chart.locator(".chart-state.error")
    error.wait_for()
    page.screenshot(path="/tmp/command-station-error.png")
    assert (
        error.inner_text() == "could not load the points of train/loss: the stores cannot be read"
    )
    page.wait_for_function(
        "() => document.body.dataset.chartsSettled === document.body.dataset.charts"
    )
    assert page.locator('.chart[data-state="error"]').count() == page.locator(".chart").count()
    page.close()


def test_a_run_without_per_class_statistics_says_so(
    shared_server, sparse: LoggedRun, browser
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(f"{shared_server.url}/synergos/runs/{sparse.path}")
    note = page.locator("#per-class .empty")
    note.wait_for()
    assert "No per-class statistics logged" in note.inner_text()
    page.close()


def test_overview_lists_the_latest_runs_newest_first_and_counts_the_running_ones(
    shared_server, browser, tmp_path: Path
) -> None:
    from synergos_mlops import FederatedTracker, TrackerConfig

    url, api = shared_server.url, f"{shared_server.url}/api/synergos/v1"
    collaboration = f"Latest {uuid.uuid4().hex[:6]}"
    log_federated_run(url, collaboration=collaboration, run="older", rounds=1, epochs=1,
                      artifacts=False)  # fmt: skip
    with FederatedTracker(url, TrackerConfig(spool_dir=tmp_path / "spool")) as tracker:
        tracker.run(collaboration, "p", "e", "newest", participants=["w1", "w2"])  # not ended
    body = requests.get(f"{api}/runs", params={"limit": 2}, timeout=60).json()
    assert [(r["collaboration"], r["id"]) for r in body["runs"]] == [
        (collaboration, "newest"), (collaboration, "older")
    ]  # fmt: skip
    assert body["runs"][0]["status"] == "RUNNING" and body["runs"][0]["participant_count"] == 2
    assert body["runs"][0]["project"] == "p" and body["runs"][1]["experiment"] == "exp-1"
    tree = requests.get(f"{api}/collaborations", timeout=60).json()["collaborations"]
    every = [
        run for c in tree for p in c["projects"] for e in p["experiments"] for run in e["runs"]
    ]
    assert body["run_count"] == len(every)
    assert body["running"] == sum(run["status"] == "RUNNING" for run in every) >= 1
    for bad in ("0", "1001", "ten"):
        refused = requests.get(f"{api}/runs", params={"limit": bad}, timeout=60)
        assert refused.status_code == 400 and "limit" in refused.json()["error"]["message"], bad

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.goto(f"{url}/synergos/")
    first = page.locator("#latest-runs #runs-table tbody tr").first
    first.wait_for()
    assert first.locator("a").inner_text() == "newest"
    assert collaboration in first.inner_text() and "RUNNING" in first.inner_text()
    counted = page.locator("#running-count").inner_text()
    assert counted == f"{body['running']:,} running of {body['run_count']:,}"
    page.close()
