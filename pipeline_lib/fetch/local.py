"""The ``local`` source: a folder of Sentinel products the user already has (DESIGN §4).

The folder is scanned (not recursively) for ``*.SAFE`` folders and ``*.zip`` files holding one.
Each product is opened through :mod:`pipeline_lib.safe` (zip-slip / zip-bomb checks) and
identified from its own metadata:

- Sentinel-1 GRD: ``manifest.safe`` (SAFE XFDU, S1-RS-MDA-52-7441 §3): ``safe:familyName`` +
  ``safe:number`` (mission), ``s1sarl1:mode`` and ``s1sarl1:productType`` with the product
  name's resolution class (``IW_GRDH_1S``), ``safe:startTime`` (UTC), ``safe:relativeOrbitNumber``
  and the footprint ``gml:coordinates`` — "lat,lon" pairs, swapped here to lon/lat.
- Sentinel-2 L2A: ``MTD_MSIL2A.xml`` (S2-PDGS-TAS-DI-PSD): ``PRODUCT_START_TIME``,
  ``Cloud_Coverage_Assessment`` and ``Product_Footprint/…/EXT_POS_LIST`` ("lat lon" pairs).

Products whose footprint intersects the AOI (shapely) and whose start time lies within the
pairing tolerance (+1 day) of a requested date are returned; their size and MD5 go to the
scene table. :meth:`LocalSource.download` hard-links (or copies / symlinks) the product into
place atomically and verifies size and MD5 against the table. Other products (S1 SLC, S2 L1C,
unreadable files) are skipped with a warning.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from xml.etree.ElementTree import Element

from shapely.geometry import Polygon

from pipeline_lib.errors import FetchError, ProductError
from pipeline_lib.fetch.base import S1_PRODUCT_TYPE, S2_PRODUCT_TYPE, Scene, SearchRequest, footprint_intersects
from pipeline_lib.guard import corrupt_metadata
from pipeline_lib.s2mtd import footprint_lonlat, sensing_start, utc
from pipeline_lib.safe import ProductReader, open_product
from pipeline_lib.xmlsafe import first_text

__all__ = [
    "LocalSource",
    "describe_product",
    "s1_problem",
    "s2_problem",
    "parse_s1_manifest",
    "parse_s2_l2a_mtd",
    "product_checksum",
]

log = logging.getLogger(__name__)
_S1_NAME_RE = re.compile(r"^(S1[A-D])_([A-Z0-9]{2})_([A-Z]{3})([FHM_])_(\d)([SA])")
_CHUNK = 4 * 1024**2


def _polygon_wkt(lonlat: list[tuple[float, float]]) -> str:
    return Polygon(lonlat).wkt if len(lonlat) >= 3 else ""


@dataclass(frozen=True)
class ProductInfo:
    """Identity of a product read from its own metadata."""

    product_id: str
    mission: str
    product_type: str
    sensing_time: datetime
    footprint_lonlat: list[tuple[float, float]]
    relative_orbit: int | None = None
    cloud_cover: float | None = None


def parse_s1_manifest(manifest: Element, product_id: str) -> ProductInfo:
    """S1 identity from ``manifest.safe``; ``product_id`` is the product name (it carries the resolution class)."""
    family = first_text(manifest, "familyName") or ""
    number = first_text(manifest, "number") or ""
    if family != "SENTINEL-1" or not number:
        raise ProductError(f"{product_id}: manifest.safe platform {family!r} {number!r} is not Sentinel-1")
    mode = first_text(manifest, "mode") or ""
    ptype = first_text(manifest, "productType") or ""
    m = _S1_NAME_RE.match(product_id)
    if m and m.group(2) == mode and m.group(3) == ptype:
        product_type = f"{mode}_{ptype}{m.group(4)}_{m.group(5)}{m.group(6)}"
    else:
        product_type = f"{mode}_{ptype}"
    start = first_text(manifest, "startTime")
    if start is None:
        raise ProductError(f"{product_id}: manifest.safe has no safe:startTime; re-download the product")
    orbit = first_text(manifest, "relativeOrbitNumber", type="start")
    coords = first_text(manifest, "coordinates") or ""
    lonlat = []
    for pair in coords.split():
        lat, lon = (float(v) for v in pair.split(","))
        lonlat.append((lon, lat))
    return ProductInfo(product_id, f"S1{number}", product_type, utc(start), lonlat, int(orbit) if orbit else None)


def parse_s2_l2a_mtd(mtd: Element, product_id: str) -> ProductInfo:
    """S2 L2A identity from ``MTD_MSIL2A.xml``."""
    ptype = first_text(mtd, "PRODUCT_TYPE") or S2_PRODUCT_TYPE
    craft = first_text(mtd, "SPACECRAFT_NAME") or product_id[:3]
    mission = "S2" + craft[-1] if craft.startswith("Sentinel-2") else product_id[:3]
    orbit = first_text(mtd, "SENSING_ORBIT_NUMBER")
    cloud = first_text(mtd, "Cloud_Coverage_Assessment")
    lonlat = footprint_lonlat(mtd)
    return ProductInfo(
        product_id,
        mission,
        ptype,
        sensing_start(mtd, product_id),
        lonlat,
        int(orbit) if orbit else None,
        float(cloud) if cloud is not None else None,
    )


def describe_product(reader: ProductReader) -> ProductInfo | None:
    """Identity of an S1 GRD or S2 L2A product; None for any other product (L1C, SLC, unrelated zip)."""
    name = reader.name
    if reader.exists("MTD_MSIL2A.xml"):
        with corrupt_metadata(f"{reader.path}:MTD_MSIL2A.xml"):
            return parse_s2_l2a_mtd(reader.parse_xml("MTD_MSIL2A.xml"), name)
    if name.startswith("S1") and reader.exists("manifest.safe"):
        with corrupt_metadata(f"{reader.path}:manifest.safe"):
            info = parse_s1_manifest(reader.parse_xml("manifest.safe"), name)
        return info if info.product_type == S1_PRODUCT_TYPE else None
    return None


def product_checksum(path: Path) -> tuple[int, str]:
    """(size in bytes, ``"md5:<hex>"``). A zip: MD5 of the file. A folder: MD5 over its files in sorted
    relative-path order, each contributing ``path`` + NUL + content (size is the sum of the files)."""
    md5 = hashlib.md5(usedforsecurity=False)
    size = 0
    files = (
        [path]
        if path.is_file()
        else sorted((p for p in path.rglob("*") if p.is_file()), key=lambda p: p.relative_to(path).as_posix())
    )
    for f in files:
        if path.is_dir():
            md5.update(f.relative_to(path).as_posix().encode() + b"\x00")
        with open(f, "rb") as fh:
            while chunk := fh.read(_CHUNK):
                md5.update(chunk)
                size += len(chunk)
    return size, "md5:" + md5.hexdigest()


def product_state(path: Path) -> str:
    """A fingerprint of a product on disk from ``stat`` only: (relative path, inode, size, mtime) of every file.

    Changes when the user replaces the product (new inodes, even with preserved times, e.g. ``cp -a``)
    or edits a file; "absent" when it is gone. The download rule takes it as a parameter, so a plain
    rerun re-links a replaced product (DESIGN §9) without hashing gigabytes at DAG time.
    """
    if not path.exists():
        return "absent"
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    h = hashlib.md5(usedforsecurity=False)
    for f in files:
        st = f.stat()
        rel = "." if f == path else f.relative_to(path).as_posix()
        h.update(f"{rel}\0{st.st_ino}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def _near_dates(t: datetime, dates: list[date], tolerance_days: float) -> bool:
    noon = [datetime(d.year, d.month, d.day, 12, tzinfo=UTC) for d in dates]
    return any(abs(t - n) <= timedelta(days=tolerance_days + 1.0) for n in noon)


def _link_tree(src: Path, dest: Path) -> None:
    """Recreate the folder ``src`` at ``dest`` with hard-linked files (writable folders, no symlinks followed out)."""
    dest.mkdir()
    for dirpath, dirnames, filenames in os.walk(src):
        rel = Path(dirpath).relative_to(src)
        for d in dirnames:
            (dest / rel / d).mkdir()
        for f in filenames:
            os.link(Path(dirpath) / f, dest / rel / f)


def _remove(path: Path) -> None:
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)


def _fmt_box(b: tuple[float, float, float, float]) -> str:
    return "(" + ", ".join(f"{v:.4f}" for v in b) + ")"


_PRODUCT_NAME_RE = re.compile(r"^S[12][A-D]_[A-Z0-9_]+$")


def _folder_reason(p: Path) -> str | None:
    """None when the folder (without the ``.SAFE`` suffix) holds a Sentinel product named like one; else why not."""
    if (p / "tileInfo.json").is_file() or (p / "productInfo.json").is_file():
        return (
            "a Sentinel-2 tile in the AWS Open Data (PDS) layout (tileInfo.json), not a SAFE product; "
            "give the L2A product as .SAFE/.zip"
        )
    if (p / "manifest.safe").is_file() or (p / "MTD_MSIL2A.xml").is_file() or (p / "MTD_MSIL1C.xml").is_file():
        if _PRODUCT_NAME_RE.match(p.name):
            return None
        return "a product folder without the .SAFE suffix and without a product name; rename it to <product name>.SAFE"
    return "a folder without manifest.safe or MTD_MSIL2A.xml, not a SAFE product; give products as <name>.SAFE or <name>.zip"


def _not_usable_reason(reader: ProductReader) -> str:
    """Why a readable product is neither an S1 IW GRDH nor an S2 L2A product."""
    if reader.exists("MTD_MSIL1C.xml"):
        return (
            "a Sentinel-2 Level-1C product (MTD_MSIL1C.xml); the pipeline needs Level-2A: give the S2?_MSIL2A_ product"
        )
    name = reader.name
    if name.startswith("S1") and reader.exists("manifest.safe"):
        ptype = name[4:14] if len(name) >= 14 else name
        return f"a Sentinel-1 {ptype} product; the pipeline needs IW GRDH (S1?_IW_GRDH_1S…)"
    if not reader.exists("manifest.safe"):
        return "no manifest.safe or MTD_MSIL2A.xml at the product root; not a SAFE product (or zipped without its .SAFE folder)"
    return "neither a Sentinel-1 IW GRDH nor a Sentinel-2 L2A product"


_POL_CODES = {"SV": ("VV",), "SH": ("HH",), "DV": ("VV", "VH"), "DH": ("HH", "HV"), "VV": ("VV",), "HH": ("HH",)}


def s1_problem(reader: ProductReader, info: ProductInfo, polarisations: tuple[str, ...]) -> str | None:
    """Why an S1 GRD cannot serve ``polarisations`` (single-pol product, missing XML or measurement), or None."""
    from pipeline_lib.sar.product import _KIND_PATTERNS

    m = re.match(r"^S1[A-D]_[A-Z0-9]{2}_[A-Z]{4}_\d[SA]([SD][VH])_", info.product_id)
    have = _POL_CODES.get(m.group(1), ()) if m else ()
    missing_pol = [p for p in polarisations if have and p not in have]
    if missing_pol:
        return (
            f"holds {', '.join(have)} only (1S{m.group(1) if m else '?'}) but sar.polarisations asks for "
            f"{', '.join(polarisations)}; give a dual-polarisation 1SDV product or set sar.polarisations: [{', '.join(have)}]"
        )
    members = reader.members()
    for pol in polarisations:
        for kind, pattern in _KIND_PATTERNS.items():
            rx = re.compile(pattern.format(pol=pol.lower()))
            hits = [mb for mb in members if rx.search(mb)]
            if not hits:
                where = "measurement/ has" if kind == "measurement" else "annotation has"
                return f"incomplete: {where} no {kind} file for {pol}; replace it with a complete copy of the product"
            if kind == "measurement":
                problem = _raster_header_problem(reader, hits[0])
                if problem:
                    return problem
    return None


def _raster_header_problem(reader: ProductReader, member: str) -> str | None:
    """Open a raster member and, in a folder, read its last line (cheap: ESA GRD TIFFs are one strip per
    line): an empty, garbage or truncated TIFF is caught at search time. In a zip only the header is read
    (a deflated member would have to be inflated up to its end; the download verifies every CRC)."""
    import rasterio
    import rasterio.errors
    from rasterio.windows import Window

    try:
        with rasterio.open(reader.gdal_path(member)) as ds:
            if ds.width <= 0 or ds.height <= 0:
                return f"incomplete: {member} has no pixels; replace it with a complete copy of the product"
            if not reader.is_zip:
                ds.read(1, window=Window(0, ds.height - 1, ds.width, 1))
    except (rasterio.errors.RasterioError, ProductError) as exc:
        first = " ".join(str(exc).split())[:120]
        return f"unreadable {member} ({first}); replace it with a complete copy of the product"
    return None


def s2_problem(reader: ProductReader) -> str | None:
    """Why an S2 L2A product lacks what the optical step reads (SCL and the output bands), or None."""
    from pipeline_lib.optical.l2a import OUTPUT_BANDS, read_l2a_metadata, select_band_file

    try:
        meta = read_l2a_metadata(reader.parse_xml("MTD_MSIL2A.xml"), product=f"{reader.path}:MTD_MSIL2A.xml")
        available = set(reader.members())
        for band in ("SCL", *OUTPUT_BANDS):
            select_band_file(meta, band, available, str(reader.path))
    except ProductError as exc:
        return f"incomplete or unreadable ({str(exc).split(';')[0]}); replace it with a complete copy of the product"
    return None


class LocalSource:
    """Products already on disk, in one folder (``fetch.local_dir``)."""

    name = "local"

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.rejected: list[tuple[Path, str]] = []  # (entry, reason) of the last search

    def _entries(self) -> list[Path]:
        if not self.folder.is_dir():
            raise FetchError(
                f"fetch.local_dir: {self.folder} is not a folder; point it at your folder of .SAFE/.zip products"
            )
        return sorted(p for p in self.folder.iterdir() if not p.name.startswith("."))

    def _reject(self, path: Path, reason: str, level: int = logging.WARNING) -> None:
        self.rejected.append((path, reason))
        log.log(level, "local source: rejected %s: %s", path, reason)

    def _candidates(self) -> list[Path]:
        """Product-like entries of the folder; every other entry is recorded in :attr:`rejected` with the reason."""
        out = []
        for p in self._entries():
            if p.is_dir() and p.name.upper().endswith(".SAFE"):
                out.append(p)
            elif p.is_file() and p.suffix.lower() == ".zip":
                out.append(p)
            elif p.is_dir():
                reason = _folder_reason(p)
                if reason is None:
                    out.append(p)  # an unzipped product whose folder lost its .SAFE suffix
                else:
                    self._reject(p, reason)
            else:
                self._reject(p, "not a .SAFE folder or .zip; give Sentinel products as <name>.SAFE or <name>.zip")
        return out

    def search(self, request: SearchRequest) -> list[Scene]:
        """S1 IW GRDH and S2 L2A products in the folder intersecting the AOI near the requested dates.

        Every other entry, and every product that is incomplete (``request.check_complete``), lacks a
        requested polarisation, lies outside the AOI or the dates, is listed in :attr:`rejected` with
        the reason (and logged); :meth:`summary` condenses it to one line.
        """
        self.rejected = []
        scenes = []
        for path in self._candidates():
            try:
                reader = open_product(path)
                with reader:
                    scene = self._examine(path, reader, request)
            except ProductError as exc:
                self._reject(path, f"unreadable ({exc})")
                continue
            except OSError as exc:  # permissions, a vanished file: the user's file, one line
                self._reject(path, f"unreadable ({type(exc).__name__}: {exc.strerror or exc}); check its permissions")
                continue
            if scene is not None:
                scenes.append(scene)
        return scenes

    def _examine(self, path: Path, reader: ProductReader, request: SearchRequest) -> Scene | None:
        """The scene of one candidate product, or None after recording why it was rejected."""
        try:
            info = describe_product(reader)
        except ProductError as exc:
            self._reject(path, f"unreadable ({exc})")
            return None
        if info is None:
            self._reject(path, _not_usable_reason(reader))
            return None
        # footprint_intersects: a footprint written across 180° matches AOIs on its side only
        if len(info.footprint_lonlat) < 3 or not footprint_intersects(
            _polygon_wkt(info.footprint_lonlat), request.aoi_lonlat
        ):
            self._reject(path, f"its footprint does not intersect the AOI {_fmt_box(request.aoi_lonlat)}", logging.INFO)
            return None
        if not _near_dates(info.sensing_time, list(request.dates), request.pair_tolerance_days):
            self._reject(
                path,
                f"acquired {info.sensing_time:%Y-%m-%d}, not within pair_tolerance_days of a configured date",
                logging.INFO,
            )
            return None
        if request.check_complete:
            problem = (
                s1_problem(reader, info, request.polarisations) if info.mission.startswith("S1") else s2_problem(reader)
            )
            if problem:
                self._reject(path, problem)
                return None
        size, md5 = product_checksum(path)
        return Scene(
            product_id=info.product_id,
            mission=info.mission,
            product_type=info.product_type,
            sensing_time=info.sensing_time,
            footprint_wkt=_polygon_wkt(info.footprint_lonlat),
            size_bytes=size,
            checksum=md5,
            relative_orbit=info.relative_orbit if info.mission.startswith("S1") else None,
            cloud_cover=info.cloud_cover,
            source=self.name,
            uri=str(path.resolve()),
        )

    @staticmethod
    def _check_same_product(src: Path, reader: ProductReader, scene: Scene) -> None:
        try:
            info = describe_product(reader)
        except ProductError as exc:
            raise FetchError(
                f"{src}: changed since the search and now unreadable ({str(exc).split(';')[0]}); "
                "replace it with a complete copy of the product"
            ) from None
        if info is None or info.product_id != scene.product_id or info.sensing_time != scene.sensing_time:
            raise FetchError(
                f"{src}: no longer holds {scene.product_id} (changed since the search); restore it, or rerun the "
                "search with `snakemake --forcerun search <target>`"
            )

    def summary(self, limit: int = 4) -> str:
        """One line: how many entries the last search rejected and why (the first ``limit`` in full)."""
        if not self.rejected:
            return ""
        shown = "; ".join(f"{p.name}: {why}" for p, why in self.rejected[:limit])
        more = f" (and {len(self.rejected) - limit} more)" if len(self.rejected) > limit else ""
        return f"{len(self.rejected)} of the entries in {self.folder} were rejected: {shown}{more}"

    def download(self, scene: Scene, dest: Path) -> Path:
        """Hard-link (zip: copy if linking fails; folder: symlink if linking fails) the product to ``dest``, verified."""
        src = Path(scene.uri)
        dest = Path(dest)
        if not src.exists():
            raise FetchError(
                f"{src}: product {scene.product_id} is gone from the local folder; restore it or rerun the search"
            )
        want_zip = dest.suffix.lower() == ".zip"
        if want_zip != src.is_file():
            raise FetchError(
                f"{dest}: product {scene.product_id} is a {'zip' if src.is_file() else '.SAFE folder'} at {src}; request {dest.stem}{'.zip' if src.is_file() else '.SAFE'}"
            )
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.part-{os.getpid()}"
        _remove(tmp)
        try:
            if src.is_file():
                try:
                    os.link(src, tmp)
                except OSError:
                    shutil.copy2(src, tmp)
            else:
                try:
                    _link_tree(src, tmp)
                except OSError:
                    _remove(tmp)
                    tmp.symlink_to(src.resolve(), target_is_directory=True)
            size, md5 = product_checksum(tmp)
            try:
                opened = open_product(tmp)
            except ProductError as exc:  # name the user's file, not our temporary copy under results/
                raise ProductError(str(exc).replace(str(tmp), str(src))) from None
            with opened as reader:
                if (scene.size_bytes and size != scene.size_bytes) or (scene.checksum and md5 != scene.checksum):
                    # The user replaced the file in their folder (e.g. after a failed run): the same product
                    # (same name, same acquisition) is used as it is now; anything else needs a new search.
                    with open_product(src) as replaced:  # the user's product, by its own name
                        self._check_same_product(src, replaced, scene)
                    log.warning(
                        "%s changed since the search (size %d vs %d); it is still %s, using the new copy",
                        src,
                        size,
                        scene.size_bytes,
                        scene.product_id,
                    )
                if reader.is_zip:
                    try:
                        reader.verify()
                    except ProductError as exc:
                        raise ProductError(str(exc).replace(str(tmp), str(src))) from None
            _remove(dest)
            os.replace(tmp, dest)
        except BaseException:
            _remove(tmp)
            raise
        return dest
