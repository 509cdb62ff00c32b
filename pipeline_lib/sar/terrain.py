"""Range-Doppler terrain correction of GRD σ0 onto the region grid with sarsen.

Governing spec: "Guide to Sentinel-1 Geocoding" UZH-S1-GC-AD 1.10 (the reference of sarsen): backward
geocoding, i.e. for every grid pixel find the zero-Doppler azimuth time and the slant range to the
orbit, then convert slant range to GRD ground range with the annotation's ``coordinateConversion``
polynomials (S1-RS-MDA-52-7441 §6.3.x). Two steps, so a chunked full-scene path can reuse step 1 for
every polarisation:

1. :func:`compute_lookup` — (line, pixel) float arrays for every grid pixel. Heights: the DEM warped
   onto the grid (bilinear), or the WGS84 ellipsoid (h = 0) without a DEM. Orbit interpolation
   (``sarsen.orbit.OrbitPolyfitInterpolator``), backward geocoding (``sarsen.apps.simulate_acquisition``)
   and slant→ground range (``xarray_sentinel.slant_range_time_to_ground_range``) are the libraries'.
2. :func:`resample_by_lookup` — bilinear resampling of each σ0 band at those positions, NaN outside.

Vertical datum: DEMs such as the Rome 30 m DEM carry EGM96 heights. They are converted to ellipsoidal
heights with PROJ (EPSG:4326+5773 → EPSG:4979) when the EGM96 geoid grid (``us_nga_egm96_15.tif``) is
installed; otherwise the heights are used as ellipsoidal, which is what sarsen itself does (its
``convert_to_dem_ecef`` transforms the DEM's (lon, lat, h) from EPSG:4326 to EPSG:4978 unchanged).
The choice made is written to the output tags (``vertical_datum``). The approximation shifts
geolocation by about N / tan(θ) on the ground (N ≈ 47 m near Rome, θ ≈ 30–45°).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
import xarray as xr
import xarray_sentinel
from pyproj import Transformer
from pyproj.exceptions import ProjError
from pyproj.transformer import TransformerGroup
from rasterio.warp import Resampling, reproject, transform_bounds
from sarsen import apps, orbit
from scipy.ndimage import map_coordinates

from pipeline_lib.errors import CoverageError, ProductError
from pipeline_lib.grid import Grid
from pipeline_lib.io import write_cog
from pipeline_lib.sar.product import (
    PolFiles,
    find_pol_files,
    open_coordinate_conversion,
    open_orbit,
    parse_member,
    read_image_info,
)

__all__ = [
    "dem_on_grid",
    "geoid_to_ellipsoid",
    "grid_ecef",
    "compute_lookup",
    "resample_by_lookup",
    "sigma0_to_db",
    "run_terrain",
]

LOG = logging.getLogger(__name__)


def dem_on_grid(dem: Path, grid: Grid) -> np.ndarray:
    """The DEM (any CRS) warped bilinearly onto ``grid``; CoverageError if it does not cover the grid."""
    try:
        with rasterio.open(dem) as src:
            left, bottom, right, top = transform_bounds(grid.crs, src.crs, *grid.bounds, densify_pts=21)
            sl, sb, sr, st = src.bounds
            if left < sl or right > sr or bottom < sb or top > st:
                raise CoverageError(
                    f"{dem}: DEM bounds {tuple(round(v, 5) for v in src.bounds)} do not cover the grid "
                    f"{(round(left, 5), round(bottom, 5), round(right, 5), round(top, 5))}; give a larger DEM (sar.dem)"
                )
            out = np.full(grid.shape, np.nan, dtype=np.float32)
            reproject(
                source=rasterio.band(src, 1),
                destination=out,
                src_nodata=src.nodata,
                dst_transform=grid.transform,
                dst_crs=grid.crs,
                dst_nodata=np.nan,
                resampling=Resampling.bilinear,
            )
    except rasterio.errors.RasterioError as exc:
        raise ProductError(f"{dem}: DEM unreadable ({exc}); check sar.dem") from exc
    if np.isnan(out).any():
        raise CoverageError(f"{dem}: DEM has no data over {int(np.isnan(out).sum())} grid pixels; give a void-free DEM")
    return out


def geoid_to_ellipsoid(height: np.ndarray, lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, str]:
    """EGM96 heights → WGS84 ellipsoidal heights with the PROJ geoid grid; unchanged (stated) without it."""
    try:
        with warnings.catch_warnings():  # "best transformation is not available" is handled below
            warnings.simplefilter("ignore", UserWarning)
            group = TransformerGroup("EPSG:4326+5773", "EPSG:4979", always_xy=True)
        if group.best_available and group.transformers:
            _, _, h = group.transformers[0].transform(lon, lat, height, errcheck=True)
            h = np.asarray(h, dtype=np.float64)
            # without the geoid grid PROJ falls back to a no-op "ballpark" vertical transform
            if np.all(np.isfinite(h)) and np.abs(h - height).max() > 1e-3:
                return h, "EGM96 converted to WGS84 ellipsoidal heights (PROJ geoid grid)"
    except (ProjError, RuntimeError) as exc:
        LOG.warning("EGM96 geoid transform failed (%s)", exc)
    LOG.warning("EGM96 geoid grid unavailable: DEM heights used as ellipsoidal, as sarsen does")
    return np.asarray(
        height, dtype=np.float64
    ), "DEM heights used as ellipsoidal (EGM96 geoid grid unavailable; as sarsen)"


def grid_lonlat(grid: Grid) -> tuple[np.ndarray, np.ndarray]:
    """Longitude and latitude of every grid pixel centre, (height, width) each."""
    xx, yy = np.meshgrid(grid.x_coords(), grid.y_coords())
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    return np.asarray(lon), np.asarray(lat)


def grid_ecef(lon: np.ndarray, lat: np.ndarray, height: np.ndarray) -> xr.DataArray:
    """ECEF (EPSG:4978) coordinates of (lon, lat, ellipsoidal h) as sarsen's ``dem_ecef`` (axis, y, x)."""
    x, y, z = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, height)
    ny, nx = lon.shape
    return xr.DataArray(
        np.stack([x, y, z]).astype(np.float64),
        dims=("axis", "y", "x"),
        coords={"axis": [0, 1, 2], "y": np.arange(ny, dtype=np.float64), "x": np.arange(nx, dtype=np.float64)},
        name="dem_ecef",
    )


def compute_lookup(files: PolFiles, dem_ecef: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """GRD (line, pixel) float positions of every point of ``dem_ecef`` (range-Doppler, sarsen)."""
    label = f"{files.product}/{files.annotation}"
    info = read_image_info(parse_member(files.product, files.annotation), label=label)
    if info.projection != "Ground Range":
        raise ProductError(f"{label}: projection {info.projection!r} is not a GRD; give a GRD product")
    interpolator = orbit.OrbitPolyfitInterpolator.from_position(open_orbit(files)["position"])
    acquisition = apps.simulate_acquisition(dem_ecef, interpolator)
    azimuth_time = acquisition["azimuth_time"]
    ground_range = xarray_sentinel.slant_range_time_to_ground_range(
        azimuth_time, acquisition["slant_range_time"], open_coordinate_conversion(files)
    )
    dt_ns = (azimuth_time.values - info.first_line_time).astype("timedelta64[ns]").astype(np.float64)
    line = dt_ns / (info.azimuth_time_interval_s * 1e9)
    pixel = np.asarray(ground_range.values, dtype=np.float64) / info.range_pixel_spacing_m
    return line, pixel


def resample_by_lookup(band: np.ndarray, line0: int, pixel0: int, line: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Bilinear sample of a GRD window (first full-product index line0, pixel0) at (line, pixel); NaN outside."""
    rows = line - line0
    cols = pixel - pixel0
    h, w = band.shape
    out = map_coordinates(np.asarray(band, dtype=np.float64), [rows, cols], order=1, mode="constant", cval=np.nan)
    out[(rows < 0) | (rows > h - 1) | (cols < 0) | (cols > w - 1)] = np.nan
    return out


def sigma0_to_db(sigma0: np.ndarray) -> np.ndarray:
    """10·log10(σ0), float32; NaN stays NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (10.0 * np.log10(sigma0)).astype(np.float32)


def run_terrain(in_nc: Path, safe_path: Path, grid: Grid, out_tif: Path, dem: Path | None = None) -> None:
    """Terrain-correct the filtered σ0 window onto ``grid``: COG with bands VV, VH (σ0 dB), NaN nodata."""
    lon, lat = grid_lonlat(grid)
    if dem is None:
        height = np.zeros(grid.shape, dtype=np.float64)
        datum = "WGS84 ellipsoid (h = 0, no DEM)"
    else:
        height, datum = geoid_to_ellipsoid(dem_on_grid(Path(dem), grid).astype(np.float64), lon, lat)
    with xr.open_dataset(in_nc) as src:
        ds = src.load()
    pols = [str(p) for p in ds["polarisation"].values]
    files = find_pol_files(Path(safe_path), pols[0], need_measurement=False)
    line, pixel = compute_lookup(files, grid_ecef(lon, lat, height))
    line0, pixel0 = int(ds["line"].values[0]), int(ds["pixel"].values[0])
    bands = [
        sigma0_to_db(resample_by_lookup(ds["sigma0"].values[k], line0, pixel0, line, pixel)) for k in range(len(pols))
    ]
    if np.all(np.isnan(bands[0])):
        raise CoverageError(
            f"{in_nc}: the calibrated window does not cover the grid; rerun calibration with a larger margin"
        )
    write_cog(
        np.stack(bands),
        out_tif,
        crs=grid.crs,
        transform=grid.transform,
        descriptions=pols,
        tags={
            "product": str(ds.attrs.get("product", "")),
            "units": "dB",
            "quantity": "sigma0",
            "vertical_datum": datum,
            "geocoding": "range-Doppler backward geocoding (sarsen), bilinear",
        },
        band_tags=[{"polarisation": p, "units": "dB"} for p in pols],
    )
