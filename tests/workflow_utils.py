"""Helpers for workflow tests: an isolated copy of the workflow and a Snakemake runner."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

WORKFLOW_FILES = ["Snakefile", "workflow", "config", "profiles", "envs", "pyproject.toml"]


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
