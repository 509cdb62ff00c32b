"""The one analysis grid of a region (``results/{region}/grid.json``).

Every S1/S2 output is reprojected onto this grid (DESIGN §5 "Grid"). The grid is defined by a
CRS, an affine transform (GDAL/rasterio order a, b, c, d, e, f) and a shape (height, width).
The default CRS is the UTM zone of the AOI centre (EPSG:326xx north, 327xx south); the grid is
snapped to whole multiples of the resolution so grids of overlapping regions align.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from affine import Affine
from pyproj import CRS, Transformer

from pipeline_lib.errors import ConfigError
from pipeline_lib.io import write_json_atomic
from pipeline_lib.lonlat import check_lonlat_bbox, check_lonlat_point

if TYPE_CHECKING:
    from rasterio.windows import Window

__all__ = [
    "Grid",
    "utm_crs_for",
    "make_grid",
    "make_centered_grid",
    "read_grid",
    "write_grid",
    "warp_to_grid",
    "MARGIN_SRC_PX",
    "padded_window",
]

#: source pixels read around the grid before warping onto it: covers the cubic kernel's reach
MARGIN_SRC_PX = 3


@dataclass(frozen=True)
class Grid:
    """A north-up raster grid: CRS (as a string rasterio/pyproj accept), transform and shape."""

    crs: str
    transform: Affine
    height: int
    width: int

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)

    @property
    def resolution_m(self) -> float:
        return float(self.transform.a)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in grid CRS units."""
        left, top = self.transform.c, self.transform.f
        right = left + self.width * self.transform.a
        bottom = top + self.height * self.transform.e
        return (left, bottom, right, top)

    def x_coords(self) -> np.ndarray:
        """Pixel-centre x coordinates."""
        return self.transform.c + (np.arange(self.width) + 0.5) * self.transform.a

    def y_coords(self) -> np.ndarray:
        """Pixel-centre y coordinates."""
        return self.transform.f + (np.arange(self.height) + 0.5) * self.transform.e

    def lonlat_bounds(self, margin_m: float = 0.0) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the grid (plus a margin) in EPSG:4326."""
        left, bottom, right, top = self.bounds
        xs = np.array([left - margin_m, right + margin_m, right + margin_m, left - margin_m])
        ys = np.array([bottom - margin_m, bottom - margin_m, top + margin_m, top + margin_m])
        # densify the edges so curved meridians are covered
        t = np.linspace(0, 1, 21)
        ex = np.concatenate([xs[i] + (xs[(i + 1) % 4] - xs[i]) * t for i in range(4)])
        ey = np.concatenate([ys[i] + (ys[(i + 1) % 4] - ys[i]) * t for i in range(4)])
        tr = Transformer.from_crs(self.crs, "EPSG:4326", always_xy=True)
        lon, lat = tr.transform(ex, ey)
        if not (np.all(np.isfinite(lon)) and np.all(np.isfinite(lat))):
            raise ConfigError(
                f"aoi: the grid {self.bounds} in {self.crs} does not map to longitude/latitude; "
                "choose a smaller AOI or a crs that covers it"
            )
        west, east = float(np.min(lon)), float(np.max(lon))
        if east - west > 180.0 or west < -180.0 or east > 180.0:
            # The edge crosses ±180°: a min/max box would span the other side of the globe (DESIGN §3).
            raise ConfigError(
                f"aoi: the grid {tuple(round(b) for b in self.bounds)} in {self.crs} crosses the antimeridian "
                "(180°), which is not supported; choose an AOI on one side of 180° or split it into two regions"
            )
        return (west, float(np.min(lat)), east, float(np.max(lat)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "crs": self.crs,
            "transform": [
                self.transform.a,
                self.transform.b,
                self.transform.c,
                self.transform.d,
                self.transform.e,
                self.transform.f,
            ],
            "shape": [self.height, self.width],
            "resolution_m": self.resolution_m,
            "bounds": list(self.bounds),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Grid:
        a, b, c, dd, e, f = (float(v) for v in d["transform"])
        height, width = (int(v) for v in d["shape"])
        return cls(crs=str(d["crs"]), transform=Affine(a, b, c, dd, e, f), height=height, width=width)


def utm_crs_for(lon: float, lat: float) -> str:
    """EPSG code of the UTM zone containing (lon, lat)."""
    zone = int(math.floor((lon + 180.0) / 6.0)) % 60 + 1
    return f"EPSG:{(32600 if lat >= 0 else 32700) + zone}"


def make_grid(aoi: tuple[float, float, float, float], resolution_m: float = 10.0, crs: str | None = None) -> Grid:
    """Grid covering the lon/lat bbox ``aoi`` = (west, south, east, north), snapped to the resolution.

    ``crs`` defaults to the UTM zone of the AOI centre. For a geographic CRS (EPSG:4326) the
    resolution is converted to degrees at the AOI centre latitude (10 m-equivalent, as the paper).
    """
    west, south, east, north = check_lonlat_bbox(aoi, "aoi")
    lon0, lat0 = (west + east) / 2, (south + north) / 2
    crs = crs or utm_crs_for(lon0, lat0)
    crs_obj = CRS.from_user_input(crs)
    if crs_obj.is_geographic:
        res_x = resolution_m / (111_320.0 * math.cos(math.radians(lat0)))
        res_y = resolution_m / 110_574.0
        left, right, bottom, top = west, east, south, north
    else:
        res_x = res_y = float(resolution_m)
        tr = Transformer.from_crs("EPSG:4326", crs_obj, always_xy=True)
        t = np.linspace(0, 1, 21)
        lons = np.concatenate(
            [west + (east - west) * t, np.full_like(t, east), east - (east - west) * t, np.full_like(t, west)]
        )
        lats = np.concatenate(
            [np.full_like(t, south), south + (north - south) * t, np.full_like(t, north), north - (north - south) * t]
        )
        xs, ys = tr.transform(lons, lats)
        if not (np.all(np.isfinite(xs)) and np.all(np.isfinite(ys))):
            raise ConfigError(
                f"aoi: {aoi} does not map into {crs_obj.to_string()}; choose a smaller AOI or another crs"
            )
        left, right, bottom, top = float(np.min(xs)), float(np.max(xs)), float(np.min(ys)), float(np.max(ys))
    left = math.floor(left / res_x) * res_x
    top = math.ceil(top / res_y) * res_y
    width = int(math.ceil((right - left) / res_x - 1e-9))
    height = int(math.ceil((top - bottom) / res_y - 1e-9))
    return Grid(
        crs=crs_obj.to_string(), transform=Affine(res_x, 0.0, left, 0.0, -res_y, top), height=height, width=width
    )


def read_grid(path: str | os.PathLike[str]) -> Grid:
    """Load a ``grid.json`` written by :func:`write_grid`."""
    with open(path, encoding="utf-8") as fh:
        return Grid.from_dict(json.load(fh))


def write_grid(grid: Grid, path: str | os.PathLike[str]) -> None:
    """Write ``grid.json`` atomically."""
    write_json_atomic(path, grid.to_dict())


def make_centered_grid(
    center_lonlat: tuple[float, float], size_px: tuple[int, int], resolution_m: float = 10.0, crs: str | None = None
) -> Grid:
    """Grid of exactly ``size_px`` = (width, height) pixels centred on (lon, lat), snapped to the resolution."""
    lon, lat = check_lonlat_point(center_lonlat, "aoi.center")
    crs_obj = CRS.from_user_input(crs or utm_crs_for(lon, lat))
    width, height = int(size_px[0]), int(size_px[1])
    if crs_obj.is_geographic:
        res_x = resolution_m / (111_320.0 * math.cos(math.radians(lat)))
        res_y = resolution_m / 110_574.0
        cx, cy = lon, lat
    else:
        res_x = res_y = float(resolution_m)
        cx, cy = Transformer.from_crs("EPSG:4326", crs_obj, always_xy=True).transform(lon, lat)
    left = math.floor((cx - width * res_x / 2) / res_x) * res_x
    top = math.floor((cy + height * res_y / 2) / res_y) * res_y
    return Grid(
        crs=crs_obj.to_string(), transform=Affine(res_x, 0.0, left, 0.0, -res_y, top), height=height, width=width
    )


def warp_to_grid(
    src: np.ndarray,
    src_transform: Any,
    src_crs: Any,
    grid: Grid,
    resampling: Any = None,
    dtype: str = "float32",
) -> np.ndarray:
    """Warp a 2-D array (NaN = nodata) onto ``grid`` with rasterio; NaN where nothing maps.

    ``resampling`` is a :class:`rasterio.enums.Resampling` (default bilinear).
    """
    from rasterio.enums import Resampling
    from rasterio.warp import reproject

    dst = np.full(grid.shape, np.nan, dtype=dtype)
    reproject(
        source=np.ascontiguousarray(src, dtype=dtype),
        destination=dst,
        src_transform=src_transform,
        src_crs=src_crs,
        src_nodata=np.nan,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        dst_nodata=np.nan,
        resampling=Resampling.bilinear if resampling is None else resampling,
    )
    return dst


def padded_window(ds: Any, bounds: tuple[float, float, float, float], margin_px: int) -> Window | None:
    """The window of the raster ``ds`` covering ``bounds`` (left, bottom, right, top in its CRS) plus
    ``margin_px`` of its pixels on every side, clipped to the raster; None when nothing of it is left."""
    from rasterio.windows import Window, from_bounds

    left, bottom, right, top = bounds
    pad_x, pad_y = margin_px * abs(ds.transform.a), margin_px * abs(ds.transform.e)
    win = from_bounds(left - pad_x, bottom - pad_y, right + pad_x, top + pad_y, transform=ds.transform)
    col0, row0 = max(0, math.floor(win.col_off)), max(0, math.floor(win.row_off))
    col1 = min(ds.width, math.ceil(win.col_off + win.width))
    row1 = min(ds.height, math.ceil(win.row_off + win.height))
    if col1 <= col0 or row1 <= row0:
        return None
    return Window(col0, row0, col1 - col0, row1 - row0)
