"""The import graph of aspects_app runs one way (docs/architecture.md): no cycles, the engine and the ephemeris
never import Django, and views and commands reach the batch machinery, the cache and the metrics only through
their owners (services, jobs)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "aspects_app"
# Entry points and the modules they must not import directly.
ENTRIES = ("aspects_app.api.views", "aspects_app.management.commands.compute_aspects",
           "aspects_app.management.commands.aspects_cache")  # fmt: skip
OWNED = ("aspects_app.batch", "aspects_app.distributed", "aspects_app.tasks", "aspects_app.cache",
         "aspects_app.metrics", "aspects_app.results")  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    """Every module an ``import`` names, at module level or inside functions (a deferred import is an edge too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
            module = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


def graph() -> dict[str, set[str]]:
    paths = [p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts]
    modules = {module_name(p): p for p in paths}
    return {
        name: {m for m in imports_of(path) if m in modules and m != name and not name.startswith(m + ".")}
        for name, path in modules.items()
    }


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_import_graph_has_no_cycle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("layer", ["aspects_app.engine", "aspects_app.ephemeris", "aspects_app.pictures"])
def test_the_numeric_layers_never_import_django(layer: str) -> None:
    paths = [p for p in PACKAGE.rglob("*.py") if module_name(p).startswith(layer)]
    assert paths
    for path in paths:
        django = sorted(m for m in imports_of(path) if m == "django" or m.startswith("django."))
        assert not django, f"{module_name(path)} imports {django}"


@pytest.mark.parametrize("entry", ENTRIES)
def test_views_and_commands_call_owners_only(entry: str) -> None:
    direct = sorted(m for m in graph()[entry] if any(m == o or m.startswith(o + ".") for o in OWNED))
    assert not direct, f"{entry} imports {direct}; go through services or jobs"
