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
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil

from pipeline_lib.errors import ProductError
from pipeline_lib.io import atomic_path
from pipeline_lib.stac import stac_sidecar_path, write_stac_sidecar

__all__ = ["COG_OPTIONS", "STREAM_CACHE_MB", "write_cog", "cog_writer", "read_named_bands"]


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


#: GDAL COG driver options of every COG we write (https://gdal.org/drivers/raster/cog.html)
COG_OPTIONS: dict[str, Any] = {
    "driver": "COG",
    "COMPRESS": "ZSTD",
    "BLOCKSIZE": 512,
    "OVERVIEW_RESAMPLING": "AVERAGE",
    "BIGTIFF": "IF_SAFER",
    "NUM_THREADS": "ALL_CPUS",
}


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
    mem_profile = {
        "dtype": arr.dtype.name,
        "count": count,
        "height": height,
        "width": width,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
    }
    _drop_stac_sidecar(path)
    with atomic_path(path, suffix=".tif") as tmp:
        # The COG driver is create-copy only: stage in a MEM dataset, then copy.
        with rasterio.MemoryFile() as mem:
            with mem.open(driver="GTiff", **mem_profile) as src:
                src.write(arr)
                _describe(src, descriptions, tags, band_tags)
            with mem.open() as src:
                rasterio.shutil.copy(src, tmp, **COG_OPTIONS)
        _verify_raster(tmp, arr.shape)
    if stac:
        _write_stac_sidecar(path, tags)


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
) -> Iterator[Any]:
    """Stream a Cloud-Optimised GeoTIFF window by window, atomically; yields a rasterio dataset to ``write``.

    The caller writes (band, rows, cols) blocks with ``dst.write(block, window=Window(...))`` into an
    uncompressed tiled GTiff staged beside ``path`` (compressing it and decompressing it again for the conversion
    cost more than the disk it saves: BENCHMARKS.md, "Idle runs, 2026-12-05"); on exit GDAL's COG driver converts it (same options as
    :func:`write_cog`: 512 blocks, ZSTD, averaged overviews) with the GDAL cache capped at
    ``STREAM_CACHE_MB``, the result is read back block by block (same cap) and moved into place. Memory is
    bounded by the blocks the caller writes, not by the image. Windows never written read as nodata.
    """
    if count != len(descriptions):
        raise ValueError(f"cog_writer: {count=} does not match {len(descriptions)} descriptions")
    _drop_stac_sidecar(path)
    # rasterio hands an int GDAL_CACHEMAX to GDALSetCacheMax64, i.e. bytes (64 would mean 64 B)
    with atomic_path(path, suffix=".tif") as tmp, rasterio.Env(GDAL_CACHEMAX=int(STREAM_CACHE_MB * 2**20)):
        stage = tmp.with_name(tmp.name[: -len(".tif")] + ".stage.tif")
        try:
            with rasterio.open(
                stage,
                "w",
                driver="GTiff",
                dtype=dtype,
                count=count,
                height=height,
                width=width,
                crs=crs,
                transform=transform,
                nodata=nodata,
                tiled=True,
                blockxsize=512,
                blockysize=512,
                BIGTIFF="IF_NEEDED",  # uncompressed: the size is known, so IF_NEEDED decides exactly
            ) as dst:
                _describe(dst, descriptions, tags, band_tags)
                yield dst
            # LEVEL=1: much faster than the default level 9 on σ0 float32 at the same size (BENCHMARKS.md)
            rasterio.shutil.copy(stage, tmp, **COG_OPTIONS, LEVEL=1)
        finally:
            with contextlib.suppress(FileNotFoundError):
                stage.unlink()
        _verify_raster(tmp, (count, height, width))  # reads every block once, under the same cache cap
    if stac:
        _write_stac_sidecar(path, tags)  # as write_cog: a STAC item beside the COG once it is in place


def _verify_raster(path: Path, shape: tuple[int, ...]) -> None:
    """Re-read a freshly written raster: GDAL reports some write failures (a full disk) only as warnings."""
    try:
        with rasterio.open(path) as ds:
            if (ds.count, ds.height, ds.width) != tuple(shape):
                raise OSError(f"{path}: wrote {(ds.count, ds.height, ds.width)}, expected {tuple(shape)}")
            for _, window in ds.block_windows(1):
                ds.read(window=window)
    except (rasterio.errors.RasterioError, OSError) as exc:
        raise OSError(errno.EIO, f"{path}: written raster does not read back ({str(exc).splitlines()[0]})") from exc


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
