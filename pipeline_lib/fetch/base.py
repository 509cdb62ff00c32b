"""The data-source interface and the scene table (``results/{region}/scenes.csv``).

A source turns a :class:`SearchRequest` (AOI, dates, tolerance) into candidate :class:`Scene`
records and can materialise one scene as a product folder/zip on disk. Scene selection
(:func:`select_scenes`) is source-independent: per configured date, the best S1 GRD and S2 L2A
within ``pair_tolerance_days``.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import shapely
import shapely.affinity
import shapely.errors
import shapely.wkt
from shapely.geometry import box

from pipeline_lib.errors import SceneNotFoundError
from pipeline_lib.io import write_text_atomic

__all__ = [
    "Scene",
    "SearchRequest",
    "Source",
    "select_scenes",
    "best_relative_orbit",
    "days_from_noon",
    "footprint_intersects",
    "write_scene_table",
    "read_scene_table",
    "SCENE_COLUMNS",
]

log = logging.getLogger(__name__)

S1_PRODUCT_TYPE = "IW_GRDH_1S"
S2_PRODUCT_TYPE = "S2MSI2A"


@dataclass(frozen=True)
class Scene:
    """One catalogue entry. ``uri`` is where the source fetches it from (URL, path or generator key)."""

    product_id: str  # e.g. S1B_IW_GRDH_1SDV_20211223T051122_..._5371 (no .SAFE suffix)
    mission: str  # S1A, S1B, S2A, S2B ...
    product_type: str  # IW_GRDH_1S | S2MSI2A
    sensing_time: datetime  # UTC, start of acquisition
    footprint_wkt: str  # EPSG:4326 polygon, "" when the catalogue gives none
    size_bytes: int = 0
    checksum: str = ""  # "md5:<hex>" or "" when the catalogue lists none
    relative_orbit: int | None = None
    cloud_cover: float | None = None  # percent, S2 only
    source: str = ""
    uri: str = ""
    date: str = ""  # the configured date this scene was selected for (set by select_scenes)
    reason: str = ""  # why it was selected (set by select_scenes)

    @property
    def is_s1(self) -> bool:
        return self.mission.startswith("S1")


@dataclass(frozen=True)
class SearchRequest:
    """What to look for: an AOI (lon/lat bbox), configured dates and the pairing tolerance."""

    aoi_lonlat: tuple[float, float, float, float]
    dates: Sequence[date]
    pair_tolerance_days: float
    max_cloud_cover: float = 100.0
    extra: dict[str, object] = field(default_factory=dict)
    # Polarisations the S1 products must hold (sar.polarisations) and whether a source that can read
    # its products (local) checks at search time that each one is complete (DESIGN §9).
    polarisations: tuple[str, ...] = ("VV", "VH")
    check_complete: bool = False


@runtime_checkable
class Source(Protocol):
    """A product source. Implementations: demo, local, cdse, dhus."""

    name: str

    def search(self, request: SearchRequest) -> list[Scene]:
        """All candidate S1 GRD and S2 L2A scenes intersecting the AOI near the requested dates."""
        ...

    def download(self, scene: Scene, dest: Path) -> Path:
        """Materialise ``scene`` at ``dest`` (a ``.SAFE`` folder or ``.zip``), verified, atomically."""
        ...


SCENE_COLUMNS = [f.name for f in dataclasses.fields(Scene)]


def footprint_intersects(footprint_wkt: str, aoi_lonlat: tuple[float, float, float, float]) -> bool:
    """Whether a catalogue footprint (EPSG:4326 WKT) intersects the AOI box; True when there is none.

    A footprint whose longitudes span more than 180° crosses the antimeridian (its vertices are
    written with both signs): it is tested shifted to 0..360° so it does not cover the other side of the globe.
    An unreadable WKT counts as no footprint (the source already filtered by area).
    """
    if not footprint_wkt:
        return True
    try:
        geom = shapely.wkt.loads(footprint_wkt)
    except (shapely.errors.ShapelyError, ValueError, TypeError):
        return True
    if geom.is_empty:
        return True
    aoi = box(*aoi_lonlat)
    minx, _, maxx, _ = geom.bounds
    if maxx - minx <= 180.0:
        return bool(geom.intersects(aoi))
    shifted = shapely.transform(
        geom, lambda xy: np.column_stack([np.where(xy[:, 0] < 0, xy[:, 0] + 360.0, xy[:, 0]), xy[:, 1]])
    )
    return bool(shifted.intersects(aoi) or shifted.intersects(shapely.affinity.translate(aoi, xoff=360.0)))


def _dedupe(candidates: Sequence[Scene]) -> list[Scene]:
    """One scene per product id (the same product listed twice, e.g. as .SAFE and .zip): the first by uri."""
    seen: dict[str, Scene] = {}
    for c in sorted(candidates, key=lambda c: (c.product_id, c.uri, c.source)):
        if c.product_id in seen:
            log.info("%s listed more than once (%s, %s); using the first", c.product_id, seen[c.product_id].uri, c.uri)
            continue
        seen[c.product_id] = c
    return list(seen.values())


def _cloud_key(c: Scene) -> tuple[bool, float]:
    """Known cloud cover ranks by value; unknown ranks after every known value (DESIGN §9)."""
    return (c.cloud_cover is None, c.cloud_cover if c.cloud_cover is not None else 0.0)


def days_from_noon(c: Scene, d: date) -> float:
    """Days between a scene's acquisition and noon UTC of the configured date ``d``."""
    noon = datetime(d.year, d.month, d.day, 12)
    return abs((c.sensing_time.replace(tzinfo=None) - noon).total_seconds()) / 86400.0


def best_relative_orbit(s1: Sequence[Scene], dates: Sequence[date], tol: float) -> int | None:
    """The S1 relative orbit that has a scene within ``tol`` days of the most dates (ties: the lowest number).

    One orbit for the whole series keeps the viewing geometry (incidence angle, look direction) constant
    across dates (DESIGN §9); None when there is no S1 candidate or none has an orbit number.
    """
    orbits = {c.relative_orbit for c in s1}
    return max(
        orbits,
        key=lambda o: (
            sum(any(days_from_noon(c, d) <= tol for c in s1 if c.relative_orbit == o) for d in dates),
            -(o or 0),
        ),
        default=None,
    )


def select_scenes(candidates: Sequence[Scene], request: SearchRequest) -> list[Scene]:
    """Per configured date pick the best S1 and S2 scene within the tolerance.

    Only scenes whose footprint intersects the AOI count (a scene without a footprint counts).
    S1: closest in time, all dates on the same relative orbit (the orbit that covers most
    dates wins). S2: lowest known cloud cover, then closest in time; a scene with unknown cloud
    cover is taken only when no scene with a known cover within ``max_cloud_cover`` exists.
    A product already chosen for another date is taken again only when no other one is within the
    tolerance; that is logged as a warning (the dates then share one acquisition).
    """
    tol = request.pair_tolerance_days
    usable, outside = _split_by_footprint(_dedupe(candidates), request.aoi_lonlat)
    s1 = [c for c in usable if c.is_s1]
    s2 = [c for c in usable if not c.is_s1]
    best_orbit = best_relative_orbit(s1, request.dates, tol)
    chosen: list[Scene] = []
    used: dict[str, list[str]] = {}
    for d in request.dates:
        s1_ok = _s1_within(s1, d, tol, best_orbit)
        s2_ok = _s2_within(s2, d, tol, request.max_cloud_cover)
        for kind, ok, pool in (("Sentinel-1 GRD", s1_ok, s1), ("Sentinel-2 L2A", s2_ok, s2)):
            if not ok:
                raise _not_found(kind, pool, outside, d, tol, best_orbit)
        c1, c2 = _pick_pair(s1_ok, s2_ok, used)
        for c in (c1, c2):
            used.setdefault(c.product_id, []).append(d.isoformat())
        chosen += _with_reasons(c1, c2, d, tol)
    _warn_shared(used, tol)
    return [
        dataclasses.replace(
            c, reason=c.reason + f"; shared with {', '.join(x for x in used[c.product_id] if x != c.date)}"
        )
        if len(used[c.product_id]) > 1
        else c
        for c in chosen
    ]


def _split_by_footprint(
    candidates: Sequence[Scene], aoi_lonlat: tuple[float, float, float, float]
) -> tuple[list[Scene], list[Scene]]:
    """(scenes whose footprint intersects the AOI, scenes outside it); each one outside is logged."""
    usable, outside = [], []
    for c in candidates:
        if footprint_intersects(c.footprint_wkt, aoi_lonlat):
            usable.append(c)
        else:
            outside.append(c)
            log.info("%s: footprint does not intersect the AOI %s; not selected", c.product_id, aoi_lonlat)
    return usable, outside


def _s1_within(s1: Sequence[Scene], d: date, tol: float, orbit: int | None) -> list[Scene]:
    """The S1 scenes on ``orbit`` within ``tol`` days of ``d``, closest first."""
    return sorted(
        (c for c in s1 if days_from_noon(c, d) <= tol and c.relative_orbit == orbit),
        key=lambda c: (days_from_noon(c, d), c.product_id),
    )


def _s2_within(s2: Sequence[Scene], d: date, tol: float, max_cloud_cover: float) -> list[Scene]:
    """The S2 scenes within ``tol`` days of ``d`` and ``max_cloud_cover`` (unknown cover passes), best first."""
    return sorted(
        (c for c in s2 if days_from_noon(c, d) <= tol and (c.cloud_cover is None or c.cloud_cover <= max_cloud_cover)),
        key=lambda c: (*_cloud_key(c), days_from_noon(c, d), c.product_id),
    )


def _not_found(
    kind: str, pool: Sequence[Scene], outside: Sequence[Scene], d: date, tol: float, best_orbit: int | None
) -> SceneNotFoundError:
    """The error for a date without a ``kind`` scene, naming the closest candidates and those outside the AOI."""
    nearby = sorted(pool, key=lambda c: days_from_noon(c, d))[:5]
    found = ", ".join(f"{c.product_id} ({c.sensing_time:%Y-%m-%d})" for c in nearby) or "nothing"
    far = sum(1 for c in outside if c.is_s1 == kind.endswith("GRD"))
    if far:
        found += f" ({far} candidate{'s' if far > 1 else ''} with a footprint outside the AOI ignored)"
    return SceneNotFoundError(
        f"date {d.isoformat()}: no {kind} scene within pair_tolerance_days={tol:g}"
        f"{' on relative orbit ' + str(best_orbit) if kind.endswith('GRD') and best_orbit else ''}; found nearby: {found}; "
        "widen pair_tolerance_days or change the date"
    )


def _pick_pair(s1_ok: list[Scene], s2_ok: list[Scene], used: dict[str, list[str]]) -> tuple[Scene, Scene]:
    """The best S1 and S2 scene of one date, preferring products not ``used`` for another date."""
    c1 = next((c for c in s1_ok if c.product_id not in used), s1_ok[0])
    fresh_s2 = [c for c in s2_ok if c.product_id not in used]
    # a fresh product wins over a reused one only at equal rank class (known vs unknown cover)
    c2 = fresh_s2[0] if fresh_s2 and _cloud_key(fresh_s2[0])[0] == _cloud_key(s2_ok[0])[0] else s2_ok[0]
    return c1, c2


def _with_reasons(c1: Scene, c2: Scene, d: date, tol: float) -> list[Scene]:
    """The S1 and S2 scene selected for ``d``, with the date and why each was chosen."""
    cover = f"{c2.cloud_cover} %" if c2.cloud_cover is not None else "unknown, no scene with a known cover"
    return [
        dataclasses.replace(
            c1,
            date=d.isoformat(),
            reason=f"closest S1 to {d} on relative orbit {c1.relative_orbit} ({days_from_noon(c1, d):.1f} d)",
        ),
        dataclasses.replace(
            c2,
            date=d.isoformat(),
            reason=f"lowest cloud cover ({cover}) within {tol:g} d of {d}",
        ),
    ]


def _warn_shared(used: dict[str, list[str]], tol: float) -> None:
    """Warn about every product selected for more than one date."""
    for pid, dates in used.items():
        if len(dates) > 1:
            log.warning(
                "%s is the only product within pair_tolerance_days=%g for dates %s: they share one acquisition; "
                "space the dates one revisit apart or lower pair_tolerance_days",
                pid,
                tol,
                ", ".join(dates),
            )


def write_scene_table(scenes: Sequence[Scene], path: str | os.PathLike[str]) -> None:
    """Write the scene table as CSV atomically (ISO times, empty cells for missing values)."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SCENE_COLUMNS, lineterminator="\n")
    w.writeheader()
    for s in scenes:
        row = dataclasses.asdict(s)
        row["sensing_time"] = s.sensing_time.isoformat()
        w.writerow({k: ("" if v is None else v) for k, v in row.items()})
    write_text_atomic(path, buf.getvalue())


def read_scene_table(path: str | os.PathLike[str]) -> list[Scene]:
    """Read a scene table written by :func:`write_scene_table`."""
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            out.append(
                Scene(
                    product_id=row["product_id"],
                    mission=row["mission"],
                    product_type=row["product_type"],
                    sensing_time=datetime.fromisoformat(row["sensing_time"]),
                    footprint_wkt=row["footprint_wkt"],
                    size_bytes=int(row["size_bytes"] or 0),
                    checksum=row["checksum"],
                    relative_orbit=int(row["relative_orbit"]) if row["relative_orbit"] else None,
                    cloud_cover=float(row["cloud_cover"]) if row["cloud_cover"] else None,
                    source=row["source"],
                    uri=row["uri"],
                    date=row["date"],
                    reason=row["reason"],
                )
            )
    return out
