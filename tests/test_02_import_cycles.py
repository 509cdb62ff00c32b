"""No import cycle between pipeline_lib's modules (DESIGN §1: io ← stac ← cog, xmlsafe ← safe ← readers).

Module-level ``from pipeline_lib.x import …`` / ``import pipeline_lib.x`` statements form a graph; a package
importing its own submodules (``from pipeline_lib.report import figures`` inside the package) is not a cycle.
"""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "pipeline_lib"


def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        name = ".".join(parts)
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("pipeline_lib"):
                deps.add(node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("pipeline_lib")}
        graph[name] = {d for d in deps if d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    state: dict[str, int] = {}  # 1 on the stack, 2 done

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == 1:
                found.append([*stack[stack.index(dep) :], dep])
            elif dep in graph and dep not in state:
                visit(dep, [*stack, dep])
        state[node] = 2

    for start in sorted(graph):
        if start not in state:
            visit(start, [start])
    return found


def test_the_scan_sees_the_package() -> None:
    graph = _graph()
    assert "pipeline_lib.cog" in graph["pipeline_lib.model.predict"]
    assert _cycles({"a": {"b"}, "b": {"a"}}) == [["a", "b", "a"]]


def test_no_import_cycle() -> None:
    assert _cycles(_graph()) == []
