"""Calibration's row bands computed by a thread pool (one writer) give the single-thread file bit for bit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr
from test_20_sar_synthetic import make_product, tiny_grid

from pipeline_lib.sar import run_calibrate


def test_threaded_calibration_equals_serial(tmp_path: Path) -> None:
    grid = tiny_grid(64)
    safe = make_product(tmp_path, grid)
    out = {}
    for threads in (1, 3):
        path = tmp_path / f"cal{threads}.nc"
        run_calibrate(safe, grid, path, polarisations=("VV", "VH"), band_lines=16, threads=threads)
        with xr.open_dataset(path) as ds:
            out[threads] = ds["sigma0"].load()
    assert out[1].shape[1] > 3 * 16  # several bands per polarisation
    np.testing.assert_array_equal(out[1].values, out[3].values)
    assert np.isfinite(out[3].values).mean() > 0.5
