"""The Command Station's tree on a store too big to send whole: experiments with their run
counts first, an experiment's runs a page of 50 at a time, the filter box searching through the
server, and a deep link to a run that is not on its experiment's first page."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
import requests

RUNS = 205  # more than a search lists (200) and four pages of 50


@dataclass(frozen=True)
class BigExperiment:
    collaboration: str
    project: str
    experiment: str
    runs: list[str]
    token: str

    def path(self, *more: str) -> str:
        ids = (self.collaboration, self.project, self.experiment, *more)
        return "/".join(quote(i, safe="") for i in ids)


@pytest.fixture(scope="module")
def big(shared_server) -> BigExperiment:  # type: ignore[no-untyped-def]
    token = uuid.uuid4().hex[:6]
    collaboration = f"big tree {token}"
    runs = [f"run {i:03d}" for i in range(RUNS)]
    api = f"{shared_server.url}/api/synergos/v1/runs/resolve"

    def resolve(experiment: str, run: str) -> None:
        body = {"collaboration": collaboration, "project": "scans", "experiment": experiment,
                "run": run, "participants": ["a", "b"]}  # fmt: skip
        requests.post(api, json=body, timeout=120).raise_for_status()

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda r: resolve("many", r), runs))
        list(pool.map(lambda e: resolve(e, "only run"), ["other a", "other b"]))
    return BigExperiment(collaboration, "scans", "many", runs, token)


def _tree_requests(page: Any) -> list[str]:
    seen: list[str] = []
    page.on(
        "request",
        lambda request: seen.append(request.url) if "/collaborations" in request.url else None,
    )
    return seen


def test_an_experiment_of_more_than_fifty_runs_shows_fifty_then_more_loads_the_rest(
    shared_server, big: BigExperiment, browser
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    asked = _tree_requests(page)
    page.goto(f"{shared_server.url}/synergos/")
    node = page.locator(f'#tree details.experiment[data-path="{big.path()}"]')
    # The tree comes down to experiments with their run counts, no runs.
    assert node.locator("summary .count").inner_text() == str(RUNS)
    assert node.locator("a.run").count() == 0
    assert all("depth=experiments" in url for url in asked), asked
    node.locator("summary .kind").click()
    node.locator("a.run").nth(49).wait_for()
    assert node.locator("a.run").count() == 50
    assert "155 more" in node.locator("button.more-runs").inner_text()
    for shown in (100, 150, 200, RUNS):
        node.locator("button.more-runs:not([disabled])").click()
        node.locator("a.run").nth(shown - 1).wait_for()
        assert node.locator("a.run").count() == shown
    node.locator("button.more-runs").wait_for(state="detached")
    names = node.locator("a.run .name").all_inner_texts()
    assert sorted(names) == big.runs  # every run once
    pages = [url for url in asked if "limit=50" in url]
    assert len(pages) == 5 and all("experiment=many" in url for url in pages)
    assert errors == []
    page.close()


def test_the_filter_box_searches_the_server_and_says_when_the_answer_was_cut(
    shared_server, big: BigExperiment, browser
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    asked = _tree_requests(page)
    page.goto(f"{shared_server.url}/synergos/")
    page.locator(f'#tree details.experiment[data-path="{big.path()}"]').wait_for()
    box = page.locator("#tree-filter")

    # Part of one run's id: that run alone, found by the server.
    box.fill("n 137")
    run = page.locator(f'#tree a.run[href="runs/{big.path("run 137")}"]')
    run.wait_for()
    assert page.locator(f'#tree a.run[href^="runs/{big.path()}/"]').count() == 1
    assert page.locator("#tree-truncated").count() == 0
    assert any("search=n+137" in url or "search=n%20137" in url for url in asked), asked

    # The collaboration's token matches all its runs: 200 are listed, and the page says so.
    box.fill(big.token)
    page.locator("#tree-truncated").wait_for()
    assert page.locator("#tree a.run").count() == 200
    assert "200" in page.locator("#tree-truncated").inner_text()
    assert any(f"search={big.token}" in url for url in asked)

    # Emptied, the box gives the levels back.
    box.fill("")
    page.locator(f'#tree details.experiment[data-path="{big.path()}"]').wait_for()
    page.locator("#tree-truncated").wait_for(state="detached")
    assert page.locator("#tree a.run").count() == 0
    page.close()


def test_a_deep_link_to_a_run_past_the_first_page_opens_it_and_shows_it_in_the_tree(
    shared_server, big: BigExperiment, browser
) -> None:
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    asked = _tree_requests(page)
    page.goto(f"{shared_server.url}/synergos/runs/{big.path('run 180')}")
    page.locator("h1", has_text="run 180").wait_for()
    selected = page.locator(f'#tree a.run.selected[href="runs/{big.path("run 180")}"]')
    selected.wait_for()
    node = page.locator(f'#tree details.experiment[data-path="{big.path()}"]')
    assert node.get_attribute("open") is not None
    assert node.locator("a.run").count() == 51  # the first page and the run linked to
    # The other experiments stay closed; nothing asked for the whole tree.
    other = page.locator(f'#tree details.experiment[data-path="{big.path()[:-4]}other%20a"]')
    assert other.get_attribute("open") is None
    assert all("?" in url for url in asked), asked
    assert errors == []
    page.close()
