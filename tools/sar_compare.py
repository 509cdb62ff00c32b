"""Cross-check two σ0 rasters of the same scene: per-pixel dB differences and geolocation offset (a QA command).

Not part of the production package: it is run by hand, by ``benchmarks/bench_sar_vs_sarsen.py`` and by the
tests (docs/DESIGN.md §5, the native backend's acceptance check).

``python -m tools.sar_compare A.tif B.tif`` (e.g. native vs SNAP output, or native vs sarsen's GTC)
prints one JSON line, then a human summary. For each band (matched by description, e.g. ``VV``/``VH``, else by
position): Δ = B − A in dB over the pixels valid (finite) in both — median Δ (bias), median and 95th percentile
of |Δ| — and the offset of B relative to A by phase correlation (scikit-image
``registration.phase_cross_correlation``, upsample factor 20, i.e. 1/20 px; Guizar-Sicairos et al. 2008) on the
mean-removed, Hann-tapered images (no-data set to the mean), without phase normalisation.
B is warped onto A's grid first (bilinear) when the grids differ. ``--b-linear`` converts a linear-power B
(e.g. sarsen's output) to dB before comparing.

sarsen's GTC (``sarsen.apps.terrain_correction`` without radiometric correction) is β0, linear, written
bottom-up by rioxarray. ``--sarsen-safe SAFE`` converts it to σ0 before comparing: σ0 = β0 · A_β²/A_σ²
(xarray-sentinel's ``calibrate_intensity`` is DN²/A², so the ratio of the product's own ``betaNought`` and
``sigmaNought`` LUTs is exact; it is sin of the ellipsoid incidence angle). The LUTs are interpolated
bilinearly (as xarray-sentinel) at the GRD (line, pixel) that our range-Doppler lookup
(:func:`pipeline_lib.sar.terrain.compute_lookup`, ellipsoid h = 0) gives for a lattice of grid pixels every
``stride`` pixels, and the (smooth) ratio bilinearly onto every grid pixel.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.warp import Resampling
from skimage.filters import window
from skimage.registration import phase_cross_correlation

from pipeline_lib.cog import write_cog
from pipeline_lib.errors import PipelineError, ProductError
from pipeline_lib.grid import Grid, warp_to_grid

__all__ = [
    "beta_to_sigma_ratio",
    "compare_arrays",
    "compare_rasters",
    "compare_with_sarsen",
    "db_differences",
    "ellipsoid_dem",
    "geolocation_offset",
    "main",
    "read_on_grid",
    "sarsen_sigma0_db",
]


def ellipsoid_dem(grid: Grid, path: Path) -> Path:
    """Heights h = 0 (the WGS84 ellipsoid) as a GeoTIFF on exactly ``grid``.

    sarsen geocodes onto its DEM's own grid, so this DEM makes sarsen write our grid (for comparisons).
    """
    write_cog(
        np.zeros((1, *grid.shape), np.float32),
        path,
        crs=grid.crs,
        transform=grid.transform,
        descriptions=["height"],
        nodata=None,
        stac=False,
    )
    return path


def db_differences(a_db: np.ndarray, b_db: np.ndarray) -> dict[str, float]:
    """Statistics of Δ = B − A (dB) over pixels finite in both."""
    valid = np.isfinite(a_db) & np.isfinite(b_db)
    n = int(valid.sum())
    if n == 0:
        return {
            "n_valid": 0,
            "median_db": float("nan"),
            "mean_db": float("nan"),
            "median_abs_db": float("nan"),
            "p95_abs_db": float("nan"),
        }
    diff = (b_db[valid] - a_db[valid]).astype(np.float64)
    absd = np.abs(diff)
    return {
        "n_valid": n,
        "median_db": float(np.median(diff)),
        "mean_db": float(diff.mean()),
        "median_abs_db": float(np.median(absd)),
        "p95_abs_db": float(np.percentile(absd, 95)),
    }


def _fill(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Zero-mean image with invalid pixels at the mean (no edge from the no-data area)."""
    out = np.where(valid, img, 0.0).astype(np.float64)
    mean = out[valid].mean() if valid.any() else 0.0
    out[valid] -= mean
    out[~valid] = 0.0
    return out


def geolocation_offset(a_db: np.ndarray, b_db: np.ndarray, upsample: int = 20) -> dict[str, float]:
    """Displacement of B's content relative to A (rows down, columns right, px) by phase correlation."""
    valid = np.isfinite(a_db) & np.isfinite(b_db)
    if valid.sum() < 16:
        return {"dy_px": float("nan"), "dx_px": float("nan"), "error": float("nan")}
    # Hann-windowed, unnormalised cross-correlation: phase normalisation amplifies the high frequencies that
    # resampling and speckle corrupt, and biases sub-pixel shifts of smooth fields (checked in the tests).
    taper = window("hann", a_db.shape)
    shift, error, _ = phase_cross_correlation(
        _fill(a_db, valid) * taper, _fill(b_db, valid) * taper, upsample_factor=upsample, normalization=None
    )
    # skimage returns the shift that registers B onto A: B's displacement is its negative.
    return {"dy_px": float(-shift[0]), "dx_px": float(-shift[1]), "error": float(error)}


def compare_arrays(a_db: np.ndarray, b_db: np.ndarray, upsample: int = 20) -> dict[str, float]:
    """Differences and offset of two co-registered dB images of the same shape."""
    if a_db.shape != b_db.shape:
        raise ValueError(f"compare_arrays: shapes differ {a_db.shape} vs {b_db.shape}")
    return {**db_differences(a_db, b_db), **geolocation_offset(a_db, b_db, upsample)}


def _read(path: Path) -> rasterio.io.DatasetReader:
    try:
        return rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise ProductError(f"{path}: not a readable raster ({exc}); check the path") from exc


def _band_pairs(a_desc: Sequence[str | None], b_desc: Sequence[str | None]) -> list[tuple[str, int, int]]:
    """(name, band in A, band in B), by description where both have them, else by position."""

    def key(d: str | None) -> str:
        return (d or "").replace("Sigma0_", "").upper()

    b_index = {key(d): i + 1 for i, d in enumerate(b_desc) if d}
    pairs = [(key(d), i + 1, b_index[key(d)]) for i, d in enumerate(a_desc) if d and key(d) in b_index]
    if pairs:
        return pairs
    return [(f"band{i}", i, i) for i in range(1, min(len(a_desc), len(b_desc)) + 1)]


def compare_rasters(a: Path, b: Path, *, upsample: int = 20, b_linear: bool = False) -> dict[str, Any]:
    """Compare raster B to raster A band by band (B warped onto A's grid when needed)."""
    with _read(a) as ra, _read(b) as rb:
        if ra.crs is None or rb.crs is None:
            raise ProductError(f"{a if ra.crs is None else b}: no CRS; compare georeferenced rasters only")
        res_x, res_y = abs(ra.transform.a), abs(ra.transform.e)
        same_grid = ra.crs == rb.crs and ra.transform == rb.transform and ra.shape == rb.shape
        bands: dict[str, Any] = {}
        for name, ia, ib in _band_pairs(ra.descriptions, rb.descriptions):
            a_img = ra.read(ia, masked=True).astype(np.float64).filled(np.nan)
            b_src = rb.read(ib, masked=True).astype(np.float64).filled(np.nan)
            if b_linear:
                with np.errstate(divide="ignore", invalid="ignore"):
                    b_src = np.where(b_src > 0, 10.0 * np.log10(b_src), np.nan)
            if same_grid:
                b_img = b_src
            else:
                grid_a = Grid(crs=ra.crs.to_string(), transform=ra.transform, height=ra.height, width=ra.width)
                b_img = warp_to_grid(b_src, rb.transform, rb.crs, grid_a, Resampling.bilinear, dtype="float64")
            stats = compare_arrays(a_img, b_img, upsample)
            stats["dx_m"] = stats["dx_px"] * res_x
            stats["dy_m"] = -stats["dy_px"] * res_y  # northward
            bands[name] = stats
    if not bands:
        raise PipelineError(f"{a} and {b}: no bands to compare; give rasters with at least one band")
    return {
        "a": str(a),
        "b": str(b),
        "difference": "B - A (dB)",
        "upsample": upsample,
        "resampled_b": not same_grid,
        "bands": bands,
    }


def read_on_grid(path: Path, grid: Grid, band: int = 1) -> np.ndarray:
    """Band ``band`` of a raster on ``grid`` as float64, NaN for no-data.

    A raster on the same pixel lattice stored bottom-up (positive y step, as rioxarray writes sarsen's GTC) is
    flipped, not resampled; any other raster is warped onto ``grid`` (bilinear).
    """
    with _read(path) as src:
        img = src.read(band, masked=True).astype(np.float64).filled(np.nan)
        t, g = src.transform, grid.transform
        same_lattice = (
            src.crs is not None
            and src.crs == CRS.from_user_input(grid.crs)
            and src.shape == grid.shape
            and (t.a, t.b, t.c, t.d) == (g.a, g.b, g.c, g.d)
        )
        if same_lattice and t.e == g.e and t.f == g.f:
            return img
        if same_lattice and t.e == -g.e and np.isclose(t.f + t.e * src.height, g.f):
            return img[::-1].copy()
        if src.crs is None:
            raise ProductError(f"{path}: no CRS; compare georeferenced rasters only")
        return warp_to_grid(img, src.transform, src.crs, grid, Resampling.bilinear, dtype="float64")


def _bilinear_upsample(coarse: np.ndarray, rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Separable linear interpolation of ``coarse`` (given at integer ``rows`` × ``cols``) onto every pixel."""
    along = np.stack([np.interp(np.arange(shape[1]), cols, r) for r in coarse])  # (n_rows, width)
    r = np.arange(shape[0])
    k = np.clip(np.searchsorted(rows, r, side="right") - 1, 0, rows.size - 2)
    w = ((r - rows[k]) / (rows[k + 1] - rows[k]))[:, None]
    return along[k] * (1.0 - w) + along[k + 1] * w


def beta_to_sigma_ratio(safe: Path, polarisation: str, grid: Grid, stride: int = 16) -> np.ndarray:
    """A_β²/A_σ² of the product's calibration LUTs on every pixel of ``grid`` (σ0 = β0 · ratio); NaN off-image."""
    import xarray as xr
    from pyproj import Transformer

    from pipeline_lib.safe import open_product
    from pipeline_lib.sar.product import find_pol_files, open_calibration
    from pipeline_lib.sar.terrain import compute_lookup, grid_ecef

    with open_product(Path(safe)) as reader:
        files = find_pol_files(reader, polarisation, need_measurement=False)
        cal = open_calibration(files)
    rows = np.unique(np.r_[np.arange(0, grid.height, stride), grid.height - 1])
    cols = np.unique(np.r_[np.arange(0, grid.width, stride), grid.width - 1])
    xx, yy = np.meshgrid(grid.x_coords()[cols], grid.y_coords()[rows])
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(xx, yy)
    line, pixel = compute_lookup(files, grid_ecef(lon, lat, np.zeros(lon.shape)))
    at = {"line": xr.DataArray(line.ravel(), dims="p"), "pixel": xr.DataArray(pixel.ravel(), dims="p")}
    beta = cal["betaNought"].interp(at).values
    sigma = cal["sigmaNought"].interp(at).values
    ratio = ((beta / sigma) ** 2).reshape(line.shape)
    return _bilinear_upsample(ratio, rows, cols, grid.shape)


def sarsen_sigma0_db(gtc: Path, safe: Path, grid: Grid, polarisation: str = "VV", stride: int = 16) -> np.ndarray:
    """sarsen's β0 GTC (linear) as σ0 dB on ``grid``; NaN where β0 ≤ 0 (outside the swath) or no data."""
    beta0 = read_on_grid(gtc, grid)
    sigma0 = beta0 * beta_to_sigma_ratio(safe, polarisation, grid, stride)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(sigma0 > 0, 10.0 * np.log10(sigma0), np.nan)


def compare_with_sarsen(
    a: Path, gtc: Path, safe: Path, *, polarisation: str = "VV", upsample: int = 20
) -> dict[str, Any]:
    """Compare our σ0 dB raster A (band ``polarisation``) with sarsen's β0 GTC of ``safe``, converted to σ0 dB."""
    with _read(a) as ra:
        if ra.crs is None:
            raise ProductError(f"{a}: no CRS; compare georeferenced rasters only")
        grid = Grid(crs=ra.crs.to_string(), transform=ra.transform, height=ra.height, width=ra.width)
        names = [(d or "").upper() for d in ra.descriptions]
    if polarisation.upper() not in names:
        raise ProductError(f"{a}: no band {polarisation.upper()} (bands {names}); pass --polarisation")
    a_img = read_on_grid(a, grid, names.index(polarisation.upper()) + 1)
    b_img = sarsen_sigma0_db(gtc, safe, grid, polarisation)
    stats = compare_arrays(a_img, b_img, upsample)
    stats["dx_m"] = stats["dx_px"] * abs(grid.transform.a)
    stats["dy_m"] = -stats["dy_px"] * abs(grid.transform.e)
    return {
        "a": str(a),
        "b": str(gtc),
        "difference": "B - A (dB); B = sarsen beta0 * A_beta^2/A_sigma^2",
        "upsample": upsample,
        "resampled_b": False,
        "bands": {polarisation.upper(): stats},
    }


def summary(result: dict[str, Any]) -> str:
    """Human-readable lines for a comparison result."""
    lines = [f"A = {result['a']}", f"B = {result['b']}" + ("  (warped onto A's grid)" if result["resampled_b"] else "")]
    for name, s in result["bands"].items():
        lines.append(
            f"{name}: {s['n_valid']} px valid in both; B - A median {s['median_db']:+.3f} dB, "
            f"|B - A| median {s['median_abs_db']:.3f} dB, p95 {s['p95_abs_db']:.3f} dB; "
            f"B offset vs A: dx {s['dx_px']:+.2f} px ({s['dx_m']:+.1f} m east), "
            f"dy {s['dy_px']:+.2f} px ({s['dy_m']:+.1f} m north)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.sar_compare", description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="reference raster (σ0 dB), e.g. the native backend's s1/{date}.tif")
    parser.add_argument("b", type=Path, help="raster to compare (σ0 dB, or linear with --b-linear)")
    parser.add_argument("--upsample", type=int, default=20, help="phase-correlation upsampling factor (default 20)")
    parser.add_argument("--b-linear", action="store_true", help="B holds linear power: convert it to dB first")
    parser.add_argument(
        "--sarsen-safe", type=Path, default=None, help="B is sarsen's β0 GTC of this SAFE: convert it to σ0 dB first"
    )
    parser.add_argument("--polarisation", default="VV", help="with --sarsen-safe: the polarisation of B (default VV)")
    args = parser.parse_args(argv)
    try:
        if args.sarsen_safe is not None:
            result = compare_with_sarsen(
                args.a, args.b, args.sarsen_safe, polarisation=args.polarisation, upsample=args.upsample
            )
        else:
            result = compare_rasters(args.a, args.b, upsample=args.upsample, b_linear=args.b_linear)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, allow_nan=True, sort_keys=True))
    print(summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
