"""Sentinel-2 MSI Level-2A: surface reflectance and SCL validity mask on the analysis grid.

Governing documents: ESA "Sentinel-2 Products Specification Document" (S2-PDGS-TAS-DI-PSD,
L2A user product metadata ``MTD_MSIL2A.xml``) and the Sen2Cor L2A Product Definition / ATBD
(S2-PDGS-MPC-L2A-PDD, SCL classes). Since processing baseline 04.00 (January 2022) L2A DNs carry
a radiometric offset (``BOA_ADD_OFFSET``, −1000):

    reflectance = (DN + BOA_ADD_OFFSET[band_id]) / BOA_QUANTIFICATION_VALUE,   DN 0 = NODATA

The offsets and the quantification value are read from each product's own metadata (never
inferred from the date): a product without ``BOA_ADD_OFFSET_VALUES_LIST`` is accepted only
for a baseline < 04.00 (offset 0). DNs equal to the product's NODATA (0) or SATURATED (65535)
special values are invalid.

Scene classification (SCL) classes masked (DESIGN §5): 0 NO_DATA, 1 SATURATED_OR_DEFECTIVE,
3 CLOUD_SHADOWS, 8 CLOUD_MEDIUM_PROBABILITY, 9 CLOUD_HIGH_PROBABILITY, 10 THIN_CIRRUS.

Resampling (DESIGN §5 "20 m bands to 10 m"): each band is read only in the window of its JP2
covering the grid plus a margin, converted to float32 reflectance with NaN at invalid DNs and
warped onto the grid with ``rasterio.warp.reproject`` using the requested kernel (``bilinear``
by default, or ``cubic``; GDAL ignores NaN source pixels in the kernel). The SCL mask is warped
from the 0/1 "masked" indicator with ``Resampling.max``: an output pixel is invalid when ANY SCL
pixel its footprint overlaps is masked. On grids aligned with the tile (a 10 m cell inside one
20 m SCL cell) this is exactly nearest-neighbour; on unaligned or reprojected grids it is the
conservative union. Output pixels outside the tile are invalid too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from xml.etree.ElementTree import Element

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.warp import transform_bounds

from pipeline_lib.cog import write_cog
from pipeline_lib.errors import ConfigError, CoverageError, ProductError
from pipeline_lib.grid import MARGIN_SRC_PX, Grid, padded_window, warp_to_grid
from pipeline_lib.guard import corrupt_metadata
from pipeline_lib.s2mtd import footprint_lonlat, sensing_start
from pipeline_lib.safe import ProductReader, open_product

__all__ = [
    "OUTPUT_BANDS",
    "SCL_MASKED_CLASSES",
    "RESAMPLING_METHODS",
    "L2AMetadata",
    "read_l2a_metadata",
    "dn_to_reflectance",
    "scl_valid_mask",
    "select_band_file",
    "run_l2a",
]

OUTPUT_BANDS: tuple[str, ...] = ("B04", "B03", "B02", "B11", "B12")
SCL_MASKED_CLASSES: tuple[int, ...] = (0, 1, 3, 8, 9, 10)
# Preferred native resolution per band (m); L2A also ships every band resampled to 60 m (and 20 m for 10 m bands).
PREFERRED_RESOLUTION_M: dict[str, int] = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B11": 20, "B12": 20, "SCL": 20}
RESAMPLING_METHODS: dict[str, Resampling] = {"bilinear": Resampling.bilinear, "cubic": Resampling.cubic}
# PSD band index order (Spectral_Information/@bandId), used when the metadata lacks that table.
_DEFAULT_BAND_IDS = {
    b: i
    for i, b in enumerate(["B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12"])
}
_IMAGE_FILE_RE = re.compile(r"_(B\d{2}|B8A|SCL|TCI|AOT|WVP)_(\d{2})m$")
_BASELINE_RE = re.compile(r"^\s*(\d{1,2})\.(\d{2})\s*$")
_TILE_RE = re.compile(r"_T(\d{2}[A-Z]{3})_")


@dataclass(frozen=True)
class L2AMetadata:
    """What the chain needs from ``MTD_MSIL2A.xml``."""

    product_id: str
    tile_id: str  # MGRS tile, e.g. "33TTG"
    sensing_time: datetime  # PRODUCT_START_TIME, UTC
    processing_baseline: str  # e.g. "04.00"
    quantification: float  # BOA_QUANTIFICATION_VALUE
    offsets: dict[str, float]  # band name ("B04") -> BOA_ADD_OFFSET
    band_files: dict[str, dict[int, str]]  # band name -> {resolution_m: member path incl. ".jp2"}
    nodata_dn: int = 0
    saturated_dn: int = 65535
    cloud_cover: float | None = None
    footprint_lonlat: list[tuple[float, float]] = field(default_factory=list)


def _find_text(root: Element, tag: str) -> str | None:
    el = root.find(f".//{tag}")
    return el.text.strip() if el is not None and el.text and el.text.strip() else None


def _band_name(physical: str) -> str:
    """'B1' -> 'B01', 'B8A' -> 'B8A'."""
    m = re.fullmatch(r"B(\d{1,2})", physical.strip())
    return f"B{int(m.group(1)):02d}" if m else physical.strip()


def parse_baseline(text: str | None, product: str) -> tuple[int, int]:
    """``"04.00"`` -> (4, 0); ProductError for a missing or unparseable PROCESSING_BASELINE."""
    m = _BASELINE_RE.match(text or "")
    if not m:
        raise ProductError(
            f"{product}: PROCESSING_BASELINE {text!r} is missing or unparseable; give a Sentinel-2 L2A product (baseline NN.NN) or re-download it"
        )
    return int(m.group(1)), int(m.group(2))


def read_l2a_metadata(mtd: Element | bytes, product: str = "MTD_MSIL2A.xml") -> L2AMetadata:
    """Parse a ``MTD_MSIL2A.xml`` (element or bytes): offsets, quantification, baseline, tile, time, band files."""
    with corrupt_metadata(product):
        return _read_l2a_metadata(mtd, product)


def _read_l2a_metadata(mtd: Element | bytes, product: str) -> L2AMetadata:
    from pipeline_lib.xmlsafe import parse_xml

    root = parse_xml(mtd, name=product) if isinstance(mtd, bytes) else mtd
    baseline_text = _find_text(root, "PROCESSING_BASELINE")
    baseline = parse_baseline(baseline_text, product)
    quantification = _quantification(root, product)
    offsets = _offsets(root, product, baseline, baseline_text)
    band_files: dict[str, dict[int, str]] = {}
    for el in root.iter("IMAGE_FILE"):
        text = (el.text or "").strip()
        m = _IMAGE_FILE_RE.search(text)
        if m:
            band_files.setdefault(m.group(1), {})[int(m.group(2))] = text + ".jp2"
    specials = {
        (_find_text(sv, "SPECIAL_VALUE_TEXT") or ""): _find_text(sv, "SPECIAL_VALUE_INDEX")
        for sv in root.iter("Special_Values")
    }
    uri = _find_text(root, "PRODUCT_URI") or product
    product_id = uri[:-5] if uri.endswith(".SAFE") else uri
    tile = _TILE_RE.search(uri + "_")
    sensing = sensing_start(root, product)
    cloud = _find_text(root, "Cloud_Coverage_Assessment")
    footprint = footprint_lonlat(root)
    return L2AMetadata(
        product_id=product_id,
        tile_id=tile.group(1) if tile else "",
        sensing_time=sensing.astimezone(UTC),
        processing_baseline=baseline_text or "",
        quantification=quantification,
        offsets=offsets,
        band_files=band_files,
        nodata_dn=int(specials.get("NODATA") or 0),
        saturated_dn=int(specials.get("SATURATED") or 65535),
        cloud_cover=float(cloud) if cloud is not None else None,
        footprint_lonlat=footprint,
    )


def _quantification(root: Element, product: str) -> float:
    """BOA_QUANTIFICATION_VALUE; ProductError when it is missing, not a number, or not positive and finite."""
    quant_text = _find_text(root, "BOA_QUANTIFICATION_VALUE")
    if quant_text is None:
        raise ProductError(
            f"{product}: BOA_QUANTIFICATION_VALUE is missing; the product metadata is incomplete, re-download it"
        )
    try:
        quantification = float(quant_text)
    except ValueError as exc:
        raise ProductError(
            f"{product}: BOA_QUANTIFICATION_VALUE {quant_text!r} is not a number; re-download the product"
        ) from exc
    if not 0 < quantification < float("inf"):
        raise ProductError(
            f"{product}: BOA_QUANTIFICATION_VALUE {quantification} must be positive and finite; re-download the product"
        )
    return quantification


def _offsets(root: Element, product: str, baseline: tuple[int, int], baseline_text: str | None) -> dict[str, float]:
    """BOA_ADD_OFFSET per band name; 0 for a product before baseline 04.00 that lists none."""
    band_ids = {
        _band_name(el.get("physicalBand", "")): int(el.get("bandId", "-1"))
        for el in root.iter("Spectral_Information")
        if el.get("bandId") is not None
    }
    band_ids = band_ids or dict(_DEFAULT_BAND_IDS)
    offset_els = list(root.iter("BOA_ADD_OFFSET"))
    if not offset_els:
        if baseline >= (4, 0):
            raise ProductError(
                f"{product}: processing baseline {baseline_text} requires BOA_ADD_OFFSET_VALUES_LIST but it is missing; re-download the product"
            )
        return {name: 0.0 for name in band_ids}
    by_id = {int(el.get("band_id", "-1")): float((el.text or "nan").strip()) for el in offset_els}
    offsets = {name: by_id[i] for name, i in band_ids.items() if i in by_id}
    # a non-finite offset turns every reflectance into NaN/inf, later misread as "all cloudy" (DESIGN §9; found by tests/test_84_fuzz_safe.py)
    bad = sorted(name for name, v in offsets.items() if not abs(v) < float("inf"))
    if bad:
        raise ProductError(
            f"{product}: BOA_ADD_OFFSET of {', '.join(bad)} is not a finite number; re-download the product"
        )
    return offsets


def select_band_file(
    meta: L2AMetadata, band: str, available: Sequence[str] | set[str], product: str
) -> tuple[str, int]:
    """(member, resolution_m) of ``band``: the preferred resolution if present, else the finest present one."""
    files = meta.band_files.get(band, {})
    preferred = PREFERRED_RESOLUTION_M.get(band, 20)
    order = [preferred] + sorted(r for r in files if r != preferred)
    avail = set(available)
    for res in order:
        member = files.get(res)
        if member is not None and member in avail:
            return member, res
    looked = ", ".join(files[r] for r in order if r in files) or "no IMAGE_FILE entry in MTD_MSIL2A.xml"
    raise ProductError(
        f"S2 product {product} has no {band} (looked for {looked}); the product is incomplete, re-download it"
    )


def dn_to_reflectance(
    dn: np.ndarray, offset: float, quantification: float, nodata_dn: int = 0, saturated_dn: int = 65535
) -> np.ndarray:
    """Surface reflectance (float32) = (DN + offset) / quantification; NaN where DN is NODATA or SATURATED."""
    dn = np.asarray(dn)
    refl = (dn.astype(np.float32) + np.float32(offset)) / np.float32(quantification)
    return np.where((dn == nodata_dn) | (dn == saturated_dn), np.float32(np.nan), refl).astype(np.float32)


def scl_valid_mask(scl: np.ndarray, masked_classes: Sequence[int] = SCL_MASKED_CLASSES) -> np.ndarray:
    """True where the SCL class is usable (not nodata, saturated, cloud shadow, cloud medium/high, cirrus)."""
    return ~np.isin(np.asarray(scl), np.asarray(masked_classes))


def _read_window(ds: rasterio.io.DatasetReader, grid: Grid) -> tuple[np.ndarray, object] | None:
    """The band-1 window covering the grid plus MARGIN_SRC_PX source pixels, and its transform; None if disjoint."""
    window = padded_window(ds, transform_bounds(grid.crs, ds.crs, *grid.bounds, densify_pts=21), MARGIN_SRC_PX)
    if window is None:
        return None
    try:
        data = ds.read(1, window=window)
    except rasterio.errors.RasterioError as exc:
        raise ProductError(
            f"{ds.name}: cannot read the band ({str(exc).splitlines()[0]}); the product is corrupt, re-download it"
        ) from exc
    return data, ds.window_transform(window)


def _open_band(reader: ProductReader, member: str) -> rasterio.io.DatasetReader:
    try:
        return rasterio.open(reader.gdal_path(member))
    except rasterio.errors.RasterioIOError as exc:
        raise ProductError(
            f"{reader.path}: cannot read {member} ({exc}); the product is corrupt, re-download it"
        ) from exc


def _tile_disjoint(ds: rasterio.io.DatasetReader, grid: Grid) -> bool:
    left, bottom, right, top = transform_bounds(grid.crs, ds.crs, *grid.bounds, densify_pts=21)
    tl, tb, tr, tt = ds.bounds
    return bool(right <= tl or left >= tr or top <= tb or bottom >= tt)


def run_l2a(product_path: Path, grid: Grid, out_tif: Path, resampling: str = "bilinear") -> None:
    """L2A product (folder or zip) -> COG on ``grid``: B04, B03, B02, B11, B12 reflectance + ``valid``.

    Raises ProductError for missing bands/metadata or a scene without a valid pixel over the grid,
    CoverageError when the grid lies outside the tile, ConfigError for an unknown resampling.
    """
    if resampling not in RESAMPLING_METHODS:
        raise ConfigError(
            f"optical.resampling: {resampling!r} is not supported; use one of {sorted(RESAMPLING_METHODS)}"
        )
    with open_product(product_path) as reader:
        meta = _read_metadata(reader, product_path)
        label = meta.product_id or str(product_path)
        valid, scl_tags = _scl_valid(reader, meta, grid, label)
        bands, band_tags = _reflectance_bands(reader, meta, grid, resampling, label)
    for refl in bands:
        valid &= np.isfinite(refl)
    if not valid.any():
        raise ProductError(
            f"S2 product {label}: all pixels cloudy/nodata over the AOI; choose another date or raise max cloud cover"
        )
    data = np.stack([np.where(valid, b, np.float32(np.nan)) for b in bands] + [valid.astype(np.float32)])
    tags: Mapping[str, str] = {
        "product": meta.product_id,
        "tile_id": meta.tile_id,
        "sensing_time": meta.sensing_time.isoformat(),
        "processing_baseline": meta.processing_baseline,
        "resampling": resampling,
        "valid_fraction": f"{float(valid.mean()):.6f}",
    }
    write_cog(
        data,
        out_tif,
        crs=grid.crs,
        transform=grid.transform,
        descriptions=[*OUTPUT_BANDS, "valid"],
        tags=tags,
        band_tags=[*band_tags, scl_tags],
    )


def _read_metadata(reader: ProductReader, product_path: Path) -> L2AMetadata:
    """The product's MTD_MSIL2A.xml; ProductError when it is not an L2A product."""
    mtd_member = "MTD_MSIL2A.xml"
    if not reader.exists(mtd_member):
        raise ProductError(
            f"S2 product {product_path} has no MTD_MSIL2A.xml; it is not an L2A product or is incomplete; give a Sentinel-2 L2A .SAFE/zip or re-download it"
        )
    return read_l2a_metadata(reader.parse_xml(mtd_member), product=f"{product_path}:{mtd_member}")


def _scl_valid(reader: ProductReader, meta: L2AMetadata, grid: Grid, label: str) -> tuple[np.ndarray, dict[str, str]]:
    """Grid pixels not masked by the SCL (any overlapping masked SCL pixel invalidates), and the band's tags."""
    scl_member, scl_res = select_band_file(meta, "SCL", set(reader.members()), label)
    with _open_band(reader, scl_member) as ds:
        if _tile_disjoint(ds, grid):
            raise CoverageError(
                f"S2 product {label} (tile {meta.tile_id}, bounds {tuple(round(v) for v in ds.bounds)} in {ds.crs}) "
                f"does not cover the grid {grid.bounds} in {grid.crs}; choose a product on the tile over the AOI"
            )
        got = _read_window(ds, grid)
        if got is None:  # unreachable after the disjointness check; kept explicit
            raise CoverageError(f"S2 product {label}: no SCL pixel over the grid {grid.bounds}; choose another product")
        scl, scl_transform = got
        masked = (~scl_valid_mask(scl)).astype(np.float32)
        invalid = warp_to_grid(masked, scl_transform, ds.crs, grid, Resampling.max)
    tags = {
        "band": "valid",
        "source_file": scl_member,
        "source_resolution_m": str(scl_res),
        "resampling": "max of the SCL masked indicator (any overlapping masked SCL pixel invalidates)",
        "scl_masked_classes": ",".join(str(c) for c in SCL_MASKED_CLASSES),
        "long_name": "1 valid, 0 masked by SCL/nodata",
    }
    return invalid == 0.0, tags  # NaN (outside the tile) and 1.0 (masked) are invalid


def _reflectance_bands(
    reader: ProductReader, meta: L2AMetadata, grid: Grid, resampling: str, label: str
) -> tuple[list[np.ndarray], list[dict[str, str]]]:
    """Each of OUTPUT_BANDS as reflectance on ``grid`` (NaN outside the tile or nodata), with its band tags."""
    kernel = RESAMPLING_METHODS[resampling]
    available = set(reader.members())
    bands: list[np.ndarray] = []
    band_tags: list[dict[str, str]] = []
    for band in OUTPUT_BANDS:
        member, res = select_band_file(meta, band, available, label)
        if band not in meta.offsets:
            raise ProductError(
                f"S2 product {label}: no BOA_ADD_OFFSET for {band} in MTD_MSIL2A.xml; re-download the product"
            )
        with _open_band(reader, member) as ds:
            got = _read_window(ds, grid)
            if got is None:
                refl = np.full(grid.shape, np.nan, dtype=np.float32)
            else:
                dn, transform = got
                src = dn_to_reflectance(dn, meta.offsets[band], meta.quantification, meta.nodata_dn, meta.saturated_dn)
                refl = warp_to_grid(src, transform, ds.crs, grid, kernel)
        bands.append(refl)
        band_tags.append(
            {
                "band": band,
                "source_file": member,
                "source_resolution_m": str(res),
                "preferred_resolution_m": str(PREFERRED_RESOLUTION_M[band]),
                "boa_add_offset": f"{meta.offsets[band]:g}",
                "boa_quantification_value": f"{meta.quantification:g}",
                "resampling": resampling,
                "units": "1",
                "long_name": f"surface reflectance {band}",
            }
        )
    return bands, band_tags
