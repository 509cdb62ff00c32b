"""LocalSource: search a folder of real SAFE folders/zips by footprint and date, and link them into place."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from shapely import wkt

from pipeline_lib.errors import FetchError
from pipeline_lib.fetch.base import SearchRequest, Source
from pipeline_lib.fetch.local import LocalSource, parse_s1_manifest, product_checksum
from pipeline_lib.xmlsafe import parse_xml

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
S1_SAFE = FIXTURES / "s1-grd-sarsen" / "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
S1_ZIP = FIXTURES / "s1-grd-pyrosar" / "S1A_IW_GRDH_1SDV_20210119T031653_20210119T031718_036201_043ED0_8255.zip"
S2_SAFE = FIXTURES / "s2-l2a-stactools" / "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
L1C_ZIP = FIXTURES / "s2-l1c-eodatasets" / "S2A_MSIL1C_20180629T000241_N0206_R030_T56JMM_20180629T012042.zip"
CDSE = FIXTURES / "cdse-odata" / "download" / "mock"
# The CDSE manifests come without a product name; this one is built from the manifest's own start time and orbit.
CDSE_S1_NAME = "S1A_IW_GRDH_1SDV_20241217T061735_20241217T061800_057028_07020F_0000"


def _copy_tree(src: Path, dest: Path, only: tuple[str, ...] = ()) -> None:
    for f in src.rglob("*"):
        rel = f.relative_to(src).as_posix()
        if f.is_file() and (not only or rel in only):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest / rel)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("local")
    _copy_tree(S1_SAFE, d / S1_SAFE.name)
    shutil.copyfile(S1_ZIP, d / S1_ZIP.name)
    _copy_tree(S2_SAFE, d / S2_SAFE.name, only=("MTD_MSIL2A.xml", "manifest.safe", "INSPIRE.xml"))
    shutil.copyfile(L1C_ZIP, d / L1C_ZIP.name)  # L1C: not an L2A product, skipped
    _copy_tree(CDSE / "sentinel_1", d / f"{CDSE_S1_NAME}.SAFE")
    _copy_tree(CDSE / "sentinel_2", d / "S2B_MSIL1C_20241209T162609_N0511_R040_T17UPV_20241209T195414.SAFE")
    (d / "broken.zip").write_bytes(S1_ZIP.read_bytes()[:5000])  # truncated: skipped with a warning
    (d / "notes.txt").write_text("not a product")
    return d


def _req(aoi: tuple[float, float, float, float], *days: str, tol: float = 3.0) -> SearchRequest:
    return SearchRequest(aoi_lonlat=aoi, dates=[date.fromisoformat(x) for x in days], pair_tolerance_days=tol)


def test_is_a_source_and_finds_sarsen_scene_over_rome(folder: Path, caplog: pytest.LogCaptureFixture) -> None:
    src = LocalSource(folder)
    assert isinstance(src, Source)
    with caplog.at_level(logging.WARNING):
        scenes = src.search(_req((12.40, 41.95, 12.60, 42.05), "2021-12-23"))
    assert "broken.zip" in caplog.text
    assert [s.product_id for s in scenes] == [S1_SAFE.stem]
    s = scenes[0]
    assert (s.mission, s.product_type, s.relative_orbit) == ("S1B", "IW_GRDH_1S", 22)
    assert s.sensing_time == datetime(2021, 12, 23, 5, 11, 22, 594441, tzinfo=UTC)
    fp = wkt.loads(s.footprint_wkt)
    assert fp.contains(wkt.loads("POINT (12.5 42.0)")) and fp.bounds[0] == pytest.approx(11.865704)  # lon first
    assert (s.size_bytes, s.checksum) == product_checksum(S1_SAFE) and s.uri.endswith(".SAFE")
    assert src.search(_req((12.40, 41.95, 12.60, 42.05), "2022-06-01")) == []  # wrong date
    assert src.search(_req((20.0, 41.95, 20.1, 42.05), "2021-12-23")) == []  # wrong place


def test_s2_l2a_and_s1_zip(folder: Path) -> None:
    src = LocalSource(folder)
    (s2,) = src.search(_req((-8.5, 52.5, -8.4, 52.6), "2022-10-04"))
    assert (s2.product_id, s2.mission, s2.product_type) == (S2_SAFE.stem, "S2A", "S2MSI2A")
    assert s2.cloud_cover == pytest.approx(59.769726) and s2.relative_orbit is None
    assert wkt.loads(s2.footprint_wkt).bounds == pytest.approx(
        (-9.000305, 52.25776004518753, -7.7604675, 53.24962646775486)
    )
    (s1,) = src.search(_req((33.0, -18.5, 33.5, -18.0), "2021-01-20"))
    assert (s1.product_id, s1.mission, s1.relative_orbit) == (S1_ZIP.stem, "S1A", 79)
    assert s1.uri.endswith(".zip") and s1.checksum == "md5:" + hashlib.md5(S1_ZIP.read_bytes()).hexdigest()
    assert s1.size_bytes == S1_ZIP.stat().st_size


def test_cdse_manifest_lat_lon_swapped() -> None:
    info = parse_s1_manifest(parse_xml(CDSE / "sentinel_1" / "manifest.safe"), CDSE_S1_NAME)
    assert (info.mission, info.product_type, info.relative_orbit) == ("S1A", "IW_GRDH_1S", 81)
    assert info.footprint_lonlat[0] == (-1.164012, 42.366711)


def test_download_links_and_verifies(folder: Path, tmp_path: Path) -> None:
    src = LocalSource(folder)
    (s1,) = src.search(_req((33.0, -18.5, 33.5, -18.0), "2021-01-19"))
    out = src.download(s1, tmp_path / "raw" / f"{s1.product_id}.zip")
    assert out.read_bytes() == S1_ZIP.read_bytes()
    assert src.download(s1, out) == out  # idempotent: replaces in place
    (sar,) = src.search(_req((12.40, 41.95, 12.60, 42.05), "2021-12-23"))
    safe = src.download(sar, tmp_path / "raw" / f"{sar.product_id}.SAFE")
    assert product_checksum(safe) == (sar.size_bytes, sar.checksum) and (safe / "manifest.safe").is_file()
    with pytest.raises(FetchError, match=r"is a zip .*request .*\.zip"):
        src.download(s1, tmp_path / "raw" / f"{s1.product_id}.SAFE")
    # a changed file that no longer holds the product of the table (a replaced file holding the same
    # product is used as it is: tests/test_85_user_input_fixes.py)
    stale = dataclasses.replace(s1, checksum="md5:" + "0" * 32, product_id=s1.product_id.replace("8255", "0000"))
    with pytest.raises(FetchError, match="changed since the search"):
        src.download(stale, tmp_path / "raw" / "stale.zip")
    assert not (tmp_path / "raw" / "stale.zip").exists()
    assert not [p for p in (tmp_path / "raw").iterdir() if ".part" in p.name]


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="fetch.local_dir"):
        LocalSource(tmp_path / "nope").search(_req((0, 0, 1, 1), "2021-01-01"))
