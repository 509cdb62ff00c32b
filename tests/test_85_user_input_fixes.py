"""The bad-input matrix, part two (DESIGN §9): the eight inputs a new user got wrong results or tracebacks from, each on a real fixture.

Every test derives its input from ``tests/data/fixtures`` (see ``fixture_variants``) or from a real
region file, in ``tmp_path``; the fixtures themselves are never changed.
"""

from __future__ import annotations

import dataclasses
import logging
import re
import shutil
import zipfile
from datetime import date, timedelta
from pathlib import Path

import pytest
import xarray as xr
import yaml
from conftest import REPO
from fixture_variants import (
    L1C_ZIP,
    S1_SAFE,
    S1_SAFE_AOI,
    S1_SAFE_DATE,
    S1_ZIP,
    S1_ZIP_2015,
    S1_ZIP_AOI,
    S1_ZIP_DATE,
    S2_AOI,
    S2_DATE,
    S2_SAFE,
    clone,
    edit,
    one,
    rezip,
    zero_noise,
)

from pipeline_lib.config import load_region
from pipeline_lib.errors import ConfigError, FetchError
from pipeline_lib.fetch import run_search
from pipeline_lib.fetch.base import Scene, SearchRequest, footprint_intersects, select_scenes
from pipeline_lib.fetch.credentials import credentials_source, missing_credentials_warning, resolve_credentials
from pipeline_lib.fetch.local import LocalSource, product_state
from pipeline_lib.grid import make_centered_grid
from pipeline_lib.sar import run_calibrate
from pipeline_lib.sar.noise import is_void, parse_noise
from pipeline_lib.xmlsafe import parse_xml

DEFAULTS = yaml.safe_load((REPO / "config/config.yaml").read_text())["defaults"]


def _region_file(tmp_path: Path, slug: str, text: str) -> Path:
    d = tmp_path / "regions"
    d.mkdir(exist_ok=True)
    (d / f"{slug}.yaml").write_text(text, encoding="utf-8")
    return d


def _ci_tiny_text(slug: str) -> str:
    return (REPO / "config/regions/ci-tiny.yaml").read_text().replace("region: ci-tiny", f"region: {slug}")


def _req(aoi: tuple[float, float, float, float], day: str, tol: float = 3.0, **kw: object) -> SearchRequest:
    return SearchRequest(aoi_lonlat=aoi, dates=[date.fromisoformat(day)], pair_tolerance_days=tol, **kw)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------ 1. antimeridian
@pytest.mark.parametrize(
    ("aoi", "needle"),
    [
        ("{center: [180.0, -16.9], size_px: [128, 128]}", "crosses the antimeridian"),
        ("{center: [-179.999, -16.9], size_px: [256, 256]}", "crosses the antimeridian"),
        ("[179.9, -17.0, -179.9, -16.8]", "crosses the antimeridian"),
    ],
)
def test_antimeridian_aoi_refused_in_both_forms_with_one_line(tmp_path: Path, aoi: str, needle: str) -> None:
    text = _ci_tiny_text("fiji").replace("aoi: {center: [12.50, 42.00], size_px: [128, 128]}", f"aoi: {aoi}")
    regions = _region_file(tmp_path, "fiji", text)
    with pytest.raises(ConfigError) as info:
        load_region("fiji", regions, DEFAULTS)
    msg = str(info.value)
    assert needle in msg and "fiji.yaml" in msg and "\n" not in msg and "split it into two regions" in msg


def test_antimeridian_near_but_not_across_is_accepted(tmp_path: Path) -> None:
    text = _ci_tiny_text("fiji").replace("center: [12.50, 42.00]", "center: [179.99, -16.9]")
    region = load_region("fiji", _region_file(tmp_path, "fiji", text), DEFAULTS)
    grid = make_centered_grid(tuple(region["aoi"]["center"]), tuple(region["aoi"]["size_px"]))
    w, s, e, n = grid.lonlat_bounds()
    assert 179.9 < w < e < 180.0 and e - w < 0.05  # a 1.3 km box, not 360° wide


def test_footprint_across_the_antimeridian_does_not_cover_the_globe() -> None:
    # A real footprint (the sarsen S1 product) moved to straddle 180°, written with both signs as catalogues do.
    fp = "POLYGON ((179.2 -17.5, -179.4 -17.3, -179.1 -15.9, 179.5 -16.1, 179.2 -17.5))"
    assert footprint_intersects(fp, (179.9, -16.95, 179.95, -16.9))
    assert footprint_intersects(fp, (-179.5, -16.95, -179.45, -16.9))
    assert not footprint_intersects(fp, (13.0, -12.0, 13.1, -11.9))  # Angola


def test_local_product_across_the_antimeridian_matches_only_its_side(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    p = clone(S1_SAFE, folder)
    across = "-17.5,179.2 -17.3,-179.4 -15.9,-179.1 -16.1,179.5"
    edit(p / "manifest.safe", lambda t: re.sub(r"<gml:coordinates>[^<]*<", f"<gml:coordinates>{across}<", t))
    src = LocalSource(folder)
    assert len(src.search(_req((179.9, -16.95, 179.95, -16.9), S1_SAFE_DATE))) == 1
    assert len(src.search(_req((-179.5, -16.95, -179.45, -16.9), S1_SAFE_DATE))) == 1
    assert src.search(_req((13.0, -12.0, 13.1, -11.9), S1_SAFE_DATE)) == []  # Angola
    assert "does not intersect the AOI" in src.rejected[0][1]


# ------------------------------------------------------------------------------------ 2. all-zero noise
def test_real_2015_product_has_void_noise_tables() -> None:
    with zipfile.ZipFile(S1_ZIP_2015) as zf:
        for name in (n for n in zf.namelist() if "/noise-" in n):
            assert is_void(parse_noise(parse_xml(zf.read(name)), name)), name
    with zipfile.ZipFile(S1_ZIP) as zf:
        name = next(n for n in zf.namelist() if "/noise-" in n)
        assert not is_void(parse_noise(parse_xml(zf.read(name)), name))


def test_zero_noise_is_not_reported_as_removed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    safe = clone(S1_SAFE, tmp_path)
    edit(one(safe, r"calibration/noise-.*\.xml$"), zero_noise)
    grid = make_centered_grid((12.50, 42.00), (32, 32))
    with caplog.at_level(logging.WARNING, logger="pipeline_lib"):
        run_calibrate(safe, grid, tmp_path / "cal.nc", polarisations=("VV",), margin_px=8)
    with xr.open_dataset(tmp_path / "cal.nc") as ds:
        assert int(ds.attrs["thermal_noise_removed"]) == 0
        assert ds.attrs["thermal_noise_void_polarisations"] == "VV"
    assert "thermal noise is NOT removed" in caplog.text and "noise-s1b-iw-grd-vv" in caplog.text
    run_calibrate(clone(S1_SAFE, tmp_path / "ok"), grid, tmp_path / "ok.nc", polarisations=("VV",), margin_px=8)
    with xr.open_dataset(tmp_path / "ok.nc") as ds:
        assert int(ds.attrs["thermal_noise_removed"]) == 1


# ------------------------------------------------------------------------------------ 3/4. scene choice
def _sarsen_scene(tmp_path: Path) -> Scene:
    folder = tmp_path / "s1"
    clone(S1_SAFE, folder)
    (scene,) = LocalSource(folder).search(_req(S1_SAFE_AOI, S1_SAFE_DATE))
    return scene


def _s2_scenes(tmp_path: Path, covers: dict[str, str | None]) -> list[Scene]:
    """Real S2 product clones with Cloud_Coverage_Assessment replaced (None: removed = unknown)."""
    folder = tmp_path / "s2"
    for suffix, cover in covers.items():
        name = S2_SAFE.name.replace("164454", suffix)
        p = clone(S2_SAFE, folder, name=name, skip=lambda rel: rel.startswith("GRANULE"))

        def fix(t: str, cover: str | None = cover) -> str:
            old = "<Cloud_Coverage_Assessment>59.769726</Cloud_Coverage_Assessment>"
            return t.replace(
                old, "" if cover is None else f"<Cloud_Coverage_Assessment>{cover}</Cloud_Coverage_Assessment>"
            )

        edit(p / "MTD_MSIL2A.xml", fix)
    return LocalSource(folder).search(_req(S2_AOI, S2_DATE))


def test_unknown_cloud_cover_ranks_after_a_known_one(tmp_path: Path) -> None:
    s2 = _s2_scenes(tmp_path, {"164455": None, "164456": "2.0"})
    assert {s.cloud_cover for s in s2} == {None, 2.0}
    s1 = dataclasses.replace(_sarsen_scene(tmp_path), sensing_time=s2[0].sensing_time, footprint_wkt="")
    req = _req(S2_AOI, S2_DATE)
    chosen = select_scenes([s1, *s2], req)
    assert chosen[1].cloud_cover == 2.0
    # known covers above max_cloud_cover are out; unknown is then better than nothing
    chosen = select_scenes([s1, *s2], dataclasses.replace(req, max_cloud_cover=1.0))
    assert chosen[1].cloud_cover is None and "unknown" in chosen[1].reason


def test_one_product_for_three_dates_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    s1 = _sarsen_scene(tmp_path)
    s2 = dataclasses.replace(s1, product_id="S2A_MSIL2A_X", mission="S2A", product_type="S2MSI2A", cloud_cover=1.0)
    d0 = date.fromisoformat(S1_SAFE_DATE)
    req = SearchRequest(S1_SAFE_AOI, [d0 - timedelta(days=1), d0, d0 + timedelta(days=1)], 3.0)
    with caplog.at_level(logging.WARNING, logger="pipeline_lib"):
        chosen = select_scenes([s1, s2], req)
    assert {c.product_id for c in chosen if c.is_s1} == {s1.product_id}
    assert s1.product_id in caplog.text and "share one acquisition" in caplog.text
    assert all("shared with" in c.reason for c in chosen)
    # a second acquisition within the tolerance is preferred over reusing the first
    later = dataclasses.replace(s1, product_id=s1.product_id + "_B", sensing_time=s1.sensing_time + timedelta(days=1))
    chosen = select_scenes([s1, later, s2], SearchRequest(S1_SAFE_AOI, [d0, d0 + timedelta(days=1)], 3.0))
    assert [c.product_id for c in chosen if c.is_s1] == [s1.product_id, later.product_id]


# ------------------------------------------------------------------------------------ 5. impossible date
def test_impossible_unquoted_date_is_one_config_error(tmp_path: Path) -> None:
    text = _ci_tiny_text("bad-date").replace("dates: [2021-12-23,", "dates: [2022-02-30,")
    with pytest.raises(ConfigError) as info:
        load_region("bad-date", _region_file(tmp_path, "bad-date", text), DEFAULTS)
    assert "2022-02-30" in str(info.value) and "bad-date.yaml" in str(info.value)


# ------------------------------------------------------------------------------------ 6. wrong local products
@pytest.fixture
def wrong_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "mine"
    folder.mkdir()
    shutil.copyfile(L1C_ZIP, folder / L1C_ZIP.name)  # S2 L1C zip
    aws = clone(S2_SAFE, folder, name="2022-10-05_0", skip=lambda rel: not rel.endswith("B04_60m.jp2"))
    (aws / "tileInfo.json").write_text('{"path": "tiles/29/U/NU/2022/10/5/0"}')  # AWS-PDS tile layout
    shutil.copyfile(S1_ZIP, folder / S1_ZIP.name)  # real GRD with an empty measurement/
    ssv = S1_SAFE.name.replace("_1SDV_", "_1SSV_")  # single-polarisation GRD
    clone(S1_SAFE, folder, name=ssv)
    edit(
        folder / ssv / "manifest.safe",
        lambda t: t.replace(
            "<s1sarl1:transmitterReceiverPolarisation>VH</s1sarl1:transmitterReceiverPolarisation>", ""
        ),
    )
    return folder


def test_wrong_local_products_are_each_named_with_the_reason(
    wrong_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fetch = {"source": "local", "local_dir": str(wrong_folder)}
    with caplog.at_level(logging.INFO, logger="pipeline_lib"), pytest.raises(FetchError) as info:
        run_search(fetch, S1_ZIP_AOI, [S1_ZIP_DATE, "2021-01-31", "2021-02-12"], 3, 100, tmp_path / "out/scenes.csv")
    msg = str(info.value)
    assert "\n" not in msg and "4 of the entries" in msg and "were rejected" in msg
    assert "no usable Sentinel-1 GRD" in msg and "intersect" not in msg.split(";")[0]
    log = caplog.text
    assert f"{L1C_ZIP.name}: a Sentinel-2 Level-1C product" in log
    assert "2022-10-05_0: a Sentinel-2 tile in the AWS Open Data (PDS) layout" in log
    assert f"{S1_ZIP.name}: incomplete: measurement/ has no measurement file for VV" in log
    assert "download it again" not in msg and "results/" not in msg
    assert not (tmp_path / "out").exists()


def test_single_polarisation_grd_is_rejected_at_search_with_the_fix(wrong_folder: Path) -> None:
    src = LocalSource(wrong_folder)
    assert src.search(_req(S1_SAFE_AOI, S1_SAFE_DATE, check_complete=True)) == []
    (why,) = [w for p, w in src.rejected if "_1SSV_" in p.name]
    assert "holds VV only (1SSV)" in why and "sar.polarisations: [VV]" in why
    # with sar.polarisations [VV] the same product is usable
    (scene,) = src.search(_req(S1_SAFE_AOI, S1_SAFE_DATE, check_complete=True, polarisations=("VV",)))
    assert "_1SSV_" in scene.product_id


def test_unzipped_product_without_safe_suffix_is_used(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    clone(S1_SAFE, folder, name=S1_SAFE.stem)  # no .SAFE suffix
    (scene,) = LocalSource(folder).search(_req(S1_SAFE_AOI, S1_SAFE_DATE, check_complete=True, polarisations=("VV",)))
    assert scene.product_id == S1_SAFE.stem
    clone(S1_SAFE, folder, name="my-download")
    src = LocalSource(folder)
    src.search(_req(S1_SAFE_AOI, S1_SAFE_DATE))
    assert any(p.name == "my-download" and "rename it to <product name>.SAFE" in w for p, w in src.rejected)


# ------------------------------------------------------------------------------------ 7. replaced local product
def test_replaced_local_product_is_used_on_rerun(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    user_zip = folder / S1_ZIP.name
    shutil.copyfile(S1_ZIP, user_zip)
    src = LocalSource(folder)
    (scene,) = src.search(_req(S1_ZIP_AOI, S1_ZIP_DATE))
    raw = tmp_path / "results/r/raw" / user_zip.name
    src.download(scene, raw)
    # the user replaces their file (a new inode) with another copy of the same product
    user_zip.unlink()
    rezip(S1_ZIP, folder)
    assert user_zip.read_bytes() != S1_ZIP.read_bytes()
    with caplog.at_level(logging.WARNING, logger="pipeline_lib"):
        src.download(scene, raw)
    assert raw.read_bytes() == user_zip.read_bytes()
    assert "changed since the search" in caplog.text and "using the new copy" in caplog.text
    # the raw copy deleted by hand: the same
    raw.unlink()
    assert src.download(scene, raw).read_bytes() == user_zip.read_bytes()
    # a different product under the old name: refused, with how to rerun the search
    user_zip.unlink()
    shutil.copyfile(S1_ZIP_2015, user_zip)
    with pytest.raises(FetchError) as info:
        src.download(scene, raw)
    assert str(user_zip) in str(info.value) and "--forcerun search" in str(info.value)


def test_product_state_changes_when_the_user_replaces_the_product(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    user = clone(S1_SAFE, folder)
    before = product_state(user)
    assert product_state(user) == before  # stable
    shutil.copytree(user, tmp_path / "copy", copy_function=shutil.copy2)  # same bytes and times
    shutil.rmtree(user)
    shutil.copytree(tmp_path / "copy", user, copy_function=shutil.copy2)
    assert product_state(user) != before  # new files (inodes), even with preserved times
    zipped = folder / S1_ZIP.name
    shutil.copyfile(S1_ZIP, zipped)
    z0 = product_state(zipped)
    zipped.unlink()
    rezip(S1_ZIP, folder)
    assert product_state(zipped) != z0 and product_state(folder / "gone.zip") == "absent"
    smk = (REPO / "workflow/rules/fetch.smk").read_text()
    assert smk.count("local_state=local_product_state") == 2


# ------------------------------------------------------------------------------------ 8. credentials
def test_credentials_source_is_logged_never_the_secret(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine identity.example login netrc-user password netrc-secret-1\n")
    netrc.chmod(0o600)
    env = {"CDSE_USERNAME": "env-user", "CDSE_PASSWORD": "env-secret-2"}
    with caplog.at_level(logging.INFO, logger="pipeline_lib"):
        creds = resolve_credentials(env, netrc, "identity.example")
    assert creds.username == "env-user"
    assert "environment variables CDSE_USERNAME/CDSE_PASSWORD" in caplog.text
    assert "take precedence over the entry for identity.example" in caplog.text
    assert "secret" not in caplog.text
    assert credentials_source({}, netrc, "identity.example") == f"{netrc}, machine identity.example"


def test_missing_credentials_warned_before_any_download(tmp_path: Path) -> None:
    fetch = {"source": "cdse", "cdse": {"token_url": "https://identity.example/token"}}
    line = missing_credentials_warning(fetch, {}, tmp_path / ".netrc", "config/regions/x.yaml")
    assert line is not None and "config/regions/x.yaml" in line and "CDSE_USERNAME" in line
    env = {"CDSE_USERNAME": "u", "CDSE_PASSWORD": "p"}
    assert missing_credentials_warning(fetch, env, tmp_path / ".netrc", "x") is None
    assert missing_credentials_warning({"source": "demo"}, {}, None, "x") is None
    dhus = missing_credentials_warning({"source": "dhus", "dhus": {}}, env, tmp_path / ".netrc", "x")
    assert dhus is not None and "DHUS_USERNAME" in dhus
