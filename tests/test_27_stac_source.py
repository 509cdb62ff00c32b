"""The STAC source (DESIGN §4) against a real recorded Earth Search response replayed on loopback,
with COGs served over loopback HTTP range requests: windowed reads (bytes counted), arrays identical to
the files path on the same COGs, and the bad inputs (404, not a COG, no overlap, endless paging,
an expired signature re-signed)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import REPO
from pyproj import Transformer

from pipeline_lib.cog import write_cog
from pipeline_lib.errors import CoverageError, FetchError, ProductError
from pipeline_lib.fetch import run_search
from pipeline_lib.fetch.base import Scene, SearchRequest, read_scene_table
from pipeline_lib.fetch.stac import StacSource, ingest_stac_scene, stac_settings
from pipeline_lib.grid import Grid, make_centered_grid
from pipeline_lib.ingest import ingest_bands
from tests.loopback import LoopbackServer, Reply, Request
from tests.loopback.cog import CogHost

DATA = REPO / "tests" / "data" / "stac"
ES = "https://earth-search.aws.element84.com/v1"
COG_HOST = "https://sentinel-cogs.s3.us-west-2.amazonaws.com"
ITEM_DIR = "/cogs/sentinel-s2-l2a-cogs/13/T/DE/2023/10/S2A_13TDE_20231008_0_L2A"
POINT = (-105.1019, 40.1672)  # the recorded search's intersects point
ASSETS = {
    "B04": ("B04", 10),
    "B03": ("B03", 10),
    "B02": ("B02", 10),
    "B11": ("B11", 20),
    "B12": ("B12", 20),
    "SCL": ("SCL", 20),
}


def _cogs(folder: Path) -> dict[str, Path]:
    """Synthetic COGs on the real tile grid of 13TDE (EPSG:32613, origin 399960, 4500000) over the point."""
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:32613", always_xy=True).transform(*POINT)
    rng = np.random.default_rng(0)
    out = {}
    for band, (name, res) in ASSETS.items():
        n = 2048  # 4 x 4 COG tiles of 512 px; the point 30 % in, inside one tile
        left = 399960 + int((x - 399960 - 0.3 * n * res) // res) * res
        top = 4500000 - int((4500000 - y - 0.3 * n * res) // res) * res
        yy, xx = np.mgrid[0:n, 0:n]
        if band == "SCL":
            data = np.where(rng.random((n, n)) < 0.2, 9, 4).astype(np.uint8)  # scattered cloud
        else:
            data = (2000 + 800 * np.sin(xx / 37.0) * np.cos(yy / 53.0) + rng.normal(0, 50, (n, n))).astype(np.uint16)
        path = folder / f"{name}.tif"
        write_cog(
            data[None],
            path,
            crs="EPSG:32613",
            transform=Affine(res, 0, left, 0, -res, top),
            descriptions=[band],
            nodata=0,
            stac=False,
        )
        out[band] = path
    return out


@dataclass
class Api:
    srv: LoopbackServer
    cogs: CogHost
    files: dict[str, Path]
    url: str


def _replay(srv: LoopbackServer, endless: bool = False) -> None:
    def rewrite(text: str) -> bytes:
        return text.replace(ES, f"{srv.url}/v1").replace(COG_HOST, f"{srv.url}/cogs").encode()

    landing = rewrite((DATA / "earth-search-v1-landing.json").read_text())
    page1 = rewrite((DATA / "earth-search-v1-search-page1.json").read_text())
    page2 = rewrite((DATA / "earth-search-v1-search-page2.json").read_text())
    js = {"Content-Type": "application/geo+json"}
    srv.route("GET", "/v1", lambda req: Reply(200, {"Content-Type": "application/json"}, landing))
    srv.route("GET", "/v1/", lambda req: Reply(200, {"Content-Type": "application/json"}, landing))

    def search(req: Request) -> Reply:
        return Reply(200, js, page1 if endless or b'"next"' not in req.body else page2)

    srv.route("POST", "/v1/search", search)


@pytest.fixture(scope="module")
def cog_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _cogs(tmp_path_factory.mktemp("cogs"))


@pytest.fixture
def api(cog_files: dict[str, Path]) -> Iterator[Api]:
    files = cog_files
    with LoopbackServer() as srv:
        _replay(srv)
        host = CogHost(srv)
        for path in files.values():
            host.add(f"{ITEM_DIR}/{path.name}", path)
        yield Api(srv, host, files, f"{srv.url}/v1")


def _grid() -> Grid:
    return make_centered_grid(POINT, (64, 64), 10.0, "EPSG:32613")


def _scene(api: Api, tmp_path: Path, **stac: object) -> tuple[Scene, object]:
    fetch = {"source": "stac", "stac": {"preset": "earth-search", "url": api.url, **stac}}
    lonlat = _grid().lonlat_bounds()
    (scene,) = run_search(fetch, lonlat, ["2023-10-08"], 0.5, 80, tmp_path / "scenes.csv")
    return scene, stac_settings(fetch["stac"])


def test_search_replays_the_recorded_earth_search_response(api: Api, tmp_path: Path) -> None:
    scene, _ = _scene(api, tmp_path)
    assert scene.product_id == "S2A_13TDE_20231008_0_L2A" and scene.mission == "S2"  # the Landsat item is not S2
    assert scene.cloud_cover == pytest.approx(0.000299)
    assert (
        scene.reason
        == "lowest cloud cover (0.000299 %), 0.25 d from 2023-10-08 within 0.5 d: STAC item " + scene.product_id
    )
    info = json.loads(scene.uri)
    assert info["assets"]["B11"] == f"{api.srv.url}{ITEM_DIR}/B11.tif" and info["mask"].endswith("/SCL.tif")
    assert (info["scale"], info["offset"]) == (0.0001, -0.1)  # from the asset's raster:bands
    assert read_scene_table(tmp_path / "scenes.csv")[0] == scene
    body = json.loads(api.srv.seen("/v1/search", "POST")[0].body)
    assert body["collections"] == ["sentinel-2-l2a"] and len(body["bbox"]) == 4
    assert body["datetime"] == "2023-10-07T00:00:00Z/2023-10-09T00:00:00Z"  # the dates ± tolerance + 1 day


def test_windowed_reads_identical_to_the_files_path(api: Api, tmp_path: Path) -> None:
    scene, settings = _scene(api, tmp_path)
    grid = _grid()
    spec = settings.specs["s2"]
    out = tmp_path / "stac.tif"
    ingest_stac_scene(scene, spec, grid, out, date="2023-10-08", mask_keep=settings.mask_keep)
    # the files path: the same COGs read from disk by the same function
    local = dataclasses.replace(spec, scale=0.0001, offset=-0.1, mask_band=1, mask_keep=settings.mask_keep)
    ref = tmp_path / "files.tif"
    sources = [(b, api.files[b], 1) for b in ("B04", "B03", "B02", "B11", "B12")]
    ingest_bands(
        sources,
        local,
        grid,
        ref,
        date="2023-10-08",
        acquired=scene.sensing_time.isoformat(),
        mask=(api.files["SCL"], 1),
        label="local",
    )
    with rasterio.open(out) as a, rasterio.open(ref) as b:
        got, want = a.read(), b.read()
        assert a.tags()["offset"] == "-0.1" and a.tags()["processing_level"] == "L2A" and a.tags()["source"] == "stac"
        assert a.descriptions == b.descriptions == ("B04", "B03", "B02", "B11", "B12", "valid")
    np.testing.assert_array_equal(got, want)
    assert 0.2 < float(np.mean(got[-1])) < 0.95 and np.nanmax(got[0]) < 0.35  # SCL clouds masked; DN*1e-4 - 0.1
    for band, path in api.files.items():
        sent = api.cogs.sent[f"{ITEM_DIR}/{path.name}"]
        assert 0 < sent < 0.15 * path.stat().st_size, (band, sent, path.stat().st_size)  # one tile + header


def test_asset_404(api: Api, tmp_path: Path) -> None:
    scene, settings = _scene(api, tmp_path)
    del api.srv.routes[("GET", f"{ITEM_DIR}/B03.tif")]
    del api.srv.routes[("HEAD", f"{ITEM_DIR}/B03.tif")]
    out = tmp_path / "o.tif"
    with pytest.raises(ProductError, match=r"B03.tif: answered HTTP 404 \(not found\); rerun the search"):
        ingest_stac_scene(scene, settings.specs["s2"], _grid(), out, date="2023-10-08")
    assert not out.exists()


def test_asset_not_a_cog(api: Api, tmp_path: Path) -> None:
    scene, settings = _scene(api, tmp_path)
    striped = tmp_path / "striped.tif"
    with rasterio.open(api.files["B04"]) as src:
        prof = src.profile | {"driver": "GTiff", "tiled": False, "blockysize": 1}
        prof.pop("blockxsize", None)
        with rasterio.open(striped, "w", **prof) as dst:
            dst.write(src.read())
    api.cogs.add(f"{ITEM_DIR}/B04.tif", striped)
    with pytest.raises(ProductError, match=r"B04.tif: not a cloud-optimised GeoTIFF \(striped"):
        ingest_stac_scene(scene, settings.specs["s2"], _grid(), tmp_path / "o.tif", date="2023-10-08")


def test_asset_without_overlap(api: Api, tmp_path: Path) -> None:
    scene, settings = _scene(api, tmp_path)
    g = _grid()
    far = Grid(g.crs, g.transform @ Affine.translation(0, 100_000), g.height, g.width)
    with pytest.raises(CoverageError, match=r"B0\d.tif: does not overlap the grid"):
        ingest_stac_scene(scene, settings.specs["s2"], far, tmp_path / "o.tif", date="2023-10-08")


def test_api_paging_without_end_is_capped(tmp_path: Path) -> None:
    with LoopbackServer() as srv:
        _replay(srv, endless=True)
        source = StacSource(stac_settings({"preset": "earth-search", "url": f"{srv.url}/v1", "max_items": 7}))
        req = SearchRequest(_grid().lonlat_bounds(), [date(2023, 10, 8)], 0.5)
        with pytest.raises(FetchError, match=r"more than fetch.stac.max_items=7 items \(paging went on\)"):
            source.search(req)
        assert 4 <= len(srv.seen("/v1/search", "POST")) <= 5  # 2 items per page: stopped at the cap


def test_expired_signature_is_renewed_once(api: Api, tmp_path: Path) -> None:
    scene, settings = _scene(api, tmp_path)
    for path in api.files.values():  # token 0 is expired, later ones are valid
        api.cogs.add(f"{ITEM_DIR}/{path.name}", path, require_query=lambda q: q.get("sig", ["0"])[0] != "0")
    calls: list[str] = []

    def signer(href: str) -> str:
        calls.append(href)
        return f"{href}?sig={len(calls) - 1}"

    out = tmp_path / "o.tif"
    ingest_stac_scene(
        scene, settings.specs["s2"], _grid(), out, date="2023-10-08", mask_keep=settings.mask_keep, signer=signer
    )
    assert out.is_file() and len(calls) == len(api.files) + 1  # one re-sign after the expired first signature

    def never(href: str) -> str:
        return f"{href}?sig=0"

    with pytest.raises(ProductError, match=r"answered HTTP 403"):
        ingest_stac_scene(scene, settings.specs["s2"], _grid(), tmp_path / "x.tif", date="2023-10-08", signer=never)


def _forget_gdal_http_cache() -> None:
    """Empty GDAL's in-process /vsicurl/ cache (VSICurlClearCache), so a read that is not served from our
    own cache has to go to the server again — as it would in the next Snakemake job (a new process)."""
    import ctypes
    import ctypes.util
    import glob
    import os

    here = glob.glob(os.path.join(os.path.dirname(rasterio.__file__) + ".libs", "libgdal*"))
    path = here[0] if here else ctypes.util.find_library("gdal")
    assert path, "libgdal not found beside rasterio nor on the library path"
    ctypes.CDLL(path).VSICurlClearCache()


def _cog_get_count(srv: LoopbackServer) -> int:
    return sum(1 for r in srv.requests if r.path.startswith(ITEM_DIR))


def test_windows_are_cached_and_a_rerun_fetches_nothing(api: Api, tmp_path: Path) -> None:
    scene, settings = _scene(api, tmp_path)
    cache = tmp_path / "results" / "r" / "raw" / "stac"
    spec, keep = settings.specs["s2"], settings.mask_keep
    ingest_stac_scene(scene, spec, _grid(), tmp_path / "a.tif", date="2023-10-08", mask_keep=keep, cache_dir=cache)
    first, requests = sum(api.cogs.sent.values()), _cog_get_count(api.srv)
    assert first > 0 and requests > 0
    cached = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*.tif"))
    assert [c.split("-")[0] for c in cached] == sorted(f"{scene.product_id}/{b}" for b in [*ASSETS][:5] + ["mask"])
    # a rerun (another experiment on the region) reads the windows from the cache: no request, no byte
    _forget_gdal_http_cache()
    ingest_stac_scene(scene, spec, _grid(), tmp_path / "b.tif", date="2023-10-08", mask_keep=keep, cache_dir=cache)
    assert (sum(api.cogs.sent.values()), _cog_get_count(api.srv)) == (first, requests)
    with rasterio.open(tmp_path / "a.tif") as a, rasterio.open(tmp_path / "b.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.tags()["source_file"] == b.tags()["source_file"] == f"STAC item {scene.product_id}"
    # another grid is another key: fetched again, not served from a window that does not cover it
    g = _grid()
    moved = Grid(g.crs, g.transform @ Affine.translation(40, 0), g.height, g.width)
    _forget_gdal_http_cache()
    ingest_stac_scene(scene, spec, moved, tmp_path / "c.tif", date="2023-10-08", mask_keep=keep, cache_dir=cache)
    assert _cog_get_count(api.srv) > requests and len(list(cache.rglob("*.tif"))) == 2 * len(cached)


def test_a_failed_read_leaves_no_cache_entry(api: Api, tmp_path: Path) -> None:
    scene, settings = _scene(api, tmp_path)
    del api.srv.routes[("GET", f"{ITEM_DIR}/B03.tif")]
    del api.srv.routes[("HEAD", f"{ITEM_DIR}/B03.tif")]
    cache = tmp_path / "raw"
    with pytest.raises(ProductError, match=r"B03.tif: answered HTTP 404"):
        ingest_stac_scene(scene, settings.specs["s2"], _grid(), tmp_path / "o.tif", date="2023-10-08", cache_dir=cache)
    names = sorted(p.name.split("-")[0] for p in cache.rglob("*") if p.is_file() and p.suffix != ".lock")
    assert names == ["B04"]  # the band read before the 404 is kept whole; no partial file of B03
    assert not (tmp_path / "o.tif").exists()


# Azure Blob Storage's answer to a SAS whose validity window has passed (REST API error codes).
AZURE_EXPIRED = (
    b'<?xml version="1.0" encoding="utf-8"?><Error><Code>AuthenticationFailed</Code><Message>Server failed to '
    b"authenticate the request. Make sure the value of Authorization header is formed correctly including the "
    b"signature.</Message><AuthenticationErrorDetail>Signature not valid in the specified time frame: Start "
    b"[Sun, 08 Oct 2023 17:00:00 GMT] - Expiry [Mon, 09 Oct 2023 18:00:00 GMT] - Current [Tue, 10 Oct 2023 "
    b"09:00:00 GMT]</AuthenticationErrorDetail></Error>"
)
BLOB = "http://sentinel2l2a01.blob.core.windows.net"


def test_planetary_computer_signing_with_the_package(
    cog_files: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real planetary-computer package signs against a loopback token endpoint (PC_SDK_SAS_URL); the
    assets live on a *.blob.core.windows.net host reached through GDAL_HTTP_PROXY = the loopback server.
    The first token is refused with Azure's expired-signature 403: the token cache is dropped and the
    asset re-signed once; every later read uses the new token; a rerun signs and fetches nothing."""
    import planetary_computer
    from planetary_computer.settings import Settings

    with LoopbackServer() as srv:
        _replay(srv)
        for route in [("GET", "/v1"), ("GET", "/v1/"), ("POST", "/v1/search")]:

            def on_blob(req: Request, inner: Callable[[Request], Reply] = srv.routes[route]) -> Reply:
                reply = inner(req)  # the recorded asset hrefs point at Azure Blob Storage, as PC's do
                return dataclasses.replace(
                    reply, body=reply.body.replace(f"{srv.url}/cogs".encode(), f"{BLOB}/cogs".encode())
                )

            srv.routes[route] = on_blob
        host = CogHost(srv)
        tokens: list[str] = []

        def token(req: Request) -> Reply:
            tokens.append(f"tok{len(tokens) + 1}")
            body = {
                "msft:expiry": "2099-01-01T00:00:00Z",
                "token": f"st=2023-10-08T17%3A00%3A00Z&se=2099-01-01T00%3A00%3A00Z&sp=rl&sv=2021-06-08&sr=c&sig={tokens[-1]}",
            }
            return Reply(200, {"Content-Type": "application/json"}, json.dumps(body).encode())

        srv.route("GET", "/api/sas/v1/token/sentinel2l2a01/cogs", token)
        for path in cog_files.values():
            host.add(f"{ITEM_DIR}/{path.name}", path)
            for method in ("GET", "HEAD"):
                inner = srv.routes[(method, f"{ITEM_DIR}/{path.name}")]

                def signed(req: Request, inner: Callable[[Request], Reply] = inner) -> Reply:
                    sig = req.query.get("sig", [""])[0]
                    if sig in ("", "tok1"):  # unsigned, or the first token (expired by now)
                        return Reply(403, {"Content-Type": "application/xml"}, AZURE_EXPIRED)
                    return inner(req)

                srv.routes[(method, f"{ITEM_DIR}/{path.name}")] = signed
        monkeypatch.setenv("PC_SDK_SAS_URL", f"{srv.url}/api/sas/v1/token")
        monkeypatch.delenv("PC_SDK_SUBSCRIPTION_KEY", raising=False)
        monkeypatch.setenv("GDAL_HTTP_PROXY", srv.url.removeprefix("http://"))
        for var in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        Settings.get.cache_clear()
        planetary_computer.sas.TOKEN_CACHE.clear()
        try:
            fetch = {
                "source": "stac",
                "stac": {"preset": "earth-search", "url": f"{srv.url}/v1", "sign": "planetary-computer"},
            }
            (scene,) = run_search(fetch, _grid().lonlat_bounds(), ["2023-10-08"], 0.5, 80, tmp_path / "scenes.csv")
            assert json.loads(scene.uri)["assets"]["B04"] == f"{BLOB}{ITEM_DIR}/B04.tif"  # stored unsigned
            assert tokens == []  # signing is lazy: nothing at search time
            settings = stac_settings(fetch["stac"])
            cache = tmp_path / "raw"
            out = tmp_path / "pc.tif"
            ingest_stac_scene(
                scene, settings.specs["s2"], _grid(), out, date="2023-10-08",
                mask_keep=settings.mask_keep, sign=settings.sign, cache_dir=cache,
            )  # fmt: skip
            assert tokens == ["tok1", "tok2"]  # one token, refused, then one fresh token for every asset
            cog_requests = [r for r in srv.requests if r.path.startswith(ITEM_DIR)]
            assert {r.host for r in cog_requests} == {"sentinel2l2a01.blob.core.windows.net"}
            refused = [r for r in cog_requests if r.query.get("sig") == ["tok1"]]
            assert refused and all(r.path.endswith("/B04.tif") for r in refused)  # only the first asset
            assert {r.query["sig"][0] for r in cog_requests} == {"tok1", "tok2"}
            assert all(r.query["sp"] == ["rl"] for r in cog_requests)  # the package's SAS query, as served
            with rasterio.open(out) as ds:
                assert ds.tags()["source"] == "stac" and 0.2 < float(np.mean(ds.read(6))) < 0.95
            before = len(srv.requests)
            _forget_gdal_http_cache()  # as in the next job (a new process): no GDAL cache, no token cached
            planetary_computer.sas.TOKEN_CACHE.clear()
            ingest_stac_scene(
                scene, settings.specs["s2"], _grid(), tmp_path / "again.tif", date="2023-10-08",
                mask_keep=settings.mask_keep, sign=settings.sign, cache_dir=cache,
            )  # fmt: skip
            assert len(srv.requests) == before and tokens == ["tok1", "tok2"]  # cached: no token, no read
        finally:
            Settings.get.cache_clear()
            planetary_computer.sas.TOKEN_CACHE.clear()


def _s1_item(template: dict[str, object], when: str, orbit: int) -> dict[str, object]:
    """An S1 RTC item derived from the recorded S2 item: same geometry, its own id, time, orbit and assets."""
    item = json.loads(json.dumps(template))
    item["id"] = f"S1A_IW_GRDH_1SDV_{when.replace('-', '').replace(':', '')[:15]}_R{orbit:03d}_rtc"
    item["collection"] = "sentinel-1-rtc"
    item["properties"] = {"datetime": when, "sat:relative_orbit": orbit, "platform": "sentinel-1a"}
    base = f"https://sentinel1euwestrtc.blob.core.windows.net/sentinel1-grd-rtc/{item['id']}"
    item["assets"] = {p: {"href": f"{base}/{p}.tif", "type": "image/tiff"} for p in ("vv", "vh")}
    item["links"] = []
    return item


def test_stac_s1_keeps_one_relative_orbit(tmp_path: Path) -> None:
    page1 = json.loads((DATA / "earth-search-v1-search-page1.json").read_text())
    s2_item = page1["features"][0]
    s1_items = [
        _s1_item(s2_item, "2023-10-08T01:00:00Z", 56),  # the closest to 10-08, but its orbit covers one date
        _s1_item(s2_item, "2023-10-09T13:00:00Z", 129),
        _s1_item(s2_item, "2023-10-14T13:00:00Z", 129),
    ]
    with LoopbackServer() as srv:
        _replay(srv)
        s2_search = srv.routes[("POST", "/v1/search")]

        def search(req: Request) -> Reply:
            if json.loads(req.body)["collections"] == ["sentinel-1-rtc"]:
                body = {"type": "FeatureCollection", "features": s1_items, "links": []}
                return Reply(200, {"Content-Type": "application/geo+json"}, json.dumps(body).encode())
            return s2_search(req)

        srv.route("POST", "/v1/search", search)
        fetch = {
            "source": "stac",
            "stac": {
                "preset": "earth-search",
                "url": f"{srv.url}/v1",
                "collections": {"s1": "sentinel-1-rtc"},
                "assets": {"s1": {"VV": "vv", "VH": "vh"}},
                "s1": {"quantity": "gamma0_rtc", "unit": "linear"},
            },
        }
        chosen = run_search(fetch, _grid().lonlat_bounds(), ["2023-10-08", "2023-10-14"], 6, 80, tmp_path / "s.csv")
    s1 = [c for c in chosen if c.mission == "S1"]
    assert [(c.date, c.relative_orbit, c.sensing_time.day) for c in s1] == [
        ("2023-10-08", 129, 9),
        ("2023-10-14", 129, 14),
    ]
    assert s1[0].reason.endswith("; relative orbit 129 (covers 2 of 2 dates; orbits 56 set aside)")
    table = {(s.date, s.mission): s.reason for s in read_scene_table(tmp_path / "s.csv")}
    assert "relative orbit 129" in table[("2023-10-08", "S1")] and "orbit" not in table[("2023-10-08", "S2")]


def _cand(pid: str, mission: str, when: str, orbit: int | None = None, cloud: float | None = None) -> Scene:
    t = datetime.fromisoformat(when).replace(tzinfo=UTC)
    return Scene(pid, mission, "c", t, "", relative_orbit=orbit, cloud_cover=cloud, source="stac", uri="{}")


def test_select_stac_orbit_ties_and_gaps() -> None:
    from pipeline_lib.errors import SceneNotFoundError
    from pipeline_lib.fetch.stac import select_stac

    s2 = [_cand(f"s2-{d}", "S2", f"2023-10-{d:02d}T12:00", cloud=1.0) for d in (8, 14, 20)]
    s1 = [
        _cand("a", "S1", "2023-10-08T06:00", 129),
        _cand("b", "S1", "2023-10-14T06:00", 129),
        _cand("c", "S1", "2023-10-08T18:00", 56),
        _cand("d", "S1", "2023-10-20T18:00", 56),
    ]
    req = SearchRequest((0, 0, 1, 1), [date(2023, 10, 8), date(2023, 10, 14), date(2023, 10, 20)], 1)
    # 129 and 56 cover two dates each: the lower number wins (as select_scenes); 10-14 is on 129 only
    with pytest.raises(
        SceneNotFoundError,
        match=r"2023-10-14: no S1 file .*\(nearest: c \(5.8 d\).*only relative orbit 56 is kept \(it covers 2 of 3 dates; items on orbits 129",
    ):
        select_stac([*s2, *s1], req, ["s1", "s2"])
    two = SearchRequest((0, 0, 1, 1), [date(2023, 10, 8), date(2023, 10, 14)], 1)
    got = select_stac([*s2, *s1], two, ["s1", "s2"])
    assert [c.product_id for c in got if c.mission == "S1"] == ["a", "b"]  # 129 covers both dates
    # items without sat:relative_orbit: the closest, no orbit in the reason
    plain = [dataclasses.replace(c, relative_orbit=None) for c in s1]
    got = select_stac([*s2, *plain], two, ["s1", "s2"])
    assert [c.product_id for c in got if c.mission == "S1"] == ["a", "b"] and "orbit" not in got[0].reason


def test_two_jobs_sharing_an_item_share_its_cache(api: Api, tmp_path: Path) -> None:
    """Two dates that chose one item run as parallel ingest jobs: both succeed, one entry per asset, no temp left."""
    from concurrent.futures import ThreadPoolExecutor

    scene, settings = _scene(api, tmp_path)
    cache = tmp_path / "raw"

    def run(name: str) -> Path:
        out = tmp_path / f"{name}.tif"
        ingest_stac_scene(
            scene, settings.specs["s2"], _grid(), out, date=name, mask_keep=settings.mask_keep, cache_dir=cache
        )
        return out

    with ThreadPoolExecutor(2) as pool:
        a, b = pool.map(run, ["2023-10-08", "2023-10-09"])
    with rasterio.open(a) as da, rasterio.open(b) as db:
        np.testing.assert_array_equal(da.read(), db.read())
    entries = [p.name for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".lock")]
    assert len(entries) == 6 and all(n.endswith(".tif") and not n.startswith(".") for n in entries)
