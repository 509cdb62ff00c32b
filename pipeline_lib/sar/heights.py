"""Terrain heights on a grid for the Sentinel-1 chain: the DEM warped onto it, EGM96 → ellipsoid, height levels.

Used by terrain correction (:mod:`pipeline_lib.sar.terrain`: the lookup's height levels and each tile's
heights) and by the GRD window (:mod:`pipeline_lib.sar.window`: the height range a grid needs), so both
look the grid up at the same heights; kept apart from ``terrain`` (numba kernels, sarsen) so the window
needs neither, and so ``window`` and ``terrain`` do not import each other (DESIGN §1, §5).

Vertical datum: DEMs such as the Rome 30 m DEM carry EGM96 heights. They are converted to ellipsoidal
heights with PROJ (EPSG:4326+5773 → EPSG:4979) when the EGM96 geoid grid is installed; otherwise they are
used as ellipsoidal, as sarsen does, and the choice is returned for the output tags.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from pyproj import Transformer
from pyproj.exceptions import ProjError
from pyproj.transformer import TransformerGroup
from rasterio.warp import Resampling, reproject, transform_bounds

from pipeline_lib.errors import CoverageError, ProductError
from pipeline_lib.grid import Grid

__all__ = ["LOOKUP_STEP", "LEVEL_SPACING_M", "dem_on_grid", "geoid_to_ellipsoid", "grid_lonlat", "height_levels"]

LOG = logging.getLogger(__name__)

#: lattice step (grid pixels) of the geocoding lookup (:mod:`pipeline_lib.sar.terrain` states its error bound)
LOOKUP_STEP = 32
#: largest spacing of the lookup's height levels when a DEM is given (m)
LEVEL_SPACING_M = 500.0


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


def height_levels(dem: Path, grid: Grid, step: int, spacing_m: float) -> tuple[np.ndarray, str]:
    """Ellipsoidal height levels at most ``spacing_m`` apart spanning the DEM over the grid (10 % + 10 m margin).

    The DEM is sampled about every ``step`` pixels over the grid's bounds (which also checks that it
    covers the grid); heights between levels are interpolated and beyond them
    extrapolated linearly by :func:`interp_lookup`.
    """
    ny, nx = -(-grid.height // step), -(-grid.width // step)
    coarse = Grid(  # the grid's exact bounds at about the lattice spacing
        crs=grid.crs,
        transform=grid.transform * Affine.scale(grid.width / nx, grid.height / ny),
        height=ny,
        width=nx,
    )
    h = dem_on_grid(dem, coarse).astype(np.float64)
    lon, latd = grid_lonlat(coarse)
    h, datum = geoid_to_ellipsoid(h, lon, latd)
    lo, hi = float(h.min()), float(h.max())
    pad = 0.1 * (hi - lo) + 10.0
    n = max(int(np.ceil((hi - lo + 2 * pad) / spacing_m)) + 1, 2)
    return np.linspace(lo - pad, hi + pad, n), datum
