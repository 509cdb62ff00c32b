"""The ``stac`` source: Sentinel-1/2 COGs found through a STAC API, read by window (DESIGN §4).

Search (STAC API - Item Search, https://api.stacspec.org/v1.0.0/item-search) with pystac-client
over the grid's lon/lat bounds and the configured dates ± ``pair_tolerance_days``, per modality's
collection; ``max_items`` caps what a search may return (an API that pages on without end is an
error, not a hang). Per date the S2 item with the lowest ``eo:cloud_cover`` within the tolerance
wins (then the closest), S1 the closest on one relative orbit (``sat:relative_orbit``, the orbit
covering most dates, as the SAFE sources choose: DESIGN §9); the reason goes to ``scenes.csv``, whose
``uri`` holds the chosen item's asset hrefs (unsigned) as JSON.

Reading: every band is one COG asset, opened through GDAL's ``/vsicurl/`` and read only in the
window over the grid at its own resolution (HTTP range requests; the whole tile is never fetched),
then scaled and warped by :func:`pipeline_lib.ingest.ingest_bands` — the files source's function, so
both sources give identical arrays from the same COGs. Scale and offset come from the asset's
``raster:bands`` when it has them (Earth Search's L2A offset −0.1 since baseline 04.00), else from the
config. A remote asset that is not tiled is refused (a window would read the whole file). GDAL's HTTP
client retries transient failures (``GDAL_HTTP_MAX_RETRY``); URLs that need signing (Planetary
Computer) are signed just before reading and re-signed once, with a fresh token, when the storage
answers 403 (an expired SAS). Each asset's window is cached as a small GeoTIFF keyed by item id, asset
href and grid hash (``results/{region}/raw/stac`` in the workflow), so a rerun reads nothing remote.

Presets: ``earth-search`` (Element 84, sentinel-2-l2a COGs), ``planetary-computer`` (sentinel-2-l2a and
sentinel-1-rtc, γ0 RTC in linear power; signing with the ``planetary-computer`` package) and ``cdse``
(the Copernicus Data Space STAC; its assets are JPEG 2000 on S3 and need S3 credentials, so reading
them is not covered here).
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import rasterio
import rasterio.errors

from pipeline_lib.errors import ConfigError, FetchError, ProductError, SceneNotFoundError
from pipeline_lib.fetch.base import Scene, SearchRequest, best_relative_orbit, days_from_noon
from pipeline_lib.fetch.files import ModalitySpec, modality_spec
from pipeline_lib.grid import Grid
from pipeline_lib.io import atomic_path

__all__ = [
    "PRESETS",
    "StacSettings",
    "StacSource",
    "stac_settings",
    "search_stac",
    "select_stac",
    "ingest_stac_scene",
    "vsicurl",
]

Signer = Callable[[str], str]

#: Named endpoint bundles; any key can be overridden in ``fetch.stac``.
PRESETS: dict[str, dict[str, Any]] = {
    "earth-search": {
        "url": "https://earth-search.aws.element84.com/v1",
        "collections": {"s2": "sentinel-2-l2a", "s1": None},
        "assets": {"s2": {"B04": "red", "B03": "green", "B02": "blue", "B11": "swir16", "B12": "swir22"}},
        "mask": {"asset": "scl", "keep": [2, 4, 5, 6, 7, 11]},
        "s2": {"scale": 0.0001, "offset": 0.0, "level": "L2A"},
        "sign": None,
    },
    "planetary-computer": {
        "url": "https://planetarycomputer.microsoft.com/api/stac/v1",
        "collections": {"s2": "sentinel-2-l2a", "s1": "sentinel-1-rtc"},
        "assets": {
            "s2": {"B04": "B04", "B03": "B03", "B02": "B02", "B11": "B11", "B12": "B12"},
            "s1": {"VV": "vv", "VH": "vh"},
        },
        "mask": {"asset": "SCL", "keep": [2, 4, 5, 6, 7, 11]},
        "s2": {"scale": 0.0001, "offset": 0.0, "level": "L2A"},
        "s1": {"quantity": "gamma0_rtc", "unit": "linear"},
        "sign": "planetary-computer",
    },
    "cdse": {
        "url": "https://stac.dataspace.copernicus.eu/v1",
        "collections": {"s2": "sentinel-2-l2a", "s1": None},
        "assets": {"s2": {"B04": "B04_10m", "B03": "B03_10m", "B02": "B02_10m", "B11": "B11_20m", "B12": "B12_20m"}},
        "mask": {"asset": "SCL_20m", "keep": [2, 4, 5, 6, 7, 11]},
        "s2": {"scale": 0.0001, "offset": 0.0, "level": "L2A"},
        "sign": None,
    },
}
GDAL_HTTP_ENV = {
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",  # no directory listing per asset
    "GDAL_HTTP_MAX_RETRY": "3",
    "GDAL_HTTP_RETRY_DELAY": "1",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": ".tif,.tiff,.TIF,.jp2",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
}


@dataclass(frozen=True)
class StacSettings:
    """``fetch.stac`` with its preset applied: endpoint, collections, asset keys and value conventions."""

    url: str
    collections: dict[str, str]  # modality -> collection id (configured modalities only)
    assets: dict[str, dict[str, str]]  # modality -> {output band: asset key}
    mask_asset: str | None
    mask_keep: tuple[int, ...]
    specs: dict[str, ModalitySpec]
    max_items: int
    sign: str | None


def stac_settings(cfg: Mapping[str, Any]) -> StacSettings:
    """Merge ``fetch.stac`` over its preset; ConfigError naming the key when something is missing."""
    preset_name = cfg.get("preset")
    if preset_name is not None and preset_name not in PRESETS:
        raise ConfigError(f"fetch.stac.preset: {preset_name!r} is unknown; use one of {sorted(PRESETS)}")
    base: dict[str, Any] = json.loads(json.dumps(PRESETS.get(preset_name or "", {})))
    for key, value in cfg.items():
        if value is None or key == "preset":
            continue
        if isinstance(value, Mapping) and isinstance(base.get(key), Mapping):
            base[key] = {**base[key], **value}
        else:
            base[key] = value
    url = base.get("url")
    if not url:
        raise ConfigError("fetch.stac.url: required (or choose a preset: earth-search, planetary-computer, cdse)")
    collections = {m: c for m, c in (base.get("collections") or {}).items() if c}
    if "s2" not in collections:
        raise ConfigError("fetch.stac.collections.s2: required; name the Sentinel-2 collection")
    assets = dict(base.get("assets") or {})
    specs = {}
    for m in collections:
        if not assets.get(m):
            raise ConfigError(f"fetch.stac.assets.{m}: required; map the output bands to the items' asset keys")
        extra = dict(base.get(m) or {})
        specs[m] = modality_spec(
            m, {"paths": {"1970-01-01": "stac"}, "bands": dict(assets[m]), **extra}, key=f"fetch.stac.{m}"
        )
    mask = base.get("mask") or {}
    return StacSettings(
        url=str(url),
        collections=collections,
        assets={m: dict(assets[m]) for m in collections},
        mask_asset=mask.get("asset"),
        mask_keep=tuple(int(c) for c in mask.get("keep") or ()),
        specs=specs,
        max_items=int(base.get("max_items", 500)),
        sign=base.get("sign"),
    )


def _href(item: Any, key: str, where: str) -> str:
    asset = item.assets.get(key)
    if asset is None:
        raise FetchError(f"STAC item {item.id}: no asset {key!r} (it has {sorted(item.assets)}); fix {where}")
    return str(asset.href)


def _scale_offset(item: Any, key: str) -> tuple[float | None, float | None]:
    bands = (item.assets[key].extra_fields or {}).get("raster:bands") or []
    if not bands:
        return None, None
    b = bands[0]
    return b.get("scale"), b.get("offset")


def search_stac(settings: StacSettings, request: SearchRequest, *, client: Any = None) -> list[Scene]:
    """Candidate items of every configured modality as scenes (``uri`` = JSON of the asset hrefs)."""
    from pystac_client import Client
    from pystac_client.exceptions import APIError

    start = min(request.dates) - timedelta(days=float(request.pair_tolerance_days) + 1)
    end = max(request.dates) + timedelta(days=float(request.pair_tolerance_days) + 1)
    try:
        api = client or Client.open(settings.url)
    except (APIError, OSError) as exc:
        raise FetchError(f"fetch.stac.url {settings.url}: cannot open the STAC API ({exc}); check the URL") from exc
    scenes: list[Scene] = []
    for modality, collection in settings.collections.items():
        search = api.search(
            collections=[collection],
            bbox=list(request.aoi_lonlat),
            datetime=[
                datetime.combine(start, datetime.min.time(), UTC),
                datetime.combine(end, datetime.min.time(), UTC),
            ],
            max_items=settings.max_items + 1,
            limit=min(100, settings.max_items + 1),
        )
        try:
            items = list(search.items())
        except APIError as exc:
            raise FetchError(f"{settings.url}: search of {collection} failed ({str(exc)[:200]}); retry later") from exc
        if len(items) > settings.max_items:
            raise FetchError(
                f"{settings.url}: the search of {collection} returned more than fetch.stac.max_items="
                f"{settings.max_items} items (paging went on); narrow the dates or the AOI, or raise max_items"
            )
        for item in items:
            if item.collection_id not in (None, collection):
                continue  # an API that ignores the collections filter
            where = f"fetch.stac.assets.{modality}"
            hrefs = {band: _href(item, key, where) for band, key in settings.assets[modality].items()}
            first = settings.assets[modality][next(iter(hrefs))]
            scale, offset = _scale_offset(item, first)
            uri: dict[str, Any] = {"assets": hrefs, "scale": scale, "offset": offset}
            if modality == "s2" and settings.mask_asset:
                uri["mask"] = _href(item, settings.mask_asset, "fetch.stac.mask.asset")
            when = item.datetime or datetime.fromisoformat(
                str(item.properties["start_datetime"]).replace("Z", "+00:00")
            )
            w, s, e, n = item.bbox or (0, 0, 0, 0)
            scenes.append(
                Scene(
                    product_id=str(item.id),
                    mission=modality.upper(),
                    product_type=collection,
                    sensing_time=when.astimezone(UTC),
                    footprint_wkt=f"POLYGON (({w} {s}, {e} {s}, {e} {n}, {w} {n}, {w} {s}))",
                    relative_orbit=item.properties.get("sat:relative_orbit"),
                    cloud_cover=item.properties.get("eo:cloud_cover"),
                    source="stac",
                    uri=json.dumps(uri, sort_keys=True),
                )
            )
    return scenes


def select_stac(candidates: Sequence[Scene], request: SearchRequest, modalities: Sequence[str]) -> list[Scene]:
    """Per date and modality the item :func:`select_files` picks (S2: clearest, then closest), with every S1
    item on one relative orbit (``sat:relative_orbit``): the orbit that covers most dates, as the SAFE
    sources choose (:func:`pipeline_lib.fetch.base.best_relative_orbit`); the orbit goes into the reason.
    """
    from pipeline_lib.fetch.files import select_files

    tol = request.pair_tolerance_days
    s1 = [c for c in candidates if c.mission == "S1"]
    if not s1:
        return select_files(candidates, request, modalities, prefer_clear=True)
    orbit = best_relative_orbit(s1, request.dates, tol)
    covered = sum(any(days_from_noon(c, d) <= tol for c in s1 if c.relative_orbit == orbit) for d in request.dates)
    others = sorted({str(c.relative_orbit) for c in s1 if c.relative_orbit != orbit})
    keep = [c for c in candidates if c.mission != "S1" or c.relative_orbit == orbit]
    try:
        chosen = select_files(keep, request, modalities, prefer_clear=True)
    except SceneNotFoundError as exc:
        if "no S1 file" not in str(exc):
            raise
        raise SceneNotFoundError(
            f"{exc}; only relative orbit {orbit} is kept (it covers {covered} of {len(request.dates)} dates; "
            f"items on orbits {', '.join(others)} were set aside)"
        ) from None
    if orbit is None and not others:
        return chosen  # no item gives sat:relative_orbit: nothing to keep constant
    why = f"relative orbit {orbit if orbit is not None else 'unknown'} (covers {covered} of {len(request.dates)} dates"
    why += f"; orbits {', '.join(others)} set aside)" if others else ")"
    return [dataclasses.replace(c, reason=f"{c.reason}; {why}") if c.mission == "S1" else c for c in chosen]


@dataclass
class StacSource:
    """STAC items as scenes; nothing is downloaded (assets are read by window at ingestion)."""

    settings: StacSettings
    name: str = "stac"
    client: Any = None

    def search(self, request: SearchRequest) -> list[Scene]:
        return search_stac(self.settings, request, client=self.client)

    def download(self, scene: Scene, dest: Path) -> Path:
        raise FetchError(f"STAC item {scene.product_id}: assets are read by window; nothing to download")


def vsicurl(href: str) -> str:
    """GDAL's name for an HTTP(S) or S3 asset (``s3://b/k`` -> ``/vsis3/b/k``); local paths as they are."""
    if href.startswith(("http://", "https://")):
        return f"/vsicurl/{href}"
    if href.startswith("s3://"):
        return f"/vsis3/{href[5:]}"
    return href


class PlanetaryComputerSigner:
    """Signs Azure Blob hrefs with a SAS token from the ``planetary-computer`` package, lazily (the first
    read of a container fetches its token, from ``PC_SDK_SAS_URL`` — the package's setting, default the
    Planetary Computer's token endpoint — with ``PC_SDK_SUBSCRIPTION_KEY`` when set); :meth:`forget`
    drops the cached tokens so the next signature is a fresh one (after the storage answered 403)."""

    def __init__(self) -> None:
        try:
            import planetary_computer
        except ImportError as exc:  # pragma: no cover - a pinned dependency
            raise ConfigError(
                "fetch.stac.sign: planetary-computer needs the planetary-computer package; pip install -e ."
            ) from exc
        self._pc = planetary_computer

    def __call__(self, href: str) -> str:
        import requests

        try:
            return str(self._pc.sign_url(href))
        except (requests.RequestException, ValueError) as exc:
            raise FetchError(
                f"{href}: cannot get a Planetary Computer SAS token ({str(exc).splitlines()[0][:200]}); "
                "check the network or PC_SDK_SAS_URL / PC_SDK_SUBSCRIPTION_KEY"
            ) from exc

    def forget(self, href: str) -> None:
        """Drop the cached tokens: the storage refused the last signature (expired)."""
        self._pc.sas.TOKEN_CACHE.clear()


def _signer(name: str | None) -> Signer | None:
    if name is None:
        return None
    if name == "planetary-computer":
        return PlanetaryComputerSigner()
    raise ConfigError(f"fetch.stac.sign: {name!r} is unknown; use planetary-computer or null")


def grid_key(grid: Grid) -> str:
    """A short hash of the grid (CRS, transform, shape): the cache key part that changes with the grid."""
    text = json.dumps([str(grid.crs), list(grid.transform)[:6], grid.height, grid.width])
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def cache_path(cache_dir: Path, item_id: str, name: str, href: str, grid: Grid) -> Path:
    """``{cache_dir}/{item id}/{band}-{hash of the unsigned href and the grid}.tif``."""
    key = hashlib.sha256(f"{href}\n{grid_key(grid)}".encode()).hexdigest()[:16]
    safe = "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in item_id)
    return cache_dir / safe / f"{name}-{key}.tif"


def _read_remote(href: str, grid: Grid, signer: Signer | None, dest: Path, item_id: str) -> None:
    """The window of a remote asset over the grid (plus the ingest margin) as a small GeoTIFF at ``dest``.

    Signs only now (lazily); on HTTP 403 with a signer, drops the cached token, signs again and retries
    once. ProductError for a missing asset (404), an unreachable one, or one that is not tiled (not a
    COG); CoverageError when it does not overlap the grid. ``dest`` is written atomically.
    """
    from pipeline_lib.ingest import grid_window

    attempts = 2 if signer is not None else 1
    for attempt in range(attempts):
        gdal_name = vsicurl(signer(href) if signer is not None else href)
        try:
            with rasterio.open(gdal_name) as ds:
                if not ds.profile.get("tiled", False):
                    raise ProductError(
                        f"{href}: not a cloud-optimised GeoTIFF (striped, {ds.width}x{ds.height}); a window would "
                        "read the whole file: convert it to a COG or use the files source"
                    )
                window = grid_window(ds, grid, href)
                data = ds.read(window=window)
                profile = {
                    "driver": "GTiff",
                    "count": ds.count,
                    "dtype": ds.dtypes[0],
                    "crs": ds.crs,
                    "transform": ds.window_transform(window),
                    "width": int(window.width),
                    "height": int(window.height),
                    "nodata": ds.nodata,
                    "compress": "deflate",
                }
                descriptions = ds.descriptions
            break
        except rasterio.errors.RasterioIOError as exc:
            msg = str(exc).splitlines()[0]
            if "403" in msg and attempt + 1 < attempts:
                forget = getattr(signer, "forget", None)
                if callable(forget):
                    forget(href)
                continue  # the signature expired: sign again and retry once
            code = "404" if "404" in msg else ("403" if "403" in msg else "")
            why = {"404": "answered HTTP 404 (not found)", "403": "answered HTTP 403 (forbidden / signature expired)"}
            raise ProductError(
                f"{href}: {why.get(code, 'cannot be read (' + msg + ')')}; rerun the search (the item may be gone)"
            ) from exc
    with atomic_path(dest) as tmp, rasterio.open(tmp, "w", **profile) as out:
        out.write(data)
        for i, desc in enumerate(descriptions, start=1):
            if desc:
                out.set_band_description(i, desc)
        out.update_tags(stac_item=item_id, href=href, grid=grid_key(grid))


@contextlib.contextmanager
def _entry_lock(path: Path) -> Iterator[None]:
    """An exclusive ``flock`` on ``<entry>.lock`` while one job fetches a cache entry (others wait, then reuse it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a+b") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def ingest_stac_scene(
    scene: Scene,
    spec: ModalitySpec,
    grid: Grid,
    out_tif: Path,
    *,
    date: str,
    mask_keep: tuple[int, ...] = (),
    sign: str | None = None,
    signer: Signer | None = None,
    cache_dir: Path | None = None,
) -> None:
    """The chosen item's assets -> the modality's grid COG (windowed reads over HTTP, same checks as files).

    Each asset's window is kept in ``cache_dir`` (``results/{region}/raw/stac`` in the workflow) under
    :func:`cache_path`, so a rerun, or another experiment on the same grid, reads nothing remote and
    signs nothing; without ``cache_dir`` the windows go to a temporary folder.
    """
    from pipeline_lib.ingest import ingest_bands

    info = json.loads(scene.uri)
    if info.get("scale") is not None or info.get("offset") is not None:
        spec = dataclasses.replace(
            spec,
            scale=float(info["scale"]) if info.get("scale") is not None else spec.scale,
            offset=float(info["offset"]) if info.get("offset") is not None else spec.offset,
        )
    wanted = [(band, info["assets"][band]) for band in spec.output_bands]
    if spec.modality == "s2" and info.get("mask"):
        wanted.append(("mask", info["mask"]))
    with contextlib.ExitStack() as stack:
        folder = cache_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="stac-")))
        local: dict[str, Path] = {}
        missing = []
        for name, href in wanted:
            local[name] = cache_path(folder, scene.product_id, name, href, grid)
            if not local[name].is_file():
                missing.append((name, href))
        if missing:
            signer = signer or _signer(sign)
            with rasterio.Env(**GDAL_HTTP_ENV):
                for name, href in missing:
                    with _entry_lock(local[name]):  # two dates sharing an item run as parallel jobs
                        if not local[name].is_file():
                            _read_remote(href, grid, signer, local[name], scene.product_id)
        sources = [(band, local[band], 1) for band in spec.output_bands]
        mask = None
        if "mask" in local:
            mask = (local["mask"], 1)
            spec = dataclasses.replace(spec, mask_band=1, mask_keep=mask_keep)
        ingest_bands(
            sources,
            spec,
            grid,
            out_tif,
            date=date,
            acquired=scene.sensing_time.isoformat(),
            mask=mask,
            label=f"STAC item {scene.product_id}",
            source="stac",
        )
