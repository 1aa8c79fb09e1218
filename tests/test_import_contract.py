"""The import contract: layers import one way, and no module imports itself back through others.

    warehouse  <- ingest  <- engine          (warehouse: schemas and vocabulary, imports no project package)
    warehouse  <- analysis                   (reads the warehouse only: never the engine)
    queries: SQL only.  cli.py: the public faces (`from engine import ...`), never a module inside one.
    inside engine: runs -> peers -> interventions -> model (peers: the benchmark's reference implementations).

Every import statement of every source file counts, wherever it stands: inside functions, and under
`if TYPE_CHECKING:` (a type-only import still says which layer knows which).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("warehouse", "ingest", "engine", "analysis", "queries")
ALLOWED = {  # package -> the other project packages it may import
    "warehouse": set(),
    "ingest": {"warehouse"},
    "engine": {"ingest", "warehouse"},
    "analysis": {"warehouse"},
    "queries": set(),
}
ENGINE_LAYERS = ("model", "interventions", "peers", "runs")  # each may import only those before it


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    found = {"cli": ROOT / "cli.py"}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found[_module_name(path)] = path
    return found


SOURCES = _sources()


def _imports(module: str, path: Path) -> set[str]:
    """The project modules `module` imports (a `from pkg import name` of a submodule names the submodule)."""
    out = set()
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in SOURCES else base for a in node.names]
        else:
            continue
        out.update(t for t in targets if t.split(".")[0] in (*PACKAGES, "cli"))
    return out


GRAPH = {module: _imports(module, path) for module, path in SOURCES.items()}


def _violations(rule) -> list[str]:
    return sorted(f"{m} imports {t}" for m, targets in GRAPH.items() for t in targets if rule(m, t))


def test_the_graph_is_not_empty():
    """The walk sees the project: a wrong root or parser would make every rule below pass vacuously."""
    assert len(SOURCES) > 60
    assert any(t.startswith("warehouse") for t in GRAPH["cli"])
    assert any(t.startswith("warehouse") for m, ts in GRAPH.items() if m.startswith("engine") for t in ts)


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_import_one_way(package):
    def upward(module: str, target: str) -> bool:
        top = target.split(".")[0]
        return module.split(".")[0] == package and top != package and top not in ALLOWED[package]

    assert _violations(upward) == []


def test_cli_uses_public_faces():
    """cli.py imports what a package's __init__ names, never a module inside it."""
    assert _violations(lambda m, t: m == "cli" and "." in t) == []


def test_engine_layers():
    def layer(module: str) -> int | None:
        parts = module.split(".")
        return ENGINE_LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in ENGINE_LAYERS else None

    def upward(module: str, target: str) -> bool:
        if not (module.startswith("engine.") and target.startswith("engine")):
            return False
        mine, theirs = layer(module), layer(target)
        if mine is None:  # engine/__init__ and the like: the public face may name any layer
            return False
        return theirs is None or theirs > mine

    assert all(f"engine.{name}" in SOURCES for name in ENGINE_LAYERS)
    assert _violations(upward) == []


def test_no_import_cycles():
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []
    edges = defaultdict(set, {m: {t for t in ts if t in SOURCES and t != m} for m, ts in GRAPH.items()})

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(edges):
        if module not in index:
            visit(module)
    assert cycles == []
