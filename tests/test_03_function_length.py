"""No function in pipeline_lib is longer than 80 lines: a long one is cut into small, named steps.

A function's length runs from its ``def`` line to its last line (docstring included, decorators not);
nested functions are measured on their own too. ``ALLOWED`` lists the functions still being cut, each as
``path::name``; an entry is removed as soon as its function is split.
"""

from __future__ import annotations

import ast

from conftest import REPO

MAX_LINES = 80
PKG = REPO / "pipeline_lib"
ALLOWED: frozenset[str] = frozenset()


def long_functions(source: str, name: str, max_lines: int = MAX_LINES) -> list[tuple[str, int]]:
    """(``name::function``, length in lines) of every function in ``source`` longer than ``max_lines``."""
    return [
        (f"{name}::{node.name}", node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source, filename=name))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > max_lines
    ]


def _package_long_functions() -> list[tuple[str, int]]:
    found: list[tuple[str, int]] = []
    for path in sorted(PKG.rglob("*.py")):
        found += long_functions(path.read_text(encoding="utf-8"), path.relative_to(REPO).as_posix())
    return found


def test_the_checker_reports_a_long_function() -> None:
    body = "".join(f"    x{i} = {i}\n" for i in range(80))
    assert long_functions(f"def f() -> None:\n{body}", "synthetic.py") == [("synthetic.py::f", 81)]
    short = "".join(f"    x{i} = {i}\n" for i in range(79))
    assert long_functions(f"async def g() -> None:\n{short}", "synthetic.py") == []
    method = "class C:\n    def m(self) -> None:\n" + "".join(f"        x{i} = {i}\n" for i in range(80))
    assert long_functions(method, "synthetic.py") == [("synthetic.py::m", 81)]


def test_the_scan_sees_the_package() -> None:
    assert len(list(PKG.rglob("*.py"))) > 50
    assert long_functions((PKG / "ingest.py").read_text(encoding="utf-8"), "ingest.py", max_lines=5)


def test_no_function_is_longer_than_80_lines() -> None:
    found = _package_long_functions()
    too_long = [f"{name} ({lines} lines)" for name, lines in found if name not in ALLOWED]
    assert too_long == [], f"functions over {MAX_LINES} lines; cut them into named steps: {', '.join(too_long)}"


def test_every_allowed_function_still_exists() -> None:
    names = {
        f"{path.relative_to(REPO).as_posix()}::{node.name}"
        for path in PKG.rglob("*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }
    assert sorted(ALLOWED - names) == [], "remove allow-list entries whose function is gone"
