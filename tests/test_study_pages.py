"""The study and compare pages in headless Chromium, on a real `synmlops serve`: the study
page draws its charts, shows each trial's hardware cost ("—" without samples) and refreshes
its counts while a trial runs; ticking trials and pressing Compare opens the compare page
with the hyperparameter diff."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import requests
from conftest import Server
from mlflow import MlflowClient
from test_studies import post_hardware
from tracking_support import fast_config

from synergos_mlops import FederatedTracker

CPU = "system/process_cpu_utilization_percentage"
MEMORY = "system/process_memory_rss_megabytes"
SPACE = {
    "lr": {"_type": "loguniform", "_value": [1e-4, 1e-1]},
    "optimizer": {"_type": "choice", "_value": ["sgd", "adam"]},
}


def test_study_page_draws_its_charts_refreshes_counts_and_leads_to_compare(
    shared_server: Server, browser: Any, tmp_path: Path
) -> None:
    c = f"Pages {uuid.uuid4().hex[:6]}"
    tracker = FederatedTracker(shared_server.url, fast_config(tmp_path))
    client = MlflowClient(shared_server.url)
    study = tracker.study(c, "p", "e", "tune lr", SPACE, "evaluate/accuracy", "maximize")
    for number, (lr, optimizer) in enumerate(
        [(0.01, "adam"), (0.001, "sgd"), (0.05, "adam"), (0.3, "sgd")]
    ):
        with study.trial({"lr": lr, "optimizer": optimizer}, participants=["a", "b"]) as run:
            for step in range(3):
                run.log_metrics({"evaluate/accuracy": 0.5 + 0.1 * step + 0.01 * number}, step=step)
                run.log_metrics(
                    {"evaluate/f_score/class_0": 0.4, "evaluate/f_score/class_1": 0.5,
                     "train/loss": 1.0 / (step + 1)}, step=step,
                )  # fmt: skip
                for i, p in enumerate(("a", "b")):
                    value = 0.45 + 0.1 * step - 0.05 * i
                    run.log_metrics({"evaluate/accuracy": value}, step=step, participant=p)
            if number == 3:  # the best trial's participants were sampled: its hardware cost
                run.flush()
                starts = {p: client.get_run(run.participant_run_id(p)).info.start_time
                          for p in ("a", "b")}  # fmt: skip
                time.sleep(1.5)
                post_hardware(shared_server.url, c, {
                    "a": {CPU: [300, 300], MEMORY: [500, 800]},
                    "b": {CPU: [100, 100], MEMORY: [200, 300]},
                }, {p: [s + 100, s + 1100] for p, s in starts.items()}, {})  # fmt: skip
    running = study.trial({"lr": 0.02, "optimizer": "adam"}, participants=["a", "b"])
    running.log_metrics({"evaluate/accuracy": 0.2}, step=0)
    running.flush()

    page_path = "/synergos/studies/" + "/".join(quote(x, safe="") for x in (c, "p", "e", "tune lr"))
    assert "js/main.js" in requests.get(shared_server.url + page_path, timeout=30).text
    try:
        page = browser.new_page(viewport={"width": 1440, "height": 1200})
        page.goto(shared_server.url + page_path)
        page.locator("h1", has_text="tune lr").wait_for()
        page.locator('#history-chart[data-state="drawn"]').wait_for()
        page.locator('#parallel-chart[data-state="drawn"]').wait_for()
        assert page.locator("#parallel-chart").get_attribute("data-axes") == "3"
        assert page.locator("#parallel-chart").get_attribute("data-lines") == "4"
        # Every axis title and tick label of the parallel coordinates is whole and apart.
        assert page.locator("#parallel-chart").get_attribute("data-labels-cut") == "0"
        assert page.locator("#parallel-chart").get_attribute("data-labels-overlapping") == "0"
        # Trials are counted: the history's x axis has whole-number ticks only.
        splits = page.evaluate("window.__synergos.charts.history.u.axes[0]._splits")
        assert splits and all(float(x).is_integer() for x in splits), splits
        assert "tune lr" in page.locator("#crumbs").inner_text()  # the study's own name
        assert page.locator("#history-chart canvas").count() >= 1
        assert page.locator("#best-trial").inner_text().count("tune lr_run_4") == 1
        best_cost = page.locator("#best-trial .best-hardware").inner_text()
        assert "CPU·s" in best_cost and "1100 MB peak" in best_cost and "costliest a" in best_cost
        cost = page.locator('#trials-table tr[data-trial="4"] td.hardware')
        assert "CPU·s" in cost.inner_text() and "a: " in (cost.get_attribute("title") or "")
        assert (
            page.locator('#trials-table tr[data-trial="4"] td.costliest')
            .inner_text()
            .startswith("a (")
        )
        assert page.locator('#trials-table tr[data-trial="1"] td.hardware').inner_text() == "—"
        assert page.locator('#trials-table tr[data-trial="1"] td.costliest').inner_text() == "—"
        assert page.locator("#importance .bar-row").count() == 2
        assert (
            page.locator('#trials-table tr[data-trial="1"] td.spread')
            .inner_text()
            .startswith("0.6 – 0.65")
        )
        counts = page.locator("#study-counts")
        assert counts.locator('[data-state="RUNNING"] b').inner_text() == "1"
        running.end("FINISHED")  # the page polls every 2 s while a trial runs
        page.locator('#study-counts [data-state="FINISHED"] b', has_text="5").wait_for(
            timeout=20000
        )
        page.locator('#history-chart[data-state="drawn"]').wait_for()

        for number in ("1", "2"):
            page.locator(f'#trials-table tr[data-trial="{number}"] input.pick').check()
        page.locator("#compare-runs").click()
        page.wait_for_url("**/synergos/compare?run=**", wait_until="commit")
        page.locator("#hp-diff").wait_for()
        diff = page.locator("#hp-diff").inner_text()
        assert "lr" in diff and "optimizer" in diff and "0.001" in diff
        # The main metrics first; the per-class statistics folded, one group per statistic.
        keys = page.locator("#final-table tbody tr").evaluate_all(
            "rows => rows.map(r => r.dataset.key)"
        )
        assert keys == ["evaluate/accuracy", "train/loss"]
        folded = page.locator("#final-metrics .final-classes")
        assert folded.get_attribute("open") is None
        assert folded.locator(".final-class-group").evaluate_all(
            "groups => groups.map(g => g.dataset.statistic)"
        ) == ["evaluate/f_score"]
        assert "compare 2 runs" in page.locator("#crumbs").inner_text()
        assert page.locator("#crumbs a", has_text=c).count() == 1
        accuracy = page.locator(".chart").filter(
            has=page.get_by_role("heading", name="evaluate/accuracy", exact=True)
        )
        accuracy.and_(page.locator('[data-state="drawn"]')).wait_for()
        assert accuracy.get_attribute("data-lines") == "6"
        splits = page.evaluate(
            "window.__synergos.charts['compare:evaluate/accuracy'].u.axes[0]._splits"
        )
        assert splits and all(float(x).is_integer() for x in splits), splits

        page.reload()  # the compare page is a URL of its own
        page.locator("#hp-diff").wait_for()
        page.goto(shared_server.url + "/synergos/compare?run=x")
        page.locator("#error", has_text="Compare 2 to 10 runs").wait_for()
    finally:
        tracker.close()


def test_study_page_shows_tuner_numbers_typed_values_failed_trials_and_absent_parameters(
    shared_server: Server, browser: Any, tmp_path: Path
) -> None:
    c = f"Branches {uuid.uuid4().hex[:6]}"
    svm = {"model": {"_type": "choice", "_value": ["svm", "forest"]},
           "c": {"_type": "loguniform", "_value": [1e-3, 1e3]}}  # fmt: skip
    forest = {"model": svm["model"], "depth": {"_type": "randint", "_value": [2, 9]},
              "flag": {"_type": "choice", "_value": [True, "True"]}}  # fmt: skip
    with FederatedTracker(shared_server.url, fast_config(tmp_path)) as tracker:
        tracker.study(c, "p", "e", "branches", svm, "evaluate/loss", "minimize", extend=True)
        study = tracker.study(c, "p", "e", "branches", forest, "evaluate/loss", "minimize",
                              extend=True)  # fmt: skip
        assert set(study.search_space) == {"model", "c", "depth", "flag"}  # the union
        for hp, tuner_trial, status, loss in (
            ({"model": "svm", "c": 0.1, "flag": True}, 7, "FINISHED", 0.3),
            ({"model": "forest", "depth": 3, "flag": "True"}, 5, "FINISHED", 0.5),
            ({"model": "svm", "c": 10.0, "flag": True}, 6, "FAILED", 0.9),
            ({"model": "forest", "depth": 6, "flag": "True"}, 8, "FINISHED", 0.4),
        ):
            with study.trial(hp, tuner="optuna", tuner_trial=tuner_trial) as run:
                run.log_metrics({"evaluate/loss": loss}, step=0)
                run.end(status)
    page_path = "/synergos/studies/" + "/".join(
        quote(x, safe="") for x in (c, "p", "e", "branches")
    )
    page = browser.new_page(viewport={"width": 1440, "height": 1200})
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(shared_server.url + page_path)
    page.locator('#parallel-chart[data-state="drawn"]').wait_for()
    assert page.locator("#parallel-chart").get_attribute("data-axes") == "5"
    assert page.locator("#parallel-chart").get_attribute("data-lines") == "3"
    row = '#trials-table tr[data-trial="{}"]'.format
    assert [page.locator(row(n) + " td.tuner").inner_text() for n in (1, 2, 3, 4)] == [
        "7", "5", "6", "8",
    ]  # fmt: skip
    cells = page.locator(row(2) + " td").all_inner_texts()
    assert '"True"' in cells and "forest" in cells  # the string, not the bool
    assert "True" in page.locator(row(1) + " td").all_inner_texts()  # the bool
    failed = page.locator(row(3) + " td.num").all_inner_texts()
    assert any(t.startswith("—") and "last 0.9" in t for t in failed)
    assert errors == []
    page.close()
