"""The ``files`` source: analysis-ready Sentinel-1/2 time series a user already holds (DESIGN §4).

Exports from Google Earth Engine, openEO, Sentinel Hub or WorldCereal are per-date GeoTIFF/COG
files. A region lists them per modality (``fetch.files.s1``, ``fetch.files.s2``) either explicitly,
``paths: {date or datetime: file}``, or as a folder and a file-name pattern whose one ``{...}`` field
holds ``strptime`` directives (``s2_{%Y%m%dT%H%M%S}.tif``, ``S1_{%Y-%m}.tif`` for monthly composites:
a period without a day is dated on its first day). Each file is one acquisition (or composite).

:func:`list_files` finds them (one file per date, else an error naming both files);
:class:`FilesSource` turns them into :class:`~pipeline_lib.fetch.base.Scene` rows and
:func:`select_files` picks, per configured date, the closest file of each modality within
``pair_tolerance_days`` (the SAFE sources' rule without orbit or cloud cover: files carry neither),
with the reason in ``scenes.csv``. A modality set to null is absent (an S2-only region: only
``visible_to_swir`` experiments). :mod:`pipeline_lib.ingest` puts each selected file on the grid.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any

from pipeline_lib.errors import ConfigError, FetchError, SceneNotFoundError
from pipeline_lib.fetch.base import Scene, SearchRequest

__all__ = [
    "MODALITIES",
    "S1_BANDS",
    "S2_BANDS",
    "ModalitySpec",
    "FileEntry",
    "modality_spec",
    "modality_specs",
    "pattern_regex",
    "list_files",
    "FilesSource",
    "select_files",
]

MODALITIES = ("s1", "s2")
#: Output bands of the grid COGs per modality (docs/CONTRACTS.md): the band mapping's keys.
S1_BANDS: tuple[str, ...] = ("VV", "VH")
S2_BANDS: tuple[str, ...] = ("B04", "B03", "B02", "B11", "B12")
S1_QUANTITIES = ("sigma0", "gamma0_rtc")
S1_UNITS = ("db", "linear")
S2_LEVELS = ("L2A", "L1C")
_DIRECTIVES = {
    "%Y": r"\d{4}",
    "%m": r"\d{2}",
    "%d": r"\d{2}",
    "%H": r"\d{2}",
    "%M": r"\d{2}",
    "%S": r"\d{2}",
    "%j": r"\d{3}",
    "%y": r"\d{2}",
}
_FIELD = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class ModalitySpec:
    """How to read one modality's files (``fetch.files.s1`` / ``fetch.files.s2``), checked once."""

    modality: str  # "s1" | "s2"
    key: str  # config key for messages, e.g. "fetch.files.s2"
    paths: tuple[tuple[str, str], ...] = ()  # (ISO date or datetime, path)
    folder: str | None = None
    pattern: str | None = None
    bands: tuple[tuple[str, str | int], ...] = ()  # (output band, source description or 1-based index)
    scale: float = 1.0
    offset: float = 0.0
    nodata: float | None = None  # None = the file's own nodata (and NaN)
    quantity: str = "sigma0"  # S1: sigma0 | gamma0_rtc
    unit: str = "db"  # S1 files: db | linear (outputs are always dB)
    level: str = "L2A"  # S2: L2A (surface) | L1C (top of atmosphere)
    mask_band: str | int | None = None  # S2: a class band of the same file (e.g. SCL)
    mask_file: str | None = None  # S2: a class raster beside each file; "{stem}" = the file's stem
    mask_keep: tuple[int, ...] = ()  # classes (or values) that are clear
    resampling: str = "bilinear"

    @property
    def output_bands(self) -> tuple[str, ...]:
        return tuple(b for b, _ in self.bands)

    @property
    def has_mask(self) -> bool:
        return self.mask_band is not None or self.mask_file is not None

    def mask_path(self, raster: str | Path) -> Path | None:
        """The mask file of ``raster`` (``mask_file`` with ``{stem}`` filled, beside it), or None."""
        if self.mask_file is None:
            return None
        p = Path(raster)
        return p.parent / self.mask_file.replace("{stem}", p.stem)


def modality_spec(modality: str, settings: Mapping[str, Any], key: str | None = None) -> ModalitySpec:
    """A :class:`ModalitySpec` from a validated ``fetch.files.<modality>`` section (schema defaults filled)."""
    key = key or f"fetch.files.{modality}"
    if modality not in MODALITIES:
        raise ConfigError(f"{key}: unknown modality {modality!r}; use s1 or s2")
    allowed = S1_BANDS if modality == "s1" else S2_BANDS
    bands_cfg = dict(settings.get("bands") or {})
    unknown = sorted(set(bands_cfg) - set(allowed))
    if unknown:
        raise ConfigError(f"{key}.bands: {unknown} are not output bands of {modality}; use keys from {list(allowed)}")
    if not bands_cfg:
        raise ConfigError(f"{key}.bands: empty; map each output band ({', '.join(allowed)}) to a source band")
    bands = tuple((b, bands_cfg[b]) for b in allowed if b in bands_cfg)
    paths = tuple((str(k), str(v)) for k, v in dict(settings.get("paths") or {}).items())
    folder, pattern = settings.get("dir"), settings.get("pattern")
    if bool(paths) == bool(folder or pattern):
        raise ConfigError(f"{key}: give either paths ({{date: file}}) or dir and pattern, not both or neither")
    if not paths and not (folder and pattern):
        raise ConfigError(f"{key}: dir and pattern go together; set both (e.g. pattern: s2_{{%Y%m%d}}.tif)")
    if pattern:
        pattern_regex(str(pattern), f"{key}.pattern")
    mask = dict(settings.get("mask") or {})
    if mask and (("band" in mask) == ("file" in mask) or not mask.get("keep")):
        raise ConfigError(f"{key}.mask: give band (or file) and keep, e.g. {{band: SCL, keep: [4, 5, 6, 7, 11]}}")
    quantity, unit = str(settings.get("quantity", "sigma0")), str(settings.get("unit", "db"))
    if modality == "s1" and (quantity not in S1_QUANTITIES or unit not in S1_UNITS):
        raise ConfigError(f"{key}: quantity/unit {quantity}/{unit}; use quantity {S1_QUANTITIES}, unit {S1_UNITS}")
    if modality == "s1" and mask:
        raise ConfigError(f"{key}.mask: only Sentinel-2 files take a cloud mask; remove it")
    level = str(settings.get("level", "L2A"))
    if level not in S2_LEVELS:
        raise ConfigError(f"{key}.level: {level!r}; use one of {S2_LEVELS}")
    nodata = settings.get("nodata")
    return ModalitySpec(
        modality=modality,
        key=key,
        paths=paths,
        folder=str(folder) if folder else None,
        pattern=str(pattern) if pattern else None,
        bands=bands,
        scale=float(settings.get("scale", 1.0)),
        offset=float(settings.get("offset", 0.0)),
        nodata=None if nodata is None else float(nodata),
        quantity=quantity,
        unit=unit,
        level=level,
        mask_band=mask.get("band"),
        mask_file=mask.get("file"),
        mask_keep=tuple(int(c) for c in mask.get("keep") or ()),
        resampling=str(settings.get("resampling", "bilinear")),
    )


def modality_specs(files: Mapping[str, Any] | None, key: str = "fetch.files") -> dict[str, ModalitySpec]:
    """The configured modalities of ``fetch.files`` (absent or null ones are left out)."""
    files = files or {}
    specs = {m: modality_spec(m, files[m], f"{key}.{m}") for m in MODALITIES if files.get(m)}
    if "s2" not in specs:
        raise ConfigError(f"{key}.s2: required (every task needs Sentinel-2); list the Sentinel-2 files")
    return specs


def pattern_regex(pattern: str, key: str = "pattern") -> tuple[re.Pattern[str], str]:
    """(compiled regex of the whole file name, strptime format of its one ``{...}`` date field)."""
    fields = _FIELD.findall(pattern)
    if len(fields) != 1 or "%" not in fields[0]:
        raise ConfigError(
            f"{key}: {pattern!r} needs exactly one {{...}} field of strptime directives, e.g. s2_{{%Y%m%dT%H%M%S}}.tif"
        )
    fmt = fields[0]
    if "%Y" not in fmt and "%y" not in fmt:
        raise ConfigError(f"{key}: {pattern!r}: the date field needs a year (%Y)")
    inner = ""
    for tok in re.split(r"(%.)", fmt):
        if tok.startswith("%") and len(tok) == 2:
            if tok not in _DIRECTIVES:
                raise ConfigError(f"{key}: {pattern!r}: directive {tok} is not supported; use {sorted(_DIRECTIVES)}")
            inner += _DIRECTIVES[tok]
        else:
            inner += re.escape(tok)
    head, tail = pattern.split("{" + fmt + "}")

    def glob(part: str) -> str:
        return ".*?".join(re.escape(p) for p in part.split("*"))

    return re.compile(f"^{glob(head)}(?P<when>{inner}){glob(tail)}$"), fmt


def _parse_when(text: str, fmt: str | None, where: str) -> datetime:
    """A UTC datetime from a pattern field or a ``paths`` key; a bare date means noon UTC (the SAFE sources'
    pairing reference), a month without a day its first day at noon."""
    try:
        if fmt is not None:
            when = datetime.strptime(text, fmt)
            if "%H" not in fmt:
                when = datetime.combine(when.date(), time(12))
        elif len(text) == 10:
            when = datetime.combine(date.fromisoformat(text), time(12))
        else:
            when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"{where}: {text!r} is not a date ({exc}); fix the file name or the key") from exc
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


@dataclass(frozen=True)
class FileEntry:
    """One file of a modality: when it was acquired and, for patterns, the matched date text."""

    path: Path
    when: datetime
    label: str  # the date text (pattern field or paths key)


def list_files(spec: ModalitySpec) -> list[FileEntry]:
    """The modality's files in time order; ConfigError/FetchError naming the folder or the two clashing files."""
    entries: list[FileEntry] = []
    if spec.paths:
        for label, path in spec.paths:
            p = Path(path)
            if not p.is_file():
                raise FetchError(f"{spec.key}.paths: {p} (for {label}) does not exist; fix the path")
            entries.append(FileEntry(p, _parse_when(label, None, f"{spec.key}.paths"), label))
    else:
        assert spec.folder is not None and spec.pattern is not None
        folder = Path(spec.folder)
        if not folder.is_dir():
            raise FetchError(f"{spec.key}.dir: {folder} is not a folder; fix the path")
        regex, fmt = pattern_regex(spec.pattern, f"{spec.key}.pattern")
        for p in sorted(folder.iterdir()):
            m = regex.match(p.name)
            if m and p.is_file():
                entries.append(FileEntry(p, _parse_when(m.group("when"), fmt, str(p)), m.group("when")))
        if not entries:
            sample = ", ".join(sorted(q.name for q in folder.iterdir())[:5]) or "nothing"
            raise FetchError(
                f"{spec.key}.pattern: {spec.pattern!r} matches no file in {folder} (it holds {sample}); fix the pattern"
            )
    entries.sort(key=lambda e: (e.when, str(e.path)))
    by_day: dict[date, FileEntry] = {}
    for e in entries:
        other = by_day.get(e.when.date())
        if other is not None:
            raise FetchError(
                f"{spec.key}: two files for {e.when.date()}: {other.path} and {e.path}; keep one per date "
                "(or narrow the pattern)"
            )
        by_day[e.when.date()] = e
    return entries


def _footprint_wkt(path: Path) -> str:
    """The file's footprint as an EPSG:4326 WKT polygon ("" when it has no georeferencing)."""
    import rasterio
    from rasterio.warp import transform_bounds

    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                return ""
            w, s, e, n = transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21)
    except rasterio.errors.RasterioIOError:
        return ""
    return f"POLYGON (({w} {s}, {e} {s}, {e} {n}, {w} {n}, {w} {s}))"


@dataclass
class FilesSource:
    """Analysis-ready files as scenes (one per file); nothing to download (they are read in place)."""

    specs: dict[str, ModalitySpec]
    name: str = "files"

    def search(self, request: SearchRequest) -> list[Scene]:
        scenes = []
        for modality, spec in self.specs.items():
            for e in list_files(spec):
                kind = "S1" if modality == "s1" else "S2"
                ptype = f"ARD_{spec.quantity.upper()}" if modality == "s1" else f"ARD_{spec.level}"
                scenes.append(
                    Scene(
                        product_id=e.path.stem,
                        mission=kind,
                        product_type=ptype,
                        sensing_time=e.when,
                        footprint_wkt=_footprint_wkt(e.path),
                        size_bytes=e.path.stat().st_size,
                        source="files",
                        uri=str(e.path),
                    )
                )
        return scenes

    def download(self, scene: Scene, dest: Path) -> Path:
        raise FetchError(f"{scene.uri}: the files source reads files in place; nothing to download")


def select_files(
    candidates: Sequence[Scene], request: SearchRequest, modalities: Sequence[str], *, prefer_clear: bool = False
) -> list[Scene]:
    """Per configured date and modality, the closest file within ``pair_tolerance_days`` (ties: earlier).

    ``prefer_clear``: among S2 candidates within the tolerance the lowest cloud cover wins, then the closest.
    """
    tol = request.pair_tolerance_days
    chosen: list[Scene] = []
    for d in request.dates:
        noon = datetime(d.year, d.month, d.day, 12, tzinfo=UTC)
        for modality in modalities:
            kind = modality.upper()
            pool = [c for c in candidates if c.mission == kind]

            def gap(c: Scene, noon: datetime = noon) -> float:
                return abs((c.sensing_time.astimezone(UTC) - noon).total_seconds()) / 86400.0

            clear_first = prefer_clear and modality == "s2"

            def rank(
                c: Scene, gap: Callable[[Scene], float] = gap, clear_first: bool = clear_first
            ) -> tuple[float, float, datetime]:
                cloud = (c.cloud_cover or 0.0) if clear_first else 0.0
                return (cloud, gap(c), c.sensing_time)

            ok = sorted((c for c in pool if gap(c) <= tol), key=rank)
            if not ok:
                nearby = ", ".join(
                    f"{c.product_id if c.source == 'stac' else Path(c.uri).name} ({gap(c):.1f} d)"
                    for c in sorted(pool, key=gap)[:3]
                )
                raise SceneNotFoundError(
                    f"date {d.isoformat()}: no {kind} file within pair_tolerance_days={tol:g} (nearest: "
                    f"{nearby or 'none'}); widen pair_tolerance_days, change the date or add the file"
                )
            c = ok[0]
            if c.source == "stac":
                cloud = (
                    f"lowest cloud cover ({c.cloud_cover:g} %), " if clear_first and c.cloud_cover is not None else ""
                )
                reason = f"{cloud}{gap(c):.2f} d from {d} within {tol:g} d: STAC item {c.product_id}"
            else:
                reason = f"closest {kind} file to {d} ({gap(c):.2f} d): {c.uri}"
            chosen.append(dataclasses.replace(c, date=d.isoformat(), reason=reason))
    return chosen
