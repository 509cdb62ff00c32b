"""CDSE OData search against the loopback server replaying real (and derived-from-real) catalogue pages."""

from __future__ import annotations

import json
import sys
from datetime import date
from pathlib import Path

import pytest

from pipeline_lib.errors import FetchError
from pipeline_lib.fetch.base import SearchRequest, select_scenes, write_scene_table
from pipeline_lib.fetch.cdse import CdseSource, build_filter, parse_product, search_windows
from pipeline_lib.fetch.http import RetryPolicy
from tests.loopback import LoopbackServer, Reply, status_fault
from tests.loopback.cdse import ODATA, FakeCdse

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
MOCK = FIXTURES / "cdse-odata" / "query" / "mock" / "sentinel_1"
sys.path.insert(0, str(Path(__file__).resolve().parent / "data" / "cdse"))
import derive  # noqa: E402

AOI = (12.44, 41.95, 12.56, 42.05)
DATES = [date(2021, 12, 23), date(2022, 1, 4), date(2022, 1, 16), date(2022, 1, 28)]
FAST = RetryPolicy(max_attempts=3, base_delay_s=0.01, max_delay_s=30)


def real_pages() -> list[dict]:
    return [json.loads((MOCK / f"odata_page_{k}.json").read_text()) for k in range(1, 6)]


def make_source(fake: FakeCdse, sleeps: list[float]) -> CdseSource:
    return CdseSource(
        catalogue_url=fake.catalogue_url,
        token_url=fake.token_url,
        download_url=fake.catalogue_url,
        page_size=3,
        policy=FAST,
        sleep=sleeps.append,
    )


def test_parse_real_records_null_footprints() -> None:
    records = derive.real_records(FIXTURES)
    assert len(records) == 47
    scenes = [parse_product(r) for r in records]
    assert all(s.footprint_wkt == "" for s in scenes)  # all real records have Footprint null
    first = scenes[0]
    assert first.product_id == "S1A_AUX_INS_V20140406T010000_G20140409T142540"
    assert first.size_bytes == 728976 and first.checksum == "md5:23383d85c5231487ce13d1c10aeb8e7b"
    assert first.product_type == "AUX_INS" and first.mission == "S1A"
    assert first.uri.endswith("/Products(67360f3a-f36b-11ef-9d3f-0050561a7772)/$value")
    assert sum(s.checksum.startswith("md5:") for s in scenes) == sum(
        any(c["Algorithm"] == "MD5" for c in r.get("Checksum") or []) for r in records
    )


def test_paging_real_pages_follows_nextlink_on_configured_host() -> None:
    with LoopbackServer() as srv:
        fake = FakeCdse(srv, pages=real_pages()).install()
        src = make_source(fake, [])
        items = list(src.products("Collection/Name eq 'SENTINEL-1'"))
        assert len(items) == 47 and items[-1]["Name"] == real_pages()[4]["value"][-1]["Name"]
        skips = [r.query.get("$skip", ["0"])[0] for r in srv.seen(f"{ODATA}/Products")]
        assert skips == ["0", "10", "20", "30", "40"]
        assert all(r.host == f"127.0.0.1:{srv.port}" for r in srv.requests)  # never the recorded real host
        # The AUX records are not GRD/L2A: a search over them yields no candidates.
        assert src.search(SearchRequest(AOI, DATES, 3.0)) == []


def test_filter_has_documented_clauses() -> None:
    ((start, end),) = search_windows([date(2022, 1, 4)], 3.0)
    f1 = build_filter("IW_GRDH_1S", AOI, start, end)
    assert "Collection/Name eq 'SENTINEL-1'" in f1
    assert "att/OData.CSC.StringAttribute/Value eq 'IW_GRDH_1S'" in f1
    assert (
        "OData.CSC.Intersects(area=geography'SRID=4326;POLYGON((12.44 41.95,12.56 41.95,12.56 42.05,12.44 42.05,12.44 41.95))')"
        in f1
    )
    assert (
        "ContentDate/Start ge 2022-01-01T12:00:00.000Z" in f1 and "ContentDate/Start le 2022-01-07T12:00:00.000Z" in f1
    )
    assert "cloudCover" not in f1
    f2 = build_filter("S2MSI2A", AOI, start, end, max_cloud_cover=30)
    assert "Collection/Name eq 'SENTINEL-2'" in f2 and "att/OData.CSC.DoubleAttribute/Value le 30.00" in f2
    # Windows of close dates merge; far ones do not.
    assert len(search_windows(DATES, 3.0)) == 4 and len(search_windows(DATES, 6.0)) == 1


def test_search_derived_records_and_selection(tmp_path: Path) -> None:
    records = derive.derive_records(FIXTURES)
    with LoopbackServer() as srv:
        fake = FakeCdse(srv, pages=derive.paginate(records, page_size=3)).install()
        src = make_source(fake, [])
        req = SearchRequest(AOI, DATES, pair_tolerance_days=3.0, max_cloud_cover=80.0)
        found = src.search(req)
        filters = [r.query["$filter"][0] for r in srv.seen(f"{ODATA}/Products") if "$filter" in r.query]
        assert any("'IW_GRDH_1S'" in f for f in filters) and any(
            "'S2MSI2A'" in f and "cloudCover" in f for f in filters
        )
        assert all(r.query["$top"] == ["3"] for r in srv.seen(f"{ODATA}/Products") if "$filter" in r.query)
    assert {s.product_type for s in found} == {"IW_GRDH_1S", "S2MSI2A"}
    assert len(found) == 9  # every derived record, deduplicated over the 8 queries
    chosen = select_scenes(found, req)
    s1 = [s for s in chosen if s.is_s1]
    assert [s.relative_orbit for s in s1] == [22, 22, 22, 22]  # the orbit-117 distractor is not picked
    assert [s.sensing_time.date() for s in s1] == DATES
    write_scene_table(chosen, tmp_path / "scenes.csv")
    assert (tmp_path / "scenes.csv").read_text().count("md5:") == 8


def test_search_faults_retry_after_malformed_and_empty() -> None:
    records = derive.derive_records(FIXTURES)
    with LoopbackServer() as srv:
        fake = FakeCdse(srv, pages=derive.paginate(records, page_size=3)).install()
        sleeps: list[float] = []
        src = make_source(fake, sleeps)
        path = f"{ODATA}/Products"
        srv.fault(
            "GET",
            path,
            status_fault(429, {"Retry-After": "7"}),
            lambda req, reply: Reply(200, {"Content-Type": "application/json"}, reply.body[: len(reply.body) // 2]),
        )
        items = list(src.products("x"))
        assert len(items) == 9
        assert sleeps[0] == 7.0 and len(sleeps) == 2  # Retry-After honoured, malformed page retried
        # A page that stays malformed: one-line failure naming the cause.
        srv.fault("GET", path, *[lambda req, reply: Reply(200, {}, b'{"value": [')] * 3)
        with pytest.raises(FetchError) as exc:
            list(src.products("x"))
        assert "malformed JSON" in str(exc.value) and "\n" not in str(exc.value)
        # Empty result: no candidates, no error from the source.
        fake.pages = [{"value": []}]
        assert src.search(SearchRequest(AOI, DATES, 3.0)) == []
