"""Determinism (DESIGN §9): ci-tiny end to end twice, same seed, CPU -> identical results.

Two independent copies of the workflow each build ``results/ci-tiny/report.html`` from scratch
(demo source, seed 0, the resumable training settings of ``workflow_utils.make_ci_tiny_workdir``;
the first run is the session's shared ``ci_tiny_baseline``, which test_82 reuses). The metrics
must be equal and every raster the chain writes (S1 and S2 on the grid, the stack, the truth, the
predictions and uncertainties) byte-identical. Files that may
legitimately differ (the report and the model checkpoints, which hold runtimes) are compared and
listed, not asserted; ``pytest -s`` prints the list.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from workflow_utils import CI_TINY_TARGET, make_ci_tiny_workdir, raster_files, snakemake
from workflow_utils import digests as _digests

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory, ci_tiny_baseline: Path) -> tuple[Path, Path]:
    work = make_ci_tiny_workdir(tmp_path_factory.mktemp("determinism-b") / "wf")
    snakemake(work, "--cores", "2", CI_TINY_TARGET, timeout=1500)
    return ci_tiny_baseline / "results" / "ci-tiny", work / "results" / "ci-tiny"


def test_metrics_identical(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    assert ma, "metrics.json is empty"
    assert ma == mb
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()


def test_rasters_byte_identical(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    files = raster_files(a)
    kinds = {f.split("/", 1)[0] for f in files}
    assert kinds == {"s1", "s2", "stacks", "truth", "pred"}, files
    assert files == raster_files(b)
    differ = [f for f in files if (a / f).read_bytes() != (b / f).read_bytes()]
    assert not differ, differ


def test_report_what_else_differs(two_runs: tuple[Path, Path]) -> None:
    """Not a requirement beyond the rasters and metrics: list every other file that differs, for RELIABILITY.md."""
    da, db = _digests(two_runs[0]), _digests(two_runs[1])
    assert set(da) == set(db), sorted(set(da) ^ set(db))
    differ = sorted(f for f in da if da[f] != db[f])
    print("\nDETERMINISM|files that differ between the two runs:", differ or "none")
    raster_like = [f for f in differ if f.startswith(("s1/", "s2/", "stacks/", "truth/", "pred/"))]
    assert not raster_like, raster_like
    assert set(differ) <= {"report.html"} | {f for f in da if f.startswith("models/")}, differ
