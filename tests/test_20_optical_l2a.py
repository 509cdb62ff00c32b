"""Sentinel-2 L2A chain on the real stactools product (R60m bands + SCL_20m are real, unmodified)."""

from __future__ import annotations

import re
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from pipeline_lib.errors import ConfigError, CoverageError, ProductError
from pipeline_lib.grid import Grid, make_centered_grid
from pipeline_lib.optical import dn_to_reflectance, read_l2a_metadata, run_l2a, scl_valid_mask
from pipeline_lib.optical.l2a import SCL_MASKED_CLASSES, select_band_file

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
S2_SAFE = FIXTURES / "s2-l2a-stactools" / "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
IMG = "GRANULE/L2A_T29UNU_A038058_20221005T115407/IMG_DATA"
SCL = f"{IMG}/R20m/T29UNU_20221005T115411_SCL_20m.jp2"
BANDS = {b: f"{IMG}/R60m/T29UNU_20221005T115411_{b}_60m.jp2" for b in ("B04", "B03", "B02", "B11", "B12")}
TILE_X0, TILE_Y0 = 499980.0, 5900040.0  # UL of T29UNU (MTD_TL.xml ULX/ULY)
MASKED = np.array(SCL_MASKED_CLASSES)


def _copy_product(dest: Path, skip: tuple[str, ...] = ()) -> Path:
    safe = dest / S2_SAFE.name
    for m in ["MTD_MSIL2A.xml", SCL, *BANDS.values()]:
        if any(s in m for s in skip):
            continue
        (safe / m).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(S2_SAFE / m, safe / m)
    return safe


def _read(path: Path, member: str, col: int, row: int, w: int, h: int) -> np.ndarray:
    with rasterio.open(path / member) as ds:
        return ds.read(1, window=Window(col, row, w, h))


def _out(path: Path) -> tuple[np.ndarray, dict[int, dict[str, str]], tuple[str | None, ...]]:
    with rasterio.open(path) as ds:
        return ds.read(), {i: ds.tags(i) for i in range(1, ds.count + 1)}, ds.descriptions


def test_metadata_of_real_product() -> None:
    meta = read_l2a_metadata((S2_SAFE / "MTD_MSIL2A.xml").read_bytes())
    assert meta.processing_baseline == "04.00" and meta.quantification == 10000.0
    assert meta.offsets["B04"] == -1000.0 and meta.offsets["B12"] == -1000.0 and len(meta.offsets) == 13
    assert meta.tile_id == "29UNU" and meta.sensing_time.isoformat() == "2022-10-05T11:54:11.024000+00:00"
    assert meta.band_files["B11"] == {20: f"{IMG}/R20m/T29UNU_20221005T115411_B11_20m.jp2", 60: BANDS["B11"]}
    assert set(meta.band_files["B02"]) == {10, 20, 60} and meta.cloud_cover == pytest.approx(59.769726)
    lon, lat = meta.footprint_lonlat[0]
    assert (lon, lat) == (-7.7604675, 53.24107326120979)  # EXT_POS_LIST is lat lon: swapped
    # band choice: preferred 10 m / 20 m are absent in this subset, so it falls back
    avail = {"MTD_MSIL2A.xml", SCL, *BANDS.values()}
    assert select_band_file(meta, "B04", avail, "p") == (BANDS["B04"], 60)
    assert select_band_file(meta, "SCL", avail, "p") == (SCL, 20)
    assert select_band_file(meta, "B04", avail | {meta.band_files["B04"][20]}, "p")[1] == 20


def _mtd_variant(baseline: str = "04.00", drop: tuple[str, ...] = (), edit: tuple[str, str] | None = None) -> bytes:
    text = (S2_SAFE / "MTD_MSIL2A.xml").read_text(encoding="utf-8")
    text = text.replace("<PROCESSING_BASELINE>04.00<", f"<PROCESSING_BASELINE>{baseline}<")
    for tag in drop:
        text = re.sub(rf"<{tag}[ >].*?</{tag}>", "", text, flags=re.S)
    if edit:
        text = text.replace(*edit)
    return text.encode()


def test_offsets_decided_per_product() -> None:
    with pytest.raises(ProductError, match="baseline 04.00 requires BOA_ADD_OFFSET"):
        read_l2a_metadata(_mtd_variant(drop=("BOA_ADD_OFFSET_VALUES_LIST",)))
    old = read_l2a_metadata(_mtd_variant("03.01", drop=("BOA_ADD_OFFSET_VALUES_LIST",)))
    assert old.offsets["B04"] == 0.0 and old.offsets["B11"] == 0.0
    # a product's own per-band value is used, by band_id (B04 is bandId 3)
    odd = read_l2a_metadata(
        _mtd_variant("05.10", edit=('<BOA_ADD_OFFSET band_id="3">-1000', '<BOA_ADD_OFFSET band_id="3">-500'))
    )
    assert odd.offsets["B04"] == -500.0 and odd.offsets["B03"] == -1000.0
    with pytest.raises(ProductError, match="PROCESSING_BASELINE 'N/A' is missing or unparseable"):
        read_l2a_metadata(_mtd_variant("N/A"))
    with pytest.raises(ProductError, match="BOA_QUANTIFICATION_VALUE is missing"):
        read_l2a_metadata(_mtd_variant(drop=("BOA_QUANTIFICATION_VALUE",)))


def test_dn_to_reflectance_and_scl_mask() -> None:
    dn = np.array([0, 1, 1000, 1500, 11000, 65535], dtype=np.uint16)
    r = dn_to_reflectance(dn, -1000.0, 10000.0)
    assert r.dtype == np.float32
    np.testing.assert_array_equal(np.isnan(r), [True, False, False, False, False, True])
    np.testing.assert_allclose(r[1:5], [-0.0999, 0.0, 0.05, 1.0], rtol=1e-6)
    np.testing.assert_allclose(dn_to_reflectance(dn, 0.0, 10000.0)[3], 0.15, rtol=1e-6)
    scl = np.arange(12, dtype=np.uint8)
    np.testing.assert_array_equal(scl_valid_mask(scl), [c not in (0, 1, 3, 8, 9, 10) for c in range(12)])


@pytest.fixture(scope="module")
def product(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _copy_product(tmp_path_factory.mktemp("s2"))


def test_aligned_60m_grid_known_answer(product: Path, tmp_path: Path) -> None:
    col, row, n = 394, 2, 48  # 60 m pixels of the tile; a cloud edge (classes 4 / 3, 8, 9, 10)
    grid = Grid("EPSG:32629", Affine(60, 0, TILE_X0 + 60 * col, 0, -60, TILE_Y0 - 60 * row), n, n)
    run_l2a(product, grid, tmp_path / "o.tif")
    data, tags, desc = _out(tmp_path / "o.tif")
    assert desc == ("B04", "B03", "B02", "B11", "B12", "valid") and data.dtype == np.float32
    scl = _read(product, SCL, 3 * col, 3 * row, 3 * n, 3 * n)
    masked = np.isin(scl, MASKED).reshape(n, 3, n, 3).any(axis=(1, 3))  # any of the 3x3 SCL pixels
    dns = {b: _read(product, m, col, row, n, n) for b, m in BANDS.items()}
    expect_valid = ~masked & np.all([d != 0 for d in dns.values()], axis=0)
    np.testing.assert_array_equal(data[5], expect_valid.astype(np.float32))
    assert 0.1 < expect_valid.mean() < 0.9  # the test region really has both
    for i, b in enumerate(("B04", "B03", "B02", "B11", "B12")):
        expect = (dns[b].astype(np.float64) - 1000.0) / 10000.0
        np.testing.assert_allclose(data[i][expect_valid], expect[expect_valid], rtol=0, atol=1e-6)
        assert np.isnan(data[i][~expect_valid]).all()
        assert tags[i + 1]["source_resolution_m"] == "60" and tags[i + 1]["boa_add_offset"] == "-1000"
    assert tags[6]["source_resolution_m"] == "20"


def test_10m_grid_mask_is_nearest_when_aligned_and_union_when_not(product: Path, tmp_path: Path) -> None:
    n = 64
    x0, y0 = 524000.0, 5899000.0  # on the 20 m SCL lattice
    c0, r0 = int((x0 - TILE_X0) / 20), int((TILE_Y0 - y0) / 20)
    scl_m = np.isin(_read(product, SCL, c0, r0, n // 2 + 2, n // 2 + 2), MASKED)
    run_l2a(product, Grid("EPSG:32629", Affine(10, 0, x0, 0, -10, y0), n, n), tmp_path / "a.tif")
    valid = _out(tmp_path / "a.tif")[0][5]
    idx = np.arange(n) // 2
    np.testing.assert_array_equal(valid, (~scl_m[np.ix_(idx, idx)]).astype(np.float32))
    assert 0.05 < valid.mean() < 0.95
    # shifted by half an SCL pixel in x: each 10 m pixel overlaps two SCL columns; masked if either is
    run_l2a(product, Grid("EPSG:32629", Affine(10, 0, x0 + 5, 0, -10, y0), n, n), tmp_path / "b.tif")
    shifted = _out(tmp_path / "b.tif")[0][5]
    cols = np.arange(n)
    left, right = (10 * cols + 5) // 20, (10 * cols + 14) // 20
    expect = ~(scl_m[np.ix_(idx, left)] | scl_m[np.ix_(idx, right)])
    np.testing.assert_array_equal(shifted, expect.astype(np.float32))
    assert shifted.sum() < valid.sum()


def test_zip_equals_folder_and_reprojected_grid(product: Path, tmp_path: Path) -> None:
    z = tmp_path / f"{product.stem}.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(p for p in product.rglob("*") if p.is_file()):
            zf.write(f, f"{product.name}/{f.relative_to(product).as_posix()}")
    # a grid in another CRS (ETRS89-LAEA) exercises the reprojection path
    grid = Grid("EPSG:3035", Affine(10, 0, 3_089_000, 0, -10, 3_507_000), 40, 40)
    for name, src in (("f.tif", product), ("z.tif", z)):
        run_l2a(src, grid, tmp_path / name, resampling="cubic")
    a, tags, _ = _out(tmp_path / "f.tif")
    b, _, _ = _out(tmp_path / "z.tif")
    np.testing.assert_array_equal(np.isnan(a), np.isnan(b))
    np.testing.assert_array_equal(a[~np.isnan(a)], b[~np.isnan(b)])
    vis = a[:3][:, a[5] == 1]
    assert (a[5] == 1).mean() > 0.5 and np.all((vis > -0.1) & (vis < 1.0)) and tags[1]["resampling"] == "cubic"


def test_errors(product: Path, tmp_path: Path) -> None:
    with pytest.raises(CoverageError, match="does not cover the grid"):
        run_l2a(product, make_centered_grid((12.5, 42.0), (16, 16)), tmp_path / "x.tif")
    cloudy = Grid("EPSG:32629", Affine(20, 0, 528000, 0, -20, 5899840), 24, 24)  # all SCL 8/9 there
    assert np.isin(_read(product, SCL, 1401, 10, 24, 24), MASKED).all()
    with pytest.raises(ProductError, match="all pixels cloudy/nodata over the AOI; choose another date"):
        run_l2a(product, cloudy, tmp_path / "x.tif")
    with pytest.raises(ConfigError, match="optical.resampling"):
        run_l2a(product, cloudy, tmp_path / "x.tif", resampling="lanczos")
    no_b11 = _copy_product(tmp_path / "nob11", skip=("_B11_",))
    with pytest.raises(ProductError, match=r"has no B11 \(looked for .*B11_20m\.jp2, .*B11_60m\.jp2\)"):
        run_l2a(no_b11, cloudy, tmp_path / "x.tif")
    assert not (tmp_path / "x.tif").exists()
