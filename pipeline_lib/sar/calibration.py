"""Sentinel-1 GRD radiometric calibration with thermal-noise removal over the window covering a grid.

Governing specs: S1-RS-MDA-52-7441 §9.3 and ESA "Sentinel-1 Level 1 Detected Algorithm / Radiometric
Calibration of S-1 Level-1 Products" (ESA-EOPG-CSCOP-TN-0002): σ0 = (DN² − η) / A_σ², with A_σ the
``sigmaNought`` LUT bilinearly interpolated (as xarray-sentinel's ``calibrate_amplitude``) and η the
thermal noise power (``pipeline_lib.sar.noise``, MPC-0392). Negative values after noise subtraction
(noise-dominated pixels) are clipped to ``SIGMA0_FLOOR`` = 1e-5 m²/m² (−50 dB, well under the
S1 IW noise-equivalent σ0 of about −22 dB). DN = 0 is the GRD zero-fill outside the swath and becomes NaN.

The window covering the grid is found by a range-Doppler lookup of the grid at the heights terrain
correction uses (WGS84 ellipsoid, or the DEM's range: :mod:`pipeline_lib.sar.window`), so only that
window of the measurement TIFF is read, in row bands (rasterio
windows): ESA's measurement TIFF is uncompressed with one strip per line, so a band of lines is one
contiguous read. Calibration and noise removal are fused per band and written to the NetCDF band by
band (:mod:`pipeline_lib.sar.chunks`); ``thermal_noise=False`` gives plain σ0 = DN²/A_σ² (as sarsen
and xarray-sentinel calibrate) for like-with-like comparisons.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import rasterio
import rasterio.errors
import rasterio.io
from rasterio.windows import Window
from shapely.geometry import MultiPoint, box

from pipeline_lib.errors import CoverageError, ProductError
from pipeline_lib.grid import Grid
from pipeline_lib.guard import corrupt_metadata
from pipeline_lib.safe import open_product
from pipeline_lib.sar.chunks import create_sigma0, row_bands, write_key_histograms
from pipeline_lib.sar.lut import CalibrationLut, parse_sigma_lut
from pipeline_lib.sar.noise import NoiseModel, is_void, noise_power, parse_noise
from pipeline_lib.sar.product import (
    PolFiles,
    find_pol_files,
    measurement_uri,
    read_geolocation_grid,
    read_image_info,
)
from pipeline_lib.sar.quantile import KEY_BINS, key_histogram
from pipeline_lib.sar.window import RangeDoppler, grid_window, height_range, window_around

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "SIGMA0_FLOOR",
    "calibrate_sigma0",
    "calibrate_band",
    "interp_lut",
    "check_footprint",
    "find_window",
    "run_calibrate",
]

#: floor for σ0 after thermal-noise subtraction (linear, −50 dB)
SIGMA0_FLOOR = 1e-5
#: lines of a band whose LUT, noise and σ0 are computed together (:func:`calibrate_band`): 16 lines of a GRD
#: (≈ 26 000 px) keep each float64 temporary near 3 MB, in cache, instead of 53 MB streamed through memory
#: for a 256-line band. The whole-scene calibrate step took 14.3–14.7 s instead of 19.3–21.9 s on 2 cores and
#: 21.6–21.9 s instead of 35.0–35.7 s on 1 core, with the same bits (BENCHMARKS.md, "Idle runs, 2026-12-06
#: (session 7)").
CACHE_LINES = 16
#: GDAL block cache while reading the measurement (MB). Each line is read once, so caching buys nothing,
#: and GDAL's default (5 % of RAM) would make the peak RSS depend on the node's RAM (BENCHMARKS.md).
READ_CACHE_MB = 32


def calibrate_sigma0(dn: np.ndarray, sigma_lut: np.ndarray, noise: np.ndarray | float = 0.0) -> np.ndarray:
    """σ0 = (DN² − η) / A_σ², clipped below at ``SIGMA0_FLOOR``; NaN where DN = 0 (no data), float32.

    Computed in float64 in place on two copies (2.5× faster than the plain expression's temporaries on a
    256-line band; the result is the same to the bit)."""
    num = np.array(dn, dtype=np.float64)  # a copy: the caller's array is never modified
    num *= num
    num -= noise
    den = np.array(sigma_lut, dtype=np.float64)
    den *= den
    num /= den
    np.maximum(num, SIGMA0_FLOOR, out=num)
    sigma0 = num.astype(np.float32)
    sigma0[np.asarray(dn) == 0] = np.nan
    return sigma0


def interp_lut(lut: CalibrationLut | xr.DataArray, lines: np.ndarray, pixels: np.ndarray) -> np.ndarray:
    """A calibration LUT on (line, pixel) interpolated linearly onto the window (as xarray-sentinel).

    ``lut``: :class:`pipeline_lib.sar.lut.CalibrationLut` (the chain's, numpy) or xarray-sentinel's DataArray.
    """
    if isinstance(lut, CalibrationLut):
        return lut.interp(np.asarray(lines), np.asarray(pixels))
    return np.asarray(lut.interp(line=np.asarray(lines), pixel=np.asarray(pixels)).values, dtype=np.float64)


def _polyfit_2d(x: np.ndarray, y: np.ndarray, z: np.ndarray, deg: int = 3) -> np.ndarray:
    terms = [x**i * y**j for i in range(deg + 1) for j in range(deg + 1 - i)]
    coef, *_ = np.linalg.lstsq(np.stack(terms, axis=1), z, rcond=None)
    return np.asarray(coef)


def _polyval_2d(coef: np.ndarray, x: np.ndarray, y: np.ndarray, deg: int = 3) -> np.ndarray:
    terms = [x**i * y**j for i in range(deg + 1) for j in range(deg + 1 - i)]
    return np.asarray(np.stack(terms, axis=-1) @ coef)


def lonlat_to_line_pixel(gcp: dict[str, np.ndarray], lon: np.ndarray, lat: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Map lon/lat to GRD (line, pixel) from the geolocation grid: piecewise linear inside, cubic outside."""
    from scipy.interpolate import LinearNDInterpolator  # not at import: start-up of the calibrate job

    pts = np.column_stack([gcp["longitude"], gcp["latitude"]])
    targets = np.column_stack([gcp["line"], gcp["pixel"]])
    lin = LinearNDInterpolator(pts, targets)(np.column_stack([lon, lat]))
    x0, y0 = pts.mean(axis=0)
    out = []
    for k in range(2):
        coef = _polyfit_2d(pts[:, 0] - x0, pts[:, 1] - y0, targets[:, k])
        poly = _polyval_2d(coef, np.asarray(lon) - x0, np.asarray(lat) - y0)
        out.append(np.where(np.isnan(lin[:, k]), poly, lin[:, k]))
    return out[0], out[1]


def check_footprint(gcp: dict[str, np.ndarray], grid: Grid, product: str = "product") -> None:
    """CoverageError if the geolocation grid's footprint and the grid's lon/lat bounds are disjoint."""
    west, south, east, north = grid.lonlat_bounds()
    footprint = MultiPoint(np.column_stack([gcp["longitude"], gcp["latitude"]])).convex_hull
    if not footprint.intersects(box(west, south, east, north)):
        raise CoverageError(
            f"{product}: footprint does not cover the grid ({west:.4f}, {south:.4f}, {east:.4f}, {north:.4f}); "
            "choose a product over the region"
        )


def find_window(
    gcp: dict[str, np.ndarray], grid: Grid, shape: tuple[int, int], margin_px: int, product: str = "product"
) -> tuple[slice, slice]:
    """(line slice, pixel slice) of the GRD covering ``grid`` plus ``margin_px`` at the annotation's heights.

    An estimate from the geolocation grid (its points at ESA's terrain heights): off by up to hundreds of
    pixels at other heights, so :func:`run_calibrate` uses :func:`pipeline_lib.sar.window.grid_window`.
    """
    check_footprint(gcp, grid, product)
    west, south, east, north = grid.lonlat_bounds()
    t = np.linspace(0.0, 1.0, 33)
    lon = np.concatenate(
        [west + (east - west) * t, np.full_like(t, east), west + (east - west) * t, np.full_like(t, west)]
    )
    lat = np.concatenate(
        [np.full_like(t, south), south + (north - south) * t, np.full_like(t, north), south + (north - south) * t]
    )
    line, pixel = lonlat_to_line_pixel(gcp, lon, lat)
    return window_around(line, pixel, shape, margin_px, product)


def _open_measurement(uri: str, shape: tuple[int, int], label: str) -> rasterio.io.DatasetReader:
    try:
        with warnings.catch_warnings():  # GRD TIFFs carry GCPs, not a geotransform
            warnings.simplefilter("ignore", rasterio.errors.NotGeoreferencedWarning)
            src = rasterio.open(uri)
    except rasterio.errors.RasterioError as exc:
        raise ProductError(f"{label}: measurement unreadable ({exc}); download the product again") from exc
    if (src.height, src.width) != shape:
        src.close()
        raise ProductError(
            f"{label}: measurement is {src.height}×{src.width} but the annotation says {shape[0]}×{shape[1]}; "
            "download the product again"
        )
    return src


def calibrate_band(
    src: rasterio.io.DatasetReader,
    lut: CalibrationLut | xr.DataArray,
    noise: NoiseModel | None,
    lines: np.ndarray,
    pixels: np.ndarray,
    label: str,
) -> np.ndarray:
    """σ0 of one row band (full-product ``lines`` × ``pixels``, contiguous): read, LUT, noise, fused; float32.

    The band is read at once; LUT, noise and σ0 are then computed :data:`CACHE_LINES` lines at a time, so
    their float64 temporaries stay in the core's cache instead of streaming through memory (every value is
    pointwise in (line, pixel), so the result is the same to the bit)."""
    window = Window(int(pixels[0]), int(lines[0]), int(pixels.size), int(lines.size))  # type: ignore[arg-type]
    try:
        dn = src.read(1, window=window)
    except rasterio.errors.RasterioError as exc:
        raise ProductError(f"{label}: measurement unreadable ({exc}); download the product again") from exc
    out = np.empty(dn.shape, dtype=np.float32)
    for a, b in row_bands(lines.size, CACHE_LINES):
        eta = noise_power(noise, lines[a:b], pixels) if noise is not None else 0.0
        out[a:b] = calibrate_sigma0(dn[a:b], interp_lut(lut, lines[a:b], pixels), eta)
    return out


Inputs = Sequence[tuple[PolFiles, CalibrationLut, NoiseModel | None]]


def _calibrated_bands(
    inputs: Inputs,
    shape: tuple[int, int],
    lines: np.ndarray,
    pixels: np.ndarray,
    band_lines: int,
    threads: int,
    label: str,
) -> Iterator[tuple[int, int, int, np.ndarray, np.ndarray]]:
    """(polarisation index, first row, stop row, σ0 band, its Z98 key histogram) of every row band, computed by
    ``threads`` threads, in order."""
    local = threading.local()
    opened: list[rasterio.io.DatasetReader] = []
    lock = threading.Lock()

    def reader(k: int) -> rasterio.io.DatasetReader:
        handles = local.__dict__.setdefault("handles", {})
        if k not in handles:  # GDAL handles are not shared between threads
            handles[k] = _open_measurement(measurement_uri(inputs[k][0]), shape, f"{label}/{inputs[k][0].measurement}")
            with lock:
                opened.append(handles[k])
        return handles[k]

    def work(k: int, a: int, b: int) -> tuple[int, int, int, np.ndarray, np.ndarray]:
        f, lut, noise = inputs[k]
        sigma0 = calibrate_band(reader(k), lut, noise, lines[a:b], pixels, f"{label}/{f.measurement}")
        return k, a, b, sigma0, key_histogram(sigma0)

    n = max(1, int(threads))
    pending: deque[Future[tuple[int, int, int, np.ndarray, np.ndarray]]] = deque()
    try:
        with ThreadPoolExecutor(max_workers=n) as pool:
            for k in range(len(inputs)):
                for a, b in row_bands(lines.size, band_lines):
                    pending.append(pool.submit(work, k, a, b))
                    while len(pending) > n:
                        yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
    finally:
        for fut in pending:
            fut.cancel()
        for src in opened:
            src.close()


def run_calibrate(
    safe_path: Path,
    grid: Grid,
    out_nc: Path,
    polarisations: Sequence[str] = ("VV", "VH"),
    margin_px: int = 64,
    thermal_noise: bool = True,
    band_lines: int = 256,
    dem: Path | None = None,
    threads: int = 1,
) -> None:
    """σ0 (thermal noise removed unless ``thermal_noise`` is False) of the GRD window covering ``grid``, to NetCDF.

    Chunked: the measurement window is read in row bands of ``band_lines`` lines (the cheap direction of
    the ESA one-strip-per-line TIFF); LUT and noise are evaluated per band and the band is written to the
    NetCDF at once, so peak memory is about ``threads`` × 40 bytes × ``band_lines`` × window width,
    whatever the scene. ``threads`` bands are computed at once (reads, LUT and noise release the GIL),
    each thread with its own handle on the measurement; the NetCDF is written from this thread only.
    Every value equals the one the whole-window computation gives (LUT and noise are pointwise in
    (line, pixel)). The window is the range-Doppler lookup of ``grid`` at the heights terrain correction
    will use (the ellipsoid, or ``dem``'s range over the grid) plus ``margin_px``.
    """
    safe_path = Path(safe_path)
    if not polarisations:
        raise ProductError(f"{safe_path}: no polarisation requested; set sar.polarisations (e.g. [VV, VH])")
    with open_product(safe_path) as reader:
        files = [find_pol_files(reader, p) for p in polarisations]
        _calibrate_files(files, reader.name, grid, out_nc, margin_px, thermal_noise, band_lines, dem, threads)


def _calibrate_files(
    files: Sequence[PolFiles],
    name: str,
    grid: Grid,
    out_nc: Path,
    margin_px: int,
    thermal_noise: bool,
    band_lines: int,
    dem: Path | None,
    threads: int,
) -> None:
    """:func:`run_calibrate` on the polarisations' files of one open product."""
    safe_path = files[0].product
    ref = files[0].reader.parse_xml(files[0].annotation)
    info = read_image_info(ref, label=f"{safe_path}/{files[0].annotation}")
    shape = (info.number_of_lines, info.number_of_samples)
    check_footprint(read_geolocation_grid(ref, f"{safe_path}/{files[0].annotation}"), grid, product=name)
    rd = RangeDoppler.from_annotation(ref, info, label=f"{safe_path}/{files[0].annotation}")
    rows, cols = grid_window(rd, grid, shape, margin_px, height_range(dem, grid), product=name)
    lines = np.arange(rows.start, rows.stop)
    pixels = np.arange(cols.start, cols.stop)
    inputs = []
    void: list[str] = []
    for f in files:
        ann = read_image_info(f.reader.parse_xml(f.annotation), label=f"{safe_path}/{f.annotation}")
        if (ann.number_of_lines, ann.number_of_samples) != shape:
            raise ProductError(f"{safe_path}/{f.annotation}: image size differs between polarisations; download again")
        noise = parse_noise(f.reader.parse_xml(f.noise), f"{safe_path}/{f.noise}") if thermal_noise else None
        if noise is not None and is_void(noise):
            # say so and record it instead of claiming a removal that did not happen
            log.warning(
                "%s/%s: every noise vector is zero (early-mission product); thermal noise is NOT removed from %s "
                "(thermal_noise_removed=0); expect a higher noise floor in low-backscatter areas",
                safe_path,
                f.noise,
                f.polarisation,
            )
            noise = None
            void.append(f.polarisation)
        with corrupt_metadata(f"{safe_path}/{f.calibration}"):
            lut = parse_sigma_lut(f.reader.parse_xml(f.calibration), f"{safe_path}/{f.calibration}")
        inputs.append((f, lut, noise))
    removed = thermal_noise and not void
    long_name = "sigma nought, thermal noise removed" if removed else "sigma nought (no thermal-noise removal)"
    attrs = {
        "product": name,
        "number_of_looks": float(info.number_of_looks),
        "polarisations": ",".join(f.polarisation for f in files),
        "number_of_lines": info.number_of_lines,
        "number_of_samples": info.number_of_samples,
        "thermal_noise_removed": int(removed),
        "thermal_noise_void_polarisations": ",".join(void),
        "Conventions": "CF-1.8",
    }
    var_attrs = {"long_name": long_name, "units": "m2 m-2", "sigma0_floor": SIGMA0_FLOOR}
    with (
        rasterio.Env(GDAL_CACHEMAX=READ_CACHE_MB * 2**20),  # rasterio passes an int in bytes
        create_sigma0(out_nc, [f.polarisation for f in files], lines, pixels, attrs, var_attrs) as var,
    ):
        hist = np.zeros((len(files), KEY_BINS), dtype=np.int64)  # pass 1 of Lee sigma's Z98, for free here
        for k, b0, b1, sigma0, h in _calibrated_bands(
            inputs, shape, lines, pixels, band_lines, threads, str(safe_path)
        ):
            var[k, b0:b1, :] = sigma0
            hist[k] += h
        write_key_histograms(var, hist)
