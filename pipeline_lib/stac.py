"""STAC items beside every COG (DESIGN §5: "a STAC item beside each, so QGIS and odc-stac read them").

One STAC Item (STAC spec 1.1.0, https://github.com/radiantearth/stac-spec/blob/v1.1.0/item-spec/item-spec.md)
per GeoTIFF, built with pystac from what the file itself says, written beside it as ``<stem>.stac.json``:

- ``geometry``/``bbox``: the raster footprint in EPSG:4326 (WGS84 lon/lat, as the spec requires), the pixel
  edges densified before reprojection so the curved UTM edges stay inside the polygon;
- projection extension v2.0.0 (https://github.com/stac-extensions/projection): ``proj:code`` ("EPSG:32633";
  ``proj:wkt2`` when the CRS has no EPSG code), ``proj:shape`` [rows, cols], ``proj:transform`` (the 6 affine
  coefficients in rasterio/GDAL order a, b, c, d, e, f), ``proj:bbox`` in the native CRS;
- one asset ``data`` with a relative href ``./<name>.tif`` (the item and the file move together), media type
  COG, and per band the raster extension v1.1.0 (``nodata`` — ``"nan"`` for NaN as the extension asks —,
  ``data_type``, ``unit``) and the eo extension v1.1.0 (``name`` = the band description, ``description``);
- file extension v2.1.0 on the asset: ``file:size`` and ``file:checksum`` (a multihash: ``1220`` + SHA-256 hex),
  so a sidecar that no longer describes the file beside it is detectable (:func:`sidecar_is_current`).

Datetime (required by the spec): the caller's value, else the first of the file's tags ``datetime``,
``sensing_time``, a product id's ``YYYYMMDDTHHMMSS`` (tag ``product``), ``target_date``, else the file name
if it is an ISO date (``s1/2022-01-04.tif``); where none exists the file's modification time is used and
``tirsit:datetime_source`` says so. The sidecar name ``<stem>.stac.json`` (not ``<stem>.json``) cannot be
mistaken for one of the pipeline's own JSON outputs (``grid.json``, ``metrics/{experiment}.json``) and says
what it is.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import pystac
import rasterio
import rasterio.errors
from pyproj import CRS, Transformer
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, NoDataStrings, RasterBand, RasterExtension
from shapely.geometry import Polygon, mapping
from shapely.geometry.polygon import orient

from pipeline_lib.errors import ProductError
from pipeline_lib.io import write_json_atomic

__all__ = [
    "SIDECAR_SUFFIX",
    "stac_sidecar_path",
    "stac_item_for_cog",
    "write_stac_sidecar",
    "sidecar_is_current",
    "file_checksum",
]

SIDECAR_SUFFIX = ".stac.json"
EDGE_POINTS = 16  # points per raster edge before reprojection to lon/lat
_SHA256_MULTIHASH_PREFIX = "1220"  # multihash: code 0x12 (sha2-256), length 0x20 bytes
_PRODUCT_TIME = re.compile(r"_(\d{8}T\d{6})(?:_|$)")
_DATETIME_TAGS = ("datetime", "sensing_time")


def stac_sidecar_path(tif: str | os.PathLike[str]) -> Path:
    """The STAC item path beside a raster: ``<dir>/<stem>.stac.json``."""
    p = Path(tif)
    return p.with_name(p.stem + SIDECAR_SUFFIX)


def file_checksum(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """SHA-256 of a file as a multihash hex string (the file extension's ``file:checksum`` format)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return _SHA256_MULTIHASH_PREFIX + h.hexdigest()


def _to_utc(value: dt.datetime | dt.date | str) -> dt.datetime:
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"\d{8}T\d{6}", text):
            parsed = dt.datetime.strptime(text, "%Y%m%dT%H%M%S")
        else:
            parsed = dt.datetime.fromisoformat(text)
    elif isinstance(value, dt.datetime):
        parsed = value
    else:
        parsed = dt.datetime(value.year, value.month, value.day)
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)


def _datetime_from_file(tif: Path, tags: dict[str, str]) -> tuple[dt.datetime, str]:
    """The item datetime from the file's tags or name; (value, where it came from)."""
    candidates: list[tuple[str, str]] = [(f"tag:{k}", tags[k]) for k in _DATETIME_TAGS if tags.get(k)]
    m = _PRODUCT_TIME.search(tags.get("product", ""))
    if m:
        candidates.append(("tag:product", m.group(1)))
    if tags.get("target_date"):
        candidates.append(("tag:target_date", tags["target_date"]))
    candidates.append(("file_name", tif.stem))
    for source, text in candidates:
        try:
            return _to_utc(text), source
        except ValueError:
            continue
    return dt.datetime.fromtimestamp(tif.stat().st_mtime, tz=dt.UTC), "file_mtime"


def _footprint_lonlat(crs: CRS, transform: Any, width: int, height: int) -> Polygon:
    """The raster's outer pixel edges, densified, in EPSG:4326 (lon, lat), counter-clockwise."""
    t = np.linspace(0.0, 1.0, EDGE_POINTS, endpoint=False)
    cols = np.concatenate([t * width, np.full_like(t, width), (1 - t) * width, np.zeros_like(t)])
    rows = np.concatenate([np.full_like(t, height), (1 - t) * height, np.zeros_like(t), t * height])
    a, b, c, d, e, f = (transform.a, transform.b, transform.c, transform.d, transform.e, transform.f)
    xs, ys = a * cols + b * rows + c, d * cols + e * rows + f
    lon, lat = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True).transform(xs, ys)
    if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
        raise ProductError(f"footprint of a {width}x{height} raster does not project to lon/lat from {crs.name}")
    return orient(Polygon(zip(np.round(lon, 9), np.round(lat, 9), strict=True)), sign=1.0)


def _nodata(value: float | None) -> float | NoDataStrings | None:
    if value is None:
        return None
    if np.isnan(value):
        return NoDataStrings.NAN
    if np.isinf(value):
        return NoDataStrings.INF if value > 0 else NoDataStrings.NINF
    return int(value) if float(value).is_integer() else float(value)


def _default_id(tif: Path) -> str:
    """Path below ``results/`` joined with ``_`` (``ci-tiny_s1_2022-01-04``), else ``<folder>_<stem>``."""
    parts = tif.resolve().with_suffix("").parts
    if "results" in parts[:-1]:
        rel = parts[len(parts) - 1 - parts[::-1].index("results") + 1 :]
    else:
        rel = parts[-2:]
    return "_".join(rel)


def stac_item_for_cog(
    tif: str | os.PathLike[str],
    item_id: str | None = None,
    datetime: dt.datetime | dt.date | str | None = None,
) -> dict[str, Any]:
    """A STAC 1.1 Item (as a dict) describing the GeoTIFF ``tif``; see the module docstring for the fields."""
    path = Path(tif)
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise ProductError(f"{path}: raster has no CRS; a STAC item needs one, write it with a CRS")
            crs = CRS.from_user_input(ds.crs.to_wkt())
            transform, width, height = ds.transform, ds.width, ds.height
            bounds = list(ds.bounds)
            tags = {k: v for k, v in ds.tags().items() if k != "AREA_OR_POINT"}
            band_tags = [ds.tags(i) for i in range(1, ds.count + 1)]
            descriptions = [d or f"band_{i}" for i, d in enumerate(ds.descriptions, start=1)]
            dtypes, nodatas = list(ds.dtypes), list(ds.nodatavals)
    except rasterio.errors.RasterioError as exc:
        raise ProductError(f"{path}: unreadable GeoTIFF ({str(exc).splitlines()[0]}); rerun its rule") from exc
    if datetime is not None:
        when, source = _to_utc(datetime), "argument"
    else:
        when, source = _datetime_from_file(path, tags)
    footprint = _footprint_lonlat(crs, transform, width, height)
    item = pystac.Item(
        id=item_id or _default_id(path),
        geometry=json.loads(json.dumps(mapping(footprint))),  # GeoJSON lists, not shapely's tuples
        bbox=list(footprint.bounds),
        datetime=when,
        properties={"tirsit:datetime_source": source, "tirsit:tags": tags},
    )
    epsg = crs.to_epsg()
    ProjectionExtension.ext(item, add_if_missing=True).apply(
        code=f"EPSG:{epsg}" if epsg is not None else None,
        wkt2=None if epsg is not None else crs.to_wkt(),
        shape=[height, width],
        transform=[transform.a, transform.b, transform.c, transform.d, transform.e, transform.f],
        bbox=bounds,
    )
    asset = pystac.Asset(href=f"./{path.name}", media_type=pystac.MediaType.COG, roles=["data"], title=path.stem)
    item.add_asset("data", asset)
    RasterExtension.ext(asset, add_if_missing=True).apply(
        [
            RasterBand.create(nodata=_nodata(nd), data_type=DataType(dtype), unit=bt.get("units"))
            for nd, dtype, bt in zip(nodatas, dtypes, band_tags, strict=True)
        ]
    )
    EOExtension.ext(asset, add_if_missing=True).apply(
        [
            Band.create(name=name, description=bt.get("long_name"))
            for name, bt in zip(descriptions, band_tags, strict=True)
        ]
    )
    FileExtension.ext(asset, add_if_missing=True).apply(size=path.stat().st_size, checksum=file_checksum(path))
    return item.to_dict(include_self_link=False, transform_hrefs=False)


def write_stac_sidecar(
    tif: str | os.PathLike[str],
    item_id: str | None = None,
    datetime: dt.datetime | dt.date | str | None = None,
) -> Path:
    """Write :func:`stac_item_for_cog` of ``tif`` atomically to ``<stem>.stac.json`` beside it; return that path.

    Call it after the raster is in place: the item records the file's size and checksum.
    """
    out = stac_sidecar_path(tif)
    write_json_atomic(out, stac_item_for_cog(tif, item_id=item_id, datetime=datetime))
    return out


def sidecar_is_current(tif: str | os.PathLike[str]) -> bool:
    """True if ``tif`` has a sidecar whose data asset names it and matches its size and SHA-256."""
    path, side = Path(tif), stac_sidecar_path(tif)
    if not (path.is_file() and side.is_file()):
        return False
    try:
        asset = json.loads(side.read_text(encoding="utf-8"))["assets"]["data"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return bool(
        asset.get("href") == f"./{path.name}"
        and asset.get("file:size") == path.stat().st_size
        and asset.get("file:checksum") == file_checksum(path)
    )
