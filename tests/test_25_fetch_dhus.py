"""DHuS source through sentinelsat, replaying sentinelsat's recorded DHuS cassettes from loopback."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from datetime import date
from pathlib import Path

import pytest

from pipeline_lib.errors import FetchError
from pipeline_lib.fetch.base import SearchRequest
from pipeline_lib.fetch.credentials import Credentials
from pipeline_lib.fetch.dhus import DhusSource
from tests.loopback import LoopbackServer, Reply, Request, file_reply, load_cassette, serve_cassette
from tests.loopback.cdse import body_bytes

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures" / "dhus-sentinelsat"
RECORDED = "https://apihub.copernicus.eu/apihub/"
UUID = "b1d8a9ab-6072-4ecd-bc44-8d64419d71cb"
RECORDED_MD5 = "1495b98f859949929b14c1b7cd62dffc"
PASSWORD = "dhus-Pa55-secret"


def start(srv: LoopbackServer, cassette: str, body: bytes = b"") -> str:
    base = f"{srv.url}/apihub/"

    def body_for(it, req: Request) -> Reply:  # the $value body was not recorded (vcr stores {}): serve ours
        return file_reply(body, req, {"Content-Disposition": it.headers.get("content-disposition", "")})

    serve_cassette(srv, load_cassette(FIXTURES / cassette), RECORDED, base, body_for=body_for)
    return base


def test_search_replays_recorded_query(tmp_path: Path) -> None:
    with LoopbackServer() as srv:
        base = start(srv, "products_fixture.yaml")
        src = DhusSource(base, Credentials("user", PASSWORD))
        # The recorded query: 2015-12-19..28 over this Amazon box; one configured date in the middle.
        req = SearchRequest((-66.2695, -8.0592, -57.3047, 0.7031), [date(2015, 12, 23)], pair_tolerance_days=4.4)
        scenes = src.search(req)
        queries = [r.query["q"][0] for r in srv.seen("/apihub/search")]
        auth = {r.headers.get("authorization", "") for r in srv.requests}
    assert any('producttype:"GRD"' in q and 'sensoroperationalmode:"IW"' in q for q in queries)
    assert any('producttype:"S2MSI2A"' in q and 'cloudcoverpercentage:["0" TO "100' in q for q in queries)
    assert all(
        'footprint:"Intersects(POLYGON((-66.2695 -8.0592,' in q
        and '2015-12-19T02:24:00Z" TO "2015-12-27T21:36:00Z' in q
        for q in queries
    )
    assert all(a.startswith("Basic ") for a in auth)
    # The recorded answer holds 5 GRD, 89 L1C, RAW and SLC: only IW GRDH products are candidates (2015: no L2A).
    assert scenes and all(s.product_type == "IW_GRDH_1S" for s in scenes)
    assert all(
        "_IW_GRDH_1S" in s.product_id and s.footprint_wkt.startswith("POLYGON") and s.relative_orbit for s in scenes
    )
    assert all(s.uri.startswith(base) and "/odata/v1/Products('" in s.uri for s in scenes)


def test_download_checksum_mismatch_then_verified(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    body = body_bytes(599540, seed=3)  # the recorded ContentLength; the real bytes were not recorded
    with LoopbackServer() as srv:
        base = start(srv, "test_download.yaml", body)
        src = DhusSource(base, Credentials("user", PASSWORD))
        scene = src.scene(UUID)
        assert scene.size_bytes == 599540 and scene.checksum == f"md5:{RECORDED_MD5}"
        dest = tmp_path / "raw" / f"{scene.product_id}.zip"
        # Replayed as recorded, our body cannot match the recorded MD5: retried once, then a one-line failure.
        with pytest.raises(FetchError) as exc:
            src.download(scene, dest)
        assert "MD5" in str(exc.value) and "\n" not in str(exc.value)
        assert not dest.exists() and not list(dest.parent.rglob("*.zip"))
        assert (
            len(
                [r for r in srv.requests if r.method == "GET" and r.path.endswith("/$value") and "Online" not in r.path]
            )
            == 2
        )
        # Transformation: the recorded metadata's MD5 replaced by our body's, then the download verifies.
        ours = hashlib.md5(body).hexdigest()
        meta = f"/apihub/odata/v1/Products('{UUID}')"
        recorded = srv.routes[("GET", meta)]
        srv.route(
            "GET",
            meta,
            lambda req: dataclasses.replace(
                r := recorded(req), body=r.body.replace(RECORDED_MD5.encode(), ours.encode())
            ),
        )
        got = src.download(dataclasses.replace(scene, checksum=f"md5:{ours}"), dest)
    assert got == dest and dest.read_bytes() == body
    assert not [p for p in dest.parent.iterdir() if p != dest]  # no work folder or .incomplete left
    assert PASSWORD not in caplog.text and PASSWORD not in str(exc.value)


def test_wrong_credentials_one_line() -> None:
    with LoopbackServer() as srv:
        base = start(srv, "test_SentinelAPI_wrong_credentials.yaml")
        src = DhusSource(base, Credentials("user", PASSWORD))
        with pytest.raises(FetchError) as exc:
            src.search(SearchRequest((0.0, 0.0, 1.0, 1.0), [date(2015, 1, 1)], 1.0))
    msg = str(exc.value)
    assert "401" in msg and PASSWORD not in msg and "\n" not in msg
