"""Demo Sentinel-2 L2A products: determinism, metadata, XSDs, georeferencing, lossless JP2 and clouds."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import rasterio
import xmlschema

from pipeline_lib.demo import DEMO_DATES, demo_bounds
from pipeline_lib.demo.s2 import TILE_ULX, TILE_ULY, render_s2, s2_product_id, s2_window_for, write_s2_product
from pipeline_lib.demo.surface import CLOUDY_DATE, simulate_surface

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
REP_INFO = next((FIXTURES / "s2-l2a-stactools").glob("*.SAFE")) / "rep_info"
BOUNDS = demo_bounds(128)


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("s2")
    out = {}
    for d in DEMO_DATES:
        (root / d.isoformat()).mkdir()
        out[d.isoformat()] = write_s2_product(root / d.isoformat(), d, BOUNDS, 0)[0]
    (root / "again").mkdir()
    out["again"] = write_s2_product(root / "again", CLOUDY_DATE, BOUNDS, 0)[0]
    (root / "seed1").mkdir()
    out["seed1"] = write_s2_product(root / "seed1", CLOUDY_DATE, BOUNDS, 1)[0]
    return out


def _jp2(safe: Path, band: str) -> Path:
    hits = sorted(safe.glob(f"GRANULE/*/IMG_DATA/R*m/*_{band}_*m.jp2"))
    assert len(hits) == 1, hits
    return hits[0]


def test_names_and_metadata(products: dict[str, Path]) -> None:
    safe = products["2022-01-04"]
    assert safe.name == f"{s2_product_id(date(2022, 1, 4))}.SAFE"
    assert safe.name.startswith("S2B_MSIL2A_20220104T") and "_N0400_R022_T33TTG_" in safe.name
    mtd = ET.parse(safe / "MTD_MSIL2A.xml").getroot()
    assert mtd.findtext(".//BOA_QUANTIFICATION_VALUE") == "10000"
    assert {e.text for e in mtd.iter("BOA_ADD_OFFSET")} == {"-1000"}
    assert mtd.findtext(".//PROCESSING_BASELINE") == "04.00"
    assert mtd.findtext(".//PRODUCT_URI") == safe.name
    assert "T29UNU" not in (safe / "MTD_MSIL2A.xml").read_text()
    tl_path = next(safe.glob("GRANULE/*/MTD_TL.xml"))
    tl = ET.parse(tl_path).getroot()
    assert tl.findtext(".//HORIZONTAL_CS_CODE") == "EPSG:32633"
    assert float(tl.findtext(".//Geoposition/ULX")) == TILE_ULX and float(tl.findtext(".//Geoposition/ULY")) == TILE_ULY
    assert tl.findtext(".//SENSING_TIME").startswith("2022-01-04T")
    # every image file the product metadata lists for our bands exists where it says
    for f in mtd.iter("IMAGE_FILE"):
        if any(f.text.endswith(s) for s in ("_B02_10m", "_B03_10m", "_B04_10m", "_B11_20m", "_B12_20m", "_SCL_20m")):
            assert (safe / f"{f.text}.jp2").is_file(), f.text


@pytest.mark.parametrize(
    ("xsd", "name"),
    [
        ("S2_User_Product_Level-2A_Metadata.xsd", "MTD_MSIL2A.xml"),
        ("S2_PDI_Level-2A_Tile_Metadata.xsd", "GRANULE/*/MTD_TL.xml"),
    ],
)
def test_xml_validates_against_rep_info_xsd(products: dict[str, Path], xsd: str, name: str) -> None:
    # rep_info's XSDs import the dimap type library, which the product does not ship: lax mode
    # checks the document structure those XSDs define (root element, section sequence).
    with pytest.warns(xmlschema.XMLSchemaImportWarning):
        schema = xmlschema.XMLSchema(REP_INFO / xsd, validation="lax")
    doc = next(products["2022-01-16"].glob(name))
    assert list(schema.iter_errors(doc)) == []
    root = ET.parse(doc).getroot()
    root.remove(root[0])  # a document missing General_Info must fail: the check is real
    assert list(schema.iter_errors(ET.tostring(root, encoding="unicode")))


def test_jp2_georeferencing_and_lossless(products: dict[str, Path]) -> None:
    safe = products["2022-01-16"]
    win = s2_window_for(BOUNDS)
    expected = render_s2(win, CLOUDY_DATE, 0)
    for band, res in (("B02", 10), ("B03", 10), ("B04", 10), ("B11", 20), ("B12", 20), ("SCL", 20)):
        with rasterio.open(_jp2(safe, band)) as src:
            assert src.driver == "JP2OpenJPEG"
            assert src.crs.to_epsg() == 32633
            t = src.transform
            assert (t.a, t.e) == (res, -res)
            assert (t.c - TILE_ULX) % res == 0 and (TILE_ULY - t.f) % res == 0
            left, bottom, right, top = src.bounds
            assert left <= BOUNDS[0] and right >= BOUNDS[2] and bottom <= BOUNDS[1] and top >= BOUNDS[3]
            np.testing.assert_array_equal(src.read(1), expected[band])


def test_reflectance_matches_surface(products: dict[str, Path]) -> None:
    when = date(2022, 1, 4)
    with rasterio.open(_jp2(products[when.isoformat()], "B04")) as src:
        dn = src.read(1).astype(float)
        t = src.transform
    cols, rows = np.meshgrid(np.arange(dn.shape[1]), np.arange(dn.shape[0]))
    x, y = t.c + (cols + 0.5) * t.a, t.f + (rows + 0.5) * t.e
    refl = (dn - 1000.0) / 10000.0
    np.testing.assert_allclose(refl, simulate_surface(x, y, when)["B04"], atol=0.5e-4 + 1e-6)
    with rasterio.open(_jp2(products[when.isoformat()], "B11")) as src:
        b11 = (src.read(1).astype(float) - 1000.0) / 10000.0
    # water is dark in SWIR, land is not
    water = simulate_surface(x, y, when)["water"].reshape(b11.shape[0], 2, b11.shape[1], 2).mean(axis=(1, 3)) > 0.9
    assert water.any() and (~water).any()
    assert b11[water].mean() < 0.05 < b11[~water].mean()


def test_cloud_only_on_cloudy_date(products: dict[str, Path]) -> None:
    for d in DEMO_DATES:
        with rasterio.open(_jp2(products[d.isoformat()], "SCL")) as src:
            scl = src.read(1)
        cloudy = np.isin(scl, (8, 9))
        if d == CLOUDY_DATE:
            assert 0.02 < cloudy.mean() < 0.6 and (scl == 9).any()
        else:
            assert not cloudy.any()
        assert set(np.unique(scl)) <= {4, 5, 6, 8, 9}


def test_deterministic_bytes(products: dict[str, Path]) -> None:
    for band in ("B02", "B11", "SCL"):
        a = _jp2(products[CLOUDY_DATE.isoformat()], band).read_bytes()
        assert a == _jp2(products["again"], band).read_bytes()
        assert a != _jp2(products["seed1"], band).read_bytes()


def test_dates_differ_pairwise(products: dict[str, Path]) -> None:
    imgs = []
    for d in DEMO_DATES:
        with rasterio.open(_jp2(products[d.isoformat()], "B11")) as src:
            imgs.append(src.read(1).astype(float))
    for i in range(len(imgs)):
        for j in range(i + 1, len(imgs)):
            assert np.mean(np.abs(imgs[i] - imgs[j]) > 200) > 0.01, (i, j)
