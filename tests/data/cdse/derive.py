"""Derive GRD- and L2A-shaped CDSE OData pages from the real recorded CDSETool pages.

The recorded pages (``tests/data/fixtures/cdse-odata/query/mock/sentinel_1/odata_page_*.json``) hold
47 real catalogue records of auxiliary products with null footprints. The search tests need
Sentinel-1 IW GRDH and Sentinel-2 L2A records over the demo AOI, so this module rewrites real
records, deterministically and visibly; everything not listed here is kept byte-for-byte as recorded
(``Id``, ``ContentLength``, ``Checksum``, ``S3Path``, ``Online``, the other attributes):

- ``Name``: an ESA product name for the demo dates (S1: relative orbit 22 as the real sarsen scene;
  record 4 goes to orbit 117 as a distractor; S2: tile 33TTG).
- ``ContentDate``: the sensing start/stop of that name.
- ``Footprint``: S1 from the real ``manifest.safe`` of the sarsen fixture scene (its ``gml:coordinates``,
  lat,lon pairs); S2 the 109.8 km square of MGRS tile 33TTG computed with ``mgrs`` + ``pyproj``.
- ``Attributes``: ``productType`` set; ``relativeOrbitNumber`` / ``cloudCover`` added.

Run ``python tests/data/cdse/derive.py OUT_DIR`` to write the pages as JSON files.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
CATALOGUE = "https://catalogue.dataspace.copernicus.eu/odata/v1"
S1_TEMPLATE = datetime(2021, 12, 23, 5, 11, 22, tzinfo=UTC)  # the sarsen fixture scene
S2_TIME = (10, 4, 1)  # 10:04:01 UTC, the S2 overpass time over 33TTG
DEMO_DAYS = (0, 12, 24, 36)  # 2021-12-23, 2022-01-04, 2022-01-16, 2022-01-28
S2_CLOUD = (3.5, 12.0, 64.0, 0.8)  # 2022-01-16 is the cloudy one (docs/CONTRACTS.md, "The demo world")


def real_records(fixtures: Path = FIXTURES) -> list[dict[str, Any]]:
    """The 47 recorded records, in page order."""
    folder = fixtures / "cdse-odata" / "query" / "mock" / "sentinel_1"
    out: list[dict[str, Any]] = []
    for k in range(1, 6):
        out.extend(json.loads((folder / f"odata_page_{k}.json").read_text(encoding="utf-8"))["value"])
    return out


def s1_footprint(fixtures: Path = FIXTURES) -> str:
    """EWKT footprint from the sarsen scene manifest (gml:coordinates are 'lat,lon' pairs)."""
    manifest = next((fixtures / "s1-grd-sarsen").glob("*.SAFE")) / "manifest.safe"
    coords = re.search(r"<gml:coordinates>([^<]+)</gml:coordinates>", manifest.read_text(encoding="utf-8"))
    assert coords is not None
    pts = [tuple(float(v) for v in p.split(",")) for p in coords.group(1).split()]
    ring = ", ".join(f"{lon} {lat}" for lat, lon in [*pts, pts[0]])
    return f"geography'SRID=4326;POLYGON (({ring}))'"


def s2_footprint(tile: str = "33TTG") -> str:
    """EWKT of the MGRS tile square (109.8 km from the 100 km square's lower-left corner, as ESA tiles)."""
    import mgrs
    import pyproj

    lat, lon = mgrs.MGRS().toLatLon(f"{tile}0000000000")
    zone = int(tile[:2])
    fwd = pyproj.Transformer.from_crs("EPSG:4326", f"EPSG:326{zone:02d}", always_xy=True)
    inv = pyproj.Transformer.from_crs(f"EPSG:326{zone:02d}", "EPSG:4326", always_xy=True)
    x0, y0 = fwd.transform(lon, lat)
    corners = [(x0, y0), (x0 + 109800, y0), (x0 + 109800, y0 + 109800), (x0, y0 + 109800), (x0, y0)]
    ring = ", ".join("{:.6f} {:.6f}".format(*inv.transform(x, y)) for x, y in corners)
    return f"geography'SRID=4326;POLYGON (({ring}))'"


def _set_attr(rec: dict[str, Any], name: str, value: Any, kind: str) -> None:
    attrs = [a for a in rec["Attributes"] if a["Name"] != name]
    attrs.append({"@odata.type": f"#OData.CSC.{kind}Attribute", "Name": name, "Value": value, "ValueType": kind})
    rec["Attributes"] = attrs


def _iso(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z"


def derive_records(fixtures: Path = FIXTURES) -> list[dict[str, Any]]:
    """Four S1 GRDH (orbit 22) + one distractor (orbit 117) and four S2 L2A records, from real records 0..8."""
    real = real_records(fixtures)
    fp1, fp2 = s1_footprint(fixtures), s2_footprint()
    out = []
    for k, days in enumerate(DEMO_DAYS):
        rec = copy.deepcopy(real[k])
        start = S1_TEMPLATE + timedelta(days=days)
        stop = start + timedelta(seconds=25)
        absorbit = 30148 + 175 * k
        rec["Name"] = (
            f"S1B_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_{stop:%Y%m%dT%H%M%S}_{absorbit:06d}_{0x39993 + 0x1000 * k:06X}_{rec['Id'][:4].upper()}.SAFE"
        )
        rec["ContentDate"] = {"Start": _iso(start), "End": _iso(stop)}
        rec["Footprint"] = fp1
        _set_attr(rec, "productType", "IW_GRDH_1S", "String")
        _set_attr(rec, "relativeOrbitNumber", 22, "Integer")
        out.append(rec)
    rec = copy.deepcopy(real[4])  # distractor: a descending pass on another orbit, a day later
    start = S1_TEMPLATE + timedelta(days=1, hours=12)
    rec["Name"] = (
        f"S1A_IW_GRDH_1SDV_{start:%Y%m%dT%H%M%S}_{start + timedelta(seconds=25):%Y%m%dT%H%M%S}_041000_04E0A1_{rec['Id'][:4].upper()}.SAFE"
    )
    rec["ContentDate"] = {"Start": _iso(start), "End": _iso(start + timedelta(seconds=25))}
    rec["Footprint"] = fp1
    _set_attr(rec, "productType", "IW_GRDH_1S", "String")
    _set_attr(rec, "relativeOrbitNumber", 117, "Integer")
    out.append(rec)
    for k, days in enumerate(DEMO_DAYS):
        rec = copy.deepcopy(real[5 + k])
        t = datetime(2021, 12, 23, *S2_TIME, tzinfo=UTC) + timedelta(days=days)
        rec["Name"] = (
            f"S2{'AB'[k % 2]}_MSIL2A_{t:%Y%m%dT%H%M%S}_N0301_R022_T33TTG_{t + timedelta(hours=2):%Y%m%dT%H%M%S}.SAFE"
        )
        rec["ContentDate"] = {"Start": _iso(t), "End": _iso(t)}
        rec["Footprint"] = fp2
        _set_attr(rec, "productType", "S2MSI2A", "String")
        _set_attr(rec, "cloudCover", S2_CLOUD[k], "Double")
        _set_attr(rec, "relativeOrbitNumber", 22, "Integer")
        out.append(rec)
    return out


def paginate(records: list[dict[str, Any]], page_size: int = 10, base: str = CATALOGUE) -> list[dict[str, Any]]:
    """OData pages as CDSE serves them: ``@odata.count`` on the first, ``@odata.nextLink`` with ``$skip`` on all but the last."""
    pages = []
    for i in range(0, max(len(records), 1), page_size):
        page: dict[str, Any] = {
            "@odata.context": "$metadata#Products(Attributes())",
            "value": records[i : i + page_size],
        }
        if i == 0:
            page["@odata.count"] = len(records)
        if i + page_size < len(records):
            page["@odata.nextLink"] = f"{base}/Products?%24top={page_size}&%24expand=Attributes&%24skip={i + page_size}"
        pages.append(page)
    return pages


if __name__ == "__main__":
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    out_dir.mkdir(parents=True, exist_ok=True)
    for n, page in enumerate(paginate(derive_records(), page_size=3), start=1):
        (out_dir / f"odata_page_{n}.json").write_text(json.dumps(page, indent=1), encoding="utf-8")
