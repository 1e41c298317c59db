"""docs/frameworks.md's examples run as written: the Flower app and the NVFlare job (its
client script beside it) run in .venv-fl, the one environment with both frameworks, against a
live `synmlops serve`, and leave finished runs with every participant. Each example block
starts with a ``# <file>.py`` line naming the file it is; test_docs.py skips them (``not
run``) since .venv has neither framework."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import Server
from frameworks_support import ROOT, run_in_frameworks_venv
from mlflow import MlflowClient
from test_docs import DOCUMENTED_SERVER, code_blocks

# Each runs a federation in another venv, on a shared 2-core machine: a server and a
# simulation take longer than the suite's default 300 s limit allows for.
pytestmark = pytest.mark.timeout(600)

PAGE = ROOT / "docs" / "frameworks.md"


def example_files() -> dict[str, str]:
    files: dict[str, str] = {}
    for block in code_blocks(PAGE):
        named = re.match(r"# (\w+\.py)\n", block.code)
        if block.language == "python" and named:
            files[named.group(1)] = block.code
    return files


def test_the_page_has_the_flower_app_and_the_nvflare_job_and_its_client() -> None:
    assert set(example_files()) == {"flower_app.py", "client.py", "job.py"}


@pytest.mark.parametrize(
    ("script", "collaboration", "participants"),
    [("flower_app.py", "flower-quickstart", {"0", "1", "2"}),
     ("job.py", "nvflare-quickstart", {"site-1", "site-2"})],
)  # fmt: skip
def test_the_pages_example_runs_in_the_frameworks_venv_and_its_run_finishes(
    script: str, collaboration: str, participants: set[str], server_factory: object,
    tmp_path: Path,
) -> None:  # fmt: skip
    server: Server = server_factory()  # type: ignore[operator]
    work = tmp_path / "work"
    work.mkdir()
    for name, code in example_files().items():
        (work / name).write_text(code.replace(DOCUMENTED_SERVER, server.url))
    run_in_frameworks_venv([script], log=work / "example.log")
    client = MlflowClient(server.url)
    experiment = client.get_experiment_by_name(f"{collaboration}/regression/linear")
    assert experiment is not None
    runs = client.search_runs([experiment.experiment_id])
    roles = {r.info.run_name: r.data.tags["synergos.role"] for r in runs}
    federation = [name for name, role in roles.items() if role == "federation"]
    assert len(federation) == 1
    assert {name for name, role in roles.items() if role == "participant"} == participants
    assert all(r.info.status == "FINISHED" for r in runs)
    parent = next(r for r in runs if r.info.run_name == federation[0])
    participant = next(r for r in runs if r.info.run_name in participants)
    assert "train/loss" in participant.data.metrics
    assert client.search_model_versions(f"run_id = '{parent.info.run_id}'")
