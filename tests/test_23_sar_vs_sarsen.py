"""Cross-check against sarsen: our calibrated, terrain-corrected σ0 equals sarsen's GTC (β0 → σ0) on a demo product.

Like with like: our chain without thermal-noise removal and without speckle filter (sarsen does neither), the
ellipsoid (a DEM of zeros on exactly our grid, so sarsen's output grid is ours) and bilinear interpolation on
both sides (sarsen's ``interp_method="linear"``; its default "nearest" samples speckle differently). Acceptance
(DESIGN §5, the native backend's acceptance check): median |Δσ0| < 0.2 dB and |offset| ≤ 1 px; a deliberately shifted output must fail it.
"""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray_sentinel
from sarsen import apps, sentinel1
from scipy.ndimage import shift as nd_shift

from pipeline_lib.cog import write_cog
from pipeline_lib.demo import demo_bounds, write_s1_product
from pipeline_lib.grid import Grid, make_centered_grid
from pipeline_lib.safe import open_product
from pipeline_lib.sar import run_calibrate, run_terrain
from pipeline_lib.sar.product import find_pol_files
from tools.sar_compare import beta_to_sigma_ratio, compare_with_sarsen, ellipsoid_dem, main, read_on_grid

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
SARSEN_SAFE = FIXTURES / "s1-grd-sarsen" / "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
SIZE = 256
MAX_MEDIAN_ABS_DB = 0.2
MAX_OFFSET_PX = 1.0


def accepted(stats: dict[str, float]) -> bool:
    """The issue's acceptance: median |Δ| within 0.2 dB and geolocation offset ≤ 1 px on both axes."""
    return bool(
        stats["median_abs_db"] < MAX_MEDIAN_ABS_DB
        and abs(stats["dx_px"]) <= MAX_OFFSET_PX
        and abs(stats["dy_px"]) <= MAX_OFFSET_PX
    )


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A demo GRD, our σ0 (no noise removal, no filter) and sarsen's β0 GTC of it, on one 256² grid."""
    root = tmp_path_factory.mktemp("sarsen")
    safe = write_s1_product(root, date(2021, 12, 23), demo_bounds(SIZE), seed=3)
    grid = make_centered_grid((12.50, 42.00), (SIZE, SIZE), 10.0)
    gtc = root / "sarsen_gtc.tif"
    product = sentinel1.Sentinel1SarProduct(str(safe), measurement_group="IW/VV")
    apps.terrain_correction(product, str(ellipsoid_dem(grid, root / "dem0.tif")), str(gtc), interp_method="linear")
    cal, ours = root / "cal.nc", root / "ours.tif"
    run_calibrate(safe, grid, cal, ("VV",), margin_px=16, thermal_noise=False)
    run_terrain(cal, safe, grid, ours)
    return {"safe": safe, "gtc": gtc, "ours": ours, "root": root}


def test_sigma0_matches_sarsen(pair: dict[str, Path]) -> None:
    grid = make_centered_grid((12.50, 42.00), (SIZE, SIZE), 10.0)
    with rasterio.open(pair["gtc"]) as src:
        raw, bottom_up = src.read(1).astype(np.float64), src.transform.e > 0
    # sarsen (rioxarray) writes its grid bottom-up: read_on_grid flips it, it does not resample it
    assert np.array_equal(read_on_grid(pair["gtc"], grid), raw[::-1] if bottom_up else raw, equal_nan=True)
    result = compare_with_sarsen(pair["ours"], pair["gtc"], pair["safe"], polarisation="VV")
    stats = result["bands"]["VV"]
    assert stats["n_valid"] >= 0.98 * SIZE * SIZE
    assert accepted(stats), stats
    # same input, same geometry library, same bilinear interpolation: far inside the goal
    assert stats["median_abs_db"] < 0.05 and stats["p95_abs_db"] < 0.15
    assert abs(stats["dx_px"]) < 0.1 and abs(stats["dy_px"]) < 0.1


def test_shifted_output_fails_the_check(pair: dict[str, Path]) -> None:
    """Negative control: our output moved 2 px east must be caught (offset ≈ −2 px for sarsen vs it)."""
    with rasterio.open(pair["ours"]) as src:
        grid = Grid(crs=src.crs.to_string(), transform=src.transform, height=src.height, width=src.width)
    ours = read_on_grid(pair["ours"], grid)
    moved = nd_shift(ours, (0.0, 2.0), order=1, mode="constant", cval=np.nan)
    shifted = pair["root"] / "ours_shifted.tif"
    write_cog(moved[None].astype(np.float32), shifted, crs=grid.crs, transform=grid.transform, descriptions=["VV"])
    stats = compare_with_sarsen(shifted, pair["gtc"], pair["safe"])["bands"]["VV"]
    assert not accepted(stats)
    assert stats["dx_px"] == pytest.approx(-2.0, abs=0.2) and abs(stats["dy_px"]) < 0.2
    assert stats["median_abs_db"] > MAX_MEDIAN_ABS_DB


def test_beta_sigma_lut_ratio_at_known_gcps() -> None:
    """A_β²/A_σ² on a grid centred on annotation GCPs: the LUTs' ratio at the GCP's (line, pixel), ≈ sin(incidence).

    The grid path (map → range-Doppler lookup → LUT) is checked against the annotation's own geolocation grid
    (GCP → line, pixel → LUT); the ratio is sin of the ellipsoid incidence angle of ESA's LUT generation, which
    matches the GCP's annotated incidence angle (at terrain height) to a few tenths of a degree.
    """
    files = find_pol_files(open_product(SARSEN_SAFE), "VV", need_measurement=False)
    ann = files.reader.parse_xml(files.annotation)
    pts = ann.findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
    keys = ("line", "pixel", "latitude", "longitude", "height", "incidenceAngle")
    gcp = {k: np.array([float(p.findtext(k) or "nan") for p in pts]) for k in keys}
    cal = xarray_sentinel.sentinel1.open_calibration_dataset(str(SARSEN_SAFE / files.calibration))
    lut_ratio = (cal["betaNought"] / cal["sigmaNought"]) ** 2
    # low GCPs (our lookup is on the ellipsoid, h = 0) in near, mid and far range, off the image edges
    inside = (
        (gcp["pixel"] > 0) & (gcp["pixel"] < gcp["pixel"].max()) & (gcp["line"] > 0) & (gcp["line"] < gcp["line"].max())
    )
    low = np.flatnonzero(inside & (np.abs(gcp["height"]) < 100.0))
    by_range = low[np.argsort(gcp["pixel"][low])]
    assert gcp["pixel"][by_range[-1]] - gcp["pixel"][by_range[0]] > 10000
    for k in by_range[[0, by_range.size // 2, -1]]:
        grid = make_centered_grid((float(gcp["longitude"][k]), float(gcp["latitude"][k])), (9, 9), 10.0)
        ratio = beta_to_sigma_ratio(SARSEN_SAFE, "VV", grid, stride=4)
        assert ratio.shape == (9, 9) and np.isfinite(ratio).all()
        expected = float(lut_ratio.interp(line=gcp["line"][k], pixel=gcp["pixel"][k]))
        assert float(ratio[4, 4]) == pytest.approx(expected, abs=2e-4)
        assert float(ratio[4, 4]) == pytest.approx(np.sin(np.deg2rad(gcp["incidenceAngle"][k])), abs=5e-3)


def test_compare_command_converts_sarsen_beta0(pair: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m tools.sar_compare ours.tif gtc.tif --sarsen-safe SAFE`` gives the same figures."""
    assert main([str(pair["ours"]), str(pair["gtc"]), "--sarsen-safe", str(pair["safe"])]) == 0
    result = json.loads(capsys.readouterr().out.splitlines()[0])
    assert accepted(result["bands"]["VV"])
    # without the β0 → σ0 conversion B − A = β0 − σ0 = −10·log10(sin θ) ≈ +1.6 dB at the demo site (θ ≈ 44°)
    assert main([str(pair["ours"]), str(pair["gtc"]), "--b-linear"]) == 0
    plain = json.loads(capsys.readouterr().out.splitlines()[0])["bands"]["band1"]
    assert plain["median_db"] == pytest.approx(1.6, abs=0.2)
