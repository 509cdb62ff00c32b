"""Determinism (issue 7, part 6): ci-tiny end to end twice, same seed, CPU -> identical results.

Two independent copies of the workflow each build ``results/ci-tiny/report.html`` from scratch
(demo source, seed 0). The metrics must be equal and every raster the chain writes (S1 and S2 on
the grid, the stack, the truth, the predictions and uncertainties) byte-identical. Files that may
legitimately differ (the report and the model checkpoints, which hold runtimes) are compared and
listed, not asserted; ``pytest -s`` prints the list.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from workflow_utils import make_workdir, snakemake

pytestmark = pytest.mark.workflow

TARGET = "results/ci-tiny/report.html"
RASTERS = ("s1/*.tif", "s2/*.tif", "stacks/*.nc", "truth/*.tif", "pred/*/*.tif")


def _digests(results: Path) -> dict[str, str]:
    return {
        p.relative_to(results).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(results.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out = []
    for name in ("a", "b"):
        work = make_workdir(tmp_path_factory.mktemp(f"determinism-{name}") / "wf")
        snakemake(work, "--cores", "2", TARGET, timeout=1500)
        out.append(work / "results" / "ci-tiny")
    return out[0], out[1]


def test_metrics_identical(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    assert ma, "metrics.json is empty"
    assert ma == mb
    assert (a / "metrics.csv").read_bytes() == (b / "metrics.csv").read_bytes()


def test_rasters_byte_identical(two_runs: tuple[Path, Path]) -> None:
    a, b = two_runs
    files = sorted({p.relative_to(a).as_posix() for pattern in RASTERS for p in a.glob(pattern)})
    kinds = {f.split("/", 1)[0] for f in files}
    assert kinds == {"s1", "s2", "stacks", "truth", "pred"}, files
    assert files == sorted({p.relative_to(b).as_posix() for pattern in RASTERS for p in b.glob(pattern)})
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
