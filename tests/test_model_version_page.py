"""A registered model version's page in the Command Station, and the lineage graph's edges, in
headless Chromium against a real `synmlops serve`: datasets logged with `run.log_dataset`, a
global model and a participant's own model, each registered as a version of one MLflow model."""

from __future__ import annotations

import copy
import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import requests
from conftest import Server
from mlflow import MlflowClient
from test_catalog import HEADERS, IMAGE, SCHEMA, TABULAR
from test_catalogue_page import _assert_fits
from tracking_support import fast_config

from synergos_mlops import FederatedTracker

API = "/api/synergos/v1"

#: Every drawn edge as [from, to, starts at its source's box, ends at its target's box]; an end
#: counts as at a box within 12 px of it (the arrowhead sits in the gap before the target).
EDGE_ENDS = """(graph) => {
  const near = (p, el) => {
    const b = el.getBoundingClientRect();
    return p.x >= b.left - 12 && p.x <= b.right + 12 && p.y >= b.top - 12 && p.y <= b.bottom + 12;
  };
  const origin = graph.querySelector("svg.lineage-edges").getBoundingClientRect();
  return [...graph.querySelectorAll("svg.lineage-edges path.edge")].map((p) => {
    const length = p.getTotalLength();
    const a = p.getPointAtLength(0), b = p.getPointAtLength(length);
    const at = (q) => ({x: q.x + origin.left, y: q.y + origin.top});
    const box = (id) => graph.querySelector(`.node[data-node="${CSS.escape(id)}"]`);
    return [p.dataset.from, p.dataset.to, length > 0 && near(at(a), box(p.dataset.from)),
            length > 0 && near(at(b), box(p.dataset.to))];
  });
}"""


def _path(*ids: str) -> str:
    return "/".join(quote(i, safe="") for i in ids)


def _upstream(edges: list[list[str]], node: str) -> set[tuple[str, str]]:
    """The edges on some path into ``node``: what the model version's page draws."""
    seen, todo = {node}, [node]
    while todo:
        at = todo.pop()
        for source, target in edges:
            if target == at and source not in seen:
                seen.add(source)
                todo.append(source)
    return {(a, b) for a, b in edges if a in seen and b in seen}


@dataclass(frozen=True)
class Registered:
    collaboration: str
    name: str
    digests: dict[str, str]  # "site-a/train", "site-a/evaluate", "site-b/train"
    global_version: str  # from the federated run's model
    local_version: str  # from site-a's own model

    @property
    def run(self) -> str:
        return f"runs/{_path(self.collaboration, 'heart', 'fedavg', 'r1')}"


@pytest.fixture(scope="module")
def registered(shared_server: Server, tmp_path_factory: pytest.TempPathFactory) -> Registered:
    c = f"Model Lineage {uuid.uuid4().hex[:4]}"
    evaluate = copy.deepcopy(TABULAR)
    evaluate["tabular"]["num_variables"]["age"].update(count=40, mean=57.0)
    with (
        FederatedTracker(shared_server.url, fast_config(tmp_path_factory.mktemp("t"))) as tracker,
        tracker.run(c, "heart", "fedavg", "r1", participants=["site-a", "site-b"]) as run,
    ):
        digests = {
            "site-a/train": run.log_dataset("site-a", "train", TABULAR, schema=SCHEMA,
                                            headers=HEADERS),
            "site-a/evaluate": run.log_dataset("site-a", "evaluate", evaluate, schema=SCHEMA,
                                               headers=HEADERS),
            "site-b/train": run.log_dataset("site-b", "train", IMAGE),
        }  # fmt: skip
        run.log_metrics({"train/loss": 0.5}, step=0)
        run_id, experiment_id = run.run_id, run.experiment_id
        site_a_run = run.participant_run_id("site-a")
    client = MlflowClient(shared_server.url)
    name = f"heart modell ü-{uuid.uuid4().hex[:6]}"  # a space and a non-ASCII letter in URLs
    client.create_registered_model(name)
    versions = []
    for model_name, source_run in (("global_model", run_id), ("local_model", site_a_run)):
        model = client.create_logged_model(experiment_id, name=model_name, source_run_id=source_run)
        versions.append(
            client.create_model_version(
                name,
                source=f"models:/{model.model_id}",
                run_id=source_run,
                model_id=model.model_id,
            ).version  # fmt: skip
        )
    return Registered(c, name, digests, str(versions[0]), str(versions[1]))


def _lineage(server: Server, name: str, version: str) -> dict[str, Any]:
    answer = requests.get(f"{server.url}{API}/lineage/models/{quote(name, safe='')}/{version}",
                          timeout=60)  # fmt: skip
    assert answer.status_code == 200, answer.text
    return answer.json()  # type: ignore[no-any-return]


def _drawn(graph) -> set[tuple[str, str]]:  # type: ignore[no-untyped-def]
    ends = graph.evaluate(EDGE_ENDS)
    assert all(start and end for _, _, start, end in ends), ends
    drawn = {(source, target) for source, target, _, _ in ends}
    assert len(drawn) == len(ends), "an edge drawn twice"
    return drawn


def test_a_model_version_page_shows_the_data_that_trained_it_with_its_edges_drawn(
    shared_server: Server, registered: Registered, browser
) -> None:
    r, name = registered, registered.name
    view = f"models/{_path(name, r.global_version)}"
    response = requests.get(f"{shared_server.url}/synergos/{view}", timeout=30)
    assert response.status_code == 200 and "js/main.js" in response.text

    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(f"{shared_server.url}/synergos/{view}")
    graph = page.locator("#model-lineage #lineage[data-drawn]")
    graph.wait_for()
    assert page.locator("h1").inner_text() == f"{name} v{r.global_version}"
    assert page.locator("#model-version-status").inner_text() == "READY"
    assert page.locator("#model-version-run").get_attribute("href") == r.run
    assert (page.locator("#open-mlflow-version").get_attribute("href") or "").endswith(
        f"/#/models/{quote(name, safe='')}/versions/{r.global_version}"
    )
    assert "global_model" in page.locator("#model-version-facts").inner_text()

    # Every participant's datasets, per split, linking to their pages.
    rows = page.locator("#model-datasets-table tbody tr")
    assert sorted(rows.evaluate_all(
        "rows => rows.map(r => r.dataset.participant + '/' + r.dataset.split)"
    )) == sorted(r.digests)  # fmt: skip
    for key, digest in r.digests.items():
        participant = key.split("/")[0]
        row = page.locator(f'#model-datasets-table tr[data-digest="{digest}"]')
        assert row.locator("a.dataset-link").get_attribute("href") == (
            f"catalogue/{_path(r.collaboration, participant, digest)}"
        )

    # The graph: this version's upstream, one drawn curve per edge, each from box to box.
    lineage = _lineage(shared_server, name, r.global_version)
    here = f"model_version:{name}/{r.global_version}"
    expected = _upstream(lineage["edges"], here)
    assert len(expected) == 7  # 3 datasets → 2 participant runs → run → model → version
    assert _drawn(graph) == expected
    assert graph.get_attribute("data-edges") == "7"
    assert graph.locator(".node.current").get_attribute("data-node") == here
    assert graph.locator(".node-model_version").count() == 1  # not site-a's own version
    assert graph.locator(".node-federated_run a").get_attribute("href") == r.run

    # Hovering site-b's dataset lights the edges on its path, and only those.
    site_b = f"dataset:{r.collaboration}/site-b/{r.digests['site-b/train']}"
    graph.locator(f'.node[data-node="{site_b}"]').hover()
    lit = graph.locator("path.edge.lit").evaluate_all(
        "paths => paths.map(p => [p.dataset.from, p.dataset.to])"
    )
    participant_b = next(b for a, b in expected if a == site_b)
    assert {tuple(e) for e in lit} == {
        (site_b, participant_b),
        *{(a, b) for a, b in expected if a == participant_b or a.startswith(("run:", "model:"))},
    }  # fmt: skip
    assert len(lit) == 4
    page.mouse.move(5, 5)
    assert graph.locator("path.edge.lit").count() == 0

    # A narrower window moves the boxes: the curves follow.
    drawn = int(graph.get_attribute("data-drawn") or 0)
    page.set_viewport_size({"width": 1000, "height": 1000})
    page.wait_for_function(
        "n => Number(document.querySelector('#lineage').dataset.drawn) > n", arg=drawn
    )
    assert _drawn(graph) == expected
    _assert_fits(page, "model-version-1000")

    # site-a's own model came from site-a's data alone.
    page.goto(f"{shared_server.url}/synergos/models/{_path(name, r.local_version)}")
    graph.wait_for()
    assert page.locator("#model-datasets-table tbody tr").evaluate_all(
        "rows => rows.map(r => r.dataset.participant)"
    ) == ["site-a", "site-a"]  # fmt: skip
    assert "participant site-a's run in r1" in page.locator("#model-version-facts").inner_text()
    local = _upstream(
        _lineage(shared_server, name, r.local_version)["edges"],
        f"model_version:{name}/{r.local_version}",
    )
    assert len(local) == 4  # 2 datasets → site-a's run → its model → the version
    assert _drawn(graph) == local
    assert graph.locator(".node-federated_run").count() == 0
    assert not errors, errors
    page.close()


def test_model_version_links_navigate_and_back_and_forward_retrace_them(
    shared_server: Server, registered: Registered, browser
) -> None:
    r, name = registered, registered.name
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    version_view = f"models/{_path(name, r.global_version)}"

    # The run page's lineage: one curve per edge of the API's, and both version links.
    page.goto(f"{shared_server.url}/synergos/{r.run}")
    graph = page.locator("#data-lineage #lineage[data-drawn]")
    graph.wait_for()
    run_lineage = requests.get(
        f"{shared_server.url}{API}/lineage/{r.run}", timeout=60
    ).json()  # fmt: skip
    assert _drawn(graph) == {(a, b) for a, b in run_lineage["edges"]}
    assert len(run_lineage["edges"]) == 9  # with site-a's model and its version
    node = graph.locator(f'.node[data-node="model_version:{name}/{r.global_version}"]')
    assert (node.locator("a.model-version-mlflow").get_attribute("href") or "").endswith(
        f"/#/models/{quote(name, safe='')}/versions/{r.global_version}"
    )
    node.locator("a.model-version-page").click()
    page.wait_for_url(f"**/synergos/{version_view}")
    page.locator("#model-lineage #lineage[data-drawn]").wait_for()

    # From the version to a dataset's page, whose "Models it reached" links back.
    digest = r.digests["site-a/train"]
    page.locator(f'#model-datasets-table tr[data-digest="{digest}"] a.dataset-link').click()
    page.wait_for_url(f"**/synergos/catalogue/{_path(r.collaboration, 'site-a', digest)}")
    reached = page.locator('#dataset-models[data-state="loaded"]')
    reached.wait_for()
    links = reached.locator("a.model-version-page")
    assert links.evaluate_all("links => links.map(a => a.getAttribute('href'))") == [
        f"models/{_path(name, r.global_version)}", f"models/{_path(name, r.local_version)}"
    ]  # fmt: skip
    assert reached.locator("a.model-version-mlflow").count() == 2
    links.nth(1).click()
    page.wait_for_url(f"**/synergos/models/{_path(name, r.local_version)}")
    page.locator("h1", has_text=f"{name} v{r.local_version}").wait_for()

    # Back and forward retrace the way, each page drawn again from its URL.
    page.go_back()
    page.wait_for_url("**/synergos/catalogue/**")
    page.locator('#dataset-models[data-state="loaded"]').wait_for()
    page.go_back()
    page.locator("h1", has_text=f"{name} v{r.global_version}").wait_for()
    page.locator("#model-version-run").click()
    page.wait_for_url(f"**/synergos/{r.run}")
    page.locator("#data-lineage #lineage[data-drawn]").wait_for()
    page.go_back()
    page.wait_for_url(f"**/synergos/{version_view}")
    page.locator("#model-lineage #lineage[data-drawn]").wait_for()
    page.go_forward()
    page.wait_for_url(f"**/synergos/{r.run}")
    page.locator("#data-lineage #lineage[data-drawn]").wait_for()
    assert not errors, errors
    page.close()


def test_a_missing_model_version_shows_the_apis_message(
    shared_server: Server, registered: Registered, browser
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 900})
    for name, version, message in (
        (registered.name, "99", f"model '{registered.name}' has no version 99"),
        (f"nope-{uuid.uuid4().hex[:6]}", "1", "has no version 1"),
    ):
        page.goto(f"{shared_server.url}/synergos/models/{_path(name, version)}")
        error = page.locator("#model-version-error")
        error.wait_for()
        assert message in error.inner_text()
    page.close()


def test_the_model_version_page_fits_a_phone_with_its_edges_drawn_top_to_bottom(
    shared_server: Server, registered: Registered, browser
) -> None:
    r, name = registered, registered.name
    page = browser.new_page(viewport={"width": 375, "height": 800})
    page.goto(f"{shared_server.url}/synergos/models/{_path(name, r.global_version)}")
    graph = page.locator("#model-lineage #lineage[data-drawn]")
    graph.wait_for()
    graph.scroll_into_view_if_needed()
    _assert_fits(page, "model-version-375")
    here = f"model_version:{name}/{r.global_version}"
    assert _drawn(graph) == _upstream(_lineage(shared_server, name, r.global_version)["edges"],
                                      here)  # fmt: skip
    # Stacked: each curve runs downwards, from a row of boxes to the next.
    assert graph.evaluate("""g => [...g.querySelectorAll('path.edge')].every(p => {
        const a = p.getPointAtLength(0), b = p.getPointAtLength(p.getTotalLength());
        return b.y > a.y; })""")
    page.close()
