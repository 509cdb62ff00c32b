"""Helpers for workflow tests: an isolated copy of the workflow, a Snakemake runner, result comparison."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO

WORKFLOW_FILES = ["Snakefile", "workflow", "config", "profiles", "envs", "pyproject.toml"]
CI_TINY_TARGET = "results/ci-tiny/report.html"
# ci-tiny as the determinism and kill-and-resume tests run it: 3 steps per epoch on 128 px (9 patches of
# 32 px, batch 4), so 9 steps give 3 epochs and the >= 2 partial checkpoints the kill test needs.
CI_TINY_RESUMABLE_TRAIN = {"max_steps": 9, "checkpoint_every": 1}
# Outputs that must be byte-identical between two runs with the same seed (relative to results/<region>).
RASTER_PATTERNS = ("s1/*.tif", "s2/*.tif", "stacks/*.nc", "truth/*.tif", "pred/*/*.tif")
# Names of the temporaries pipeline_lib.io.atomic_path / the demo download leave when killed.
TEMP_NAME = re.compile(r"^\..+\.[a-z0-9_]{8}\.part")


def make_workdir(dest: Path) -> Path:
    """Copy the workflow (not results) into ``dest``; pipeline_lib is imported from the install."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    # Region files may name data shipped in the package (the demo DEM): link the package in.
    (dest / "pipeline_lib").symlink_to(REPO / "pipeline_lib", target_is_directory=True)
    return dest


def snakemake(workdir: Path, *args: str, timeout: int = 1800, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run Snakemake in ``workdir`` with the test interpreter; raise with the log tail on failure."""
    env = dict(os.environ)
    env.setdefault("PYTHONHASHSEED", "0")
    for hook in ("PIPELINE_FAULT_KILL", "PIPELINE_FAULT_SKIP"):  # test_82's crash hook: never inherited
        env.pop(hook, None)
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and r.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}"
        )
    return r


def planned_jobs(dry_run_output: str) -> dict[str, int]:
    """Parse the 'Job stats' table of a dry run into {rule: count}."""
    counts: dict[str, int] = {}
    m = re.search(r"Job stats:\n(.*?)\n\s*total\s+\d+", dry_run_output, re.S)
    if not m:
        return counts
    for line in m.group(1).splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def make_ci_tiny_workdir(dest: Path) -> Path:
    """A workflow copy whose ci-tiny region trains with :data:`CI_TINY_RESUMABLE_TRAIN`."""
    work = make_workdir(dest)
    region_file = work / "config" / "regions" / "ci-tiny.yaml"
    region = yaml.safe_load(region_file.read_text(encoding="utf-8"))
    region.setdefault("train", {}).update(CI_TINY_RESUMABLE_TRAIN)
    region_file.write_text(yaml.safe_dump(region, sort_keys=False), encoding="utf-8")
    return work


def digests(folder: Path) -> dict[str, str]:
    """SHA-256 of every file below ``folder``, keyed by POSIX path relative to it."""
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def raster_files(results: Path) -> list[str]:
    """The :data:`RASTER_PATTERNS` files under ``results`` (relative POSIX paths, sorted)."""
    return sorted({p.relative_to(results).as_posix() for pattern in RASTER_PATTERNS for p in results.glob(pattern)})


def temp_leftovers(folder: Path) -> list[str]:
    """Temporaries of the atomic writers and resumable ``.partial`` checkpoints left anywhere below ``folder``."""
    return sorted(
        p.relative_to(folder).as_posix()
        for p in folder.rglob("*")
        if TEMP_NAME.match(p.name) or p.name.endswith(".partial")
    )


def normalise_report(html: str) -> str:
    """A region report with what may differ between equal runs masked: the generation stamp and the runtimes."""
    html = re.sub(r"generated \d{4}-\d\d-\d\d \d\d:\d\d UTC", "generated <stamp>", html)

    def mask(m: re.Match[str]) -> str:
        return re.sub(r'<td class="num">[^<]*</td>', '<td class="num">#</td>', m.group(0))

    return re.sub(r'<section id="runtimes">.*?</section>', mask, html, flags=re.S)
