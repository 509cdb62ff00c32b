"""DHuS mirrors (national collaborative ground segments) through ``sentinelsat``.

Governing documentation: sentinelsat 1.2 API (https://sentinelsat.readthedocs.io/en/stable/api_reference.html):
``SentinelAPI(user, password, api_url)``, ``query(area=WKT, date=(start, end), producttype=...,
cloudcoverpercentage=(0, max))`` over the DHuS OpenSearch ``/search`` endpoint, and ``download(uuid,
directory_path, checksum=True)`` over OData ``/odata/v1/Products('<uuid>')/$value``, which resumes
``*.incomplete`` files with HTTP Range and verifies the MD5 of the OData record.

Same scene-table output as the CDSE source; the checksum is verified by sentinelsat at download time
(OpenSearch results carry none). A checksum mismatch deletes the file and downloads once more, then fails.
"""

from __future__ import annotations

import functools
import logging
import os
import re
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import shapely.geometry
import shapely.wkt

from pipeline_lib.errors import ConfigError, FetchError
from pipeline_lib.fetch.base import S1_PRODUCT_TYPE, S2_PRODUCT_TYPE, Scene, SearchRequest
from pipeline_lib.fetch.cdse import aoi_polygon_wkt, search_windows
from pipeline_lib.fetch.credentials import Credentials, resolve_credentials
from pipeline_lib.fetch.http import materialise, verify_file

__all__ = ["DhusSource", "source_from_settings", "scene_from_opensearch", "DHUS_USER_VAR", "DHUS_PASSWORD_VAR"]

log = logging.getLogger(__name__)

DHUS_USER_VAR = "DHUS_USERNAME"
DHUS_PASSWORD_VAR = "DHUS_PASSWORD"
_UUID_RE = re.compile(r"Products\('([^']+)'\)")


def _utc(t: datetime) -> datetime:
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def product_type_of(props: Mapping[str, Any]) -> str:
    """Our product type (``IW_GRDH_1S`` / ``S2MSI2A``) from DHuS properties, "" for anything else."""
    ident = str(props.get("identifier") or props.get("title") or "")
    if props.get("producttype") == "GRD" and "_IW_GRDH_1S" in ident:
        return S1_PRODUCT_TYPE
    if props.get("producttype") == S2_PRODUCT_TYPE:
        return S2_PRODUCT_TYPE
    return ""


def scene_from_opensearch(uuid: str, props: Mapping[str, Any], api_url: str) -> Scene:
    """A :class:`Scene` from one parsed sentinelsat OpenSearch entry (``SentinelAPI.query`` value)."""
    title = str(props.get("identifier") or props["title"])
    rel = props.get("relativeorbitnumber")
    cloud = props.get("cloudcoverpercentage")
    fp = str(props.get("footprint") or "")
    return Scene(
        product_id=title,
        mission=title[:3],
        product_type=product_type_of(props),
        sensing_time=_utc(props["beginposition"]),
        footprint_wkt=str(shapely.wkt.loads(fp).wkt) if fp else "",
        relative_orbit=int(rel) if rel is not None else None,
        cloud_cover=float(cloud) if cloud is not None else None,
        source="dhus",
        uri=f"{api_url.rstrip('/')}/odata/v1/Products('{uuid}')/$value",
    )


@dataclass
class DhusSource:
    """A DHuS mirror at ``api_url`` (e.g. ``https://colhub.met.no/``), searched and downloaded with sentinelsat."""

    api_url: str
    credentials: Credentials | Callable[[], Credentials] | None = None
    timeout_s: float = 60.0
    show_progress: bool = False
    name: str = "dhus"

    def __post_init__(self) -> None:
        self._api: Any = None

    def __repr__(self) -> str:
        return f"DhusSource(api_url={self.api_url!r})"

    def api(self) -> Any:
        """The sentinelsat client (created on first use, when the credentials are first needed)."""
        if self._api is None:
            from sentinelsat import SentinelAPI

            c = self.credentials
            if c is None:
                raise ConfigError(
                    f"fetch.dhus: no credentials for {self.api_url}; export {DHUS_USER_VAR}/{DHUS_PASSWORD_VAR} or use ~/.netrc"
                )
            creds = c if isinstance(c, Credentials) else c()
            self._api = SentinelAPI(
                creds.username,
                creds.password,
                self.api_url,
                show_progressbars=self.show_progress,
                timeout=self.timeout_s,
            )
        return self._api

    def _call(self, what: str, fn: Callable[[], Any]) -> Any:
        from sentinelsat.exceptions import SentinelAPIError, UnauthorizedError

        try:
            return fn()
        except UnauthorizedError:
            raise FetchError(
                f"DHuS {self.api_url}: {what} refused (HTTP 401); check {DHUS_USER_VAR}/{DHUS_PASSWORD_VAR} or ~/.netrc"
            ) from None
        except SentinelAPIError as exc:
            status = getattr(exc.response, "status_code", "?")
            raise FetchError(
                f"DHuS {self.api_url}: {what} failed ({type(exc).__name__}, HTTP {status}); retry later or check fetch.dhus.api_url"
            ) from None
        except OSError as exc:
            raise FetchError(
                f"DHuS {self.api_url}: {what} failed ({type(exc).__name__}); check the network and fetch.dhus.api_url"
            ) from None

    def search(self, request: SearchRequest) -> list[Scene]:
        """S1 IW GRDH and S2 L2A products intersecting the AOI within the tolerance of the configured dates."""
        api = self.api()
        area = aoi_polygon_wkt(request.aoi_lonlat)
        aoi = shapely.geometry.box(*request.aoi_lonlat)
        windows = search_windows(request.dates, request.pair_tolerance_days)
        seen: dict[str, Scene] = {}
        for start, end in windows:
            queries: list[dict[str, Any]] = [
                {"producttype": "GRD", "sensoroperationalmode": "IW"},
                {"producttype": S2_PRODUCT_TYPE, "cloudcoverpercentage": (0, request.max_cloud_cover)},
            ]
            for kw in queries:
                found = self._call("search", functools.partial(api.query, area=area, date=(start, end), **kw))
                for uuid, props in found.items():
                    scene = scene_from_opensearch(uuid, props, self.api_url)
                    if not scene.product_type:
                        continue
                    if not any(s <= scene.sensing_time <= e for s, e in windows):
                        continue
                    if scene.footprint_wkt and not shapely.wkt.loads(scene.footprint_wkt).intersects(aoi):
                        continue
                    seen.setdefault(scene.product_id, scene)
        log.info("DHuS search: %d candidate products", len(seen))
        return sorted(seen.values(), key=lambda s: (s.sensing_time, s.product_id))

    def scene(self, uuid: str) -> Scene:
        """A scene from the product's OData record (exact size and MD5)."""
        info = self._call("product lookup", lambda: self.api().get_product_odata(uuid))
        md5 = info.get("md5", "")
        return Scene(
            product_id=str(info["title"]),
            mission=str(info["title"])[:3],
            product_type="",
            sensing_time=_utc(info["date"]),
            footprint_wkt=str(info.get("footprint") or ""),
            size_bytes=int(info["size"]),
            checksum=f"md5:{md5.lower()}" if md5 else "",
            source="dhus",
            uri=f"{self.api_url.rstrip('/')}/odata/v1/Products('{uuid}')/$value",
        )

    def download(self, scene: Scene, dest: Path) -> Path:
        """Download through sentinelsat (resumed, MD5-checked) into a work folder beside ``dest``, then move into place."""
        from sentinelsat.exceptions import InvalidChecksumError

        m = _UUID_RE.search(scene.uri)
        if not m:
            raise FetchError(
                f"scene {scene.product_id}: uri {scene.uri!r} has no DHuS product uuid; rerun the search with fetch.source dhus"
            )
        uuid = m.group(1)

        def fetch(zip_path: Path) -> Path:
            md5 = scene.checksum.split(":", 1)[1] if scene.checksum.startswith("md5:") else ""
            if zip_path.is_file() and (scene.size_bytes or md5) and not verify_file(zip_path, scene.size_bytes, md5):
                return zip_path
            work = zip_path.parent / f".dhus-{uuid}"
            work.mkdir(parents=True, exist_ok=True)
            for attempt in (1, 2):
                try:
                    info = self._call(
                        "download", lambda: self.api().download(uuid, directory_path=str(work), checksum=True)
                    )
                    break
                except InvalidChecksumError:  # sentinelsat has already deleted the corrupt file
                    if attempt == 2:
                        raise FetchError(
                            f"DHuS {self.api_url}: {scene.product_id} failed its MD5 check twice; the product may be corrupt on the mirror, try later"
                        ) from None
                    log.warning("%s: MD5 mismatch; deleted, downloading once more", scene.product_id)
            os.replace(info["path"], zip_path)
            shutil.rmtree(work, ignore_errors=True)
            log.info("%s: %s B verified (md5)", zip_path.name, zip_path.stat().st_size)
            return zip_path

        return materialise(fetch, Path(dest))


def source_from_settings(
    settings: Mapping[str, Any], credentials: Credentials | Callable[[], Credentials] | None = None
) -> DhusSource:
    """A :class:`DhusSource` from the ``fetch.dhus`` block; credentials default to DHUS_USERNAME/DHUS_PASSWORD or ~/.netrc."""
    api_url = str(settings.get("api_url", "https://colhub.met.no/"))
    for key in ("username", "password"):
        if key in settings:
            raise ConfigError(
                f"fetch.dhus.{key}: credentials do not belong in the config; export {DHUS_USER_VAR}/{DHUS_PASSWORD_VAR} or use ~/.netrc"
            )

    def from_env() -> Credentials:
        from urllib.parse import urlsplit

        env: Mapping[str, str] = os.environ
        mapped = {"CDSE_USERNAME": env.get(DHUS_USER_VAR, ""), "CDSE_PASSWORD": env.get(DHUS_PASSWORD_VAR, "")}
        return resolve_credentials(
            mapped, Path.home() / ".netrc", urlsplit(api_url).hostname or "", f"{DHUS_USER_VAR}/{DHUS_PASSWORD_VAR}"
        )

    return DhusSource(api_url=api_url, credentials=credentials if credentials is not None else from_env)
