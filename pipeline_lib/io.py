"""Atomic file output, COG writing and safe XML parsing shared by every stage.

Every writer in the package goes through :func:`atomic_path`: the data are written to a
temporary file in the destination folder, fsynced and moved into place with ``os.replace``,
so a killed job never leaves a half-written file under its final name.

COGs follow the GDAL COG driver (https://gdal.org/drivers/raster/cog.html): tiled 512,
ZSTD, overviews, CRS, nodata and per-band descriptions.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from xml.etree.ElementTree import Element

import numpy as np
import rasterio
import rasterio.errors
import rasterio.shutil
from defusedxml import ElementTree as SafeET

from pipeline_lib.errors import PipelineError, ProductError, StorageError

__all__ = ["atomic_path", "write_text_atomic", "write_json_atomic", "write_cog", "parse_xml"]


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    On any exception the temporary file is removed and the destination is left untouched.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sfx = suffix if suffix is not None else "".join(dest.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".part{sfx}", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if not isinstance(exc, PipelineError) and _out_of_space(exc, dest.parent):
            raise StorageError(
                f"{dest}: no space left on device while writing; free space in {dest.parent} and rerun"
            ) from exc
        raise


def _out_of_space(exc: BaseException, folder: Path) -> bool:
    """True if ``exc`` is (or, for libraries that hide errno, coincides with) a full file system."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


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
) -> None:
    """Write a (band, y, x) array as a Cloud-Optimised GeoTIFF, atomically.

    Float data use NaN as nodata unless told otherwise. Overviews are averaged.
    """
    arr = np.asarray(data)
    if arr.ndim == 2:
        arr = arr[np.newaxis]
    if arr.ndim != 3 or arr.shape[0] != len(descriptions):
        raise ValueError(f"write_cog: {arr.shape=} does not match {len(descriptions)} descriptions")
    count, height, width = arr.shape
    profile: dict[str, Any] = {
        "driver": "COG",
        "dtype": arr.dtype.name,
        "count": count,
        "height": height,
        "width": width,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "ZSTD",
        "blocksize": 512,
        "overview_resampling": "average",
        "BIGTIFF": "IF_SAFER",
        "NUM_THREADS": "ALL_CPUS",
    }
    with atomic_path(path, suffix=".tif") as tmp:
        # The COG driver is create-copy only: stage in a MEM dataset, then copy.
        mem_profile = {k: profile[k] for k in ("dtype", "count", "height", "width", "crs", "transform", "nodata")}
        with rasterio.MemoryFile() as mem:
            with mem.open(driver="GTiff", **mem_profile) as src:
                src.write(arr)
                for i, desc in enumerate(descriptions, start=1):
                    src.set_band_description(i, desc)
                if tags:
                    src.update_tags(**tags)
                for i, btags in enumerate(band_tags or [], start=1):
                    src.update_tags(i, **btags)
            with mem.open() as src:
                rasterio.shutil.copy(
                    src,
                    tmp,
                    driver="COG",
                    COMPRESS="ZSTD",
                    BLOCKSIZE=512,
                    OVERVIEW_RESAMPLING="AVERAGE",
                    BIGTIFF="IF_SAFER",
                    NUM_THREADS="ALL_CPUS",
                )
        _verify_raster(tmp, arr.shape)


def parse_xml(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Element:
    """Parse XML with entity expansion, DTDs and external references refused (XXE, billion laughs).

    ``source`` is a path or the document bytes; ``name`` names it in error messages.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        if isinstance(source, bytes):
            return SafeET.fromstring(source, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        return SafeET.parse(os.fspath(source), forbid_dtd=True, forbid_entities=True, forbid_external=True).getroot()
    except FileNotFoundError as exc:
        raise ProductError(f"{label}: file not found; check the product is complete") from exc
    except Exception as exc:  # defusedxml raises several unrelated types
        raise ProductError(
            f"{label}: unreadable or unsafe XML ({type(exc).__name__}: {exc}); re-download the product"
        ) from exc


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
