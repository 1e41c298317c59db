"""The README and docs/ say what the code does today: every command, setting and route is in
them, and every code block that claims to run does run.

Which blocks run: every fenced block whose info string is ``python`` or ``bash``, in README.md
and docs/*.md, unless the line before it (blank lines aside) is an HTML comment
``<!-- not run: REASON -->`` with a reason. Blocks with any other info string (none, ``make``)
are listings and output, never run. A block runs as written, in a fresh working directory,
against a real ``synmlops serve`` on a free port that already holds the demo run (as after
``make run``): the only change made to its text is ``http://localhost:5500`` -> that server's
URL. ``python`` blocks run as a script with this interpreter; ``bash`` blocks run with
``bash -euo pipefail`` with ``synmlops`` on PATH, MLFLOW_TRACKING_URI and SYNMLOPS_STORE
unset, TMPDIR inside the test's folder and RAY_TMPDIR a short folder in /tmp (Ray's sockets
live there). A block passes when it exits 0 and leaves no FAILED run on the server.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import SYNMLOPS, Server, start_server

from synergos_mlops.cli import main
from synergos_mlops.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = README + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))
RUN_LANGUAGES = ("python", "bash")
DOCUMENTED_SERVER = "http://localhost:5500"


@dataclass(frozen=True)
class Block:
    where: str  # file:line of the opening fence
    language: str
    code: str
    not_run: str | None  # the reason given in <!-- not run: ... -->, else None


def code_blocks(path: Path) -> list[Block]:
    """Every fenced block of a Markdown file, with the not-run reason before it."""
    blocks: list[Block] = []
    lines = path.read_text().splitlines()
    index = 0
    while index < len(lines):
        fence = re.match(r"^```(\S*)\s*$", lines[index])
        if not fence:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        index += 1
        before = start - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = re.match(r"^<!-- not run:(.*)-->\s*$", lines[before]) if before >= 0 else None
        reason = marker.group(1).strip() if marker else None
        name = path.relative_to(ROOT)
        blocks.append(Block(f"{name}:{start + 1}", fence.group(1), "\n".join(body) + "\n", reason))
    return blocks


ALL_BLOCKS = [
    block
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for block in code_blocks(path)
]
RUN_BLOCKS = [b for b in ALL_BLOCKS if b.language in RUN_LANGUAGES and b.not_run is None]


@pytest.fixture(scope="module")
def docs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server holding the demo run, as `make run` leaves it."""
    folder = tmp_path_factory.mktemp("docs")
    server = start_server(folder / "store", workers=2)
    env = {**os.environ, "SYNMLOPS_SPOOL": str(folder / "spool")}
    demo = [*SYNMLOPS, "demo", "--tracking-uri", server.url, "--rounds", "2", "--epochs", "1"]
    subprocess.run(demo, check=True, capture_output=True, env=env, timeout=600)
    yield server
    server.stop()


def test_blocks_marked_not_run_say_why_and_the_readme_snippet_runs() -> None:
    for block in ALL_BLOCKS:
        assert block.not_run != "", f"{block.where}: <!-- not run: --> without a reason"
    assert any(b.where.startswith("README.md") and b.language == "python" for b in RUN_BLOCKS)
    assert any(b.language == "bash" for b in RUN_BLOCKS)


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=lambda b: b.where)
def test_every_code_block_that_claims_to_run_runs(
    block: Block, docs_server: Server, tmp_path: Path
) -> None:
    from mlflow import MlflowClient
    from mlflow.entities import ViewType

    code = block.code.replace(DOCUMENTED_SERVER, docs_server.url)
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "SYNMLOPS_STORE")}  # fmt: skip
    (tmp_path / "tmp").mkdir()
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        SYNMLOPS_SPOOL=str(tmp_path / "spool"),
        TMPDIR=str(tmp_path / "tmp"),
    )
    work = tmp_path / "work"
    work.mkdir()
    script = tmp_path / ("block.py" if block.language == "python" else "block.sh")
    script.write_text(code)
    command = [sys.executable, str(script)]
    if block.language == "bash":
        command = ["bash", "-euo", "pipefail", str(script)]
    # Ray puts its AF_UNIX sockets under $TMPDIR/ray/session_.../sockets, and AF_UNIX paths
    # stop at 107 bytes: the test's TMPDIR is too long, so Ray gets a short one of its own.
    with tempfile.TemporaryDirectory(prefix="ray", dir="/tmp", ignore_cleanup_errors=True) as ray:
        env["RAY_TMPDIR"] = ray
        result = subprocess.run(
            command, cwd=work, env=env, capture_output=True, text=True, timeout=900
        )
    assert result.returncode == 0, f"{block.where} failed:\n{result.stdout}\n{result.stderr}"
    client = MlflowClient(tracking_uri=docs_server.url)
    experiments = [e.experiment_id for e in client.search_experiments(view_type=ViewType.ALL)]
    failed = client.search_runs(experiments, filter_string="attributes.status = 'FAILED'")
    assert not failed, f"{block.where} left FAILED runs: {[r.info.run_name for r in failed]}"


def test_every_command_is_in_the_readme_and_has_help() -> None:
    runner = CliRunner()
    for name, command in main.commands.items():
        assert f"synmlops {name}" in README, f"`synmlops {name}` is not in the README"
        result = runner.invoke(main, [name, "--help"])
        assert result.exit_code == 0
        first_line = " ".join((command.help or "").split("\n")[0].split())
        assert first_line and first_line in " ".join(result.output.split())


@pytest.mark.parametrize("spec", SETTINGS, ids=lambda s: s.name)
def test_every_setting_is_in_the_readme(spec: object) -> None:
    assert f"`{spec.env}`" in README  # type: ignore[attr-defined]


def test_every_serve_option_is_in_the_readme() -> None:
    for param in main.commands["serve"].params:
        for flag in getattr(param, "opts", []):
            if flag.startswith("--"):
                assert f"`{flag}" in README, f"serve {flag} is not in the README"


def test_every_synergos_api_route_is_documented() -> None:
    import importlib

    from synergos_mlops.server.app import ROUTER_MODULES

    routes = {
        route.path  # type: ignore[attr-defined]
        for module in ROUTER_MODULES
        for route in importlib.import_module(module).router.routes
        if getattr(route, "include_in_schema", False)
    }
    assert routes
    for path in routes:
        tail = re.sub(r"^/api/synergos/v1", "", path)
        tail = tail.replace("/runs/{collaboration}/{project}/{experiment}/{run}", "{run}")
        tail = re.sub(r"\{(\w+):path\}", r"{\1}", tail)
        assert tail in DOCS, f"route {path} is not documented in README.md or docs/"
