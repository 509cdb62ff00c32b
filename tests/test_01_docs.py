"""docs/DESIGN.md is the design inside the repository: every `DESIGN §N` reference resolves to a section of
it, and no code, test, rule or benchmark comment points at an issue number instead (DESIGN §1)."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "DESIGN.md"
SOURCES = ("pipeline_lib", "tests", "benchmarks", "workflow", "tools", "profiles")


def _files() -> list[Path]:
    out = [REPO / "Snakefile", REPO / "README.md", REPO / "docs" / "CONTRACTS.md"]
    for folder in SOURCES:
        out += [
            p
            for p in (REPO / folder).rglob("*")
            if p.is_file() and p.suffix in {".py", ".smk", ".yaml", ".md", ".rst"} and "fixtures" not in p.parts
        ]
    return out


def test_every_design_reference_resolves() -> None:
    sections = {int(n) for n in re.findall(r"^## (\d+)\. ", DESIGN.read_text(encoding="utf-8"), re.M)}
    assert sections >= set(range(1, 12))
    refs = {
        (path.relative_to(REPO).as_posix(), int(n))
        for path in _files()
        for n in re.findall(r"DESIGN(?:\.md)? §(\d+)", path.read_text(encoding="utf-8", errors="replace"))
    }
    assert refs, "no DESIGN § reference found: the scan is broken"
    assert [r for r in sorted(refs) if r[1] not in sections] == []


def test_no_comment_points_at_an_issue_number() -> None:
    hits = [
        f"{path.relative_to(REPO)}:{i}"
        for path in _files()
        if path.suffix != ".md" and path != Path(__file__)
        for i, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1)
        if re.search(r"\bissue\s*#?\d", line, re.IGNORECASE)
    ]
    assert hits == []
