"""STAC items beside every COG (DESIGN §5; pipeline_lib.stac, written by pipeline_lib.cog.write_cog / cog_writer).

Validation: the core STAC 1.1.0 Item schema (and GeoJSON) ships with pystac and is checked offline with
pystac's own jsonschema validator. The extension schemas (projection, raster, eo, file) are only published
online; their fields are checked here by reading them back through pystac's extension classes and against
known answers. (pystac's complete ``item.validate()`` needs those online schemas; tests run offline.)
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from pyproj import Geod
from pystac import STACObjectType
from pystac.extensions.eo import EOExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import RasterExtension
from pystac.validation.stac_validator import JsonSchemaSTACValidator
from rasterio.windows import Window
from shapely.geometry import Point, shape

from pipeline_lib.cog import cog_writer, write_cog
from pipeline_lib.grid import make_centered_grid
from pipeline_lib.stac import (
    SIDECAR_SUFFIX,
    sidecar_is_current,
    stac_item_for_cog,
    stac_sidecar_path,
    write_stac_sidecar,
)

S1_PRODUCT = "S1B_IW_GRDH_1SDV_20220104T051122_20220104T051147_030323_03B3DA_FCDD"
GRID = make_centered_grid((12.50, 42.00), (64, 48))  # 64 px wide, 48 px high at 10 m, UTM 33N


def _data(seed: int = 0, bands: int = 2) -> np.ndarray:
    a = np.random.default_rng(seed).normal(-12.0, 3.0, (bands, GRID.height, GRID.width)).astype(np.float32)
    a[:, :4, :4] = np.nan
    return a


def _s1_cog(path: Path, seed: int = 0, **kw: object) -> Path:
    write_cog(
        _data(seed),
        path,
        crs=GRID.crs,
        transform=GRID.transform,
        descriptions=["VV", "VH"],
        tags={"product": S1_PRODUCT, "units": "dB"},
        band_tags=[{"units": "dB", "long_name": "sigma nought VV"}, {"units": "dB", "long_name": "sigma nought VH"}],
        **kw,  # type: ignore[arg-type]
    )
    return path


def _validate_core_offline(item: dict) -> None:
    JsonSchemaSTACValidator().validate_core(item, STACObjectType.ITEM, item["stac_version"])


def test_write_cog_writes_a_valid_item_beside_it(tmp_path: Path) -> None:
    tif = _s1_cog(tmp_path / "results" / "ci-tiny" / "s1" / "2022-01-04.tif")
    side = tif.with_name("2022-01-04" + SIDECAR_SUFFIX)
    assert stac_sidecar_path(tif) == side and side.is_file()
    d = json.loads(side.read_text())
    _validate_core_offline(d)
    assert d["id"] == "ci-tiny_s1_2022-01-04"
    assert d["properties"]["datetime"] == "2022-01-04T05:11:22Z"  # from the product id's start time
    assert d["properties"]["tirsit:datetime_source"] == "tag:product"
    assert d["properties"]["tirsit:tags"]["product"] == S1_PRODUCT

    item = pystac.Item.from_dict(d)
    proj = ProjectionExtension.ext(item)
    assert proj.code == "EPSG:32633" and proj.epsg == 32633
    assert proj.shape == [48, 64]
    assert proj.transform == [10.0, 0.0, GRID.transform.c, 0.0, -10.0, GRID.transform.f]
    assert proj.bbox == pytest.approx(list(GRID.bounds))

    # Footprint in lon/lat: around the requested centre, 640 m x 480 m on the ellipsoid (UTM scale ~1.0001).
    poly = shape(d["geometry"])
    assert poly.is_valid and poly.exterior.is_ccw and poly.contains(Point(12.50, 42.00))
    w, s, e, n = d["bbox"]
    assert poly.bounds == pytest.approx((w, s, e, n))
    assert ((w + e) / 2, (s + n) / 2) == pytest.approx((12.50, 42.00), abs=2e-4)
    geod = Geod(ellps="WGS84")
    ring = np.asarray(poly.exterior.coords)
    sw = ring[np.argmin(ring[:, 0] + ring[:, 1])]
    se = ring[np.argmax(ring[:, 0] - ring[:, 1])]
    nw = ring[np.argmin(ring[:, 0] - ring[:, 1])]
    assert geod.inv(*sw, *se)[2] == pytest.approx(640.0, rel=2e-3)
    assert geod.inv(*sw, *nw)[2] == pytest.approx(480.0, rel=2e-3)

    asset = item.assets["data"]
    assert asset.href == "./2022-01-04.tif" and d["assets"]["data"]["href"] == "./2022-01-04.tif"
    assert asset.media_type == pystac.MediaType.COG and asset.roles == ["data"]
    rbands = RasterExtension.ext(asset).bands
    assert rbands is not None
    assert [(b.nodata, b.data_type, b.unit) for b in rbands] == [("nan", "float32", "dB")] * 2
    ebands = EOExtension.ext(asset).bands
    assert ebands is not None
    assert [(b.name, b.description) for b in ebands] == [("VV", "sigma nought VV"), ("VH", "sigma nought VH")]
    fext = FileExtension.ext(asset)
    assert fext.size == tif.stat().st_size
    assert fext.checksum == "1220" + hashlib.sha256(tif.read_bytes()).hexdigest()
    assert sidecar_is_current(tif)


def test_integer_raster_and_crs_without_epsg(tmp_path: Path) -> None:
    laea = "+proj=laea +lat_0=41.7 +lon_0=12.3 +x_0=1000 +y_0=2000 +ellps=WGS84 +units=m +no_defs"
    tif = tmp_path / "mask.tif"
    data = (np.arange(32 * 40).reshape(1, 32, 40) % 3).astype(np.uint8)
    write_cog(
        data, tif, crs=laea, transform=rasterio.Affine(20.0, 0, -400.0, 0, -20.0, 300.0), descriptions=["cls"], nodata=0
    )
    d = json.loads(stac_sidecar_path(tif).read_text())
    _validate_core_offline(d)
    assert d["id"] == f"{tmp_path.name}_mask"
    assert d["properties"]["proj:code"] is None and "Lambert" in d["properties"]["proj:wkt2"]
    assert d["assets"]["data"]["raster:bands"] == [{"nodata": 0, "data_type": "uint8"}]
    assert d["assets"]["data"]["eo:bands"] == [{"name": "cls"}]
    # x -400..400 m and y -340..300 m lie 1400..600 m west and 2340..1700 m south of the projection's origin
    # (false easting 1000 m, northing 2000 m) at (12.3 E, 41.7 N); 1 deg = 83100 m of lon, 111050 m of lat there.
    expected = [12.3 - 1400 / 83100, 41.7 - 2340 / 111050, 12.3 - 600 / 83100, 41.7 - 1700 / 111050]
    assert d["bbox"] == pytest.approx(expected, abs=1e-4)
    assert d["properties"]["tirsit:datetime_source"] == "file_mtime"  # no date anywhere: stated, not invented


@pytest.mark.parametrize(
    ("name", "tags", "arg", "expected", "source"),
    [
        ("x.tif", {"datetime": "2022-01-04T10:00:00+01:00"}, None, "2022-01-04T09:00:00Z", "tag:datetime"),
        (
            "x.tif",
            {"sensing_time": "2022-01-28T10:03:09.024000"},
            None,
            "2022-01-28T10:03:09.024000Z",
            "tag:sensing_time",
        ),
        ("tirsit.tif", {"target_date": "2022-01-04"}, None, "2022-01-04T00:00:00Z", "tag:target_date"),
        ("2021-12-23.tif", {}, None, "2021-12-23T00:00:00Z", "file_name"),
        ("2021-12-23.tif", {"target_date": "2022-01-04"}, dt.date(2022, 1, 28), "2022-01-28T00:00:00Z", "argument"),
    ],
)
def test_datetime_sources(
    tmp_path: Path, name: str, tags: dict[str, str], arg: dt.date | None, expected: str, source: str
) -> None:
    tif = tmp_path / name
    write_cog(_data()[:1], tif, crs=GRID.crs, transform=GRID.transform, descriptions=["B04"], tags=tags, stac=False)
    assert not stac_sidecar_path(tif).exists()
    d = stac_item_for_cog(tif, item_id="x", datetime=arg)
    assert (d["properties"]["datetime"], d["properties"]["tirsit:datetime_source"]) == (expected, source)
    assert d["id"] == "x"


def test_rewrite_and_staleness(tmp_path: Path) -> None:
    tif = _s1_cog(tmp_path / "2022-01-04.tif", seed=0)
    first = json.loads(stac_sidecar_path(tif).read_text())["assets"]["data"]["file:checksum"]
    _s1_cog(tif, seed=1)  # a rerun of the job: new COG, new sidecar
    second = json.loads(stac_sidecar_path(tif).read_text())["assets"]["data"]["file:checksum"]
    assert second != first and sidecar_is_current(tif)

    # A COG replaced behind the pipeline's back: the sidecar's size/checksum no longer match.
    with rasterio.open(tif, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as ds:
        ds.write(np.zeros((2, GRID.height, GRID.width), np.float32))
    assert not sidecar_is_current(tif)
    write_stac_sidecar(tif)
    assert sidecar_is_current(tif)

    # Without a sidecar wanted, the old one goes: never one describing a different file.
    _s1_cog(tif, seed=2, stac=False)
    assert not stac_sidecar_path(tif).exists() and not sidecar_is_current(tif)


def test_failed_rewrite_leaves_no_sidecar(tmp_path: Path) -> None:
    tif = _s1_cog(tmp_path / "2022-01-04.tif")
    before = tif.read_bytes()
    with pytest.raises(Exception, match="(?i)crs"):
        write_cog(_data(), tif, crs="EPSG:999999", transform=GRID.transform, descriptions=["VV", "VH"])
    assert tif.read_bytes() == before, "the COG is written atomically"
    assert not stac_sidecar_path(tif).exists(), "the sidecar went before the rewrite began"
    assert not list(tmp_path.glob(".*part*"))


def test_streaming_writer_writes_the_sidecar(tmp_path: Path) -> None:
    tif = tmp_path / "results" / "r" / "pred" / "exp" / "tirsit.tif"
    data = _data(3, bands=3)
    with cog_writer(
        tif,
        height=GRID.height,
        width=GRID.width,
        count=3,
        crs=GRID.crs,
        transform=GRID.transform,
        descriptions=["B04", "B03", "B02"],
        tags={"target_date": "2022-01-04"},
    ) as dst:
        for r0 in range(0, GRID.height, 16):
            dst.write(data[:, r0 : r0 + 16], window=Window(0, r0, GRID.width, 16))
    d = json.loads(stac_sidecar_path(tif).read_text())
    _validate_core_offline(d)
    assert d["id"] == "r_pred_exp_tirsit" and d["properties"]["datetime"] == "2022-01-04T00:00:00Z"
    assert [b["name"] for b in d["assets"]["data"]["eo:bands"]] == ["B04", "B03", "B02"]
    assert sidecar_is_current(tif)
