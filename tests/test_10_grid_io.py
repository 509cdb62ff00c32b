"""Grid construction, grid.json round trip, atomic writes, COG output, safe XML, scene selection."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipeline_lib.cog import write_cog
from pipeline_lib.errors import ProductError, SceneNotFoundError
from pipeline_lib.fetch.base import Scene, SearchRequest, read_scene_table, select_scenes, write_scene_table
from pipeline_lib.grid import make_centered_grid, make_grid, read_grid, utm_crs_for, write_grid
from pipeline_lib.io import atomic_path
from pipeline_lib.xmlsafe import parse_xml


def test_utm_zone() -> None:
    assert utm_crs_for(12.5, 42.0) == "EPSG:32633"
    assert utm_crs_for(150.47, -23.53) == "EPSG:32756"


def test_centered_grid_has_exact_shape_and_contains_centre(tmp_path: Path) -> None:
    g = make_centered_grid((12.5, 42.0), (512, 256))
    assert g.shape == (256, 512) and g.resolution_m == 10.0
    assert g.transform.c % 10 == 0 and g.transform.f % 10 == 0
    w, s, e, n = g.lonlat_bounds()
    assert w < 12.5 < e and s < 42.0 < n
    write_grid(g, tmp_path / "grid.json")
    assert read_grid(tmp_path / "grid.json") == g


def test_bbox_grid_covers_bbox() -> None:
    g = make_grid((150.4, -23.6, 150.5, -23.5))
    assert g.crs == "EPSG:32756"
    w, s, e, n = g.lonlat_bounds()
    assert w <= 150.4 and s <= -23.6 and e >= 150.5 and n >= -23.5
    assert 1000 < g.width < 1100


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    dest = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(dest) as tmp:
        tmp.write_text("whole")
    assert dest.read_text() == "whole" and list(tmp_path.iterdir()) == [dest]


def test_write_cog_georeferenced_with_descriptions(tmp_path: Path) -> None:
    g = make_centered_grid((12.5, 42.0), (600, 600))
    data = np.random.default_rng(0).random((2, 600, 600)).astype("float32")
    data[0, :10] = np.nan
    write_cog(data, tmp_path / "x.tif", crs=g.crs, transform=g.transform, descriptions=["VV", "VH"])
    with rasterio.open(tmp_path / "x.tif") as ds:
        assert ds.descriptions == ("VV", "VH")
        assert ds.crs.to_epsg() == 32633 and ds.transform == g.transform
        assert np.isnan(ds.nodata) and ds.overviews(1)
        assert ds.profile["blockxsize"] == 512
        np.testing.assert_array_equal(ds.read(), data)


def test_parse_xml_refuses_entities(tmp_path: Path) -> None:
    evil = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>'
    with pytest.raises(ProductError, match="unsafe XML"):
        parse_xml(evil, name="annotation.xml")
    assert parse_xml(b"<r><a>1</a></r>").find("a").text == "1"  # type: ignore[union-attr]


def _scene(pid: str, mission: str, t: str, orbit: int | None = None, cc: float | None = None) -> Scene:
    ptype = "IW_GRDH_1S" if mission.startswith("S1") else "S2MSI2A"
    return Scene(pid, mission, ptype, datetime.fromisoformat(t), "", relative_orbit=orbit, cloud_cover=cc)


def test_select_scenes_prefers_one_orbit_and_low_cloud(tmp_path: Path) -> None:
    cands = [
        _scene("S1A_a", "S1A", "2022-01-04T05:00", 22),
        _scene("S1A_b", "S1A", "2022-01-05T17:00", 95),
        _scene("S1A_c", "S1A", "2022-01-16T05:00", 22),
        _scene("S2A_x", "S2A", "2022-01-04T10:00", cc=60.0),
        _scene("S2B_y", "S2B", "2022-01-06T10:00", cc=5.0),
        _scene("S2A_z", "S2A", "2022-01-16T10:00", cc=1.0),
    ]
    req = SearchRequest((12.4, 41.9, 12.6, 42.1), [date(2022, 1, 4), date(2022, 1, 16)], 3)
    chosen = select_scenes(cands, req)
    assert [s.product_id for s in chosen] == ["S1A_a", "S2B_y", "S1A_c", "S2A_z"]
    assert all(s.reason for s in chosen)
    write_scene_table(chosen, tmp_path / "scenes.csv")
    assert read_scene_table(tmp_path / "scenes.csv") == chosen


def test_select_scenes_names_nearby_when_nothing_fits() -> None:
    cands = [_scene("S1A_a", "S1A", "2022-01-04T05:00", 22), _scene("S2A_x", "S2A", "2022-01-20T10:00", cc=1.0)]
    req = SearchRequest((12.4, 41.9, 12.6, 42.1), [date(2022, 1, 4)], 3)
    with pytest.raises(SceneNotFoundError, match=r"2022-01-04: no Sentinel-2 L2A.*S2A_x \(2022-01-20\)"):
        select_scenes(cands, req)
