"""Analysis-ready rasters onto the region grid: the ``files`` source's S1/S2 COGs (DESIGN §4).

One function, :func:`ingest_raster`, turns one user file (any GDAL raster: GeoTIFF, COG, or a COG
read through ``/vsicurl/``) into the grid COGs every later stage reads (docs/CONTRACTS.md):

- ``s1/{date}.tif``: bands ``VV``, ``VH`` in dB, float32, NaN nodata. The configured quantity (σ0 or
  γ0 RTC) and the unit of the file (dB or linear power, converted with 10·log10) are recorded in the
  COG tags (``s1_quantity``, ``source_unit``) and so in its STAC item; a file whose values contradict
  the declared unit is refused (linear power is never negative; dB backscatter is mostly negative).
- ``s2/{date}.tif``: bands ``B04``, ``B03``, ``B02``, ``B11``, ``B12`` reflectance (value·scale + offset,
  e.g. DN/10000) and ``valid``; the product level (``L2A`` surface or ``L1C`` top-of-atmosphere
  reflectance) is the tag ``processing_level`` so the stacks never mix them. A cloud mask is a class
  band of the same file (an SCL band) or a class raster beside it, with the classes to keep; it is
  warped with ``Resampling.max`` of the "masked" indicator, as :mod:`pipeline_lib.optical.l2a` does.

Bands are found by description (exact, or its first word: ``"B04 L2A BOA reflectance x10000"`` is
``B04``) or by 1-based index. Nodata is the configured value, else the file's, plus NaN. Files on the
grid itself (same CRS, pixel size and alignment) are copied pixel for pixel; others are warped with
``rasterio.warp.reproject`` (NaN-aware, :func:`pipeline_lib.grid.warp_to_grid`) with the configured
kernel. Only the window covering the grid plus a 3-pixel margin is read.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
from affine import Affine
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds
from rasterio.windows import Window

from pipeline_lib.cog import write_cog
from pipeline_lib.errors import ConfigError, CoverageError, ProductError
from pipeline_lib.fetch.files import ModalitySpec
from pipeline_lib.grid import MARGIN_SRC_PX, Grid, padded_window, warp_to_grid

__all__ = [
    "RESAMPLING",
    "find_band",
    "check_s1_unit",
    "ingest_raster",
    "ingest_bands",
    "on_grid",
    "grid_window",
    "grid_of_file",
]

RESAMPLING: dict[str, Resampling] = {
    "nearest": Resampling.nearest,
    "bilinear": Resampling.bilinear,
    "cubic": Resampling.cubic,
    "average": Resampling.average,
}
S1_LONG_NAME = {"sigma0": "sigma nought", "gamma0_rtc": "gamma nought (radiometrically terrain corrected)"}
S2_LONG_NAME = {"L2A": "surface reflectance", "L1C": "top-of-atmosphere reflectance"}


def find_band(descriptions: tuple[str | None, ...], selector: str | int, path: Path | str, key: str) -> int:
    """1-based index of the band ``selector`` names (description, its first word, or an index)."""
    count = len(descriptions)
    if isinstance(selector, int) or (isinstance(selector, str) and selector.isdigit()):
        idx = int(selector)
        if not 1 <= idx <= count:
            raise ProductError(f"{path}: has {count} bands, no band {idx}; fix {key}")
        return idx
    want = str(selector).strip().lower()
    for exact in (True, False):
        for i, desc in enumerate(descriptions, start=1):
            d = (desc or "").strip().lower()
            if (d == want) if exact else (d.split() or [""])[0] == want:
                return i
    have = ", ".join(repr(d or "") for d in descriptions)
    raise ProductError(
        f"{path}: no band {selector!r} (band descriptions: {have}); fix {key} (a description or a 1-based index)"
    )


def on_grid(ds: rasterio.io.DatasetReader, grid: Grid) -> Window | None:
    """The window of ``ds`` that is exactly the grid (same CRS, pixel size and alignment), or None."""
    if ds.crs is None or rasterio.crs.CRS.from_user_input(grid.crs) != ds.crs:
        return None
    t, g = ds.transform, grid.transform
    if not (math.isclose(t.a, g.a, rel_tol=1e-9) and math.isclose(t.e, g.e, rel_tol=1e-9)) or t.b or t.d:
        return None
    col, row = (g.c - t.c) / t.a, (g.f - t.f) / t.e
    if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
        return None
    col, row = round(col), round(row)
    if col < 0 or row < 0 or col + grid.width > ds.width or row + grid.height > ds.height:
        return None
    return Window(col, row, grid.width, grid.height)


def _source_window(ds: rasterio.io.DatasetReader, grid: Grid, path: Path | str) -> Window:
    """The window covering the grid plus a margin; CoverageError naming the file when they do not overlap."""
    left, bottom, right, top = transform_bounds(grid.crs, ds.crs, *grid.bounds, densify_pts=21)
    tl, tb, tr, tt = ds.bounds
    if right <= tl or left >= tr or top <= tb or bottom >= tt:
        raise CoverageError(
            f"{path}: does not overlap the grid (file bounds {tuple(round(v, 1) for v in ds.bounds)} in {ds.crs}, "
            f"grid {tuple(round(v, 1) for v in grid.bounds)} in {grid.crs}); fix the aoi or give files over it"
        )
    window = padded_window(ds, (left, bottom, right, top), MARGIN_SRC_PX)
    assert window is not None  # the file and the grid overlap (checked above)
    return window


def grid_window(ds: rasterio.io.DatasetReader, grid: Grid, path: Path | str) -> Window:
    """What ingestion reads of ``ds``: the grid itself when the file is on it, else the grid plus a margin."""
    exact = on_grid(ds, grid)
    return exact if exact is not None else _source_window(ds, grid, path)


def check_s1_unit(values: np.ndarray, unit: str, path: Path | str, key: str) -> None:
    """Refuse a file whose finite values contradict the declared unit (a one-line error naming the file)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return
    negative = float((v < 0).mean())
    if unit == "db" and negative < 0.05 and float(np.quantile(v, 0.95)) <= 1.5:
        raise ProductError(
            f"{path}: declared dB but the values look like linear power ({100 * (1 - negative):.0f} % in 0..1.5); "
            f"set {key}.unit: linear (or convert the file)"
        )
    if unit == "linear" and negative > 0.05:
        raise ProductError(
            f"{path}: declared linear power but {100 * negative:.0f} % of the values are negative (dB?); "
            f"set {key}.unit: db (or convert the file)"
        )


def _read_masked(ds: rasterio.io.DatasetReader, index: int, window: Window, nodata: float | None) -> np.ndarray:
    data = ds.read(index, window=window, boundless=False).astype(np.float64)
    nd = nodata if nodata is not None else ds.nodatavals[index - 1]
    bad = ~np.isfinite(data)
    if nd is not None and not (isinstance(nd, float) and math.isnan(nd)):
        bad |= data == nd
    data[bad] = np.nan
    return np.asarray(data)


@dataclass(frozen=True)
class _Band:
    """One band read over the grid's window: values (NaN = nodata), their transform and CRS, on the grid or not."""

    data: np.ndarray
    transform: Affine
    crs: Any
    exact: bool


def _read_sources(
    sources: Sequence[tuple[str, str | Path, str | int]], spec: ModalitySpec, grid: Grid, *, raw_values: bool = False
) -> tuple[list[_Band], list[int]]:
    """Read (name, file, band selector) sources over the grid window; one open per distinct file."""
    out: list[_Band | None] = [None] * len(sources)
    indexes = [0] * len(sources)
    by_file: dict[str, list[int]] = {}
    for i, (_, path, _) in enumerate(sources):
        by_file.setdefault(str(path), []).append(i)
    for path, members in by_file.items():
        try:
            ds = rasterio.open(path)
        except rasterio.errors.RasterioIOError as exc:
            raise ProductError(f"{path}: cannot open as a raster ({str(exc).splitlines()[0]}); fix {spec.key}") from exc
        with ds:
            if ds.crs is None:
                raise ProductError(f"{path}: has no CRS; give georeferenced files (GeoTIFF/COG with a CRS)")
            exact = on_grid(ds, grid)
            window = grid_window(ds, grid, path)
            transform = ds.window_transform(window)
            for i in members:
                name, _, sel = sources[i]
                key = f"{spec.key}.mask.band" if name == "mask" else f"{spec.key}.bands.{name}"
                idx = find_band(ds.descriptions, sel, path, key)
                try:
                    data = ds.read(idx, window=window) if raw_values else _read_masked(ds, idx, window, spec.nodata)
                except rasterio.errors.RasterioError as exc:
                    raise ProductError(
                        f"{path}: cannot read ({str(exc).splitlines()[0]}); the file is corrupt"
                    ) from exc
                out[i] = _Band(data, transform, ds.crs, exact is not None)
                indexes[i] = idx
    return [b for b in out if b is not None], indexes


def ingest_raster(
    src: Path | str,
    spec: ModalitySpec,
    grid: Grid,
    out_tif: Path,
    *,
    date: str,
    acquired: str,
) -> None:
    """One user raster -> the grid COG of ``spec.modality`` for ``date`` (atomic; nothing written on error).

    ``acquired`` is the file's acquisition time (ISO, UTC), the COG's ``datetime``. Raises ProductError
    (unreadable file, missing band, unit contradiction, all nodata), CoverageError (no overlap with the
    grid) or ConfigError (unknown resampling).
    """
    sources = [(name, src, sel) for name, sel in spec.bands]
    mask: tuple[str | Path, str | int] | None = None
    if spec.mask_band is not None:
        mask = (src, spec.mask_band)
    elif spec.mask_file is not None:
        mpath = spec.mask_path(src)
        assert mpath is not None
        if not mpath.is_file():
            raise ProductError(f"{src}: its mask file {mpath} does not exist; add it or fix {spec.key}.mask.file")
        mask = (mpath, 1)
    ingest_bands(sources, spec, grid, out_tif, date=date, acquired=acquired, mask=mask, label=str(src))


def ingest_bands(
    sources: Sequence[tuple[str, str | Path, str | int]],
    spec: ModalitySpec,
    grid: Grid,
    out_tif: Path,
    *,
    date: str,
    acquired: str,
    mask: tuple[str | Path, str | int] | None = None,
    label: str,
    source: str = "files",
) -> None:
    """Output bands from (name, file, band selector) sources — one file, or one file per band as STAC
    assets are (any GDAL name, e.g. ``/vsicurl/https://...``) — onto the grid as the modality's COG.

    ``mask`` is the (file, band) of a class raster whose ``spec.mask_keep`` classes are clear;
    ``label`` names the input in messages and the ``source_file`` tag, ``source`` the tag ``source``.
    """
    names = [name for name, _, _ in sources]
    if sorted(names) != sorted(spec.output_bands):
        raise ValueError(f"ingest_bands: sources {names} differ from {spec.output_bands}")
    kernel = _kernel(spec)
    read, indexes = _read_sources(sources, spec, grid)
    scaled = _output_values(read, spec, label)
    bands = [
        b if r.exact else warp_to_grid(b, r.transform, r.crs, grid, kernel) for b, r in zip(scaled, read, strict=True)
    ]
    valid = _valid_pixels(bands, spec, grid, mask, label)
    tags: dict[str, str] = {
        "source": source,
        "source_file": label,
        "source_bands": ",".join(f"{n}={i}" for n, i in zip(names, indexes, strict=True)),
        "scale": f"{spec.scale:g}",
        "offset": f"{spec.offset:g}",
        "nodata": "file" if spec.nodata is None else f"{spec.nodata:g}",
        "resampling": "none (file on the grid)" if all(r.exact for r in read) else spec.resampling,
        "datetime": acquired,
        "acquisition_time": acquired,
        "date": date,
        "valid_fraction": f"{float(valid.mean()):.6f}",
    }
    layers = (_s1_layers if spec.modality == "s1" else _s2_layers)(spec, names, bands, valid)
    tags.update(layers.tags)
    write_cog(
        layers.data.astype(np.float32),
        out_tif,
        crs=grid.crs,
        transform=grid.transform,
        descriptions=layers.descriptions,
        tags=tags,
        band_tags=layers.band_tags,
    )


def _kernel(spec: ModalitySpec) -> Resampling:
    """The configured resampling kernel; ConfigError naming the choices for an unknown one."""
    if spec.resampling not in RESAMPLING:
        raise ConfigError(f"{spec.key}.resampling: {spec.resampling!r}; use one of {sorted(RESAMPLING)}")
    return RESAMPLING[spec.resampling]


def _output_values(read: Sequence[_Band], spec: ModalitySpec, path: str) -> list[np.ndarray]:
    """The bands as value·scale + offset (float32), checked against the modality: S1 in dB, S2 reflectance."""
    scaled = [(b.data * spec.scale + spec.offset).astype(np.float32) for b in read]
    if not any(np.isfinite(b).any() for b in scaled):
        raise ProductError(f"{path}: every pixel over the grid is nodata; remove the file or fix {spec.key}.nodata")
    if spec.modality == "s1":
        return _s1_to_db(scaled, spec, path)
    _check_reflectance(scaled, spec, path)
    return scaled


def _s1_to_db(scaled: list[np.ndarray], spec: ModalitySpec, path: str) -> list[np.ndarray]:
    """Backscatter in dB: the declared unit checked against the values, linear power converted (≤ 0 -> NaN)."""
    for b in scaled:
        check_s1_unit(b, spec.unit, path, spec.key)
    if spec.unit != "linear":
        return scaled
    return [np.where(b > 0, 10.0 * np.log10(np.where(b > 0, b, 1.0)), np.nan).astype(np.float32) for b in scaled]


def _check_reflectance(scaled: list[np.ndarray], spec: ModalitySpec, path: str) -> None:
    """Refuse S2 values that still look like digital numbers (median above 1.5 after the scale)."""
    v = np.concatenate([b[np.isfinite(b)] for b in scaled])
    if v.size and float(np.median(v)) > 1.5:
        raise ProductError(
            f"{path}: median reflectance {float(np.median(v)):.0f} after scale {spec.scale:g}; these look like "
            f"digital numbers: set {spec.key}.scale (e.g. 0.0001 for DN/10000)"
        )


def _valid_pixels(
    bands: list[np.ndarray], spec: ModalitySpec, grid: Grid, mask: tuple[str | Path, str | int] | None, path: str
) -> np.ndarray:
    """Grid pixels finite in every band and, with a mask, clear in it; ProductError when there is none."""
    valid = np.logical_and.reduce([np.isfinite(b) for b in bands])
    if mask is not None:
        (m,), _ = _read_sources([("mask", mask[0], mask[1])], spec, grid, raw_values=True)
        ind = (~np.isin(m.data, np.asarray(spec.mask_keep))).astype(np.float32)
        invalid = ind if m.exact else warp_to_grid(ind, m.transform, m.crs, grid, Resampling.max)
        valid &= invalid == 0.0
    if not valid.any():
        raise ProductError(
            f"{path}: no valid pixel over the grid (nodata{', masked' if mask is not None else ''}); "
            "remove this date or fix the nodata/mask settings"
        )
    return np.asarray(valid)


@dataclass(frozen=True)
class _Layers:
    """What a modality writes: the COG's bands, their descriptions and tags, and its own dataset tags."""

    data: np.ndarray
    descriptions: list[str]
    band_tags: list[dict[str, str]]
    tags: dict[str, str]


def _s1_layers(spec: ModalitySpec, names: list[str], bands: list[np.ndarray], valid: np.ndarray) -> _Layers:
    """The S1 COG: the bands in dB (NaN where invalid) and the quantity tags."""
    long = S1_LONG_NAME[spec.quantity]
    tags = {"s1_quantity": spec.quantity, "units": "dB", "source_unit": spec.unit}
    band_tags = [{"band": n, "units": "dB", "long_name": f"{long} {n}", "quantity": spec.quantity} for n in names]
    data = np.stack([np.where(valid, b, np.float32(np.nan)) for b in bands]).astype(np.float32)
    return _Layers(data, names, band_tags, tags)


def _s2_layers(spec: ModalitySpec, names: list[str], bands: list[np.ndarray], valid: np.ndarray) -> _Layers:
    """The S2 COG: the reflectance bands (NaN where invalid), then ``valid``, and the level tags."""
    long = S2_LONG_NAME[spec.level]
    tags = {"processing_level": spec.level, "units": "1"}
    if spec.has_mask:
        tags["mask_keep_classes"] = ",".join(str(c) for c in spec.mask_keep)
    band_tags = [{"band": n, "units": "1", "long_name": f"{long} {n}"} for n in names]
    band_tags.append({"band": "valid", "long_name": "1 valid, 0 masked (nodata or cloud mask)"})
    data = np.stack([np.where(valid, b, np.float32(np.nan)) for b in bands] + [valid.astype(np.float32)])
    return _Layers(data, [*names, "valid"], band_tags, tags)


def grid_of_file(path: Path | str) -> Grid:
    """The grid of a georeferenced raster as it is (its CRS, transform and shape; 9.995 m pixels stay 9.995 m)."""
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise ProductError(f"{path}: has no CRS; give an aoi or georeferenced files")
            if ds.transform.b or ds.transform.d or ds.transform.e >= 0:
                raise ProductError(f"{path}: not a north-up grid; give an aoi so the files are warped onto one")
            return Grid(crs=ds.crs.to_string(), transform=ds.transform, height=ds.height, width=ds.width)
    except rasterio.errors.RasterioIOError as exc:
        raise ProductError(f"{path}: cannot open as a raster ({str(exc).splitlines()[0]})") from exc
