"""Demo Sentinel-2 MSI L2A SAFE products (tile 33TTG) rendered from the simulated surface.

Format: Sentinel-2 Products Specification Document S2-PDGS-TAS-DI-PSD (L2A user product, PSD 14,
processing baseline 04.00: ``DN = reflectance · BOA_QUANTIFICATION_VALUE − BOA_ADD_OFFSET``, 0 = no
data) and the MGRS tiling grid (tile 33TTG: UTM 33N, upper-left 199980 E 4700040 N, 10980² px at
10 m). The template metadata are the real stactools test product (T29UNU, 2022-10-05,
templates/NOTICE): every timestamp is shifted to the demo sensing time, tile, orbit and product
names are replaced consistently, the geoposition is the 33TTG one and the cloud statistics are
the ones of the generated SCL.

JP2 bands are JPEG 2000 lossless (OpenJPEG, ``REVERSIBLE=YES``, ``QUALITY=100``, GMLJP2 + GeoJP2
georeferencing). Deviation from real products: they cover a sub-window of the tile (the AOI plus a
margin, aligned to the tile's 60 m grid so 10/20/60 m pixels nest), because a lossless 10980²
encode is far too slow for the demo budget; the pixel grid is the tile's own.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from pyproj import Transformer

from pipeline_lib.demo.surface import DEMO_CRS, simulate_surface

__all__ = [
    "TILE_ID",
    "TILE_ULX",
    "TILE_ULY",
    "TILE_SIZE_10M",
    "S2Window",
    "s2_window_for",
    "s2_product_id",
    "s2_mission",
    "s2_tile_footprint_wkt",
    "render_s2",
    "write_s2_product",
]

TEMPLATE_DIR = Path(__file__).with_name("templates") / "s2"
TEMPLATE_SENSING = datetime(2022, 10, 5, 11, 54, 11)
TILE_ID = "33TTG"
TILE_ULX, TILE_ULY = 199980.0, 4700040.0
TILE_SIZE_10M = 10980
SENSING_TIME_OF_DAY = (10, 3, 9)  # descending pass over central Italy, ~10:03 UTC
RELATIVE_ORBIT = 22
BOA_ADD_OFFSET = -1000
BOA_QUANTIFICATION = 10000
BANDS_10M = ("B02", "B03", "B04")
BANDS_20M = ("B11", "B12")


def s2_mission(when: date) -> str:
    """S2A on even 12-day steps from 2021-12-23, S2B otherwise (both satellites contribute)."""
    return "S2A" if ((when - date(2021, 12, 23)).days // 12) % 2 == 0 else "S2B"


def _sensing(when: date) -> datetime:
    return datetime(when.year, when.month, when.day, *SENSING_TIME_OF_DAY)


def _abs_orbit(when: date) -> int:
    days = (_sensing(when) - datetime(2022, 1, 4, 10, 3, 9)).total_seconds() / 86400.0
    return 34042 + int(round(days * 14.3))


def s2_product_id(when: date) -> str:
    """e.g. S2A_MSIL2A_20220104T100309_N0400_R022_T33TTG_20220104T120000 (no .SAFE)."""
    return _shift_text("S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454", when)


def _shift_text(text: str, when: date) -> str:
    """Move template metadata to the demo acquisition: timestamps, tile, orbits, mission, CRS."""
    delta = _sensing(when) - TEMPLATE_SENSING

    def iso(m: re.Match[str]) -> str:
        t = datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S") + delta
        return t.strftime("%Y-%m-%dT%H:%M:%S") + (m.group(2) or "")

    def compact(m: re.Match[str]) -> str:
        t = datetime.strptime(m.group(1) + m.group(3), "%Y%m%d%H%M%S") + delta
        return t.strftime("%Y%m%d") + m.group(2) + t.strftime("%H%M%S")

    out = re.sub(r"(20\d\d-\d\d-\d\dT\d\d:\d\d:\d\d)(\.\d+)?", iso, text)
    out = re.sub(r"(20\d{6})(T)(\d{6})", compact, out)
    out = out.replace("T29UNU", f"T{TILE_ID}").replace("29UNU", TILE_ID)
    out = out.replace("038058", f"{_abs_orbit(when):06d}").replace("_R023_", f"_R{RELATIVE_ORBIT:03d}_")
    out = out.replace("<SENSING_ORBIT_NUMBER>23<", f"<SENSING_ORBIT_NUMBER>{RELATIVE_ORBIT}<")
    out = out.replace("UTM zone 29N", "UTM zone 33N").replace("EPSG:32629", "EPSG:32633")
    out = out.replace("<ULX>499980</ULX>", f"<ULX>{TILE_ULX:.0f}</ULX>").replace(
        "<ULY>5900040</ULY>", f"<ULY>{TILE_ULY:.0f}</ULY>"
    )
    if s2_mission(when) == "S2B":
        out = out.replace("S2A", "S2B").replace("Sentinel-2A", "Sentinel-2B")
    return out


def s2_tile_footprint_wkt() -> str:
    """The 33TTG tile polygon in EPSG:4326 (densified edges)."""
    t = np.linspace(0.0, 1.0, 11)
    size = TILE_SIZE_10M * 10.0
    xs = np.concatenate(
        [TILE_ULX + size * t, np.full_like(t, TILE_ULX + size), TILE_ULX + size * (1 - t), np.full_like(t, TILE_ULX)]
    )
    ys = np.concatenate(
        [np.full_like(t, TILE_ULY), TILE_ULY - size * t, np.full_like(t, TILE_ULY - size), TILE_ULY - size * (1 - t)]
    )
    lon, lat = Transformer.from_crs(DEMO_CRS, "EPSG:4326", always_xy=True).transform(xs, ys)
    return "POLYGON((" + ", ".join(f"{a:.6f} {b:.6f}" for a, b in zip(lon, lat, strict=True)) + "))"


@dataclass(frozen=True)
class S2Window:
    """A sub-window of the tile in 60 m cells: column/row offsets and sizes."""

    col60: int
    row60: int
    width60: int
    height60: int

    def transform(self, res_m: int) -> Affine:
        return Affine(res_m, 0.0, TILE_ULX + self.col60 * 60.0, 0.0, -res_m, TILE_ULY - self.row60 * 60.0)

    def shape(self, res_m: int) -> tuple[int, int]:
        f = 60 // res_m
        return (self.height60 * f, self.width60 * f)


def s2_window_for(bounds: tuple[float, float, float, float]) -> S2Window:
    """The tile sub-window (60 m aligned) covering ``bounds`` (UTM 33N left, bottom, right, top), clipped to the tile."""
    left, bottom, right, top = bounds
    c0 = max(0, math.floor((left - TILE_ULX) / 60.0))
    c1 = min(TILE_SIZE_10M // 6, math.ceil((right - TILE_ULX) / 60.0))
    r0 = max(0, math.floor((TILE_ULY - top) / 60.0))
    r1 = min(TILE_SIZE_10M // 6, math.ceil((TILE_ULY - bottom) / 60.0))
    return S2Window(c0, r0, max(0, c1 - c0), max(0, r1 - r0))


def _to_dn(refl: np.ndarray) -> np.ndarray:
    return np.asarray(np.clip(np.rint(refl * BOA_QUANTIFICATION - BOA_ADD_OFFSET), 1, 65535).astype(np.uint16))


def render_s2(win: S2Window, when: date, seed: int = 0) -> dict[str, np.ndarray]:
    """DN arrays (uint16 bands, uint8 SCL) of the window; 20 m values are 2×2 means of the 10 m surface."""
    h, w = win.shape(10)
    tr = win.transform(10)
    x = tr.c + (np.arange(w) + 0.5) * 10.0
    y = tr.f - (np.arange(h) + 0.5) * 10.0
    xx, yy = np.meshgrid(x, y)
    surf = simulate_surface(xx, yy, when, seed)

    def down(a: np.ndarray) -> np.ndarray:
        return np.asarray(a.reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3)))

    out: dict[str, np.ndarray] = {b: _to_dn(surf[b]) for b in BANDS_10M}
    out.update({b: _to_dn(down(surf[b])) for b in BANDS_20M})
    cloud, core = down(surf["cloud"]), down(surf["cloud_core"])
    water = down(surf["water"])
    lc = surf["landcover"].reshape(h // 2, 2, w // 2, 2)
    veg = (lc == 1).mean(axis=(1, 3))
    scl = np.where(water > 0.5, 6, np.where(veg >= 0.5, 4, 5))
    scl = np.where(cloud > 0, 8, scl)
    scl = np.where(core > 0.5, 9, scl)
    out["SCL"] = scl.astype(np.uint8)
    return out


def _write_jp2(path: Path, data: np.ndarray, transform: Affine) -> None:
    """Lossless JPEG 2000 with GMLJP2/GeoJP2 georeferencing (staged in MEM, JP2OpenJPEG is create-copy)."""
    profile = {
        "driver": "GTiff",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": DEMO_CRS,
        "transform": transform,
    }
    with rasterio.MemoryFile() as mem:
        with mem.open(**profile) as src:
            src.write(data, 1)
        with mem.open() as src:
            rasterio.shutil.copy(
                src,
                path,
                driver="JP2OpenJPEG",
                REVERSIBLE="YES",
                QUALITY="100",
                GMLJP2="YES",
                GeoJP2="YES",
                RESOLUTIONS="4",
                BLOCKXSIZE="1024",
                BLOCKYSIZE="1024",
                NUM_THREADS="2",
            )


def _set_tag(text: str, tag: str, value: str) -> str:
    return re.sub(rf"(<{tag}[^>]*>)[^<]*(</{tag}>)", rf"\g<1>{value}\g<2>", text)


def write_s2_product(
    dest_parent: Path, when: date, bounds: tuple[float, float, float, float], seed: int = 0
) -> tuple[Path, float]:
    """Write the demo L2A SAFE of ``when`` into ``dest_parent/<product_id>.SAFE``; returns (path, cloud cover %).

    Not atomic by itself: the caller builds in a temporary folder and renames.
    """
    pid = s2_product_id(when)
    safe = dest_parent / f"{pid}.SAFE"
    win = s2_window_for(bounds)
    dn = render_s2(win, when, seed)
    scl = dn["SCL"]
    cloud_pct = float(np.isin(scl, (8, 9)).mean() * 100.0)
    medium = float((scl == 8).mean() * 100.0)
    high = float((scl == 9).mean() * 100.0)

    mtd = _shift_text((TEMPLATE_DIR / "MTD_MSIL2A.xml").read_text(encoding="utf-8"), when)
    tl = _shift_text((TEMPLATE_DIR / "MTD_TL.xml").read_text(encoding="utf-8"), when)
    manifest = _shift_text((TEMPLATE_DIR / "manifest.safe").read_text(encoding="utf-8"), when)
    lonlat = re.search(r"POLYGON\(\((.*)\)\)", s2_tile_footprint_wkt())
    pos = " ".join(
        f"{float(p.split()[1]):.6f} {float(p.split()[0]):.6f}" for p in (lonlat.group(1).split(", ") if lonlat else [])
    )
    mtd = _set_tag(mtd, "EXT_POS_LIST", pos)
    stats = {
        "Cloud_Coverage_Assessment": cloud_pct,
        "CLOUDY_PIXEL_PERCENTAGE": cloud_pct,
        "CLOUDY_PIXEL_OVER_LAND_PERCENTAGE": cloud_pct,
        "MEDIUM_PROBA_CLOUDS_PERCENTAGE": medium,
        "HIGH_PROBA_CLOUDS_PERCENTAGE": high,
        "THIN_CIRRUS_PERCENTAGE": 0.0,
        "CLOUD_SHADOW_PERCENTAGE": 0.0,
        "SNOW_ICE_PERCENTAGE": 0.0,
        "VEGETATION_PERCENTAGE": float((scl == 4).mean() * 100),
        "NOT_VEGETATED_PERCENTAGE": float((scl == 5).mean() * 100),
        "WATER_PERCENTAGE": float((scl == 6).mean() * 100),
        "UNCLASSIFIED_PERCENTAGE": 0.0,
        "NODATA_PIXEL_PERCENTAGE": 0.0,
    }
    for tag, val in stats.items():
        mtd = _set_tag(mtd, tag, f"{val:.6f}")
        tl = _set_tag(tl, tag, f"{val:.6f}")

    granule_m = re.search(r"GRANULE/(L2A_T\w+?)/IMG_DATA", mtd)
    granule = granule_m.group(1) if granule_m else f"L2A_T{TILE_ID}"
    stem_m = re.search(r"IMG_DATA/R10m/(T\w+?)_B02_10m", mtd)
    stem = stem_m.group(1) if stem_m else f"T{TILE_ID}"
    gdir = safe / "GRANULE" / granule
    for sub in ("IMG_DATA/R10m", "IMG_DATA/R20m", "QI_DATA", "AUX_DATA"):
        (gdir / sub).mkdir(parents=True, exist_ok=True)
    (safe / "rep_info").mkdir(parents=True, exist_ok=True)
    (safe / "DATASTRIP").mkdir(parents=True, exist_ok=True)
    (safe / "MTD_MSIL2A.xml").write_text(mtd, encoding="utf-8")
    (safe / "manifest.safe").write_text(manifest, encoding="utf-8")
    (gdir / "MTD_TL.xml").write_text(tl, encoding="utf-8")
    for xsd in TEMPLATE_DIR.glob("*.xsd"):
        (safe / "rep_info" / xsd.name).write_bytes(xsd.read_bytes())
    for b in BANDS_10M:
        _write_jp2(gdir / "IMG_DATA" / "R10m" / f"{stem}_{b}_10m.jp2", dn[b], win.transform(10))
    for b in (*BANDS_20M, "SCL"):
        _write_jp2(gdir / "IMG_DATA" / "R20m" / f"{stem}_{b}_20m.jp2", dn[b], win.transform(20))
    return safe, cloud_pct
