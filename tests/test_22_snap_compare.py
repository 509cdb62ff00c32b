"""Cross-check command: dB differences and phase-correlation offset on rasters with a known bias and shift."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter
from scipy.ndimage import shift as nd_shift

from pipeline_lib.cog import write_cog
from pipeline_lib.grid import make_centered_grid
from tools.sar_compare import compare_arrays, compare_rasters, main

REPO = Path(__file__).resolve().parents[1]
GRID = make_centered_grid((12.5, 42.0), (128, 128))


def _scene(seed: int = 0) -> np.ndarray:
    """A textured σ0 dB field (smoothed noise, -20..-5 dB)."""
    rng = np.random.default_rng(seed)
    field = gaussian_filter(rng.normal(size=(128, 128)), 2.0)
    return (-12.0 + 4.0 * field / field.std()).astype(np.float64)


def _pair(tmp_path: Path, dy: float, dx: float, bias: float) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    a = _scene()
    b = nd_shift(a, (dy, dx), order=3, mode="nearest") + bias  # content of B moved by (+dy down, +dx right)
    a[:6, :] = np.nan  # no-data strips in each
    b[:, -5:] = np.nan
    pa, pb = tmp_path / "a.tif", tmp_path / "b.tif"
    for path, img in ((pa, a), (pb, b)):
        write_cog(
            np.stack([img, img - 6.0]).astype(np.float32),
            path,
            crs=GRID.crs,
            transform=GRID.transform,
            descriptions=["VV", "VH"],
        )
    return pa, pb, a, b


def test_known_bias_without_shift() -> None:
    a = _scene()
    stats = compare_arrays(a, a + 0.35)
    assert stats["median_db"] == pytest.approx(0.35) and stats["p95_abs_db"] == pytest.approx(0.35)
    assert abs(stats["dx_px"]) < 0.05 and abs(stats["dy_px"]) < 0.05


def test_known_shift_and_bias_from_files(tmp_path: Path) -> None:
    pa, pb, _, _ = _pair(tmp_path, dy=-1.5, dx=2.25, bias=0.5)
    result = compare_rasters(pa, pb)
    assert set(result["bands"]) == {"VV", "VH"} and not result["resampled_b"]
    for stats in result["bands"].values():
        assert stats["dx_px"] == pytest.approx(2.25, abs=0.1)
        assert stats["dy_px"] == pytest.approx(-1.5, abs=0.1)
        assert stats["dx_m"] == pytest.approx(22.5, abs=1.0) and stats["dy_m"] == pytest.approx(15.0, abs=1.0)
        assert stats["n_valid"] == (128 - 6) * (128 - 5)
    # With a shift the per-pixel differences spread around the bias.
    assert result["bands"]["VV"]["p95_abs_db"] > result["bands"]["VV"]["median_abs_db"] > 0


def test_bias_only_exact_statistics(tmp_path: Path) -> None:
    pa, pb, a, b = _pair(tmp_path, dy=0.0, dx=0.0, bias=-0.2)
    vv = compare_rasters(pa, pb)["bands"]["VV"]
    valid = np.isfinite(a) & np.isfinite(b)
    d = (b - a)[valid].astype(np.float32).astype(np.float64)
    assert vv["median_db"] == pytest.approx(-0.2, abs=1e-4)
    assert vv["p95_abs_db"] == pytest.approx(np.percentile(np.abs(d), 95), abs=1e-4)


def test_b_on_another_grid_is_warped(tmp_path: Path) -> None:
    pa, _, a, _ = _pair(tmp_path, 0.0, 0.0, 0.0)
    # B: the same field on a grid offset by exactly 3 px east (its pixel (r, c) is A's (r, c + 3)).
    shifted = GRID.transform @ GRID.transform.translation(3, 0)
    pb = tmp_path / "b_other.tif"
    write_cog(np.stack([a[:, 3:]]).astype(np.float32), pb, crs=GRID.crs, transform=shifted, descriptions=["VV"])
    vv = compare_rasters(pa, pb)["bands"]["VV"]
    assert vv["median_abs_db"] < 1e-4 and abs(vv["dx_px"]) < 0.05


def test_cli_prints_json_then_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pa, pb, _, _ = _pair(tmp_path, dy=1.0, dx=0.0, bias=1.0)
    assert main([str(pa), str(pb)]) == 0
    first, *rest = capsys.readouterr().out.splitlines()
    parsed = json.loads(first)
    assert parsed["bands"]["VV"]["dy_px"] == pytest.approx(1.0, abs=0.1)
    assert any(line.startswith("VV:") and "p95" in line for line in rest)
    proc = subprocess.run(
        [sys.executable, "-m", "tools.sar_compare", str(pa), str(tmp_path / "nope.tif")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error:") and proc.stderr.count("\n") == 1
