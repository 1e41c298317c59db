"""The Command Station's data catalogue pages and the run page's "Data and lineage" card, in
headless Chromium against a real `synmlops serve`: datasets logged with `run.log_dataset`,
two runs of one project whose schema changed (drift), and a registered model version."""

from __future__ import annotations

import copy
import json
import uuid
from pathlib import Path
from urllib.parse import quote

import requests
from mlflow import MlflowClient
from test_catalog import HEADERS, IMAGE, SCHEMA, TABULAR
from test_command_station import BOXED as RUN_BOXED
from test_command_station import OVERFLOW
from tracking_support import fast_config

from synergos_mlops import FederatedTracker

#: The run page's boxes and the catalogue's own: none may stick out of its parent.
BOXED = RUN_BOXED + ", .lineage, .lineage-col, .node, .cat-box, .cat-grid, .col-chips, .drift-list"


def _assert_fits(page, name: str) -> None:  # type: ignore[no-untyped-def]
    found = page.evaluate(OVERFLOW, BOXED)
    page.screenshot(path=f"/tmp/catalogue-page-{name}.png", full_page=False)
    assert found["page"] <= 0, f"{name}: the page scrolls sideways by {found['page']} px"
    assert found["main"] <= 0, f"{name}: the content scrolls sideways by {found['main']} px"
    assert found["out"] == [], f"{name}: boxes wider than their container: {found['out']}"


def _path(*ids: str) -> str:
    return "/".join(quote(i, safe="") for i in ids)


def test_catalogue_dataset_pages_and_the_runs_data_and_lineage(
    server_factory, browser, tmp_path: Path
) -> None:
    server = server_factory()
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))

    # An empty store: the catalogue says so and how to fill it.
    page.goto(f"{server.url}/synergos/catalogue")
    page.locator("#catalogue-empty").wait_for()
    assert "run.log_dataset" in page.locator("#catalogue-empty").inner_text()

    # Two runs of one project: site-a's train data gains a column in r2; site-b's images stay.
    c = f"Cardio Net {uuid.uuid4().hex[:4]}"
    grown = copy.deepcopy(TABULAR)
    grown["tabular"]["num_variables"]["thal"] = {
        "datatype": "float64", "count": 120, "mean": 4.7, "std": 1.9, "min": 3.0, "25%": 3.0,
        "50%": 3.0, "75%": 7.0, "max": 7.0,
    }  # fmt: skip
    digests: dict[str, str] = {}
    run_ids: dict[str, str] = {}
    with FederatedTracker(server.url, fast_config(tmp_path)) as tracker:
        for run_id, (summary, schema) in {
            "r1": (TABULAR, SCHEMA), "r2": (grown, {**SCHEMA, "thal": "float64"})
        }.items():  # fmt: skip
            with tracker.run(
                c, "heart", "fedavg", run_id, participants=["site-a", "site-b"]
            ) as run:
                digests[f"a/{run_id}"] = run.log_dataset(
                    "site-a", "train", summary, schema=schema, headers=list(schema)
                )
                digests[f"b/{run_id}"] = run.log_dataset("site-b", "train", IMAGE)
                run.log_metrics({"train/loss": 0.5}, step=0)
                run_ids[run_id], experiment_id = run.run_id, run.experiment_id
        with tracker.run(c, "lungs", "fedavg", "bare", participants=["site-a"]) as run:
            run.log_metrics({"train/loss": 0.4}, step=0)
    assert digests["a/r1"] != digests["a/r2"] and digests["b/r1"] == digests["b/r2"]
    assert list(SCHEMA) == HEADERS
    client = MlflowClient(server.url)
    model = client.create_logged_model(
        experiment_id, name="global_model", source_run_id=run_ids["r2"]
    )
    name = f"synergos-{uuid.uuid4().hex[:6]}"
    client.create_registered_model(name)
    version = client.create_model_version(
        name, source=f"models:/{model.model_id}", run_id=run_ids["r2"], model_id=model.model_id
    )

    # Deep links answer with the page.
    dataset_view = f"catalogue/{_path(c, 'site-a', digests['a/r2'])}"
    for view in ("catalogue", dataset_view):
        response = requests.get(f"{server.url}/synergos/{view}", timeout=30)
        assert response.status_code == 200 and "js/main.js" in response.text, view

    r1 = f"runs/{_path(c, 'heart', 'fedavg', 'r1')}"
    r2 = f"runs/{_path(c, 'heart', 'fedavg', 'r2')}"
    for width in (1440, 390):
        page.set_viewport_size({"width": width, "height": 1000})

        # The catalogue: collaboration → participant → split, with both of site-a's datasets.
        page.goto(f"{server.url}/synergos/catalogue")
        collab = page.locator(f'.catalogue-collab[data-collaboration="{c}"]')
        collab.wait_for()
        site_a = collab.locator('.catalogue-participant[data-participant="site-a"]')
        rows = site_a.locator("tr.dataset-row")
        assert rows.count() == 2
        old = site_a.locator(f'tr[data-digest="{digests["a/r1"]}"]')
        new = site_a.locator(f'tr[data-digest="{digests["a/r2"]}"]')
        assert old.get_attribute("data-split") == "train"
        assert new.locator('.col-chip[data-column="thal"]').count() == 1
        assert old.locator('.col-chip[data-column="thal"]').count() == 0
        assert "float64" in new.locator('.col-chip[data-column="thal"]').inner_text()
        assert "120" in new.inner_text()  # rows
        assert old.locator(".first-run a").get_attribute("href") == r1
        site_b = collab.locator('.catalogue-participant[data-participant="site-b"]')
        image = site_b.locator(f'tr[data-digest="{digests["b/r1"]}"]')
        assert image.locator(".first-run a").get_attribute("href") == r1
        assert image.locator(".last-run a").get_attribute("href") == r2
        assert "image" in image.inner_text()
        _assert_fits(page, f"catalogue-{width}")

        # Its dataset page: columns, numeric summaries, category frequencies, runs.
        new.locator("a.dataset-link").click()
        page.wait_for_url(f"**/synergos/{dataset_view}")
        page.locator("#numeric-table").wait_for()
        assert page.locator("h1").inner_text() == "site-a/train"
        thal = page.locator('#numeric-table tr[data-column="thal"]').inner_text()
        assert "4.7" in thal and "float64" in thal
        assert page.locator("#columns-table tbody tr").count() == 5
        sex = page.locator('#category-profile .cat-box[data-column="sex"]')
        assert "64" in sex.inner_text() and "53%" in sex.inner_text()  # the top label's freq
        assert page.locator("#dataset-runs a").get_attribute("href") == r2
        _assert_fits(page, f"dataset-{width}")

        # An image dataset's sizes; an unknown digest's error.
        page.goto(f"{server.url}/synergos/catalogue/{_path(c, 'site-b', digests['b/r1'])}")
        page.locator("#kind-profile").wait_for()
        assert "28 × 28 px" in page.locator("#kind-profile").inner_text()
        assert "pixel_width" not in page.locator("#kind-profile").inner_text()  # said once
        assert page.locator("#dataset-runs tbody tr").count() == 2
        _assert_fits(page, f"dataset-image-{width}")
        page.goto(f"{server.url}/synergos/catalogue/{_path(c, 'site-a', 'feedbeef')}")
        page.locator("#dataset-error").wait_for()
        assert "not found" in page.locator("#dataset-error").inner_text()

        # The run page: datasets per participant and split, drift, lineage to the version.
        page.goto(f"{server.url}/synergos/{r2}")
        card = page.locator('#data-lineage[data-state="loaded"]')
        card.wait_for()
        changed = card.locator('#run-datasets tr[data-participant="site-a"]')
        assert changed.locator(".drift-flag").count() == 1
        assert card.locator('#run-datasets tr[data-participant="site-b"] .drift-flag').count() == 0
        drift = card.locator('#drift li[data-participant="site-a"]')
        assert drift.get_attribute("data-against") == "previous"
        assert "added thal" in drift.inner_text() and "schema changed" in drift.inner_text()
        assert drift.locator("a").first.get_attribute("href") == r1
        graph = card.locator("#lineage")
        types = graph.locator(".lineage-col").evaluate_all("cols => cols.map(c => c.dataset.type)")
        assert types == [
            "dataset", "participant_run", "federated_run", "logged_model", "model_version"
        ]  # fmt: skip
        assert graph.locator(".node-dataset").count() == 2
        assert graph.locator(".node-participant_run").count() == 2
        # A model version links to its own page, and to MLflow's.
        version_node = graph.locator(".node-model_version")
        version_page = version_node.locator("a.model-version-page")
        assert version_page.inner_text() == f"{name} v{version.version}"
        assert version_page.get_attribute("href") == f"models/{name}/{version.version}"
        mlflow_href = version_node.locator("a.model-version-mlflow").get_attribute("href")
        assert (mlflow_href or "").endswith(f"/#/models/{name}/versions/{version.version}")
        # One curve per edge; tracing a dataset lights its participant run, the run, the
        # model, the version and the four edges between them.
        graph.locator("svg path.edge").first.wait_for(state="attached")
        assert graph.locator("svg path.edge").count() == 6  # 2 + 2 + run → model → version
        graph.locator(".node-dataset").first.hover()
        assert graph.locator(".node.lit").count() == 5
        assert graph.locator("path.edge.lit").count() == 4
        card.scroll_into_view_if_needed()
        _assert_fits(page, f"run-{width}")

        # The earlier run shows the same drift against the next run, and no model version.
        page.goto(f"{server.url}/synergos/{r1}")
        page.locator('#data-lineage[data-state="loaded"]').wait_for()
        assert page.locator('#drift li[data-participant="site-a"]').get_attribute(
            "data-against"
        ) == "next"  # fmt: skip
        assert page.locator("#no-model-versions").count() == 1

    # A run without datasets or models, and a card whose request fails.
    page.goto(f"{server.url}/synergos/runs/{_path(c, 'lungs', 'fedavg', 'bare')}")
    page.locator('#data-lineage[data-state="empty"]').wait_for()
    assert "run.log_dataset" in page.locator("#data-lineage-empty").inner_text()
    page.route(
        "**/api/synergos/v1/runs/**/datasets",
        lambda route: route.fulfill(
            status=503,
            content_type="application/json",
            body=json.dumps({"error": {"code": "UNAVAILABLE", "message": "store down"}}),
        ),  # fmt: skip
    )
    page.goto(f"{server.url}/synergos/{r2}")
    page.locator("#data-lineage-error").wait_for()
    assert "store down" in page.locator("#data-lineage-error").inner_text()
    page.unroute("**/api/synergos/v1/runs/**/datasets")

    # The header links to the catalogue from any page, without reloading it.
    page.locator("#catalogue-link").click()
    page.wait_for_url("**/synergos/catalogue")
    page.locator(f'.catalogue-collab[data-collaboration="{c}"]').wait_for()
    assert not errors, errors
    page.close()
