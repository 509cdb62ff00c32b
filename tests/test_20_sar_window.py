"""The GRD window calibration reads covers the grid at the heights terrain correction uses (issue: window bug).

The annotation's geolocation grid sits at ESA's terrain heights; the chain looks the grid up at the
ellipsoid or at the DEM. Near the near-range edge of the sarsen fixture scene (annotation heights
≈ 500–600 m) the old geolocation-grid window plus 64 px misses part of the data; the range-Doppler
window (:mod:`pipeline_lib.sar.window`) must not, with the ellipsoid and with a DEM.
"""

from __future__ import annotations

from pathlib import Path
from xml.etree.ElementTree import Element

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin
from test_20_sar_synthetic import SARSEN_SAFE, SHAPE, make_product

from pipeline_lib.grid import Grid, make_centered_grid
from pipeline_lib.safe import open_product
from pipeline_lib.sar import run_calibrate, run_terrain
from pipeline_lib.sar.calibration import find_window
from pipeline_lib.sar.product import find_pol_files, read_geolocation_grid, read_image_info
from pipeline_lib.sar.terrain import Geocoder, grid_ecef, grid_lonlat, tile_heights
from pipeline_lib.sar.window import RangeDoppler, grid_window, height_range, lonlat_h_to_ecef

#: 5 km grids (100 m) straddling a swath edge: near range (GRD pixel 0, annotation heights ≈ 550 m) with
#: the ellipsoid or a low DEM (data further in range than the annotation says), far range (annotation
#: heights ≈ 0) with a DEM of 1000–2000 m (data nearer in range)
CASES = {
    "near-range-ellipsoid": ((15.08, 41.48), None),
    "near-range-dem-0-200m": ((15.08, 41.48), (0.0, 200.0)),
    "far-range-dem-1000-2000m": ((11.93, 41.70), (1000.0, 2000.0)),
}


def edge_case(name: str, tmp_path: Path) -> tuple[Grid, Path | None]:
    center, heights = CASES[name]
    grid = make_centered_grid(center, (50, 50), 100.0)
    return grid, None if heights is None else write_ramp_dem(tmp_path / "dem.tif", grid, *heights)


def _vv_annotation() -> Element:
    with open_product(SARSEN_SAFE) as reader:
        return reader.parse_xml(find_pol_files(reader, "VV").annotation)


def _range_doppler() -> RangeDoppler:
    ann = _vv_annotation()
    return RangeDoppler.from_annotation(ann, read_image_info(ann))


def write_ramp_dem(path: Path, grid: Grid, low: float, high: float) -> Path:
    """A geographic DEM over the grid (plus 0.05°) rising linearly west → east from ``low`` to ``high`` m."""
    west, south, east, north = grid.lonlat_bounds()
    res = 0.001
    w, h = int((east - west + 0.1) / res) + 1, int((north - south + 0.1) / res) + 1
    z = np.tile(np.linspace(low, high, w, dtype=np.float32), (h, 1))
    profile = {"driver": "GTiff", "width": w, "height": h, "count": 1, "dtype": "float32", "crs": "EPSG:4326"}
    with rasterio.open(path, "w", transform=from_origin(west - 0.05, north + 0.05, res, res), **profile) as dst:
        dst.write(z, 1)
    return path


def exact_lookup(grid: Grid, dem: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel range-Doppler lookup (sarsen) at the heights terrain correction uses."""
    lon, lat = grid_lonlat(grid)
    h = np.zeros(grid.shape) if dem is None else tile_heights(dem, grid, slice(0, grid.height), slice(0, grid.width))
    return Geocoder.from_files(find_pol_files(open_product(SARSEN_SAFE), "VV")).lookup(grid_ecef(lon, lat, h))


def in_swath(line: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Pixels whose bilinear footprint lies inside the image."""
    return (line >= 0) & (line <= SHAPE[0] - 2) & (pixel >= 0) & (pixel <= SHAPE[1] - 2)


def test_range_doppler_matches_sarsen() -> None:
    rng = np.random.default_rng(1)
    lon, lat, h = rng.uniform(12.2, 15.0, 300), rng.uniform(41.0, 42.6, 300), rng.uniform(-100.0, 4000.0, 300)
    ref_line, ref_pixel = Geocoder.from_files(find_pol_files(open_product(SARSEN_SAFE), "VV")).lookup(
        grid_ecef(lon[None], lat[None], h[None])
    )
    line, pixel = _range_doppler().line_pixel(lonlat_h_to_ecef(lon, lat, h))
    inside = (ref_line[0] >= 0) & (ref_line[0] <= SHAPE[0] - 1)
    assert inside.sum() > 100
    assert np.abs(line - ref_line[0])[inside].max() < 1e-3
    assert np.abs(pixel - ref_pixel[0])[inside].max() < 1e-3


@pytest.mark.parametrize("case", sorted(CASES))
def test_window_covers_the_lookup_where_the_old_one_did_not(tmp_path: Path, case: str) -> None:
    grid, dem = edge_case(case, tmp_path)
    line, pixel = exact_lookup(grid, dem)
    sw = in_swath(line, pixel)
    assert 0.2 < sw.mean() < 0.9  # the grid straddles the swath edge

    def covered(rows: slice, cols: slice) -> np.ndarray:
        return (line >= rows.start) & (line <= rows.stop - 2) & (pixel >= cols.start) & (pixel <= cols.stop - 2)

    gcp = read_geolocation_grid(_vv_annotation())
    old = covered(*find_window(gcp, grid, SHAPE, 64))
    assert (sw & ~old).sum() > 0  # the geolocation-grid window misses data at these heights
    new = covered(*grid_window(_range_doppler(), grid, SHAPE, 64, height_range(dem, grid)))
    assert np.all(new[sw])


@pytest.mark.parametrize("case", ["near-range-ellipsoid", "far-range-dem-1000-2000m"])
def test_chain_fills_every_pixel_the_swath_covers(tmp_path: Path, case: str) -> None:
    grid, dem = edge_case(case, tmp_path)
    safe = make_product(tmp_path, grid, pols=("VV",), margin_px=600)  # data well beyond any window
    cal, tif = tmp_path / "cal.nc", tmp_path / "s1.tif"
    run_calibrate(safe, grid, cal, polarisations=("VV",), dem=dem)
    run_terrain(cal, safe, grid, tif, dem=dem)
    with rasterio.open(tif) as src:
        db = src.read(1)
    line, pixel = exact_lookup(grid, dem)
    sw = in_swath(line, pixel)
    assert sw.sum() > 500
    assert np.isfinite(db[sw]).all(), f"{int((~np.isfinite(db[sw])).sum())} in-swath pixels empty"
