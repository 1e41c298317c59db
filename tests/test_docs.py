"""The README says what the code does today: every command, setting and route is in it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from synergos_mlops.cli import main
from synergos_mlops.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
DOCS = README + "".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


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
