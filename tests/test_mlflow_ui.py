"""MLflow's own UI, in headless Chromium, opens a federated experiment on its training runs.

MLflow 3.17's UI ignores the experiment's ``mlflow.experimentKind`` tag and picks the page
from a global workflow type that defaults to GenAI (see server/routes/mlflow_ui.py); the server
makes "Model training" the default for a browser that has not chosen.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
import requests
from conftest import Server
from federated_data import LoggedRun, log_federated_run

from synergos_mlops.server.routes.mlflow_ui import BOOT_DEFAULTS, TELEMETRY_OFF_DEFAULTS


@pytest.fixture(scope="module")
def logged(shared_server: Server) -> LoggedRun:
    return log_federated_run(
        shared_server.url,
        collaboration=f"ui-{uuid.uuid4().hex[:6]}",
        run="cycle-ui",
        participants=["worker_1", "worker_2"],
        rounds=2,
        epochs=1,
        artifacts=False,
    )


def test_the_mlflow_ui_page_sets_its_defaults_before_mlflows_script(shared_server: Server) -> None:
    response = requests.get(f"{shared_server.url}/", timeout=30)
    assert response.status_code == 200
    head = response.text.split("<script defer", 1)[0]
    for key in BOOT_DEFAULTS:
        assert key in head


def test_mlflow_ui_opens_a_federated_experiment_on_its_training_runs(
    shared_server: Server, logged: LoggedRun, browser: Any
) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(f"{shared_server.url}/#/experiments/{logged.experiment_id}")
    page.get_by_role("link", name=logged.run).first.wait_for(timeout=60_000)
    assert page.get_by_role("heading", name="Runs").is_visible()
    assert "/overview" not in page.url
    body = page.inner_text("body")
    for genai in ("Token Usage", "Tool calls", "Detect Issues"):
        assert genai not in body
    # MLflow keeps its assistant panel's state here; it pops open on a first visit otherwise.
    panel_open = page.evaluate("localStorage.getItem('mlflow.assistant.panelOpen_v1')")
    assert panel_open != "true"
    context.close()


def test_mlflow_ui_shows_no_telemetry_banner_when_serve_turned_telemetry_off(
    shared_server: Server, logged: LoggedRun, browser: Any
) -> None:
    # serve sets MLFLOW_DISABLE_TELEMETRY=true: the UI's own setting follows, its banner is gone.
    head = requests.get(f"{shared_server.url}/", timeout=30).text.split("<script defer", 1)[0]
    for key in TELEMETRY_OFF_DEFAULTS:
        assert key in head
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    page.goto(f"{shared_server.url}/#/experiments/{logged.experiment_id}")
    page.get_by_role("link", name=logged.run).first.wait_for(timeout=60_000)
    assert page.evaluate("localStorage.getItem('mlflow.settings.telemetry.enabled_v1')") == "false"
    page.goto(f"{shared_server.url}/#/")
    page.get_by_role("heading").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    assert "Information about UI telemetry" not in page.inner_text("body")
    context.close()


def test_a_browser_that_chose_genai_keeps_its_choice(
    shared_server: Server, logged: LoggedRun, browser: Any
) -> None:
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    context.add_init_script("localStorage.setItem('mlflow.workflowType_v1', '\"genai\"')")
    page = context.new_page()
    page.goto(f"{shared_server.url}/#/experiments/{logged.experiment_id}")
    page.get_by_text("Tool calls").first.wait_for(timeout=60_000)
    context.close()
