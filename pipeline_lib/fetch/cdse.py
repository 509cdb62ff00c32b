"""Copernicus Data Space Ecosystem (CDSE) source: OData catalogue search and product download.

Governing documentation: CDSE "OData" API (https://documentation.dataspace.copernicus.eu/APIs/OData.html):
``/Products`` with ``$filter`` on ``Collection/Name``, the ``productType`` and ``cloudCover`` attributes
(``Attributes/OData.CSC.StringAttribute/any(...)``, ``.../DoubleAttribute/any(...)``),
``OData.CSC.Intersects(area=geography'SRID=4326;POLYGON(...)')`` and ``ContentDate/Start``;
``$top`` ≤ 1000, ``$skip`` ≤ 10000, paging by ``@odata.nextLink``; ``$expand=Attributes``.
Download: ``/odata/v1/Products(<Id>)/$value`` with a bearer token from the CDSE Keycloak (see
:mod:`pipeline_lib.fetch.credentials`); the catalogue host redirects to the download host, which drops
the Authorization header, so redirects are followed by hand (:mod:`pipeline_lib.fetch.http`).
Quotas (https://documentation.dataspace.copernicus.eu/Quotas.html): 4 concurrent connections per user.

Catalogue records may have a null ``Footprint`` (auxiliary products): the scene gets an empty WKT.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import IO, Any
from urllib.parse import urlsplit

import shapely
import shapely.geometry
import shapely.wkt

from pipeline_lib.errors import ConfigError, FetchError
from pipeline_lib.fetch.base import S1_PRODUCT_TYPE, S2_PRODUCT_TYPE, Scene, SearchRequest
from pipeline_lib.fetch.credentials import CDSE_CLIENT_ID, CDSE_TOKEN_URL, Credentials, KeycloakToken, load_credentials
from pipeline_lib.fetch.http import (
    _NETWORK_ERRORS,
    RETRY_STATUS,
    Progress,
    RetryPolicy,
    backoff_delay,
    download_file,
    make_session,
    materialise,
    netloc,
    parse_retry_after,
)

__all__ = [
    "CdseSource",
    "source_from_settings",
    "build_filter",
    "search_windows",
    "parse_product",
    "parse_footprint",
    "CATALOGUE_URL",
    "DOWNLOAD_URL",
]

log = logging.getLogger(__name__)

CATALOGUE_URL = "https://catalogue.dataspace.copernicus.eu/odata/v1"
DOWNLOAD_URL = "https://zipper.dataspace.copernicus.eu/odata/v1"
MAX_TOP = 1000
MAX_SKIP = 10000
COLLECTIONS = {S1_PRODUCT_TYPE: "SENTINEL-1", S2_PRODUCT_TYPE: "SENTINEL-2"}
_ID_RE = re.compile(r"Products\(([^)]+)\)")


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def search_windows(dates: Sequence[date], tolerance_days: float) -> list[tuple[datetime, datetime]]:
    """Merged UTC windows ``noon ± tolerance`` around the configured dates (the same convention as select_scenes)."""
    spans = sorted(
        (
            datetime(d.year, d.month, d.day, 12, tzinfo=UTC) - timedelta(days=tolerance_days),
            datetime(d.year, d.month, d.day, 12, tzinfo=UTC) + timedelta(days=tolerance_days),
        )
        for d in dates
    )
    merged: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def aoi_polygon_wkt(aoi_lonlat: tuple[float, float, float, float]) -> str:
    """Closed lon/lat polygon of a (west, south, east, north) box, counter-clockwise."""
    w, s, e, n = aoi_lonlat
    if not (w < e and s < n):
        raise ConfigError(f"aoi {aoi_lonlat}: need west < east and south < north")
    return f"POLYGON(({w} {s},{e} {s},{e} {n},{w} {n},{w} {s}))"


def build_filter(
    product_type: str,
    aoi_lonlat: tuple[float, float, float, float],
    start: datetime,
    end: datetime,
    max_cloud_cover: float | None = None,
) -> str:
    """The OData ``$filter`` for one product type, AOI and sensing window (cloud cover for S2 only)."""
    collection = COLLECTIONS.get(product_type)
    if collection is None:
        raise ConfigError(
            f"product type {product_type!r}: not searchable on CDSE here; use {S1_PRODUCT_TYPE} or {S2_PRODUCT_TYPE}"
        )
    parts = [
        f"Collection/Name eq '{collection}'",
        "Attributes/OData.CSC.StringAttribute/any(att:att/Name eq 'productType' and "
        f"att/OData.CSC.StringAttribute/Value eq '{product_type}')",
        f"OData.CSC.Intersects(area=geography'SRID=4326;{aoi_polygon_wkt(aoi_lonlat)}')",
        f"ContentDate/Start ge {_iso(start)}",
        f"ContentDate/Start le {_iso(end)}",
    ]
    if max_cloud_cover is not None and collection == "SENTINEL-2" and max_cloud_cover < 100:
        parts.append(
            "Attributes/OData.CSC.DoubleAttribute/any(att:att/Name eq 'cloudCover' and "
            f"att/OData.CSC.DoubleAttribute/Value le {max_cloud_cover:.2f})"
        )
    return " and ".join(parts)


def parse_footprint(item: Mapping[str, Any]) -> str:
    """WKT (EPSG:4326) of a product's footprint from ``Footprint`` (EWKT in ``geography'...'``) or ``GeoFootprint`` (GeoJSON); "" when null."""
    fp = item.get("Footprint")
    if isinstance(fp, str) and fp:
        m = re.match(r"^geography'(?:SRID=\d+;)?(.*)'$", fp.strip(), re.S)
        wkt = m.group(1) if m else fp
        try:
            return str(shapely.wkt.loads(wkt).wkt)
        except shapely.errors.ShapelyError:
            log.warning("product %s: unparsable Footprint, ignoring it", item.get("Name"))
    geo = item.get("GeoFootprint")
    if isinstance(geo, Mapping) and geo.get("type"):
        try:
            return str(shapely.geometry.shape(geo).wkt)
        except (shapely.errors.ShapelyError, ValueError, TypeError, KeyError):
            log.warning("product %s: unparsable GeoFootprint, ignoring it", item.get("Name"))
    return ""


def _attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    return {str(a.get("Name")): a.get("Value") for a in item.get("Attributes") or [] if isinstance(a, Mapping)}


def _parse_time(value: str) -> datetime:
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_product(item: Mapping[str, Any], download_url: str = DOWNLOAD_URL) -> Scene:
    """A :class:`Scene` from one OData product record (``$expand=Attributes``)."""
    try:
        name = str(item["Name"])
        pid = str(item["Id"])
        start = _parse_time(str(item["ContentDate"]["Start"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise FetchError(
            f"catalogue record {item.get('Name', '?')}: missing or bad {exc}; the catalogue answer is malformed"
        ) from None
    attrs = _attributes(item)
    md5 = next(
        (c.get("Value", "") for c in item.get("Checksum") or [] if str(c.get("Algorithm", "")).upper() == "MD5"), ""
    )
    product_id = re.sub(r"\.(SAFE|zip|SEN3)$", "", name)
    rel = attrs.get("relativeOrbitNumber")
    cloud = attrs.get("cloudCover")
    return Scene(
        product_id=product_id,
        mission=product_id[:3],
        product_type=str(attrs.get("productType", "")),
        sensing_time=start,
        footprint_wkt=parse_footprint(item),
        size_bytes=int(item.get("ContentLength") or 0),
        checksum=f"md5:{md5.lower()}" if md5 else "",
        relative_orbit=int(rel) if rel is not None else None,
        cloud_cover=float(cloud) if cloud is not None else None,
        source="cdse",
        uri=f"{download_url.rstrip('/')}/Products({pid})/$value",
    )


def _host_set(urls: Iterable[str]) -> frozenset[str]:
    out = set()
    for u in urls:
        if "//" in u:
            out.add(netloc(u))
        elif re.match(r"^[^:/]+:\d+$", u):
            out.add(u.lower())
        else:
            out.add(f"{u.lower()}:443")
    return frozenset(out)


@dataclass
class CdseSource:
    """Search and download from CDSE. All endpoints are arguments so tests can point them at loopback.

    ``credentials`` may be a callable, called only when a download first needs a token (searching is public).
    """

    catalogue_url: str = CATALOGUE_URL
    token_url: str = CDSE_TOKEN_URL
    download_url: str = DOWNLOAD_URL
    allowed_hosts: Sequence[str] = ()
    credentials: Credentials | Callable[[], Credentials] | None = None
    client_id: str = CDSE_CLIENT_ID
    page_size: int = 100
    max_results: int = MAX_SKIP
    policy: RetryPolicy = RetryPolicy()
    timeout_s: float = 60.0
    progress_stream: IO[str] | None = None
    sleep: Callable[[float], None] = time.sleep
    rng: random.Random | None = None
    name: str = "cdse"

    def __post_init__(self) -> None:
        if not 1 <= self.page_size <= MAX_TOP:
            raise ConfigError(f"fetch.cdse.page_size={self.page_size}: must be 1..{MAX_TOP} (the CDSE $top limit)")
        self.session = make_session()
        self._token: KeycloakToken | None = None

    def __repr__(self) -> str:
        return f"CdseSource(catalogue_url={self.catalogue_url!r}, download_url={self.download_url!r})"

    # -- search ----------------------------------------------------------------------------------

    def search(self, request: SearchRequest) -> list[Scene]:
        """All S1 IW GRDH and S2 L2A products intersecting the AOI within the tolerance of any configured date."""
        aoi = shapely.geometry.box(*request.aoi_lonlat)
        seen: dict[str, Scene] = {}
        for start, end in search_windows(request.dates, request.pair_tolerance_days):
            for ptype in (S1_PRODUCT_TYPE, S2_PRODUCT_TYPE):
                flt = build_filter(ptype, request.aoi_lonlat, start, end, request.max_cloud_cover)
                for item in self._pages(flt):
                    scene = parse_product(item, self.download_url)
                    if scene.product_type != ptype:
                        continue  # the server filter should have excluded it
                    if scene.footprint_wkt and not shapely.wkt.loads(scene.footprint_wkt).intersects(aoi):
                        continue
                    seen.setdefault(scene.product_id, scene)
        log.info("CDSE search: %d candidate products", len(seen))
        return sorted(seen.values(), key=lambda s: (s.sensing_time, s.product_id))

    def products(self, odata_filter: str) -> Iterator[dict[str, Any]]:
        """Raw product records for any ``$filter`` (all pages)."""
        return self._pages(odata_filter)

    def _pages(self, odata_filter: str) -> Iterator[dict[str, Any]]:
        base = self.catalogue_url.rstrip("/") + "/Products"
        url: str | None = base
        params: dict[str, str] | None = {
            "$filter": odata_filter,
            "$top": str(self.page_size),
            "$orderby": "ContentDate/Start asc",
            "$expand": "Attributes",
        }
        returned = 0
        while url:
            page = self._get_json(url, params)
            values = page.get("value")
            if not isinstance(values, list):
                raise FetchError(
                    f"catalogue {self.catalogue_url}: page without a 'value' list; check fetch.cdse.catalogue_url"
                )
            yield from values
            returned += len(values)
            nxt = page.get("@odata.nextLink")
            if not nxt or not values:
                return
            if returned >= self.max_results:
                raise FetchError(
                    f"catalogue {self.catalogue_url}: more than {self.max_results} products match; narrow the AOI or the dates"
                )
            url, params = self._rebase(str(nxt)), None

    def _rebase(self, next_link: str) -> str:
        """Follow ``@odata.nextLink`` on the configured catalogue host only (its query is kept)."""
        if netloc(next_link) == netloc(self.catalogue_url):
            return next_link
        query = urlsplit(next_link).query
        return f"{self.catalogue_url.rstrip('/')}/Products?{query}"

    def _get_json(self, url: str, params: Mapping[str, str] | None) -> dict[str, Any]:
        attempt = 0
        while True:
            cause, retry_after = "", None
            try:
                resp = self.session.get(url, params=params, timeout=self.timeout_s)
            except _NETWORK_ERRORS as exc:
                cause = f"{type(exc).__name__}"
            else:
                if resp.status_code in RETRY_STATUS:
                    cause, retry_after = f"HTTP {resp.status_code}", parse_retry_after(resp.headers.get("Retry-After"))
                elif resp.status_code != 200:
                    raise FetchError(
                        f"catalogue {self.catalogue_url}: HTTP {resp.status_code} for a search; check the filter and fetch.cdse.catalogue_url"
                    )
                else:
                    try:
                        page = json.loads(resp.content)
                    except (ValueError, UnicodeDecodeError) as exc:
                        cause = f"malformed JSON page ({type(exc).__name__} at byte {getattr(exc, 'pos', '?')})"
                    else:
                        if isinstance(page, dict):
                            return page
                        cause = "JSON page is not an object"
            attempt += 1
            if attempt >= self.policy.max_attempts:
                raise FetchError(
                    f"catalogue {self.catalogue_url}: gave up after {attempt} attempts, last cause: {cause}; retry later"
                )
            delay = backoff_delay(attempt, self.policy, retry_after, self.rng)
            log.info("catalogue: %s; retry %d in %.1f s", cause, attempt, delay)
            self.sleep(delay)

    # -- download --------------------------------------------------------------------------------

    def _auth(self) -> KeycloakToken:
        if self._token is None:
            creds = self.credentials if self.credentials is not None else (lambda: load_credentials(self.token_url))
            self._token = KeycloakToken(
                self.token_url, creds, session=self.session, client_id=self.client_id, timeout_s=self.timeout_s
            )
        return self._token

    def download(self, scene: Scene, dest: Path) -> Path:
        """Fetch ``/Products(<Id>)/$value`` to ``dest`` (a ``.zip``, or a ``.SAFE`` folder unpacked from it), verified."""
        m = _ID_RE.search(scene.uri)
        if not m:
            raise FetchError(
                f"scene {scene.product_id}: uri {scene.uri!r} has no CDSE product Id; rerun the search with fetch.source cdse"
            )
        url = f"{self.download_url.rstrip('/')}/Products({m.group(1)})/$value"
        md5 = scene.checksum.split(":", 1)[1] if scene.checksum.startswith("md5:") else ""
        hosts = _host_set([self.download_url, *self.allowed_hosts])
        dest = Path(dest)

        def fetch(zip_path: Path) -> Path:
            progress = Progress(scene.product_id, scene.size_bytes, stream=self.progress_stream, logger=log)
            return download_file(
                url,
                zip_path,
                session=self.session,
                expected_size=scene.size_bytes,
                md5=md5,
                auth=self._auth(),
                auth_hosts=hosts,
                policy=self.policy,
                timeout_s=self.timeout_s,
                progress=progress,
                sleep=self.sleep,
                rng=self.rng,
            )

        try:
            return materialise(fetch, dest)
        except FetchError as exc:  # the downloader names the URL (an opaque Id): name the product too
            if scene.product_id in str(exc):
                raise
            raise FetchError(f"product {scene.product_id}: {exc}") from None


def source_from_settings(
    settings: Mapping[str, Any], credentials: Credentials | Callable[[], Credentials] | None = None
) -> CdseSource:
    """A :class:`CdseSource` from the ``fetch.cdse`` config block (credentials never come from it)."""
    for key in ("username", "password", "token"):
        if key in settings:
            raise ConfigError(
                f"fetch.cdse.{key}: credentials do not belong in the config; export CDSE_USERNAME/CDSE_PASSWORD or use ~/.netrc"
            )
    return CdseSource(
        catalogue_url=str(settings.get("catalogue_url", CATALOGUE_URL)),
        token_url=str(settings.get("token_url", CDSE_TOKEN_URL)),
        download_url=str(settings.get("download_url", DOWNLOAD_URL)),
        allowed_hosts=tuple(settings.get("allowed_hosts", ())),
        credentials=credentials,
    )
