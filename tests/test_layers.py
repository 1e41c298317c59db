"""The architecture as the imports draw it (docs/design.md, "Arrows go one way").

Read with ``ast`` from ``src/synergos_mlops`` (nothing is imported), every import of one of
our modules is an arrow, wherever it stands (a function body's lazy import counts too):

- No cycle between modules. Imports under ``if TYPE_CHECKING:`` are left out of this one
  rule, since they never run.
- No private name crosses a module: ``from m import _x`` is refused unless ``_x`` is a
  submodule of the package ``m`` and the importer lies in that package. A private module
  (``a._m``, or anything under it) is imported only from inside its package ``a`` (its
  siblings, and ``a/__init__`` re-exporting its names). Dunders (``__version__``) are public.
- Arrows point down :data:`ALLOWED`: each module belongs to the layer its first name under
  ``synergos_mlops`` says (:data:`LAYERS`), and may import its own layer and the layers listed.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "src" / "synergos_mlops"
PACKAGE = "synergos_mlops"

#: Shared vocabulary and checks, imported by every layer; they import only each other.
DOMAIN = frozenset(
    {"errors", "federation", "catalogue", "catalogue_shape", "studies", "validate", "settings",
     "store", "model_registry"}
)  # fmt: skip

#: A module's first name under ``synergos_mlops`` → its layer (a name not here and not in
#: DOMAIN is its own layer, named after it).
LAYERS = {"export": "commands", "lineage": "commands", "__main__": "cli"}

#: Layer → the other layers it may import. The root package (``synergos_mlops/__init__``) is
#: the library's public face; ``__version__`` may be imported from it by anyone.
ALLOWED: dict[str, frozenset[str]] = {
    "domain": frozenset(),
    "storage": frozenset({"domain"}),
    "tracking": frozenset({"domain", "storage"}),
    "legacy": frozenset({"domain", "storage"}),
    "views": frozenset({"domain", "storage", "legacy"}),
    "server": frozenset({"domain", "storage", "legacy", "views"}),
    "ingest": frozenset({"domain", "tracking"}),
    "demo": frozenset({"domain", "tracking"}),
    "integrations": frozenset({"domain", "tracking"}),
    "commands": frozenset({"domain", "tracking", "views"}),
    "root": frozenset({"domain", "tracking"}),
    "cli": frozenset(
        {"domain", "storage", "tracking", "legacy", "views", "server", "ingest", "demo",
         "commands", "root"}
    ),
}  # fmt: skip


@dataclass(frozen=True)
class Arrow:
    source: str
    target: str  # a module of ours
    name: str | None  # the name imported from it (``from target import name``), if any
    typing_only: bool
    line: int


def layer_of(module: str) -> str:
    parts = module.split(".")
    if parts == [PACKAGE]:
        return "root"
    first = parts[1]
    if first in DOMAIN:
        return "domain"
    return LAYERS.get(first, first)


def module_names(sources: Mapping[str, str]) -> set[str]:
    return set(sources)


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, typing_only: bool = False) -> Iterator[tuple[ast.stmt, bool]]:
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, typing_only
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), True)
            for child in node.orelse:
                yield from _imports(ast.Module(body=[child], type_ignores=[]), typing_only)
        elif not isinstance(node, (ast.Import, ast.ImportFrom)):
            yield from _imports(node, typing_only)


def arrows(sources: Mapping[str, str], packages: set[str]) -> list[Arrow]:
    """Every import of one of our modules, from ``sources`` (module name → source text);
    ``packages`` names the modules that are packages (for relative imports)."""
    found: list[Arrow] = []
    known = set(sources)
    for source, text in sources.items():
        here = source if source in packages else source.rpartition(".")[0]
        for node, typing_only in _imports(ast.parse(text)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == PACKAGE:
                        found.append(Arrow(source, alias.name, None, typing_only, node.lineno))
                continue
            assert isinstance(node, ast.ImportFrom)
            if node.level:
                base = here.rsplit(".", node.level - 1)[0] if node.level > 1 else here
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if target.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                if submodule in known:
                    found.append(Arrow(source, submodule, None, typing_only, node.lineno))
                else:
                    found.append(Arrow(source, target, alias.name, typing_only, node.lineno))
    return found


def cycles(found: list[Arrow]) -> list[list[str]]:
    """The import cycles (each a list of modules, first repeated last) of runtime arrows."""
    graph: dict[str, set[str]] = {}
    for arrow in found:
        if not arrow.typing_only and arrow.source != arrow.target:
            graph.setdefault(arrow.source, set()).add(arrow.target)
    loops: list[list[str]] = []
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                loops.append([*path[path.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return loops


def _private_part(module: str) -> str | None:
    """The package that owns ``module`` if it is private (``a._m`` or under it), else None."""
    parts = module.split(".")
    for index, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:index])
    return None


def private_crossings(found: list[Arrow], packages: set[str]) -> list[str]:
    problems: list[str] = []
    for arrow in found:
        where = f"{arrow.source}:{arrow.line}"
        home = arrow.source if arrow.source in packages else arrow.source.rpartition(".")[0]
        owner = _private_part(arrow.target)
        if owner is not None and not (home == owner or home.startswith(owner + ".")):
            problems.append(f"{where} imports the private module {arrow.target}")
        name = arrow.name
        if name and name.startswith("_") and not name.startswith("__"):
            problems.append(f"{where} imports the private name {arrow.target}.{name}")
    return problems


def arrows_up(found: list[Arrow]) -> list[str]:
    problems: list[str] = []
    for arrow in found:
        if arrow.target == PACKAGE and arrow.name == "__version__":
            continue
        source, target = layer_of(arrow.source), layer_of(arrow.target)
        if source != target and target not in ALLOWED[source]:
            problems.append(
                f"{arrow.source}:{arrow.line} ({source}) imports {arrow.target} ({target})"
            )
    return problems


def read_tree(root: Path, package: str) -> tuple[dict[str, str], set[str]]:
    sources: dict[str, str] = {}
    packages: set[str] = set()
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
            packages.add(".".join(parts))
        sources[".".join(parts)] = path.read_text(encoding="utf-8")
    return sources, packages


def _ours() -> tuple[list[Arrow], set[str]]:
    sources, packages = read_tree(ROOT, PACKAGE)
    assert len(sources) > 50, "the source tree was not found"
    return arrows(sources, packages), packages


def test_no_two_modules_import_each_other_even_through_others() -> None:
    found, _packages = _ours()
    assert cycles(found) == []


def test_no_module_imports_another_modules_private_names() -> None:
    found, packages = _ours()
    assert private_crossings(found, packages) == []


def test_every_import_points_down_the_layers() -> None:
    found, _packages = _ours()
    assert {layer_of(a.source) for a in found} <= set(ALLOWED), "a layer is missing in ALLOWED"
    assert arrows_up(found) == []


def _write(root: Path, files: dict[str, str]) -> tuple[list[Arrow], set[str]]:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    sources, packages = read_tree(root, PACKAGE)
    return arrows(sources, packages), packages


def test_the_checks_catch_a_cycle_a_private_import_and_an_arrow_up(tmp_path: Path) -> None:
    found, packages = _write(
        tmp_path,
        {
            "__init__.py": "",
            "server/__init__.py": "",
            "server/app.py": "from synergos_mlops.server.routes import router\n",
            "server/routes.py": "def f():\n    from synergos_mlops.server import app\n",
            "server/_inner.py": "",
            "storage/__init__.py": "",
            "storage/reads.py": "from synergos_mlops.server.app import _helper\n",
            "tracking/__init__.py": "from synergos_mlops.tracking import _sender\n",
            "tracking/_sender.py": "from synergos_mlops.server._inner import x\n",
            "tracking/_run.py": (
                "from typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from synergos_mlops.tracking._tracker import T\n"
            ),
            "tracking/_tracker.py": "from synergos_mlops.tracking._run import R\n",
        },
    )
    assert cycles(found) == [
        ["synergos_mlops.server.app", "synergos_mlops.server.routes", "synergos_mlops.server.app"]
    ]
    assert private_crossings(found, packages) == [
        "synergos_mlops.storage.reads:1 imports the private name synergos_mlops.server.app._helper",
        "synergos_mlops.tracking._sender:1 imports the private module synergos_mlops.server._inner",
    ]
    assert arrows_up(found) == [
        "synergos_mlops.storage.reads:1 (storage) imports synergos_mlops.server.app (server)",
        "synergos_mlops.tracking._sender:1 (tracking) imports synergos_mlops.server._inner "
        "(server)",
    ]
