"""Cloud-Optimised GeoTIFF writing and band-by-name reading shared by every stage.

COGs follow the GDAL COG driver (https://gdal.org/drivers/raster/cog.html): tiled 512,
ZSTD, overviews, CRS, nodata and per-band descriptions. Every COG is written atomically
(:func:`pipeline_lib.io.atomic_path`), read back before it is moved into place, and gets its STAC item
beside it (:mod:`pipeline_lib.stac`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import SubElement, tostring

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
from affine import Affine
from rasterio.windows import Window

from pipeline_lib.errors import ProductError
from pipeline_lib.io import atomic_path
from pipeline_lib.stac import stac_sidecar_path, write_stac_sidecar
from pipeline_lib.xmlsafe import parse_xml

__all__ = ["COG_OPTIONS", "cog_options", "STREAM_CACHE_MB", "CogStream", "write_cog", "cog_writer", "read_named_bands"]


def _describe(
    ds: Any, descriptions: Sequence[str], tags: Mapping[str, Any] | None, band_tags: Sequence[Mapping[str, Any]] | None
) -> None:
    """Band descriptions, dataset tags and per-band tags onto an open writable rasterio dataset."""
    for i, desc in enumerate(descriptions, start=1):
        ds.set_band_description(i, desc)
    if tags:
        ds.update_tags(**tags)
    for i, btags in enumerate(band_tags or [], start=1):
        ds.update_tags(i, **btags)


#: tile edge of every COG (px)
BLOCK = 512

#: GDAL COG driver options of every COG we write (https://gdal.org/drivers/raster/cog.html)
COG_OPTIONS: dict[str, Any] = {
    "driver": "COG",
    "COMPRESS": "ZSTD",
    "BLOCKSIZE": BLOCK,
    "OVERVIEW_RESAMPLING": "AVERAGE",
    "BIGTIFF": "IF_SAFER",
    "NUM_THREADS": "ALL_CPUS",
}


def cog_options(dtype: str | np.dtype[Any]) -> dict[str, Any]:
    """:data:`COG_OPTIONS` plus the TIFF predictor for ``dtype``: floating-point (3) for floats, horizontal
    differencing (2) for integers. On a whole scene of σ0 dB the float predictor made the ZSTD COG 16 %
    smaller at no extra time (BENCHMARKS.md, "Idle runs, 2026-12-05 (session 5)")."""
    return {**COG_OPTIONS, "PREDICTOR": 3 if np.issubdtype(np.dtype(dtype), np.floating) else 2}


def write_cog(
    data: np.ndarray,
    path: str | os.PathLike[str],
    *,
    crs: Any,
    transform: Any,
    descriptions: Sequence[str],
    nodata: float | int | None = float("nan"),
    tags: Mapping[str, str] | None = None,
    band_tags: Sequence[Mapping[str, str]] | None = None,
    stac: bool = True,
) -> None:
    """Write a (band, y, x) array as a Cloud-Optimised GeoTIFF, atomically.

    Float data use NaN as nodata unless told otherwise. Overviews are averaged. With ``stac`` a STAC item
    ``<stem>.stac.json`` is written beside it once the COG is in place (:mod:`pipeline_lib.stac`; datetime
    from a ``datetime`` tag if given); any older sidecar is removed before the COG is written.
    """
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3 or arr.shape[0] != len(descriptions):
        raise ValueError(f"write_cog: {arr.shape=} does not match {len(descriptions)} descriptions")
    count, height, width = arr.shape
    mem_profile = _raster_profile(arr.dtype.name, count, height, width, crs, transform, nodata)
    _drop_stac_sidecar(path)
    with atomic_path(path, suffix=".tif") as tmp:
        # The COG driver is create-copy only: stage in a MEM dataset, then copy.
        with rasterio.MemoryFile() as mem:
            with mem.open(driver="GTiff", **mem_profile) as src:
                src.write(arr)
                _describe(src, descriptions, tags, band_tags)
            with mem.open() as src:
                rasterio.shutil.copy(src, tmp, **cog_options(arr.dtype))
        _verify_raster(tmp, arr.shape)
    if stac:
        _write_stac_sidecar(path, tags)


def _raster_profile(
    dtype: str, count: int, height: int, width: int, crs: Any, transform: Any, nodata: float | int | None
) -> dict[str, Any]:
    """The rasterio creation keys every COG stage shares."""
    return {
        "dtype": dtype,
        "count": count,
        "height": height,
        "width": width,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }


def _drop_stac_sidecar(path: str | os.PathLike[str]) -> None:
    """Remove a raster's STAC sidecar before the raster changes, so no sidecar ever describes another file."""
    stac_sidecar_path(path).unlink(missing_ok=True)


def _write_stac_sidecar(path: str | os.PathLike[str], tags: Mapping[str, str] | None) -> None:
    """Write the STAC item of a raster now in place (it records the file's size and checksum)."""
    write_stac_sidecar(path, datetime=(tags or {}).get("datetime"))


#: GDAL block cache while staging, converting and re-reading a streamed COG (MB): bounds the memory, not the
#: image size. Outside it GDAL's default (5 % of RAM) applies, and the read-back of a full-scene COG fills
#: it; 64 MB converts as fast as larger caches (BENCHMARKS.md, "COG conversion and GDAL cache").
STREAM_CACHE_MB = 64


def overview_factors(height: int, width: int, block: int) -> list[int]:
    """Overview factors the GDAL COG driver makes by default for a ``height`` × ``width`` image."""
    factors: list[int] = []
    f, h, w = 1, height, width
    while h > block or w > block:
        f *= 2
        h, w = -(-height // f), -(-width // f)
        factors.append(f)
    return factors


def overview_shape(height: int, width: int, factor: int) -> tuple[int, int]:
    """(rows, cols) of the overview of a ``height`` × ``width`` image at ``factor`` (rounded up, as GDAL)."""
    return -(-height // factor), -(-width // factor)


def is_aligned(row0: int, col0: int, rows: int, cols: int, height: int, width: int, factor: int) -> bool:
    """Whether a window maps onto whole pixels of the ``factor`` overview: it starts on a multiple of
    ``factor`` and its size is one too unless it reaches the image's edge."""
    return (
        row0 % factor == 0
        and col0 % factor == 0
        and (rows % factor == 0 or row0 + rows == height)
        and (cols % factor == 0 or col0 + cols == width)
    )


class CogStream:
    """What :func:`cog_writer` yields: ``write`` (band, rows, cols) blocks at windows of the full image.

    Each block goes to the uncompressed stage; while every block is aligned to the coarsest overview
    (:func:`is_aligned`) it is also reduced to every overview level, written to one
    stage per level. One writer at a time (the stage files are not shared between threads).
    """

    def __init__(self, base: Any, levels: Sequence[Any], factors: Sequence[int]) -> None:
        self.base = base
        self.levels = list(levels)
        self.factors = list(factors)
        #: every block so far was aligned, so the level stages hold the image's overviews
        self.overviews_complete = bool(self.factors)
        if self.factors:
            from pipeline_lib.overviews import average_levels  # numba: only streamed COGs with overviews load it

            self._average_levels = average_levels

    def write(self, block: np.ndarray, window: Window) -> None:
        """Write a (band, rows, cols) block at ``window`` of the full-resolution image.

        With NaN nodata, the stage's 512² blocks that a block-aligned window fills with NaN only are not
        written: the stage is sparse there and reads NaN (a window is written once)."""
        r0, c0 = int(window.row_off), int(window.col_off)
        if self.factors and r0 % BLOCK == 0 and c0 % BLOCK == 0:
            for i in range(0, block.shape[1], BLOCK):
                for j in range(0, block.shape[2], BLOCK):
                    sub = block[:, i : i + BLOCK, j : j + BLOCK]
                    if not np.isnan(sub).all():
                        self.base.write(sub, window=Window(c0 + j, r0 + i, sub.shape[2], sub.shape[1]))
        else:
            self.base.write(block, window=window)
        if not self.overviews_complete:
            return
        rows, cols = int(window.height), int(window.width)
        if not is_aligned(r0, c0, rows, cols, self.base.height, self.base.width, self.factors[-1]):
            self.overviews_complete = False  # GDAL computes the overviews from the stage at the end instead
            return
        for f, dst, level in zip(
            self.factors, self.levels, self._average_levels(block, len(self.factors)), strict=True
        ):
            dst.write(level, window=Window(c0 // f, r0 // f, level.shape[2], level.shape[1]))


@contextlib.contextmanager
def cog_writer(
    path: str | os.PathLike[str],
    *,
    height: int,
    width: int,
    count: int,
    crs: Any,
    transform: Any,
    descriptions: Sequence[str],
    dtype: str = "float32",
    nodata: float | int | None = float("nan"),
    tags: Mapping[str, str] | None = None,
    band_tags: Sequence[Mapping[str, str]] | None = None,
    stac: bool = True,
) -> Iterator[CogStream]:
    """Stream a Cloud-Optimised GeoTIFF window by window, atomically; yields a :class:`CogStream` to ``write``.

    The caller writes (band, rows, cols) blocks with ``dst.write(block, window=Window(...))`` into an
    uncompressed tiled GTiff staged beside ``path`` (compressing it and decompressing it again for the
    conversion cost more than the disk it saves: BENCHMARKS.md, "Idle runs, 2026-12-05"). For float data
    with NaN nodata, blocks aligned to the coarsest overview are also reduced to their averaged overview
    levels as they arrive (:mod:`pipeline_lib.overviews`), so the caller's writer thread computes them and
    GDAL only copies them; otherwise GDAL averages them from the stage. On exit GDAL's COG driver converts
    the stage (same options as :func:`write_cog`: 512 blocks, ZSTD, averaged overviews) with the GDAL
    cache capped at ``STREAM_CACHE_MB``, the result's tile index is checked (:func:`_verify_raster`) and
    it is moved into place. Memory is bounded by the blocks the caller writes, not by the image. Windows
    never written read as nodata.
    """
    if count != len(descriptions):
        raise ValueError(f"cog_writer: {count=} does not match {len(descriptions)} descriptions")
    _drop_stac_sidecar(path)
    profile = {
        "driver": "GTiff",
        **_raster_profile(dtype, count, height, width, crs, transform, nodata),
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "BIGTIFF": "IF_NEEDED",  # uncompressed: the size is known, so IF_NEEDED decides exactly
    }
    own_levels = np.issubdtype(np.dtype(dtype), np.floating) and nodata is not None and np.isnan(nodata)
    factors = overview_factors(height, width, BLOCK) if own_levels else []
    remover: threading.Thread | None = None
    try:
        # rasterio hands an int GDAL_CACHEMAX to GDALSetCacheMax64, i.e. bytes (64 would mean 64 B)
        with atomic_path(path, suffix=".tif") as tmp, rasterio.Env(GDAL_CACHEMAX=int(STREAM_CACHE_MB * 2**20)):
            stem = tmp.name[: -len(".tif")]
            stage = tmp.with_name(f"{stem}.stage.tif")
            level_paths = [tmp.with_name(f"{stem}.stage.ovr{f}.tif") for f in factors]
            vrt = tmp.with_name(f"{stem}.stage.vrt")
            staged = (stage, vrt, *level_paths)
            try:
                with contextlib.ExitStack() as stack:
                    sparse = {"SPARSE_OK": "TRUE"} if factors else {}  # NaN blocks left out (CogStream.write)
                    base = stack.enter_context(rasterio.open(stage, "w", **profile, **sparse))
                    _describe(base, descriptions, tags, band_tags)
                    levels = [
                        stack.enter_context(rasterio.open(p, "w", **_level_profile(profile, f)))
                        for p, f in zip(level_paths, factors, strict=True)
                    ]
                    stream = CogStream(base, levels, factors)
                    yield stream
                _convert_stage(stage, dtype, level_paths if stream.overviews_complete else [], vrt, tmp)
            except BaseException:
                _unlink_all(staged)
                raise
            # freeing a whole scene's stage took 1.2 s of kernel time: beside the check and the checksum
            remover = threading.Thread(target=_unlink_all, args=(staged,), name="cog-stage-cleanup")
            remover.start()
            _verify_raster(tmp, (count, height, width))
        if stac:
            _write_stac_sidecar(path, tags)  # as write_cog: a STAC item beside the COG once it is in place
    finally:
        if remover is not None:
            remover.join()


def _unlink_all(paths: Sequence[Path]) -> None:
    """Remove the files that exist among ``paths``."""
    for p in paths:
        p.unlink(missing_ok=True)


def _level_profile(profile: Mapping[str, Any], factor: int) -> dict[str, Any]:
    """The stage profile of the ``factor`` overview level: its size rounded up, pixels ``factor`` times larger."""
    rows, cols = overview_shape(profile["height"], profile["width"], factor)
    return {**profile, "height": rows, "width": cols, "transform": profile["transform"] @ Affine.scale(factor)}


def _convert_stage(stage: Path, dtype: str, levels: Sequence[Path], vrt: Path, out: Path) -> None:
    """GDAL COG conversion of the stage; with ``levels``, through a VRT that declares them as its overviews
    (GDAL's VRT ``<Overview>`` element, https://gdal.org/drivers/raster/vrt.html), copied as they are."""
    options = {**cog_options(dtype), "LEVEL": 1}
    if not levels:
        # LEVEL=1: much faster than the default level 9 on σ0 float32 at the same size (BENCHMARKS.md)
        rasterio.shutil.copy(stage, out, **options)
        return
    rasterio.shutil.copy(stage, vrt, driver="VRT")  # carries CRS, nodata, descriptions and tags
    root = parse_xml(vrt.read_bytes(), name=str(vrt))
    for band in root.iter("VRTRasterBand"):
        for level in levels:
            ovr = SubElement(band, "Overview")
            SubElement(ovr, "SourceFilename", relativeToVRT="1").text = level.name
            SubElement(ovr, "SourceBand").text = band.get("band", "1")
    vrt.write_bytes(tostring(root))
    rasterio.shutil.copy(vrt, out, **options, OVERVIEWS="FORCE_USE_EXISTING")


def _verify_raster(path: Path, shape: tuple[int, ...]) -> None:
    """Check a freshly written GeoTIFF: GDAL reports some write failures (a full disk) only as warnings.

    The size must match and every tile of every level must have a non-empty entry in the tile index that
    lies inside the file (a write cut short leaves the file shorter than its index or a block unwritten);
    the smallest level is decoded. Cheaper than decoding every block, and it catches the same failures.
    """
    try:
        size = os.path.getsize(path)
        with rasterio.open(path) as ds:
            if (ds.count, ds.height, ds.width) != tuple(shape):
                raise OSError(f"wrote {(ds.count, ds.height, ds.width)}, expected {tuple(shape)}")
            factors = ds.overviews(1)
            for ovr, factor in [(None, 1), *enumerate(factors)]:
                _check_tile_index(ds, ovr, factor, size)
        with rasterio.open(path, **({"overview_level": len(factors) - 1} if factors else {})) as small:
            small.read()
    except (rasterio.errors.RasterioError, OSError) as exc:
        raise OSError(errno.EIO, f"{path}: written raster does not read back ({str(exc).splitlines()[0]})") from exc


def _check_tile_index(ds: Any, ovr: int | None, factor: int, size: int) -> None:
    """Every tile of one level (``ovr`` None: full resolution) has an entry inside a ``size``-byte file."""
    by, bx = ds.block_shapes[0]
    rows, cols = overview_shape(ds.height, ds.width, factor)
    bands = [1] if ds.profile.get("interleave") == "pixel" else range(1, ds.count + 1)
    for b in bands:
        for y in range(-(-rows // by)):
            for x in range(-(-cols // bx)):
                offset = ds.get_tag_item(f"BLOCK_OFFSET_{x}_{y}", "TIFF", bidx=b, ovr=ovr)
                nbytes = ds.get_tag_item(f"BLOCK_SIZE_{x}_{y}", "TIFF", bidx=b, ovr=ovr)
                if not offset or not nbytes or int(offset) == 0 or int(offset) + int(nbytes) > size:
                    level = "full resolution" if ovr is None else f"overview {factor}"
                    raise OSError(f"tile ({x}, {y}) of band {b} at {level} is missing or cut short")


def read_named_bands(
    path: str | os.PathLike[str], names: Sequence[str] | None = None
) -> tuple[np.ndarray, list[str], dict[str, Any]]:
    """Bands of a GeoTIFF selected by band description: (band, y, x) float32, all descriptions, profile.

    ``names`` None reads every band. The profile holds ``crs`` (string), ``transform``, ``height``,
    ``width``. Missing file, missing bands or an unreadable raster raise one-line ProductErrors.
    """
    if not Path(path).is_file():
        raise ProductError(f"{path}: raster not found; run the rule that writes it")
    try:
        with rasterio.open(path) as src:
            desc = [d or "" for d in src.descriptions]
            wanted = list(names) if names is not None else desc
            missing = [n for n in wanted if n not in desc]
            if missing:
                raise ProductError(
                    f"{path}: bands {missing} not found (have {desc}); rebuild it with the current pipeline"
                )
            idx = [desc.index(n) + 1 for n in wanted] if names is not None else list(range(1, src.count + 1))
            data = src.read(idx).astype(np.float32)
            prof = {"crs": src.crs.to_string(), "transform": src.transform, "height": src.height, "width": src.width}
    except rasterio.errors.RasterioError as exc:
        raise ProductError(
            f"{path}: unreadable GeoTIFF ({str(exc).splitlines()[0]}); delete it and rerun its rule"
        ) from exc
    return data, desc, prof
