"""The one check of geographic coordinates given by users (WGS84 lon/lat, longitude first; docs/DESIGN.md §3).

Region files give the AOI as a bbox ``[lon_min, lat_min, lon_max, lat_max]`` or as a centre ``[lon, lat]``;
both the config loader (:mod:`pipeline_lib.config`) and the grid builders (:mod:`pipeline_lib.grid`) call
these functions, so the range rule and the swapped-axes hint are written once.
"""

from __future__ import annotations

from collections.abc import Sequence

from pipeline_lib.errors import ConfigError

__all__ = ["check_lonlat_bbox", "check_lonlat_point"]


def check_lonlat_bbox(bbox: Sequence[float], where: str) -> tuple[float, float, float, float]:
    """(west, south, east, north) of a lon/lat bbox; ConfigError naming ``where`` if it is out of range or swapped."""
    if len(bbox) != 4:
        raise ConfigError(f"{where}: {list(bbox)} must have 4 numbers [lon_min, lat_min, lon_max, lat_max]")
    w, s, e, n = (float(v) for v in bbox)
    if any(abs(v) > 90 for v in (s, n)) and all(abs(v) <= 90 for v in (w, e)):
        raise ConfigError(
            f"{where}: {list(bbox)} looks like lat/lon swapped; give [lon_min, lat_min, lon_max, lat_max]"
        )
    if -180 <= e < w <= 180 and -90 <= s < n <= 90:
        raise ConfigError(
            f"{where}: {list(bbox)} has lon_min > lon_max, i.e. it crosses the antimeridian (180°), which is "
            "not supported; move the AOI to one side of 180° or split it into two regions"
        )
    if not (-180 <= w < e <= 180 and -90 <= s < n <= 90):
        raise ConfigError(
            f"{where}: {list(bbox)} must be [lon_min, lat_min, lon_max, lat_max] within ±180/±90 with min < max"
        )
    return w, s, e, n


def check_lonlat_point(point: Sequence[float], where: str) -> tuple[float, float]:
    """(lon, lat) of a point; ConfigError naming ``where`` if it is out of range or looks like [lat, lon]."""
    if len(point) != 2:
        raise ConfigError(f"{where}: {list(point)} must have 2 numbers [lon, lat]")
    lon, lat = (float(v) for v in point)
    if abs(lat) > 90 and abs(lon) <= 90:
        raise ConfigError(f"{where}: {list(point)} looks like [lat, lon]; give [lon, lat] (longitude first)")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise ConfigError(f"{where}: {list(point)} is outside ±180/±90; give [lon, lat] (longitude first)")
    return lon, lat
