"""A run's series as typed columns: read in one query (SQLite and PostgreSQL), cut to a step
window, decimated to a chart's width (each pixel column's lowest and highest point, and the
series' first and last), answered typed or as lists by the metrics route, and drawn by the
run page, whose zoom brings back every point of the steps in view."""

from __future__ import annotations

import base64
import math
import struct
import uuid
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest
import requests
from federated_data import LoggedRun, log_federated_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mlflow import MlflowClient

from synergos_mlops.storage.series import Line, decimate, metric_lines

API = "/api/synergos/v1"


# ---------- decimation ----------


@st.composite
def series(draw: st.DrawFn) -> tuple[Line, int, int, int]:
    """A series (unique ascending steps, values with NaN and repeats), a bucket count and a
    window holding every step."""
    steps = sorted(draw(st.sets(st.integers(-1000, 100_000), min_size=1, max_size=400)))
    values = draw(
        st.lists(
            st.one_of(st.floats(-1e6, 1e6), st.just(math.nan), st.sampled_from([0.0, 1.0])),
            min_size=len(steps),
            max_size=len(steps),
        )
    )
    buckets = draw(st.integers(1, 80))
    first = steps[0] - draw(st.integers(0, 50))
    last = steps[-1] + draw(st.integers(0, 50))
    line = Line(np.array(steps, dtype=np.int64), np.array(values, dtype=np.float64))
    return line, buckets, first, last


@given(series())
def test_decimation_keeps_each_buckets_lowest_and_highest_and_the_first_and_last_points(
    case: tuple[Line, int, int, int],
) -> None:
    line, buckets, first, last = case
    kept = decimate(line, buckets, first, last)
    steps, values = line.steps.tolist(), line.values.tolist()
    if len(line) <= 2 * buckets:
        assert kept is line and not kept.decimated
        return
    points = dict(zip(steps, values, strict=True))
    kept_steps = kept.steps.tolist()
    # Only stored points, in step order, at most two per bucket and the two ends.
    assert kept_steps == sorted(set(kept_steps))
    assert all(
        points[s] == v or (math.isnan(points[s]) and math.isnan(v))
        for s, v in zip(kept_steps, kept.values.tolist(), strict=True)
    )
    assert len(kept) <= 2 * buckets + 2
    assert kept.decimated == (len(kept) < len(line))
    assert kept_steps[0] == steps[0] and kept_steps[-1] == steps[-1]
    width = (last - first + 1) / buckets
    bucket_of = {s: min(buckets - 1, int((s - first) / width)) for s in steps}
    for bucket in set(bucket_of.values()):
        inside = [points[s] for s in steps if bucket_of[s] == bucket]
        shown = [points[s] for s in kept_steps if bucket_of[s] == bucket]
        numbers = [v for v in inside if not math.isnan(v)]
        if numbers:
            assert min(numbers) in shown and max(numbers) in shown
        else:
            assert shown, "a bucket of NaN only keeps a point (a gap in the line)"


# ---------- reading the store ----------


@st.composite
def logged_points(draw: st.DrawFn) -> tuple[list[tuple[int, float, int]], int, int]:
    """Points ``(step, value, timestamp)`` (a step may come twice; timestamps all differ) and
    a step window. Steps are mostly small, some negative, a few far apart (a span of 2**32
    steps or more is read unpacked on SQLite)."""
    count = draw(st.integers(1, 60))
    far = st.sampled_from([-(2**63), -(2**32), 2**32 - 1, 2**32, 2**63 - 1])
    steps = draw(st.lists(st.one_of(st.integers(-3, 40), far), min_size=count, max_size=count))
    values = draw(
        st.lists(st.one_of(st.floats(), st.just(math.nan)), min_size=count, max_size=count)
    )
    stamps = draw(st.permutations(range(1, count + 1)))
    first = draw(st.integers(-5, 45))
    last = draw(st.integers(first, 50))
    return list(zip(steps, values, stamps, strict=True)), first, last


def _latest(points: list[tuple[int, float, int]], first: int, last: int) -> list[tuple[int, float]]:
    latest: dict[int, tuple[int, float]] = {}
    for step, value, stamp in points:
        if first <= step <= last and (step not in latest or stamp > latest[step][0]):
            latest[step] = (stamp, value)
    return [(step, latest[step][1]) for step in sorted(latest)]


def _same(found: Line | None, expected: list[tuple[int, float]]) -> None:
    got = (
        [] if found is None else list(zip(found.steps.tolist(), found.values.tolist(), strict=True))
    )
    assert [s for s, _ in got] == [s for s, _ in expected]
    for (_, a), (_, b) in zip(got, expected, strict=True):
        # The same float to the bit (a sign of zero included), or NaN for NaN.
        assert struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=logged_points())
def test_a_read_window_holds_every_stored_step_inside_it_at_its_latest_value(
    sql_store: Any, case: tuple[list[tuple[int, float, int]], int, int]
) -> None:
    from mlflow.entities import Metric

    points, first, last = case
    run = sql_store.create_run("0", "u", 0, [], "r").info.run_id
    other = sql_store.create_run("0", "u", 0, [], "r").info.run_id
    sql_store.log_batch(run, [Metric("a", v, t, s) for s, v, t in points], [], [])
    sql_store.log_batch(other, [Metric("a", 1.0, 1, 3), Metric("b", 2.0, 1, 3)], [], [])
    # MLflow's own history is the reference: every stored point, the latest of a step kept.
    history = [(m.step, m.value, m.timestamp) for m in sql_store.get_metric_history(run, "a")]
    whole = metric_lines(sql_store.ManagedSessionMaker, [run, other], ["a", "b"])
    _same(whole["a"][run], _latest(history, -(2**63), 2**63 - 1))
    assert run not in whole.get("b", {})
    _same(whole["b"][other], [(3, 2.0)])
    window = metric_lines(sql_store.ManagedSessionMaker, [run], ["a"], first=first, last=last)
    _same(window.get("a", {}).get(run), _latest(history, first, last))


def test_runs_logged_among_many_others_are_read_whole_whether_sparse_or_dense(
    sql_store: Any,
) -> None:
    """Two runs logged point by point among a busier third: asked alone their rows are a
    small share of the rows between their first and last (on SQLite: found through the
    index, then read by rowid); asked with the third, most of them (read straight through).
    Either way every series is MLflow's own history, a step logged twice at its latest."""
    from mlflow.entities import Metric
    from sqlalchemy import event

    a, b, busy = (sql_store.create_run("0", "u", 0, [], "r").info.run_id for _ in range(3))
    stamp = iter(range(1, 10**6))
    for step in range(40):
        for run in (a, b):
            value = math.nan if step == 7 else step / 3 + (run == b)
            sql_store.log_batch(run, [Metric("loss", value, next(stamp), step)], [], [])
        noise = [Metric(f"k{i}", float(i), next(stamp), step) for i in range(12)]
        sql_store.log_batch(busy, noise, [], [])
    sql_store.log_batch(a, [Metric("loss", -1.0, next(stamp), 5)], [], [])  # step 5 again

    statements: list[str] = []

    def read(runs: list[str], keys: list[str], **window: int) -> Any:
        statements.clear()
        listen = lambda *args: statements.append(args[2])  # noqa: E731
        event.listen(sql_store.engine, "before_cursor_execute", listen)
        try:
            return metric_lines(sql_store.ManagedSessionMaker, runs, keys, **window)
        finally:
            event.remove(sql_store.engine, "before_cursor_execute", listen)

    def history(run: str, key: str) -> list[tuple[int, float, int]]:
        return [(m.step, m.value, m.timestamp) for m in sql_store.get_metric_history(run, key)]

    sqlite = sql_store.engine.dialect.name == "sqlite"
    sparse = read([a, b], ["loss"])
    assert set(sparse["loss"]) == {a, b}
    for run in (a, b):
        _same(sparse["loss"][run], _latest(history(run, "loss"), 0, 99))
    assert sparse["loss"][a].values[5] == -1.0
    if sqlite:
        assert any("rowid IN (SELECT rowid" in s for s in statements)
    window = read([a, b], ["loss"], first=5, last=9)
    for run in (a, b):
        _same(window["loss"][run], _latest(history(run, "loss"), 5, 9))
    if sqlite:
        assert any("rowid IN (SELECT rowid" in s for s in statements)
    keys = ["loss", *(f"k{i}" for i in range(12))]
    dense = read([a, b, busy], keys, first=3, last=30)
    assert sorted(dense) == sorted(keys) and set(dense["k4"]) == {busy}
    for run, key in [(a, "loss"), (b, "loss"), (busy, "k0"), (busy, "k11")]:
        _same(dense[key][run], _latest(history(run, key), 3, 30))
    if sqlite:
        assert any("rowid BETWEEN" in s for s in statements)
        # Steps spanning less than 2**32: code and step come packed in one number.
        assert any(f"* {2**32} + (m.step - ?)" in s for s in statements)
    assert read([a], ["nothing"]) == {}
    # Steps 2**40 apart cannot be packed: read as they are, the same points.
    far = [(-(2**40), 0.5, 1), (0, 1.5, 2), (2**40, math.nan, 3), (2**40, 2.5, 4)]
    sql_store.log_batch(b, [Metric("far", v, t, s) for s, v, t in far], [], [])
    apart = read([a, b], ["far", "loss"])
    _same(apart["far"][b], [(-(2**40), 0.5), (0, 1.5), (2**40, 2.5)])
    _same(apart["loss"][a], _latest(history(a, "loss"), 0, 99))
    if sqlite:
        assert not any(f"* {2**32}" in s for s in statements)


# ---------- the metrics route ----------


@pytest.fixture(scope="module")
def logged(shared_server) -> LoggedRun:  # type: ignore[no-untyped-def]
    return log_federated_run(
        shared_server.url,
        collaboration=f"series {uuid.uuid4().hex[:4]}",
        participants=["p-1", "p 2"],
        rounds=40,
        epochs=2,
        classes=2,
        artifacts=False,
    )


def _url(server: Any, logged: LoggedRun) -> str:
    return f"{server.url}{API}/runs/{logged.path}/metrics"


def _typed(line: dict[str, Any]) -> tuple[list[int], list[float]]:
    steps = np.frombuffer(base64.b64decode(line["steps"]), dtype="<i8")
    values = np.frombuffer(base64.b64decode(line["values"]), dtype="<f8")
    assert len(steps) == len(values) == line["count"]
    return steps.tolist(), values.tolist()


def test_the_typed_answer_holds_what_the_lists_answer_holds(shared_server, logged) -> None:
    keys = "train/loss,train/epoch/loss"
    lists = requests.get(_url(shared_server, logged), params={"keys": keys}, timeout=30).json()
    typed = requests.get(
        _url(shared_server, logged), params={"keys": keys, "format": "typed"}, timeout=30
    ).json()
    assert typed["format"] == "synergos.series/typed" and "format" not in lists
    assert "decimated" not in lists["series"]["train/loss"]  # the first API's answer, as it was
    for key in ("train/loss", "train/epoch/loss"):
        plain, packed = lists["series"][key], typed["series"][key]
        assert packed["axis"] == plain["axis"] and packed["decimated"] is False
        pairs = [(plain["global"], packed["global"])] + [
            (plain["participants"][p], packed["participants"][p]) for p in plain["participants"]
        ]
        for a, b in pairs:
            assert _typed(b) == (a["steps"], a["values"])


def test_points_decimate_every_line_of_a_key_into_the_same_buckets(shared_server, logged) -> None:
    body = requests.get(
        _url(shared_server, logged), params={"keys": "train/loss", "points": 5}, timeout=30
    ).json()
    whole = requests.get(_url(shared_server, logged), params={"keys": "train/loss"}, timeout=30)
    entry, every = body["series"]["train/loss"], whole.json()["series"]["train/loss"]
    assert body["points"] == 5 and entry["decimated"] is True
    for name, line in [("global", entry["global"]), *entry["participants"].items()]:
        full = every["global"] if name == "global" else every["participants"][name]
        assert line["decimated"] is True and len(line["steps"]) <= 12
        assert line["steps"][0] == 0 and line["steps"][-1] == 39
        buckets = {b: [v for s, v in zip(full["steps"], full["values"], strict=True)
                       if min(4, s * 5 // 40) == b] for b in range(5)}  # fmt: skip
        kept = dict(zip(line["steps"], line["values"], strict=True))
        for b, values in buckets.items():
            shown = [v for s, v in kept.items() if min(4, s * 5 // 40) == b]
            assert min(values) in shown and max(values) in shown


def test_a_step_window_returns_every_point_inside_it_exactly(shared_server, logged) -> None:
    client = MlflowClient(shared_server.url)
    body = requests.get(
        _url(shared_server, logged),
        params={"keys": "evaluate/loss", "min_step": 10, "max_step": 17, "points": 600,
                "format": "typed"},
        timeout=30,
    ).json()  # fmt: skip
    entry = body["series"]["evaluate/loss"]
    assert entry["decimated"] is False and (body["min_step"], body["max_step"]) == (10, 17)
    history = client.get_metric_history(logged.participants["p 2"], "evaluate/loss")
    expected = [(m.step, m.value) for m in history if 10 <= m.step <= 17]
    steps, values = _typed(entry["participants"]["p 2"])
    assert list(zip(steps, values, strict=True)) == expected


def test_a_window_without_points_is_empty_and_an_unknown_key_is_still_not_found(
    shared_server, logged
) -> None:
    url = _url(shared_server, logged)
    empty = requests.get(url, params={"keys": "train/loss", "min_step": 500}, timeout=30)
    assert empty.status_code == 200
    assert empty.json()["series"]["train/loss"] == {
        "axis": "round", "global": None, "participants": {}, "decimated": False
    }  # fmt: skip
    missing = requests.get(url, params={"keys": "no/such", "min_step": 500}, timeout=30)
    assert missing.status_code == 404 and "no/such" in missing.json()["error"]["message"]


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"format": "xml"}, "format"),
        ({"points": 0}, "points"),
        ({"points": 100_001}, "points"),
        ({"min_step": 5, "max_step": 4}, "min_step"),
        ({"min_step": 2**63}, "min_step"),
        ({"points": "wide"}, "points"),
    ],
)
def test_bad_series_parameters_are_refused_naming_the_parameter(
    shared_server, logged, params: dict[str, Any], named: str
) -> None:
    response = requests.get(
        _url(shared_server, logged), params={"keys": "train/loss", **params}, timeout=30
    )
    assert response.status_code in (400, 422)
    error = response.json()["error"]
    assert error["code"] and named in error["message"]


# ---------- the run page ----------


def test_a_long_series_is_drawn_decimated_and_zooming_shows_the_values_as_logged(
    shared_server, browser
) -> None:
    # Logged straight into the server's store (WAL lets both write), as the scale test does.
    long = log_federated_run(
        f"sqlite:///{shared_server.store / 'mlflow.db'}",
        collaboration=f"long {uuid.uuid4().hex[:4]}",
        participants=["w1"],
        rounds=2000,
        epochs=1,
        classes=2,
        artifacts=False,
    )
    history = MlflowClient(shared_server.url).get_metric_history(
        long.participants["w1"], "evaluate/loss"
    )
    logged_values = {m.step: m.value for m in history}
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    asked: list[str] = []
    page.on("request", lambda r: asked.append(r.url) if "/metrics?" in r.url else None)
    page.goto(f"{shared_server.url}/synergos/runs/{long.path}")
    chart = page.locator('.chart[data-metric="evaluate/loss"]')
    chart.scroll_into_view_if_needed(timeout=60000)
    page.locator('.chart[data-metric="evaluate/loss"][data-state="drawn"]').wait_for(timeout=60000)
    assert chart.get_attribute("data-decimated") == "true"
    shown = page.evaluate(
        """() => { const u = window.__synergos.charts["evaluate/loss"].u;
        return { points: u.data[0].length, width: u.root.parentNode.clientWidth }; }"""
    )
    # The page asks for its chart's width in pixel columns, and gets at most two points each.
    columns = [int(parse_qs(urlparse(url).query)["points"][0]) for url in asked]
    assert columns and max(columns) <= shown["width"]
    assert shown["points"] <= 2 * max(columns) + 2 < 2000
    # Drag across a twentieth of the plot: the steps in view come back whole.
    over = chart.locator(".u-over").bounding_box()
    assert over is not None
    y = over["y"] + over["height"] / 2
    page.mouse.move(over["x"] + over["width"] * 0.40, y)
    page.mouse.down()
    page.mouse.move(over["x"] + over["width"] * 0.45, y, steps=5)
    page.mouse.up()
    page.locator('.chart[data-metric="evaluate/loss"][data-zoom="exact"]').wait_for(timeout=30000)
    zoomed = page.evaluate(
        """() => { const u = window.__synergos.charts["evaluate/loss"].u;
        return { steps: u.data[0], min: u.scales.x.min, max: u.scales.x.max }; }"""
    )
    inside = [s for s in logged_values if zoomed["steps"][0] <= s <= zoomed["steps"][-1]]
    assert zoomed["steps"] == inside and 50 < len(inside) < 200
    # Hovering a step shows each line's value as logged.
    page.mouse.move(over["x"] + over["width"] * 0.5, y)
    tip = chart.locator(".tip")
    tip.wait_for(state="visible", timeout=10000)
    step = int(tip.locator("div").first.inner_text().split()[-1])
    row = tip.locator(".row", has_text="w1").locator("b")
    assert float(row.get_attribute("data-value") or "nan") == logged_values[step]
    assert "zoom for every point" not in tip.inner_text()
    # A double click brings back the whole series, decimated.
    page.mouse.dblclick(over["x"] + over["width"] * 0.5, y)
    page.wait_for_function(
        """() => window.__synergos.charts["evaluate/loss"].u.data[0].slice(-1)[0] === 1999"""
    )
    assert chart.get_attribute("data-zoom") == ""
    assert errors == []
    page.close()


def test_the_run_page_asks_for_its_charts_series_before_what_can_wait(
    shared_server, browser, logged
) -> None:
    """The run page's charts are what it waits on most: their series are asked for before the
    tree's page of runs, the datasets and the lineage, whose requests go once the series are
    answered; the cards below the charts follow, every one of them."""
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    events: list[tuple[str, str]] = []
    wanted = ("/metrics?", "/datasets", "/lineage/runs/", "limit=")

    def seen(kind: str, url: str) -> None:
        if any(part in url for part in wanted):
            events.append((kind, url))

    page.on("request", lambda r: seen("asked", r.url))
    page.on("requestfinished", lambda r: seen("answered", r.url))
    page.goto(f"{shared_server.url}/synergos/runs/{logged.path}")
    page.locator("#artifacts").wait_for(timeout=60000)
    page.locator('#data-lineage:not([data-state="loading"])').wait_for(timeout=60000)
    page.locator(f'#tree a.run.selected:has-text("{logged.run}")').wait_for(timeout=60000)
    page.locator('.chart[data-state="drawn"]').first.wait_for(timeout=60000)
    series = next(i for i, (kind, url) in enumerate(events) if "/metrics?" in url)
    answered = events.index(("answered", events[series][1]))
    later = [url for kind, url in events if kind == "asked" and "/metrics?" not in url]
    assert events[series][0] == "asked" and len(later) >= 3  # the page, datasets, lineage
    for url in later:
        assert events.index(("asked", url)) > answered, (url, events)
    assert [card for card in ("#per-class", "#artifacts") if not page.locator(card).count()] == []
    assert errors == []
    page.close()


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=40)
@given(
    odd_keys=st.lists(st.text(min_size=1, max_size=30).filter(lambda t: "\x00" not in t),
                      max_size=4),
    odd_runs=st.lists(st.text(min_size=1, max_size=40).filter(lambda t: "\x00" not in t),
                      max_size=3),
)  # fmt: skip
def test_unknown_runs_and_keys_asked_beside_real_ones_change_nothing(
    sql_store: Any, odd_keys: list[str], odd_runs: list[str]
) -> None:
    """Any text asked for as a run or a key beside real ones (quotes, LIKE and FTS syntax,
    case variants, repeats) finds nothing of its own and costs the real series nothing."""
    from mlflow.entities import Metric

    run = sql_store.create_run("0", "u", 0, [], "r").info.run_id
    sql_store.log_batch(run, [Metric("a", float(s), s + 1, s) for s in range(5)], [], [])
    keys = ["a", *odd_keys, "a"]
    found = metric_lines(sql_store.ManagedSessionMaker, [*odd_runs, run, *odd_runs], keys)
    assert {r for per_run in found.values() for r in per_run} <= {run}
    _same(found["a"][run], [(s, float(s)) for s in range(5)])
    assert all(key == "a" for key in found)
