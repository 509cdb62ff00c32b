"""DemoSource: the Source protocol over the demo generator (search plan, selection, atomic download)."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
from shapely import wkt
from shapely.geometry import Point

from pipeline_lib.demo import DEMO_DATES
from pipeline_lib.fetch.base import SearchRequest, Source, select_scenes
from pipeline_lib.fetch.demo import DemoSource

AOI = (12.494, 41.995, 12.506, 42.005)


@pytest.fixture(scope="module")
def source() -> DemoSource:
    return DemoSource(seed=0, size_px=128)


def test_search_and_select(source: DemoSource) -> None:
    assert isinstance(source, Source)
    req = SearchRequest(aoi_lonlat=AOI, dates=list(DEMO_DATES), pair_tolerance_days=3)
    scenes = source.search(req)
    assert len(scenes) == 8
    s1 = [s for s in scenes if s.is_s1]
    assert {s.mission for s in s1} == {"S1B"} and {s.relative_orbit for s in s1} == {22}
    assert {s.product_type for s in s1} == {"IW_GRDH_1S"} and {s.product_type for s in scenes if not s.is_s1} == {
        "S2MSI2A"
    }
    for s in scenes:
        assert wkt.loads(s.footprint_wkt).contains(Point(12.5, 42.0)), s.product_id
        assert s.size_bytes == 0 and s.checksum == "" and s.uri.startswith(("demo:s1:", "demo:s2:"))
    clouds = {":".join(s.uri.split(":")[:3]): s.cloud_cover for s in scenes if not s.is_s1}
    assert clouds["demo:s2:2022-01-16"] > 1.0
    assert all(v == 0.0 for k, v in clouds.items() if k != "demo:s2:2022-01-16")
    chosen = select_scenes(scenes, req)
    assert [c.date for c in chosen] == [d.isoformat() for d in DEMO_DATES for _ in range(2)]


def test_search_outside_world_or_dates_is_empty(source: DemoSource) -> None:
    assert (
        source.search(
            SearchRequest(aoi_lonlat=(10.0, 40.0, 10.1, 40.1), dates=[date(2022, 1, 4)], pair_tolerance_days=3)
        )
        == []
    )
    assert source.search(SearchRequest(aoi_lonlat=AOI, dates=[date(2022, 6, 1)], pair_tolerance_days=3)) == []


def test_download_is_atomic_and_named(source: DemoSource, tmp_path: Path) -> None:
    req = SearchRequest(aoi_lonlat=AOI, dates=[date(2022, 1, 16)], pair_tolerance_days=1)
    for scene in source.search(req):
        dest = tmp_path / "raw" / f"{scene.product_id}.SAFE"
        assert source.download(scene, dest) == dest
        assert (dest / "manifest.safe").is_file()
        assert any(dest.rglob("*.tiff" if scene.is_s1 else "*.jp2"))
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == sorted(
        f"{s.product_id}.SAFE" for s in source.search(req)
    )
