"""The files source (DESIGN §4): discovery, pairing, ingestion of real analysis-ready chips
(data/real-ts) onto the grid, and each bad input as a one-line error naming the file, nothing written."""

from __future__ import annotations

import json
import shutil
from datetime import date
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import REPO

from pipeline_lib.config import load_region
from pipeline_lib.errors import ConfigError, CoverageError, FetchError, ProductError, SceneNotFoundError
from pipeline_lib.fetch import run_search
from pipeline_lib.fetch.base import SearchRequest, read_scene_table
from pipeline_lib.fetch.files import FilesSource, list_files, modality_spec, pattern_regex, select_files
from pipeline_lib.grid import Grid, make_grid
from pipeline_lib.ingest import find_band, grid_of_file, ingest_raster
from pipeline_lib.stac import stac_sidecar_path
from pipeline_lib.stacks import build_stack

REAL = REPO / "data" / "real-ts"
PATCH = REAL / "wc-belgium-patch-2018"
MONTHLY = REAL / "wc-belgium-monthly-2021"
SLOVENIA = REAL / "eolearn-slovenia-s2l1c-2015"
S1_CFG = {"dir": str(PATCH / "s1"), "pattern": "s1_{%Y%m%dT%H%M%S}.tif"}
S2_CFG = {
    "dir": str(PATCH / "s2"),
    "pattern": "s2_{%Y%m%dT%H%M%S}.tif",
    "scale": 0.0001,
    "nodata": 0,
    "mask": {"band": "SCL", "keep": [2, 4, 5, 6, 7, 11]},
}
S2_BANDS = {"B04": "B04", "B03": "B03", "B02": "B02", "B11": "B11", "B12": "B12"}


def s1_spec(**over: object) -> object:
    return modality_spec("s1", {**S1_CFG, "bands": {"VV": "VV", "VH": "VH"}, **over})


def s2_spec(**over: object) -> object:
    return modality_spec("s2", {**S2_CFG, "bands": S2_BANDS, **over})


def _write(path: Path, data: np.ndarray, like: Path, **profile: object) -> Path:
    with rasterio.open(like) as src:
        prof = src.profile | {"count": data.shape[0], "dtype": data.dtype.name, **profile}
        desc = src.descriptions
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(data)
        for i, d in enumerate(desc[: data.shape[0]], start=1):
            dst.set_band_description(i, d or "")
    return path


def test_pattern_regex_dates() -> None:
    rx, fmt = pattern_regex("s2_{%Y%m%dT%H%M%S}.tif")
    m = rx.match("s2_20180708T110215.tif")
    assert m and m.group("when") == "20180708T110215" and fmt == "%Y%m%dT%H%M%S"
    assert rx.match("s2_20180708T110215.tif.aux.xml") is None
    rx, _ = pattern_regex("*_{%Y-%m}.tif")
    assert rx.match("S1_2021-06.tif")
    for bad in ("s2.tif", "s2_{%Y}_{%m}.tif", "s2_{%m%d}.tif", "s2_{%Y%q}.tif"):
        with pytest.raises(ConfigError, match="pattern"):
            pattern_regex(bad)


def test_list_files_real_series() -> None:
    s1 = list_files(s1_spec())
    assert len(s1) == 11 and s1[0].when.isoformat() == "2018-05-04T17:32:37+00:00"
    monthly = list_files(
        modality_spec("s2", {"dir": str(MONTHLY / "s2"), "pattern": "s2_{%Y-%m}.tif", "bands": S2_BANDS})
    )
    assert [e.label for e in monthly][:3] == ["2020-11", "2021-02", "2021-03"]  # S2 is absent in 2020-12, 2021-01
    assert monthly[0].when.isoformat() == "2020-11-01T12:00:00+00:00"


def test_pairing_within_tolerance_and_reason() -> None:
    specs = {"s1": s1_spec(), "s2": s2_spec()}
    cands = FilesSource(specs).search(SearchRequest((0, 0, 1, 1), [], 3.5))
    req = SearchRequest((0, 0, 1, 1), [date(2018, 7, 23)], 3.5)
    s1, s2 = select_files(cands, req, ["s1", "s2"])
    assert Path(s1.uri).name == "s1_20180721T173216.tif" and "1.77 d" in s1.reason
    assert Path(s2.uri).name == "s2_20180723T110518.tif"
    assert s2.footprint_wkt.startswith("POLYGON ((3.0")
    with pytest.raises(
        SceneNotFoundError, match=r"2018-07-23: no S1 file within pair_tolerance_days=1 .*s1_20180721T173216.tif"
    ):
        select_files(cands, SearchRequest((0, 0, 1, 1), [date(2018, 7, 23)], 1), ["s1", "s2"])


def test_run_search_writes_scene_table(tmp_path: Path) -> None:
    fetch = {"source": "files", "files": {"s1": None, "s2": {**S2_CFG, "bands": S2_BANDS}}}
    got = run_search(fetch, (0, 0, 1, 1), ["2018-06-28", "2018-07-08"], 0.5, 80, tmp_path / "scenes.csv")
    rows = read_scene_table(tmp_path / "scenes.csv")
    assert [r.mission for r in rows] == ["S2", "S2"] and rows == got
    assert rows[1].product_type == "ARD_L2A" and rows[1].source == "files"


def test_ingest_s2_on_its_own_grid_is_an_exact_copy(tmp_path: Path) -> None:
    src = PATCH / "s2" / "s2_20180708T110215.tif"
    grid = grid_of_file(src)
    out = tmp_path / "s2.tif"
    ingest_raster(src, s2_spec(), grid, out, date="2018-07-08", acquired="2018-07-08T11:02:15+00:00")
    with rasterio.open(src) as ds:
        dn = ds.read()
        desc = ds.descriptions
    with rasterio.open(out) as o:
        got = o.read()
        assert o.descriptions == ("B04", "B03", "B02", "B11", "B12", "valid")
        tags = o.tags()
        assert o.tags(1)["units"] == "1" and "surface reflectance" in o.tags(1)["long_name"]
    assert tags["processing_level"] == "L2A" and tags["resampling"].startswith("none")
    scl = dn[desc.index("SCL scene classification (native 20 m)")]
    expect_valid = np.isin(scl, [2, 4, 5, 6, 7, 11]) & np.all(dn[:10] != 0, axis=0)
    np.testing.assert_array_equal(got[5] == 1, expect_valid)
    b04 = dn[[d.split()[0] for d in desc].index("B04")].astype(np.float32)
    np.testing.assert_allclose(got[0][expect_valid], (b04 * np.float32(1e-4))[expect_valid], rtol=1e-6)
    assert np.isnan(got[0][~expect_valid]).all()
    item = json.loads(stac_sidecar_path(out).read_text())
    assert item["properties"]["datetime"].startswith("2018-07-08T11:02:15")
    assert item["properties"]["tirsit:tags"]["processing_level"] == "L2A"


def test_ingest_s1_records_quantity_and_unit(tmp_path: Path) -> None:
    src = PATCH / "s1" / "s1_20180708T174047.tif"
    out = tmp_path / "s1.tif"
    ingest_raster(
        src,
        s1_spec(quantity="gamma0_rtc"),
        grid_of_file(src),
        out,
        date="2018-07-08",
        acquired="2018-07-08T17:40:47+00:00",
    )
    with rasterio.open(src) as ds, rasterio.open(out) as o:
        np.testing.assert_array_equal(o.read(), ds.read())
        assert o.descriptions == ("VV", "VH") and o.tags(1)["units"] == "dB"
    item = json.loads(stac_sidecar_path(out).read_text())
    assert item["properties"]["tirsit:tags"]["s1_quantity"] == "gamma0_rtc"
    assert item["properties"]["tirsit:tags"]["source_unit"] == "db"
    assert item["assets"]["data"]["raster:bands"][0]["unit"] == "dB"


def test_linear_files_become_db(tmp_path: Path) -> None:
    src = PATCH / "s1" / "s1_20180708T174047.tif"
    with rasterio.open(src) as ds:
        db = ds.read()
    lin = _write(tmp_path / "lin.tif", (10 ** (db / 10)).astype(np.float32), src)
    out = tmp_path / "s1.tif"
    ingest_raster(lin, s1_spec(unit="linear"), grid_of_file(src), out, date="2018-07-08", acquired="2018-07-08")
    with rasterio.open(out) as o:
        np.testing.assert_allclose(o.read(), db, atol=1e-4)
        assert o.tags()["source_unit"] == "linear"


def test_files_in_another_crs_and_resolution_are_warped(tmp_path: Path) -> None:
    src = MONTHLY / "s2" / "s2_2021-06.tif"
    own = grid_of_file(src)
    # a 20 m grid in geographic coordinates over the middle of the chip
    w, s, e, n = own.lonlat_bounds()
    grid = make_grid((w + 0.2 * (e - w), s + 0.2 * (n - s), e - 0.2 * (e - w), n - 0.2 * (n - s)), 20.0, "EPSG:4326")
    out = tmp_path / "s2.tif"
    spec = modality_spec(
        "s2", {"dir": str(MONTHLY / "s2"), "pattern": "s2_{%Y-%m}.tif", "bands": S2_BANDS, "scale": 1e-4}
    )
    ingest_raster(src, spec, grid, out, date="2021-06-01", acquired="2021-06-01")
    with rasterio.open(out) as o, rasterio.open(src) as ds:
        got = o.read(1)
        assert o.crs.to_epsg() == 4326 and got.shape == grid.shape
        assert o.tags()["resampling"] == "bilinear"
        b04 = ds.read(3).astype(np.float64) * 1e-4
    assert np.isfinite(got).all()
    assert abs(float(got.mean()) - float(b04[20:80, 20:80].mean())) < 0.1 * float(b04.mean())


def test_slovenia_grid_keeps_its_pixel_size(tmp_path: Path) -> None:
    src = SLOVENIA / "s2l1c" / "s2l1c_20150830T100547.tif"
    grid = grid_of_file(src)
    assert grid.shape == (101, 100) and abs(grid.transform.a - 9.99479) < 1e-4 and grid.crs == "EPSG:32633"
    out = tmp_path / "s2.tif"
    spec = modality_spec(
        "s2", {"dir": str(src.parent), "pattern": "s2l1c_{%Y%m%dT%H%M%S}.tif", "bands": S2_BANDS, "level": "L1C"}
    )
    ingest_raster(src, spec, grid, out, date="2015-08-30", acquired="2015-08-30T10:05:47")
    with rasterio.open(out) as o:
        assert o.tags()["processing_level"] == "L1C" and "top-of-atmosphere" in o.tags(1)["long_name"]
        assert o.transform == grid.transform and np.isfinite(o.read(1)).all()


def test_l1c_and_l2a_are_never_mixed_in_one_stack(tmp_path: Path) -> None:
    s2 = {}
    for d, f, level in (
        ("2015-07-11", "s2l1c_20150711T100008.tif", "L1C"),
        ("2015-08-30", "s2l1c_20150830T100547.tif", "L1C"),
        ("2015-09-09", "s2l1c_20150909T100017.tif", "L2A"),
    ):
        src = SLOVENIA / "s2l1c" / f
        spec = modality_spec("s2", {"paths": {d: str(src)}, "bands": S2_BANDS, "level": level})
        ingest_raster(src, spec, grid_of_file(src), tmp_path / f"{d}.tif", date=d, acquired=d)
        s2[d] = tmp_path / f"{d}.tif"
    exp = {"name": "v", "task": "visible_to_swir", "target": "2015-08-30", "guides": ["2015-07-11", "2015-09-09"]}
    with pytest.raises(ProductError, match=r"product level differs .*2015-09-09: L2A.*never L1C with L2A"):
        build_stack(exp, {}, s2)
    s2["2015-09-09"].unlink()
    ingest_raster(
        SLOVENIA / "s2l1c" / "s2l1c_20150909T100017.tif",
        modality_spec("s2", {"paths": {"2015-09-09": "x"}, "bands": S2_BANDS, "level": "L1C"}),
        grid_of_file(SLOVENIA / "s2l1c" / "s2l1c_20150909T100017.tif"),
        s2["2015-09-09"],
        date="2015-09-09",
        acquired="2015-09-09",
    )
    ds, _ = build_stack(exp, {}, s2)
    assert ds.attrs["target_kind"] == "L1C" and ds.attrs["source_kind"] == "L1C"


# --- bad inputs: one line naming the file and the fix; nothing written -------------------------------


def _fails(exc: type[Exception], pattern: str, src: Path, spec: object, grid: Grid, out: Path) -> None:
    with pytest.raises(exc, match=pattern) as info:
        ingest_raster(src, spec, grid, out, date="2018-07-08", acquired="2018-07-08")
    assert "\n" not in str(info.value) and str(src) in str(info.value)
    assert not out.exists() and not stac_sidecar_path(out).exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_missing_band(tmp_path: Path) -> None:
    src = PATCH / "s2" / "s2_20180708T110215.tif"
    spec = s2_spec(bands={**S2_BANDS, "B11": "B09"})
    _fails(
        ProductError, r"no band 'B09' .*fix fetch.files.s2.bands.B11", src, spec, grid_of_file(src), tmp_path / "o.tif"
    )
    spec = s2_spec(bands={**S2_BANDS, "B11": 40})
    _fails(ProductError, r"has 11 bands, no band 40", src, spec, grid_of_file(src), tmp_path / "o.tif")


def test_find_band_by_description_word_or_index() -> None:
    desc = ("VV sigma0 [dB]", "VH sigma0 [dB]", "vv")
    assert (
        find_band(desc, "VH", "f", "k") == 2
        and find_band(desc, "vv", "f", "k") == 3
        and find_band(desc, 1, "f", "k") == 1
    )


def test_declared_db_but_linear_and_the_reverse(tmp_path: Path) -> None:
    src = PATCH / "s1" / "s1_20180708T174047.tif"
    grid = grid_of_file(src)
    with rasterio.open(src) as ds:
        db = ds.read()
    lin = _write(tmp_path / "lin.tif", (10 ** (db / 10)).astype(np.float32), src)
    _fails(
        ProductError,
        r"declared dB but the values look like linear power.*set fetch.files.s1.unit: linear",
        lin,
        s1_spec(),
        grid,
        tmp_path / "o.tif",
    )
    _fails(
        ProductError,
        r"declared linear power but \d+ % of the values are negative.*unit: db",
        src,
        s1_spec(unit="linear"),
        grid,
        tmp_path / "o.tif",
    )


def test_all_nodata_file(tmp_path: Path) -> None:
    src = PATCH / "s2" / "s2_20180708T110215.tif"
    with rasterio.open(src) as ds:
        dn = ds.read()
    empty = _write(tmp_path / "empty.tif", np.zeros_like(dn), src)
    _fails(
        ProductError, r"every pixel over the grid is nodata", empty, s2_spec(), grid_of_file(src), tmp_path / "o.tif"
    )


def test_clouds_everywhere_is_an_error(tmp_path: Path) -> None:
    src = PATCH / "s2" / "s2_20180708T110215.tif"
    _fails(
        ProductError,
        r"no valid pixel over the grid \(nodata, masked\)",
        src,
        s2_spec(mask={"band": "SCL", "keep": [9]}),
        grid_of_file(src),
        tmp_path / "o.tif",
    )


def test_unscaled_digital_numbers(tmp_path: Path) -> None:
    src = PATCH / "s2" / "s2_20180708T110215.tif"
    _fails(
        ProductError,
        r"look like digital numbers: set fetch.files.s2.scale",
        src,
        s2_spec(scale=1),
        grid_of_file(src),
        tmp_path / "o.tif",
    )


def test_raster_outside_the_grid(tmp_path: Path) -> None:
    src = PATCH / "s2" / "s2_20180708T110215.tif"
    grid = grid_of_file(src)
    far = Grid(grid.crs, grid.transform @ Affine.translation(0, 50_000), grid.height, grid.width)
    _fails(CoverageError, r"does not overlap the grid .*fix the aoi", src, s2_spec(), far, tmp_path / "o.tif")


def test_pattern_matching_nothing_and_two_files_for_one_date(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"matches no file in .*wc-belgium-patch-2018/s2 \(it holds s2_2018"):
        list_files(s2_spec(pattern="S2_{%Y%m%d}.tif"))
    folder = tmp_path / "s2"
    folder.mkdir()
    shutil.copy(PATCH / "s2" / "s2_20180708T110215.tif", folder / "s2_20180708T110215.tif")
    shutil.copy(PATCH / "s2" / "s2_20180708T110215.tif", folder / "s2_20180708T130000.tif")
    with pytest.raises(
        FetchError, match=r"two files for 2018-07-08: .*T110215.tif and .*T130000.tif; keep one per date"
    ):
        list_files(s2_spec(dir=str(folder)))
    with pytest.raises(FetchError, match=r"paths: .*nope.tif \(for 2018-07-08\) does not exist"):
        list_files(modality_spec("s2", {"paths": {"2018-07-08": str(tmp_path / "nope.tif")}, "bands": S2_BANDS}))


def test_region_config_keys(tmp_path: Path) -> None:
    regions = tmp_path / "regions"
    regions.mkdir()
    (regions / "mine.yaml").write_text(
        "region: mine\ndates: [2018-06-28, 2018-07-08, 2018-07-23]\n"
        "experiments: [{name: a, task: visible_to_swir, target: 2018-07-08, guides: [2018-06-28, 2018-07-23]}]\n"
        "fetch: {source: files, files: {s2: {paths: {2018-06-28: a.tif, 2018-07-08T11:02:15: b.tif}}}}\n"
    )
    cfg = load_region("mine", regions)
    assert cfg["fetch"]["files"]["s2"]["paths"] == {"2018-06-28": "a.tif", "2018-07-08T11:02:15": "b.tif"}
    assert cfg["fetch"]["files"]["s2"]["bands"] == S2_BANDS and cfg["fetch"]["files"]["s1"] is None
    (regions / "bad.yaml").write_text(
        "region: bad\ndates: [2018-06-28, 2018-07-08, 2018-07-23]\n"
        "experiments: [{name: a, task: visible_to_swir, target: 2018-07-08, guides: [2018-06-28, 2018-07-23]}]\n"
    )
    with pytest.raises(ConfigError, match=r"bad.yaml: aoi: required for fetch.source demo"):
        load_region("bad", regions)
    with pytest.raises(ConfigError, match=r"fetch.files.s2: give either paths"):
        modality_spec("s2", {"paths": {"2018-06-28": "a.tif"}, "dir": "x", "pattern": "a_{%Y}.tif", "bands": S2_BANDS})


@pytest.mark.parametrize("slug", ["wc-belgium-patch-2018", "wc-belgium-monthly-2021", "eolearn-slovenia-l1c-2015"])
def test_shipped_real_regions_resolve_every_date(slug: str, tmp_path: Path) -> None:
    cfg = load_region(slug, REPO / "config" / "regions")
    fetch = json.loads(json.dumps(cfg["fetch"]))
    for spec in fetch["files"].values():
        if spec:
            spec["dir"] = str(REPO / spec["dir"])
    rows = run_search(fetch, (0, 0, 1, 1), cfg["dates"], cfg["pair_tolerance_days"], 80, tmp_path / "s.csv")
    n_mod = 2 if fetch["files"]["s1"] else 1
    assert len(rows) == n_mod * len(cfg["dates"])


def test_mask_file_beside_each_raster_equals_the_band_mask(tmp_path: Path) -> None:
    src = PATCH / "s2" / "s2_20180708T110215.tif"
    copy = tmp_path / src.name
    shutil.copy(src, copy)
    with rasterio.open(src) as ds:
        scl = ds.read(ds.count)
    _write(tmp_path / f"{src.stem}_cloudmask.tif", np.isin(scl, [2, 4, 5, 6, 7, 11]).astype(np.uint16)[None], src)
    grid = grid_of_file(src)
    ingest_raster(src, s2_spec(), grid, tmp_path / "band.tif", date="2018-07-08", acquired="2018-07-08")
    spec = s2_spec(mask={"file": "{stem}_cloudmask.tif", "keep": [1]})
    ingest_raster(copy, spec, grid, tmp_path / "file.tif", date="2018-07-08", acquired="2018-07-08")
    with rasterio.open(tmp_path / "band.tif") as a, rasterio.open(tmp_path / "file.tif") as b:
        np.testing.assert_array_equal(a.read(6), b.read(6))
    (tmp_path / f"{src.stem}_cloudmask.tif").unlink()
    _fails(ProductError, r"its mask file .*_cloudmask.tif does not exist", copy, spec, grid, tmp_path / "o.tif")
