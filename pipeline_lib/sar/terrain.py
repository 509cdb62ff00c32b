"""Range-Doppler terrain correction of GRD σ0 onto the region grid.

Governing spec: "Guide to Sentinel-1 Geocoding" UZH-S1-GC-AD 1.10 (the reference of sarsen): backward
geocoding, i.e. for every grid pixel find the zero-Doppler azimuth time and the slant range to the
orbit, then convert slant range to GRD ground range with the annotation's ``coordinateConversion``
polynomials (S1-RS-MDA-52-7441 §6.3.x). The zero-Doppler solve is
:class:`pipeline_lib.sar.window.RangeDoppler` (orbit polynomial fit and Newton iteration in numpy, as
sarsen's ``OrbitPolyfitInterpolator`` + ``simulate_acquisition``; the job does not import sarsen, whose
import alone took seconds); sarsen + xarray-sentinel remain the reference (:meth:`Geocoder.lookup`,
:func:`compute_lookup`) the tests compare against, and the slant→ground range conversion is
``xarray_sentinel.slant_range_time_to_ground_range`` re-implemented in numba for the tiles.

Full-scene path (:func:`run_terrain`), chunked so memory is bounded by the tile, not by the scene:

1. :func:`compute_coarse_lookup` — once per scene, for all polarisations: zero-Doppler line and slant
   range at a lattice of grid pixels every ``lookup_step`` px (default 32), at one height (WGS84
   ellipsoid, h = 0, without a DEM) or at height levels ≤ 500 m apart spanning the DEM.
2. Per ``tile`` × ``tile`` output tile (default 1024²): the GRD window the tile touches is bounded from the
   lattice alone (:func:`tile_window`: a pixel's line and slant range are convex combinations of its cell's
   corners, piecewise linear in height; its ground range a convex combination of SRGR table entries) and
   read from the filtered NetCDF on a reader thread. :func:`terrain_tile` then computes, per pixel and in
   one pass (numba ``prange``, ``threads``), what :func:`interp_lookup` and :func:`sample_db` compute apart:
   line and slant range bilinear in the lattice and linear in height (the DEM warped bilinearly onto the
   tile); slant → ground range per pixel (the SRGR coefficients are linear in azimuth time between
   annotation polynomials, so the pixel has kinks that a lattice would smear: interpolating the
   ground-range pixel in the lattice instead was off by up to 0.12 px on the full-size GRD), each
   polynomial tabulated once per scene every :data:`SRGR_TABLE_STEP_M` of slant range and read with linear
   interpolation — as exact as evaluating it (the error ≤ Δ²/8·max|P''| measured 1.3e-5 px at 10 m), at a
   fraction of the cost of a degree-8 polynomial per pixel (BENCHMARKS.md); then every polarisation
   sampled bilinearly, in dB. A row's lookup stays in two row buffers instead of two tile-sized float64
   arrays written and read back per polarisation: the same bits, 16–20 % less time on the tiles of a whole
   scene on a memory-bound host (BENCHMARKS.md, "Idle runs, 2026-12-06 (session 8)"). The tile is streamed
   into the COG, which reduces it to its overview levels on the way (:class:`pipeline_lib.cog.CogStream`);
   the last tile is written on a writer thread while this one is sampled, so the serial I/O overlaps the
   parallel kernels.

Accuracy bound: the lattice interpolation must stay within 0.05 GRD px of the exact per-pixel lookup
(:func:`compute_lookup`, same heights). Step 32 with height levels 500 m apart stays more than 10× inside it,
and the zero-Doppler tolerance is tightened because sarsen's default (1 m, "all points of a call") makes the
result depend on the batching; the measured errors per step and level spacing are in BENCHMARKS.md
("Design measurements moved out of module docstrings"). The per-pixel functions (:func:`compute_lookup`,
:func:`resample_by_lookup`) remain as the reference.

Memory is bounded by the tile, not the grid: per 1024² tile the float32 output (8 MB per polarisation) and
the GRD windows it touches, for the tile being sampled, the one being read and the one being written, plus
the COG writer's capped GDAL cache; measured peaks are in BENCHMARKS.md (2048² tiles, with three in flight,
came within 5 % of the 1 GB budget on a whole scene).

Vertical datum: DEMs such as the Rome 30 m DEM carry EGM96 heights. They are converted to ellipsoidal
heights with PROJ (EPSG:4326+5773 → EPSG:4979) when the EGM96 geoid grid (``us_nga_egm96_15.tif``) is
installed; otherwise the heights are used as ellipsoidal, which is what sarsen itself does (its
``convert_to_dem_ecef`` transforms the DEM's (lon, lat, h) from EPSG:4326 to EPSG:4978 unchanged).
The choice made is written to the output tags (``vertical_datum``). The approximation shifts
geolocation by about N / tan(θ) on the ground (N ≈ 47 m near Rome, θ ≈ 30–45°).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numba
import numpy as np
from affine import Affine
from pyproj import Transformer
from rasterio.windows import Window

from pipeline_lib.cog import cog_writer
from pipeline_lib.errors import CoverageError, ProductError
from pipeline_lib.grid import Grid
from pipeline_lib.safe import open_product
from pipeline_lib.sar.chunks import Sigma0File, open_sigma0, row_bands
from pipeline_lib.sar.heights import (
    LEVEL_SPACING_M,
    LOOKUP_STEP,
    dem_on_grid,
    geoid_to_ellipsoid,
    grid_lonlat,
    height_levels,
)
from pipeline_lib.sar.product import (
    ImageInfo,
    PolFiles,
    find_pol_files,
    open_coordinate_conversion,
    open_orbit,
    read_image_info,
)
from pipeline_lib.sar.window import RangeDoppler, lonlat_h_to_ecef

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "dem_on_grid",
    "geoid_to_ellipsoid",
    "grid_ecef",
    "Geocoder",
    "compute_lookup",
    "lattice_grid",
    "CoarseLookup",
    "compute_coarse_lookup",
    "interp_lookup",
    "resample_by_lookup",
    "sample_db",
    "sigma0_to_db",
    "tile_window",
    "terrain_tile",
    "run_terrain",
]

LOG = logging.getLogger(__name__)

#: zero-Doppler convergence of sarsen's Newton solver, metres along track. sarsen's default (1 m) stops
#: when *all* points of a call are within 1 m (≈ 0.07 line), so a point's result depends on which
#: other points share its call; 1 mm makes every lookup independent of the batching (+1 iteration).
ZERO_DOPPLER_TOLERANCE_M = 1e-3


def grid_ecef(lon: np.ndarray, lat: np.ndarray, height: np.ndarray) -> xr.DataArray:
    """ECEF (EPSG:4978) coordinates of (lon, lat, ellipsoidal h) as sarsen's ``dem_ecef`` (axis, y, x)."""
    import xarray as xr

    x, y, z = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, height)
    ny, nx = lon.shape
    return xr.DataArray(
        np.stack([x, y, z]).astype(np.float64),
        dims=("axis", "y", "x"),
        coords={"axis": [0, 1, 2], "y": np.arange(ny, dtype=np.float64), "x": np.arange(nx, dtype=np.float64)},
        name="dem_ecef",
    )


@dataclass(frozen=True)
class Geocoder:
    """What backward geocoding needs from one product, read once: timing, spacing, orbit fit and SRGR.

    The production path (:func:`compute_coarse_lookup`) solves zero-Doppler with
    :class:`pipeline_lib.sar.window.RangeDoppler` (numpy, no sarsen import: start-up time);
    :meth:`lookup` is the sarsen + xarray-sentinel reference it is tested against (imported on use).
    """

    files: PolFiles
    info: ImageInfo
    rd: RangeDoppler

    @classmethod
    def from_files(cls, files: PolFiles) -> Geocoder:
        label = f"{files.product}/{files.annotation}"
        annotation = files.reader.parse_xml(files.annotation)
        info = read_image_info(annotation, label=label)
        if info.projection != "Ground Range":
            raise ProductError(f"{label}: projection {info.projection!r} is not a GRD; give a GRD product")
        return cls(files, info, RangeDoppler.from_annotation(annotation, info, label=label))

    def radar_coordinates(self, lon: np.ndarray, lat: np.ndarray, height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(zero-Doppler line, slant range in m) of points given by WGS84 lon, lat and ellipsoidal height."""
        t, slant_range = self.rd.zero_doppler(lonlat_h_to_ecef(lon, lat, height).reshape(-1, 3))
        line = (t - self.rd.first_line_s) / self.rd.line_interval_s
        return line.reshape(np.shape(lon)), slant_range.reshape(np.shape(lon))

    def lookup(self, dem_ecef: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
        """GRD (line, pixel) float positions of every point of ``dem_ecef`` (range-Doppler, sarsen): the reference."""
        import xarray_sentinel
        from sarsen import apps, orbit

        interpolator = orbit.OrbitPolyfitInterpolator.from_position(open_orbit(self.files)["position"])
        acquisition = apps.simulate_acquisition(dem_ecef, interpolator, zero_doppler_distance=ZERO_DOPPLER_TOLERANCE_M)
        azimuth_time = acquisition["azimuth_time"]
        ground_range = xarray_sentinel.slant_range_time_to_ground_range(
            azimuth_time, acquisition["slant_range_time"], open_coordinate_conversion(self.files)
        )
        dt_ns = (azimuth_time.values - self.info.first_line_time).astype("timedelta64[ns]").astype(np.float64)
        line = dt_ns / (self.info.azimuth_time_interval_s * 1e9)
        pixel = np.asarray(ground_range.values, dtype=np.float64) / self.info.range_pixel_spacing_m
        return line, pixel

    def srgr_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The SRGR polynomials as (line of each polynomial, sr0 m, coefficients (n, degree+1)), for :func:`_srgr_pixel`."""
        lines = (self.rd.srgr_s - self.rd.first_line_s) / self.rd.line_interval_s
        return lines, self.rd.srgr_sr0, self.rd.srgr_coef


def compute_lookup(files: PolFiles, dem_ecef: xr.DataArray) -> tuple[np.ndarray, np.ndarray]:
    """GRD (line, pixel) float positions of every point of ``dem_ecef`` (range-Doppler, sarsen)."""
    return Geocoder.from_files(files).lookup(dem_ecef)


def resample_by_lookup(band: np.ndarray, line0: int, pixel0: int, line: np.ndarray, pixel: np.ndarray) -> np.ndarray:
    """Bilinear sample of a GRD window (first full-product index line0, pixel0) at (line, pixel); NaN outside."""
    from scipy.ndimage import map_coordinates  # the reference path only: not at import

    rows = line - line0
    cols = pixel - pixel0
    h, w = band.shape
    out = map_coordinates(np.asarray(band, dtype=np.float64), [rows, cols], order=1, mode="constant", cval=np.nan)
    out[(rows < 0) | (rows > h - 1) | (cols < 0) | (cols > w - 1)] = np.nan
    return np.asarray(out)


def sigma0_to_db(sigma0: np.ndarray) -> np.ndarray:
    """10·log10(σ0), float32; NaN stays NaN."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.asarray((10.0 * np.log10(sigma0)).astype(np.float32))


def lattice_grid(grid: Grid, step: int) -> Grid:
    """The coarse lattice: grid pixel centres at rows/cols 0, step, 2·step, … up to at least the last pixel."""
    ny = max(int(np.ceil((grid.height - 1) / step)), 1) + 1
    nx = max(int(np.ceil((grid.width - 1) / step)), 1) + 1
    shift = 0.5 - 0.5 * step
    transform = grid.transform * Affine.translation(shift, shift) * Affine.scale(step)
    return Grid(crs=grid.crs, transform=transform, height=ny, width=nx)


@dataclass(frozen=True)
class CoarseLookup:
    """Radar coordinates at the lattice nodes (every ``step`` grid pixels) for each ellipsoidal height level.

    Stored are the zero-Doppler line and the slant range, both smooth functions of map position and
    height; the slant→ground range conversion, whose coefficients are interpolated linearly between
    annotation polynomials (kinks in azimuth), is applied per pixel (``srgr_*``).
    """

    step: int
    levels: np.ndarray  # (n_levels,) ascending ellipsoidal heights, m
    line: np.ndarray  # (n_levels, ny, nx) zero-Doppler line
    slant_range: np.ndarray  # (n_levels, ny, nx) m
    srgr_lines: np.ndarray  # (n_poly,) line of each SRGR polynomial
    srgr_sr0: np.ndarray  # (n_poly,) m
    srgr_coef: np.ndarray  # (n_poly, degree + 1)
    pixel_spacing_m: float
    srgr_table: np.ndarray  # (n_poly, m) ground-range pixel of each polynomial at x0 + SRGR_TABLE_STEP_M·i
    srgr_x0: float  # slant-range offset (m, from the polynomial's sr0) of the table's first column


#: slant-range spacing (m) of the tabulated SRGR polynomials (:func:`srgr_table`)
SRGR_TABLE_STEP_M = 10.0


def srgr_table(
    slant_range: np.ndarray, sr0: np.ndarray, coef: np.ndarray, spacing_m: float, margin_m: float = 1000.0
) -> tuple[np.ndarray, float]:
    """Every SRGR polynomial's ground-range pixel on a regular grid of slant-range offsets x = sr − sr0.

    The grid covers the offsets the lattice's slant ranges can produce against any polynomial's sr0
    (plus ``margin_m``), every :data:`SRGR_TABLE_STEP_M`; (table (n_poly, m), first offset). Pixels
    whose offset falls outside it are evaluated from the polynomial itself.
    """
    finite = slant_range[np.isfinite(slant_range)]
    if finite.size == 0:
        return np.zeros((coef.shape[0], 2)), 0.0
    x0 = float(finite.min() - sr0.max()) - margin_m
    x1 = float(finite.max() - sr0.min()) + margin_m
    x = x0 + SRGR_TABLE_STEP_M * np.arange(int(np.ceil((x1 - x0) / SRGR_TABLE_STEP_M)) + 2)
    table = np.zeros((coef.shape[0], x.size))
    for d in range(coef.shape[1] - 1, -1, -1):  # Horner, all polynomials at once
        table = table * x[None] + coef[:, d : d + 1]
    return table / spacing_m, x0


def compute_coarse_lookup(
    geocoder: Geocoder,
    grid: Grid,
    step: int,
    levels: Sequence[float] | np.ndarray,
    block_rows: int = 32,
    threads: int = 1,
) -> CoarseLookup:
    """Backward-geocode the lattice of ``grid`` at every height level, in blocks of lattice rows (bounded
    memory) computed by ``threads`` threads (numpy releases the GIL)."""
    lat = lattice_grid(grid, step)
    lon, latd = grid_lonlat(lat)
    lv = np.sort(np.asarray(levels, dtype=np.float64))
    line = np.empty((lv.size, lat.height, lat.width))
    slant = np.empty_like(line)

    def block(k: int, a: int, b: int) -> None:
        line[k, a:b], slant[k, a:b] = geocoder.radar_coordinates(lon[a:b], latd[a:b], np.full(lon[a:b].shape, lv[k]))

    jobs = [(k, a, b) for k in range(lv.size) for a, b in row_bands(lat.height, block_rows)]
    with ThreadPoolExecutor(max_workers=max(1, int(threads))) as pool:
        for fut in [pool.submit(block, *j) for j in jobs]:
            fut.result()
    srgr_lines, sr0, coef = geocoder.srgr_tables()
    spacing = float(geocoder.info.range_pixel_spacing_m)
    table, x0 = srgr_table(slant, sr0, coef, spacing)
    return CoarseLookup(
        step=int(step),
        levels=lv,
        line=line,
        slant_range=slant,
        srgr_lines=srgr_lines,
        srgr_sr0=sr0,
        srgr_coef=coef,
        pixel_spacing_m=spacing,
        srgr_table=table,
        srgr_x0=x0,
    )


@numba.njit(cache=True, nogil=True, inline="always")
def _srgr_pixel(
    line: float,
    slant_range: float,
    plines: np.ndarray,
    sr0: np.ndarray,
    coef: np.ndarray,
    spacing: float,
    table: np.ndarray,
    x0: float,
    k: int,
) -> tuple[float, int]:
    # as xarray_sentinel.slant_range_time_to_ground_range: sr0 and coefficients linear in azimuth time,
    # NaN outside the polynomials' time span. Σ_d ((1−w)·c_kd + w·c_k1d)·x^d = (1−w)·P_k(x) + w·P_k1(x), so
    # the two polynomials are read from their tables (linear in x) at the common x. ``k`` is the
    # previous pixel's bracket (neighbouring pixels share it); returns (pixel, bracket).
    n = plines.size
    if n == 1:
        k, w = 0, 0.0
    else:
        if not (line >= plines[0] and line <= plines[n - 1]):
            return np.nan, k
        if not (k < n - 1 and plines[k] <= line and line <= plines[k + 1]):
            lo, hi = 0, n - 1
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if plines[mid] <= line:
                    lo = mid
                else:
                    hi = mid
            k = lo
        w = (line - plines[k]) / (plines[k + 1] - plines[k])
    k1 = min(k + 1, n - 1)
    x = slant_range - ((1.0 - w) * sr0[k] + w * sr0[k1])
    u = (x - x0) * (1.0 / SRGR_TABLE_STEP_M)
    if u >= 0.0 and u < table.shape[1] - 1:
        iu = int(u)
        f = u - iu
        a = (1.0 - f) * table[k, iu] + f * table[k, iu + 1]
        b = (1.0 - f) * table[k1, iu] + f * table[k1, iu + 1]
        return (1.0 - w) * a + w * b, k
    gr = 0.0
    for d in range(coef.shape[1] - 1, -1, -1):  # outside the table: the polynomial itself (Horner)
        gr = gr * x + ((1.0 - w) * coef[k, d] + w * coef[k1, d])
    return gr / spacing, k


@numba.njit(cache=True, nogil=True, inline="always")
def _height_bracket(levels: np.ndarray, h: float) -> tuple[int, float]:
    # (s0, t): height h lies at t between levels s0 and s0 + 1 (linear extrapolation beyond the ends); one level: (0, 0)
    n = levels.size
    if n == 1:
        return 0, 0.0
    s0 = 0
    while s0 < n - 2 and h > levels[s0 + 1]:
        s0 += 1
    return s0, (h - levels[s0]) / (levels[s0 + 1] - levels[s0])


@numba.njit(cache=True, nogil=True, inline="always")
def _lookup_pixel(
    lat_line: np.ndarray,
    lat_sr: np.ndarray,
    levels: np.ndarray,
    iy: int,
    fy: float,
    gx: float,
    h: float,
    plines: np.ndarray,
    sr0: np.ndarray,
    coef: np.ndarray,
    spacing: float,
    table: np.ndarray,
    x0: float,
    k: int,
) -> tuple[float, float, int]:
    # (line, pixel, SRGR bracket) of one grid pixel at lattice row iy + fy, lattice column gx and ellipsoidal
    # height h: line and slant range bilinear in the lattice and linear in height, then slant → ground range
    nlev, _, nx = lat_line.shape
    ix = min(int(gx), nx - 2)
    fx = gx - ix
    w00 = (1.0 - fy) * (1.0 - fx)
    w01 = (1.0 - fy) * fx
    w10 = fy * (1.0 - fx)
    w11 = fy * fx
    s0, t = _height_bracket(levels, h)
    ln = 0.0
    sr = 0.0
    for s in range(s0, min(s0 + 2, nlev)):
        ws = (1.0 - t) if s == s0 else t
        ln += ws * (
            w00 * lat_line[s, iy, ix]
            + w01 * lat_line[s, iy, ix + 1]
            + w10 * lat_line[s, iy + 1, ix]
            + w11 * lat_line[s, iy + 1, ix + 1]
        )
        sr += ws * (
            w00 * lat_sr[s, iy, ix]
            + w01 * lat_sr[s, iy, ix + 1]
            + w10 * lat_sr[s, iy + 1, ix]
            + w11 * lat_sr[s, iy + 1, ix + 1]
        )
    px, k = _srgr_pixel(ln, sr, plines, sr0, coef, spacing, table, x0, k)
    return ln, px, k


def interp_lookup(
    coarse: CoarseLookup, rows: slice, cols: slice, heights: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Full-resolution GRD (line, pixel) on grid ``rows`` × ``cols`` from the coarse lookup.

    Line and slant range bilinear in the lattice and linear in height (``heights``: ellipsoidal, m, the
    window's shape; required with several levels), then slant → ground range exactly per pixel.
    """
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    out_line = np.empty(shape)
    out_pixel = np.empty(shape)
    no_bands = np.empty((0, 1, 1), dtype=np.float32)
    no_out = np.empty((0, *shape), dtype=np.float32)
    _terrain_tile_kernel(_lookup_args(coarse, rows, cols, heights), no_bands, 0.0, 0.0, no_out, out_line, out_pixel)
    return out_line, out_pixel


@numba.njit(cache=True, nogil=True, inline="always")
def _bilinear_db(bands: np.ndarray, p: int, r: float, c: float) -> float:
    # σ0 of bands[p] bilinear at window-relative (r, c), in dB; NaN outside the window or where σ0 ≤ 0
    _, h, w = bands.shape
    if not (r >= 0.0 and r <= h - 1 and c >= 0.0 and c <= w - 1):
        return np.nan
    r0 = min(int(r), max(h - 2, 0))
    c0 = min(int(c), max(w - 2, 0))
    r1 = min(r0 + 1, h - 1)
    c1 = min(c0 + 1, w - 1)
    fr = r - r0
    fc = c - c0
    v = (1.0 - fr) * ((1.0 - fc) * bands[p, r0, c0] + fc * bands[p, r0, c1]) + fr * (
        (1.0 - fc) * bands[p, r1, c0] + fc * bands[p, r1, c1]
    )
    return 10.0 * np.log10(v) if v > 0.0 else np.nan


@numba.njit(cache=True, nogil=True, parallel=True)
def _sample_db_kernel(
    bands: np.ndarray, line0: float, pixel0: float, line: np.ndarray, pixel: np.ndarray, out: np.ndarray
) -> None:
    th, tw = line.shape
    for i in numba.prange(th):
        for j in range(tw):
            out[i, j] = _bilinear_db(bands, 0, line[i, j] - line0, pixel[i, j] - pixel0)


def sample_db(
    band: np.ndarray, line0: int, pixel0: int, line: np.ndarray, pixel: np.ndarray, out: np.ndarray | None = None
) -> np.ndarray:
    """Bilinear σ0 of a GRD window (first full-product index line0, pixel0) at (line, pixel), in dB; NaN outside.

    As :func:`resample_by_lookup` + :func:`sigma0_to_db`, fused and parallel (numba ``prange``). ``out``
    (float32, C-contiguous, ``line``'s shape) is filled and returned instead of a new array if given.
    """
    if out is None:
        out = np.empty(line.shape, dtype=np.float32)
    elif out.shape != line.shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"sample_db: out {out.shape} {out.dtype} must be C-contiguous float32 of shape {line.shape}")
    bands = np.ascontiguousarray(band, dtype=np.float32)[np.newaxis]
    _sample_db_kernel(bands, float(line0), float(pixel0), line, pixel, out)
    return out


@numba.njit(cache=True, nogil=True, parallel=True)
def _terrain_tile_kernel(
    lookup: tuple[Any, ...],
    bands: np.ndarray,
    line0: float,
    pixel0: float,
    out: np.ndarray,
    keep_line: np.ndarray,
    keep_pixel: np.ndarray,
) -> None:
    # the lookup (_lookup_args) of each row (line, pixel), less (line0, pixel0), into two row buffers, then every
    # polarisation sampled from them: each pixel's lookup is used while it is in cache instead of going through
    # two tile-sized float64 arrays. keep_line and keep_pixel of the tile's shape are the buffers (interp_lookup,
    # no bands); otherwise each row gets its own
    lat_line, lat_sr, levels, step, r0, c0, heights, plines, sr0, coef, spacing, table, x0 = lookup
    nlev, ny, _ = lat_line.shape
    npol, th, tw = out.shape
    keep = keep_line.shape[0] == th
    for i in numba.prange(th):
        gy = (r0 + i) / step
        iy = min(int(gy), ny - 2)
        fy = gy - iy
        k = 0
        rr = keep_line[i] if keep else np.empty(tw)
        cc = keep_pixel[i] if keep else np.empty(tw)
        for j in range(tw):
            h = heights[i, j] if nlev > 1 else 0.0
            ln, px, k = _lookup_pixel(
                lat_line, lat_sr, levels, iy, fy, (c0 + j) / step, h, plines, sr0, coef, spacing, table, x0, k
            )
            rr[j] = ln - line0
            cc[j] = px - pixel0
        for p in range(npol):
            for j in range(tw):
                out[p, i, j] = _bilinear_db(bands, p, rr[j], cc[j])


def terrain_tile(
    coarse: CoarseLookup,
    rows: slice,
    cols: slice,
    heights: np.ndarray | None,
    bands: np.ndarray,
    line0: int,
    pixel0: int,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """σ0 dB of every polarisation of ``bands`` (polarisation, lines, pixels; first full-product index line0,
    pixel0) on grid ``rows`` × ``cols``: :func:`interp_lookup` then :func:`sample_db` per polarisation, fused
    per pixel (the same arithmetic, so the same bits) and parallel (numba ``prange``); NaN outside the window.

    ``out`` (float32, C-contiguous, (polarisation, rows, cols)) is filled and returned if given.
    """
    shape = (bands.shape[0], rows.stop - rows.start, cols.stop - cols.start)
    if out is None:
        out = np.empty(shape, dtype=np.float32)
    elif out.shape != shape or out.dtype != np.float32 or not out.flags.c_contiguous:
        raise ValueError(f"terrain_tile: out {out.shape} {out.dtype} must be C-contiguous float32 of shape {shape}")
    bands = np.ascontiguousarray(bands, dtype=np.float32)
    no_rows = np.empty((0, 0))
    _terrain_tile_kernel(
        _lookup_args(coarse, rows, cols, heights), bands, float(line0), float(pixel0), out, no_rows, no_rows
    )
    return out


def _kernel_heights(coarse: CoarseLookup, shape: tuple[int, int], heights: np.ndarray | None) -> np.ndarray:
    """The tile's heights as the kernels take them: float64 of the tile's shape with several levels, else a dummy."""
    if coarse.levels.size == 1:
        return np.zeros((1, 1))
    if heights is None or heights.shape != shape:
        raise ValueError(f"terrain lookup: heights of shape {shape} needed for {coarse.levels.size} levels")
    return np.ascontiguousarray(heights, dtype=np.float64)


def _lookup_args(coarse: CoarseLookup, rows: slice, cols: slice, heights: np.ndarray | None) -> tuple[Any, ...]:
    """The lookup's arguments of :func:`_terrain_tile_kernel` for grid ``rows`` × ``cols``."""
    shape = (rows.stop - rows.start, cols.stop - cols.start)
    return (
        coarse.line,
        coarse.slant_range,
        coarse.levels,
        float(coarse.step),
        rows.start,
        cols.start,
        _kernel_heights(coarse, shape, heights),
        coarse.srgr_lines,
        coarse.srgr_sr0,
        coarse.srgr_coef,
        coarse.pixel_spacing_m,
        coarse.srgr_table,
        coarse.srgr_x0,
    )


@numba.njit(cache=True, nogil=True)
def _lattice_ranges(
    lat_line: np.ndarray,
    lat_sr: np.ndarray,
    levels: np.ndarray,
    step: float,
    r0: int,
    r1: int,
    c0: int,
    c1: int,
    hmin: float,
    hmax: float,
) -> tuple[float, float, float, float]:
    # (line min, line max, slant range min, max) of the tile's pixels: each is a convex combination of its
    # cell corners' values, each piecewise linear in height, so extreme at hmin, hmax or a level between
    nlev, ny, nx = lat_line.shape
    iy0 = min(int(r0 / step), ny - 2)
    iy1 = min(int((r1 - 1) / step), ny - 2) + 1
    ix0 = min(int(c0 / step), nx - 2)
    ix1 = min(int((c1 - 1) / step), nx - 2) + 1
    hs = np.empty(nlev + 2)
    if nlev == 1:
        hs[0] = levels[0]
        nh = 1
    else:
        hs[0] = hmin
        hs[1] = hmax
        nh = 2
        for s in range(nlev):
            if hmin < levels[s] < hmax:
                hs[nh] = levels[s]
                nh += 1
    lmin, lmax, smin, smax = np.inf, -np.inf, np.inf, -np.inf
    for a in range(iy0, iy1 + 1):
        for b in range(ix0, ix1 + 1):
            for q in range(nh):
                s0, t = _height_bracket(levels, hs[q])
                ln = lat_line[s0, a, b]
                sr = lat_sr[s0, a, b]
                if nlev > 1:
                    ln = (1.0 - t) * ln + t * lat_line[s0 + 1, a, b]
                    sr = (1.0 - t) * sr + t * lat_sr[s0 + 1, a, b]
                if ln == ln and sr == sr:
                    lmin = min(lmin, ln)
                    lmax = max(lmax, ln)
                    smin = min(smin, sr)
                    smax = max(smax, sr)
    return lmin, lmax, smin, smax


@numba.njit(cache=True, nogil=True)
def _ground_range_bounds(
    lmin: float,
    lmax: float,
    smin: float,
    smax: float,
    plines: np.ndarray,
    sr0: np.ndarray,
    table: np.ndarray,
    x0: float,
) -> np.ndarray:
    # [lmin, lmax, pixel min, pixel max] of points with lines in [lmin, lmax] and slant ranges in [smin, smax]:
    # a ground-range pixel is a convex combination of table entries of the polynomials bracketing its line, at
    # the offsets its slant range allows against their sr0 (see _srgr_pixel)
    res = np.full(4, np.nan)
    if not lmin <= lmax:
        return res
    n = plines.size
    k0, k1 = 0, 0
    if n > 1:
        lo = max(lmin, plines[0])
        hi = min(lmax, plines[n - 1])
        if not lo <= hi:
            return res  # every line outside the polynomials' time span: NaN everywhere
        k0 = min(max(np.searchsorted(plines, lo, side="right") - 1, 0), n - 2)
        k1 = min(np.searchsorted(plines, hi, side="right"), n - 1)
    res[0] = lmin
    res[1] = lmax
    ulo = (smin - sr0[k0 : k1 + 1].max() - x0) * (1.0 / SRGR_TABLE_STEP_M)
    uhi = (smax - sr0[k0 : k1 + 1].min() - x0) * (1.0 / SRGR_TABLE_STEP_M)
    if not (ulo >= 0.0 and uhi < table.shape[1] - 1):
        return res
    block = table[k0 : k1 + 1, int(ulo) : int(uhi) + 2]
    res[2] = block.min()
    res[3] = block.max()
    return res


#: GRD lines and pixels added on each side of a tile's lattice bounds: covers the bilinear neighbour and any
#: rounding between the bounds and the per-pixel arithmetic (≪ 1 px)
BOUNDS_MARGIN_PX = 2


def tile_window(
    coarse: CoarseLookup,
    rows: slice,
    cols: slice,
    heights: np.ndarray | None,
    line0: int,
    pixel0: int,
    shape: tuple[int, int],
) -> tuple[slice, slice] | None:
    """Window-relative (rows, cols) of the stored GRD window (first index line0, pixel0, ``shape``) that holds
    every sample of the tile ``rows`` × ``cols``; None if no sample lies in it.

    Bounded from the lattice (:func:`_lattice_ranges`, :func:`_ground_range_bounds`, plus :data:`BOUNDS_MARGIN_PX`), without the per-pixel
    lookup; where that cannot bound the ground range, from the exact lookup (:func:`interp_lookup`).
    """
    if coarse.levels.size > 1:
        h = _kernel_heights(coarse, (rows.stop - rows.start, cols.stop - cols.start), heights)
        if not np.isfinite(h).any():
            return None
        hmin, hmax = float(np.nanmin(h)), float(np.nanmax(h))
    else:
        hmin = hmax = 0.0
    # [line min, line max, pixel min, pixel max] that every lookup of the tile lies within (up to rounding),
    # from the lattice alone. Line bounds NaN: no pixel is defined; pixel bounds NaN: the offsets leave the
    # SRGR table, and the exact lookup decides
    line_sr = _lattice_ranges(
        coarse.line,
        coarse.slant_range,
        coarse.levels,
        float(coarse.step),
        rows.start,
        rows.stop,
        cols.start,
        cols.stop,
        hmin,
        hmax,
    )
    b = _ground_range_bounds(*line_sr, coarse.srgr_lines, coarse.srgr_sr0, coarse.srgr_table, coarse.srgr_x0)
    if np.isnan(b[0]):
        return None
    if np.isnan(b[2]):
        line, pixel = interp_lookup(coarse, rows, cols, heights)
        return _grd_window(line, pixel, line0, pixel0, shape)
    m = BOUNDS_MARGIN_PX
    a = max(int(np.floor(b[0] - line0)) - m, 0)
    z = min(int(np.floor(b[1] - line0)) + 1 + m, shape[0])
    c = max(int(np.floor(b[2] - pixel0)) - m, 0)
    d = min(int(np.floor(b[3] - pixel0)) + 1 + m, shape[1])
    if a >= z or c >= d:
        return None
    return slice(a, z), slice(c, d)


def sub_grid(grid: Grid, rows: slice, cols: slice) -> Grid:
    """The window ``rows`` × ``cols`` of ``grid`` as a grid of its own."""
    transform = grid.transform * Affine.translation(cols.start, rows.start)
    return Grid(crs=grid.crs, transform=transform, height=rows.stop - rows.start, width=cols.stop - cols.start)


def tile_heights(dem: Path, grid: Grid, rows: slice, cols: slice) -> np.ndarray:
    """Ellipsoidal heights of one output tile: the DEM warped bilinearly onto it, EGM96 → ellipsoid."""
    tile = sub_grid(grid, rows, cols)
    lon, lat = grid_lonlat(tile)
    h, _ = geoid_to_ellipsoid(dem_on_grid(dem, tile).astype(np.float64), lon, lat)
    return h


@numba.njit(cache=True, nogil=True, parallel=True)
def _inside_bounds(line: np.ndarray, pixel: np.ndarray, line0: float, pixel0: float, h: int, w: int) -> np.ndarray:
    # min/max of (line - line0, pixel - pixel0) over the points inside [0, h-1] × [0, w-1], one pass per row
    # in parallel, without the tile-sized temporaries of the numpy expression (≈ 50 MB per 1024² tile); NaN
    # is outside
    rows = np.empty((line.shape[0], 4))
    for i in numba.prange(line.shape[0]):
        r_lo, r_hi, c_lo, c_hi = np.inf, -np.inf, np.inf, -np.inf
        for j in range(line.shape[1]):
            r = line[i, j] - line0
            c = pixel[i, j] - pixel0
            if r >= 0.0 and r <= h - 1 and c >= 0.0 and c <= w - 1:
                r_lo = min(r_lo, r)
                r_hi = max(r_hi, r)
                c_lo = min(c_lo, c)
                c_hi = max(c_hi, c)
        rows[i, 0] = r_lo
        rows[i, 1] = r_hi
        rows[i, 2] = c_lo
        rows[i, 3] = c_hi
    res = np.array([np.inf, -np.inf, np.inf, -np.inf])
    for i in range(rows.shape[0]):
        res[0] = min(res[0], rows[i, 0])
        res[1] = max(res[1], rows[i, 1])
        res[2] = min(res[2], rows[i, 2])
        res[3] = max(res[3], rows[i, 3])
    return res


def _grd_window(
    line: np.ndarray, pixel: np.ndarray, line0: int, pixel0: int, shape: tuple[int, int]
) -> tuple[slice, slice] | None:
    """Window-relative (rows, cols) of the stored GRD window that the tile's lookup touches; None if none."""
    rmin, rmax, cmin, cmax = _inside_bounds(
        np.ascontiguousarray(line, dtype=np.float64),
        np.ascontiguousarray(pixel, dtype=np.float64),
        float(line0),
        float(pixel0),
        int(shape[0]),
        int(shape[1]),
    )
    if not rmin <= rmax:
        return None
    a = int(np.floor(rmin))
    b = min(int(np.floor(rmax)) + 2, shape[0])
    c0 = int(np.floor(cmin))
    c1 = min(int(np.floor(cmax)) + 2, shape[1])
    return slice(a, b), slice(c0, c1)


#: rows of a tile handed out at a time by the ``prange`` kernels (numba's ``set_parallel_chunksize``). The
#: default (0) splits a loop into one equal share per thread up front, so while the reader or writer thread
#: holds a core the kernel waits for the thread sharing it; chunks of 16 rows are handed out as threads free
#: up. Whole scene, 2 threads: tile loop 23.1–24.9 → 18.5–18.8 s (BENCHMARKS.md, "Idle runs, 2026-12-05
#: (session 6)").
PARALLEL_CHUNK_ROWS = 16


@contextlib.contextmanager
def _numba_threads(n: int) -> Iterator[None]:
    """``n`` numba threads (at most numba's pool) and dynamic ``prange`` chunks of :data:`PARALLEL_CHUNK_ROWS`
    on this thread, restored on exit."""
    old = numba.get_num_threads()
    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    old_chunk = numba.set_parallel_chunksize(PARALLEL_CHUNK_ROWS)
    try:
        yield
    finally:
        numba.set_num_threads(old)
        numba.set_parallel_chunksize(old_chunk)


#: output tile edge (grid pixels)
TILE = 1024


def run_terrain(
    in_nc: Path,
    safe_path: Path,
    grid: Grid,
    out_tif: Path,
    dem: Path | None = None,
    lookup_step: int = LOOKUP_STEP,
    level_spacing_m: float = LEVEL_SPACING_M,
    tile: int = TILE,
    threads: int = 1,
) -> None:
    """Terrain-correct the filtered σ0 window onto ``grid``: COG with bands VV, VH (σ0 dB), NaN nodata.

    Chunked: the lookup is computed once on the coarse lattice (every ``lookup_step`` px, at
    heights at most ``level_spacing_m`` apart with a DEM) and shared by every polarisation; each ``tile`` × ``tile``
    output tile interpolates it, reads only the GRD window it needs from ``in_nc``, resamples every
    polarisation (numba, ``threads`` threads) and is streamed into the COG (:func:`pipeline_lib.cog.cog_writer`)
    by one writer thread, so a tile's compression overlaps the next tile's work; the coarse lookup's
    row blocks are computed by ``threads`` threads.
    """
    if lookup_step < 1 or tile < 1:
        raise ValueError(f"run_terrain: lookup_step {lookup_step} and tile {tile} must be positive")
    with open_sigma0(Path(in_nc)) as src:
        pols = list(src.polarisations)
        with open_product(Path(safe_path)) as reader:
            geocoder = Geocoder.from_files(find_pol_files(reader, pols[0], need_measurement=False))
        if dem is None:
            levels, datum = np.zeros(1), "WGS84 ellipsoid (h = 0, no DEM)"
        else:
            levels, datum = height_levels(Path(dem), grid, lookup_step, level_spacing_m)
        coarse = compute_coarse_lookup(geocoder, grid, lookup_step, levels, threads=threads)
        tags = {
            "product": str(src.attrs.get("product", "")),
            "units": "dB",
            "quantity": "sigma0",
            "vertical_datum": datum,
            "geocoding": "range-Doppler backward geocoding (sarsen), bilinear",
            "lookup": f"lattice every {lookup_step} px, {levels.size} height level(s), bilinear",
        }
        with (
            _numba_threads(threads),
            cog_writer(
                out_tif,
                height=grid.height,
                width=grid.width,
                count=len(pols),
                crs=grid.crs,
                transform=grid.transform,
                descriptions=pols,
                tags=tags,
                band_tags=[{"polarisation": p, "units": "dB"} for p in pols],
            ) as dst,
        ):
            covered = _stream_tiles(src, coarse, grid, dem, tile, dst)
            if not covered:
                raise CoverageError(
                    f"{in_nc}: the calibrated window does not cover the grid; rerun calibration with a larger margin"
                )


@dataclass
class _TileInput:
    """One output tile ready to be sampled: its heights and the GRD window being read for it."""

    rows: slice
    cols: slice
    heights: np.ndarray | None
    window: tuple[slice, slice] | None
    bands: Future[np.ndarray] | None  # every polarisation on ``window``, read by the reader thread


def _stream_tiles(src: Sigma0File, coarse: CoarseLookup, grid: Grid, dem: Path | None, tile: int, dst: Any) -> bool:
    """Terrain-correct ``grid`` tile by tile into ``dst``; whether any output pixel of the first polarisation
    is finite.

    Three stages overlap: while tile n is sampled (numba, all threads), a reader thread reads tile n + 1's GRD
    window (netCDF4 releases the GIL; HDF5 allows one reader) and a writer thread writes tile n − 1, so the
    serial I/O runs beside the parallel kernels instead of between them.
    """
    tiles = [
        (slice(r0, r1), slice(c0, c1))
        for r0, r1 in row_bands(grid.height, tile)
        for c0, c1 in row_bands(grid.width, tile)
    ]
    covered = False
    reader = ThreadPoolExecutor(max_workers=1)
    writer = ThreadPoolExecutor(max_workers=1)
    pending: Future[None] | None = None
    try:
        nxt = _prepare_tile(src, coarse, grid, dem, *tiles[0], reader)
        for i in range(len(tiles)):
            cur = nxt
            if i + 1 < len(tiles):
                nxt = _prepare_tile(src, coarse, grid, dem, *tiles[i + 1], reader)
            out = _sample_tile(src, coarse, cur)
            if cur.window is not None:
                covered = covered or bool(np.isfinite(out[0]).any())
            if pending is not None:
                pending.result()
            window = Window(cur.cols.start, cur.rows.start, out.shape[2], out.shape[1])  # type: ignore[arg-type]
            pending = writer.submit(dst.write, out, window=window)
        if pending is not None:
            pending.result()
    finally:
        reader.shutdown(wait=True)
        writer.shutdown(wait=True)
    return covered


def _prepare_tile(
    src: Sigma0File, coarse: CoarseLookup, grid: Grid, dem: Path | None, rows: slice, cols: slice, reader: Any
) -> _TileInput:
    """The tile's heights and GRD window (:func:`tile_window`, on this thread) and the window's read, queued on
    ``reader``."""
    heights = tile_heights(Path(dem), grid, rows, cols) if dem is not None else None
    win = tile_window(coarse, rows, cols, heights, src.line0, src.pixel0, src.shape)
    if win is None:
        return _TileInput(rows, cols, heights, None, None)
    return _TileInput(rows, cols, heights, win, reader.submit(src.read_all, *win))


def _sample_tile(src: Sigma0File, coarse: CoarseLookup, tile: _TileInput) -> np.ndarray:
    """σ0 dB of every polarisation on one prepared tile (NaN outside the GRD window)."""
    shape = (len(src.polarisations), tile.rows.stop - tile.rows.start, tile.cols.stop - tile.cols.start)
    if tile.window is None or tile.bands is None:
        return np.full(shape, np.nan, dtype=np.float32)
    wr, wc = tile.window
    bands = tile.bands.result()
    return terrain_tile(coarse, tile.rows, tile.cols, tile.heights, bands, src.line0 + wr.start, src.pixel0 + wc.start)
