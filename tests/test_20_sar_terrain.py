"""Terrain correction: annotation GCPs land on their GRD line/pixel; the chain writes σ0 dB COGs on the grid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from test_20_sar_synthetic import ROME_DEM, SARSEN_SAFE, make_centered_grid, make_product, tiny_grid

from pipeline_lib.config import schema_defaults
from pipeline_lib.errors import CoverageError
from pipeline_lib.safe import open_product
from pipeline_lib.sar import run_calibrate, run_speckle, run_terrain
from pipeline_lib.sar.params import SpeckleParams
from pipeline_lib.sar.product import find_pol_files, read_geolocation_grid
from pipeline_lib.sar.terrain import compute_lookup, dem_on_grid, grid_ecef, resample_by_lookup


def test_annotation_gcps_geocode_to_their_line_pixel() -> None:
    files = find_pol_files(open_product(SARSEN_SAFE), "VV")
    gcp = read_geolocation_grid(files.reader.parse_xml(files.annotation))
    idx = np.arange(0, gcp["line"].size, 7)
    shape = (1, idx.size)
    ecef = grid_ecef(
        gcp["longitude"][idx].reshape(shape), gcp["latitude"][idx].reshape(shape), gcp["height"][idx].reshape(shape)
    )
    line, pixel = compute_lookup(files, ecef)
    assert np.abs(line[0] - gcp["line"][idx]).max() < 0.5
    assert np.abs(pixel[0] - gcp["pixel"][idx]).max() < 1.0


def test_known_gcp_lands_on_its_grid_pixel() -> None:
    """A grid pixel centred on an annotation GCP (height ~0, ellipsoid) looks up that GCP's line/pixel."""
    files = find_pol_files(open_product(SARSEN_SAFE), "VV")
    gcp = read_geolocation_grid(files.reader.parse_xml(files.annotation))
    k = int(np.argmin(np.abs(gcp["height"]) + 1e3 * (gcp["pixel"] == 0)))
    grid = make_centered_grid((float(gcp["longitude"][k]), float(gcp["latitude"][k])), (9, 9), 10.0)
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", grid.crs, always_xy=True).transform(
        gcp["longitude"][k], gcp["latitude"][k]
    )
    col, row = ~grid.transform @ (x, y)
    from pipeline_lib.sar.terrain import grid_lonlat

    lon, lat = grid_lonlat(grid)
    line, pixel = compute_lookup(files, grid_ecef(lon, lat, np.zeros(grid.shape)))
    # bilinear lookup at the GCP's map position
    r, c = row - 0.5, col - 0.5
    l_at = resample_by_lookup(line, 0, 0, np.array([r]), np.array([c]))[0]
    p_at = resample_by_lookup(pixel, 0, 0, np.array([r]), np.array([c]))[0]
    assert l_at == pytest.approx(gcp["line"][k], abs=0.5)
    assert p_at == pytest.approx(gcp["pixel"][k], abs=1.0)


def test_dem_on_grid_and_coverage() -> None:
    grid = tiny_grid(32)
    h = dem_on_grid(ROME_DEM, grid)
    assert h.shape == (32, 32) and np.all((h > 0) & (h < 200))
    with pytest.raises(CoverageError, match="Rome-30m-DEM"):
        dem_on_grid(ROME_DEM, make_centered_grid((12.50, 42.30), (32, 32), 10.0))


def test_chain_writes_sigma0_db_cog(tmp_path: Path) -> None:
    grid = tiny_grid(48)
    safe = make_product(tmp_path, grid, dn_level=400.0)
    cal, fil, tif = tmp_path / "cal.nc", tmp_path / "fil.nc", tmp_path / "s1.tif"
    run_calibrate(safe, grid, cal, margin_px=40)
    run_speckle(cal, fil, SpeckleParams.from_config(schema_defaults("sar", "speckle")))
    run_terrain(fil, safe, grid, tif, dem=ROME_DEM)
    with rasterio.open(tif) as ds:
        assert ds.descriptions == ("VV", "VH")
        assert ds.crs.to_epsg() == 32633 and ds.transform == grid.transform and ds.shape == grid.shape
        assert ds.dtypes == ("float32", "float32") and np.isnan(ds.nodata)
        db = ds.read()
        assert "vertical_datum" in ds.tags()
    assert np.isfinite(db).all()
    with xr.open_dataset(fil) as f:
        mean_db = 10 * np.log10(float(f["sigma0"].sel(polarisation="VV").mean()))
    assert float(np.mean(db[0])) == pytest.approx(mean_db, abs=0.5)
    # without a DEM (ellipsoid) the lookup moves by the terrain parallax but stays on the window
    tif0 = tmp_path / "s1_ellipsoid.tif"
    run_terrain(fil, safe, grid, tif0, dem=None)
    with rasterio.open(tif0) as ds:
        assert np.isfinite(ds.read()).all()
    with pytest.raises(CoverageError):
        run_terrain(fil, safe, make_centered_grid((12.50, 42.30), (16, 16), 10.0), tmp_path / "x.tif", dem=ROME_DEM)
