"""Tooling checks: lint, format, types, Snakemake lint/format, README/CI consistency, env pins."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from conftest import REPO

BIN = Path(sys.executable).parent


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_lint() -> None:
    r = _run(str(BIN / "ruff"), "check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_ruff_format() -> None:
    r = _run(str(BIN / "ruff"), "format", "--check", ".")
    assert r.returncode == 0, r.stdout + r.stderr


def test_mypy() -> None:
    r = _run(str(BIN / "mypy"), "--no-error-summary")
    assert r.returncode == 0, r.stdout + r.stderr


def test_snakefmt() -> None:
    r = _run(str(BIN / "snakefmt"), "--check", "Snakefile", "workflow/rules")
    assert r.returncode == 0, r.stdout + r.stderr


def test_snakemake_lint() -> None:
    r = _run(str(BIN / "snakemake"), "--lint", "--cores", "1")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "Lints for" not in out, out


def _readme_commands() -> list[str]:
    text = (REPO / "README.md").read_text()
    block = re.search(r"```[a-z]*\n(.*?)```", text, re.S)
    assert block, "README has no fenced code block"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_two_commands_and_ci_calls_the_second() -> None:
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert "snakemake --cores 8 results/report.html" in cmds[0]
    assert "pytest" in cmds[1]
    ci = (REPO / ".ci" / "run").read_text()
    # .ci/run extracts line 2 of the first fenced block and runs it.
    assert "sed -n 2p" in ci and "README.md" in ci


def _pins() -> dict[str, str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    pins = {}
    for d in deps:
        name, _, version = d.partition("==")
        assert version, f"pyproject dependency {d!r} is not pinned with =="
        pins[name.lower()] = version
    return pins


def test_conda_envs_match_pyproject_pins() -> None:
    pins = _pins()
    covered: set[str] = set()
    for env in sorted((REPO / "envs").glob("*.yaml")):
        spec = yaml.safe_load(env.read_text())
        pip = next(d["pip"] for d in spec["dependencies"] if isinstance(d, dict) and "pip" in d)
        for line in pip:
            if line.startswith("-"):
                continue  # the editable install of pipeline_lib itself
            name, _, version = line.partition("==")
            assert name.lower() in pins, f"{env.name}: {name} is not a dependency in pyproject.toml"
            assert version == pins[name.lower()], f"{env.name}: {name}=={version}, pyproject pins {pins[name.lower()]}"
            covered.add(name.lower())
    missing = set(pins) - covered
    assert not missing, f"pyproject dependencies in no envs/*.yaml: {sorted(missing)}"


def test_torch_pin_is_the_cpu_wheel_version() -> None:
    assert _pins()["torch"] == "2.13.0"


def _checksums_hold(folder: Path) -> list[str]:
    import hashlib

    bad = []
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split(maxsplit=1)
        path = folder / name.strip()
        if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            bad.append(name)
    return bad


def test_shipped_real_data_matches_its_recorded_checksums() -> None:
    """The real fixtures and chips live in the repository, byte-identical to their recorded sources."""
    for folder in (REPO / "tests" / "data" / "fixtures", REPO / "tests" / "data" / "stac", REPO / "data" / "real-ts"):
        assert (folder / "README.md").is_file(), f"{folder} lacks its provenance README"
        assert not _checksums_hold(folder), f"{folder}: files differ from SHA256SUMS"


def test_nothing_reaches_outside_the_repository() -> None:
    """A user's clone has nothing beside it: no code, test, rule or CI script may refer to the developer set beside it."""
    pattern = re.compile("\\.\\./" + "shared" + '|parent\\s*/\\s*"' + "shared" + '"')
    offenders = []
    for path in REPO.rglob("*"):
        rel = path.relative_to(REPO)
        if rel.parts[0] in {".git", ".venv", "results", ".snakemake", "logs"} or "egg-info" in rel.parts[0]:
            continue
        if not path.is_file():
            continue
        if path.suffix not in {".py", ".smk", ".sh", ".yaml", ".yml", ".toml", ""} or path.stat().st_size > 1_000_000:
            continue
        try:
            text = path.read_text()
        except UnicodeDecodeError:
            continue
        if pattern.search(text):
            offenders.append(str(rel))
    assert not offenders, offenders
