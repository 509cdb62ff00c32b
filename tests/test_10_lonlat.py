"""The one lon/lat check (pipeline_lib.lonlat) used by the config loader and the grid builders (DESIGN §3)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline_lib.errors import ConfigError
from pipeline_lib.grid import make_centered_grid, make_grid
from pipeline_lib.lonlat import check_lonlat_bbox, check_lonlat_point

lons = st.floats(-180, 180)
lats = st.floats(-90, 90)


@given(lons, lats)
def test_every_point_on_the_globe_passes(lon: float, lat: float) -> None:
    assert check_lonlat_point([lon, lat], "aoi.center") == (lon, lat)


@given(st.floats(90.001, 180), st.floats(-90, 90))
def test_latitude_first_is_named(lat: float, lon: float) -> None:
    with pytest.raises(ConfigError, match=r"^x: aoi.center: .* looks like \[lat, lon\]"):
        check_lonlat_point([lon, lat], "x: aoi.center")


@pytest.mark.parametrize(
    ("bbox", "match"),
    [
        ([12.4, 41.9, 12.6, 42.1], None),
        ([41.9, 12.4, 42.1, 112.6], "swapped"),
        ([190.0, 10.0, 191.0, 11.0], "±180"),
        ([12.6, 41.9, 12.4, 42.1], "antimeridian"),
        ([12.4, 42.1, 12.6, 41.9], "min < max"),
        ([12.4, 41.9, 12.6], "4 numbers"),
    ],
)
def test_bbox(bbox: list[float], match: str | None) -> None:
    if match is None:
        assert check_lonlat_bbox(bbox, "aoi") == tuple(bbox)
    else:
        with pytest.raises(ConfigError, match=match):
            check_lonlat_bbox(bbox, "aoi")


def test_grid_builders_use_the_same_check() -> None:
    with pytest.raises(ConfigError, match="looks like lat/lon swapped"):
        make_grid((41.9, 12.4, 42.1, 112.6))
    with pytest.raises(ConfigError, match=r"looks like \[lat, lon\]"):
        make_centered_grid((42.0, 112.5), (8, 8))
