"""Shared test helpers: repository paths, the real fixtures folder (tests/data/fixtures), CI-aware skipping."""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "data" / "fixtures"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def stack_generator() -> ModuleType:
    """The synthetic stack generator ``tests/data/stack/data.py`` (``make_stack``), loaded as a module."""
    spec = importlib.util.spec_from_file_location("stack_data", Path(__file__).parent / "data" / "stack" / "data.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def require_tool(name: str, why: str) -> str:
    """Path of a system tool; skip with a reason when absent, but fail under CI=true (.ci/run installs it)."""
    path = shutil.which(name)
    if path is None:
        if IN_CI:
            pytest.fail(f"{name} is missing under CI=true ({why}); .ci/run must install it")
        pytest.skip(f"{name} not installed ({why}); .ci/run installs it")
    return path


@pytest.fixture(scope="session")
def fixtures() -> Path:
    if not FIXTURES.is_dir():
        pytest.fail(f"test fixtures not found at {FIXTURES}; they are part of the repository (git checkout tests/data)")
    return FIXTURES


@pytest.fixture(scope="session")
def ci_tiny_baseline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Workflow folder of ONE uninterrupted ci-tiny run (seed 0, CPU, resumable training settings).

    Shared by the determinism (test_81) and kill-and-resume (test_82) tests; read-only for them.
    """
    from workflow_utils import CI_TINY_TARGET, make_ci_tiny_workdir, snakemake

    work = make_ci_tiny_workdir(tmp_path_factory.mktemp("ci-tiny-baseline") / "wf")
    snakemake(work, "--cores", "2", CI_TINY_TARGET, timeout=1500)
    return work
