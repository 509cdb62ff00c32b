"""Adapter from the real time-series chips (data/real-ts/, README there) and the demo world to stack inputs.

Writes one float32 COG per date and modality in physical units (σ0 dB for S1, reflectance for S2,
NaN where invalid; a ``valid`` band from SCL for the 2018 patch) with the band descriptions the
project's readers use, so :func:`pipeline_lib.stacks.run_stack` builds the stacks exactly as the
workflow does. The demo is rendered straight from :func:`pipeline_lib.demo.surface.simulate_surface`
on a 10 m grid (no SAR/optical product chain; seeded 4.4-look gamma speckle on σ0), which is the
same world the demo products are rendered from — an adapter, not the demo's full chain.

Experiments (the chips' README, "Suggested experiments"; DESIGN §6): see :data:`EXPERIMENTS`.
``guides: auto`` (DESIGN §6) picks every clear target-modality date within ``window_days`` of
the target (:func:`pipeline_lib.guides.auto_guides`).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from affine import Affine

from pipeline_lib.cog import write_cog

REPO = Path(__file__).resolve().parents[1]
REAL = REPO / "data" / "real-ts"
S2_BANDS = ("B02", "B03", "B04", "B11", "B12")
# SCL classes that are not a clear surface: no data, saturated, cloud shadow, clouds, cirrus.
_SCL_BAD = (0, 1, 3, 8, 9, 10)


@dataclass(frozen=True)
class Region:
    """Per-date image paths of one chip folder (keys: the dates experiments name)."""

    name: str
    s1: dict[str, Path]
    s2: dict[str, Path]
    clear_s2: dict[str, float]  # date → clear fraction of the S2 image


def _date_key(text: str) -> str:
    return text[:10] if len(text) >= 10 else text[:7]


def _band(desc: list[str], name: str) -> int:
    """1-based index of the band whose description starts with ``name`` ("VV sigma0 [dB]" → VV)."""
    for i, d in enumerate(desc):
        if d is not None and d.split(" ")[0] == name:
            return i + 1
    raise ValueError(f"band {name} not among {desc}")


def _write(data: np.ndarray, names: list[str], src: Any, out: Path, tags: dict[str, str]) -> Path:
    write_cog(data.astype(np.float32), out, crs=src.crs, transform=src.transform, descriptions=names, tags=tags)
    return out


def _s2(path: Path, out: Path, nodata: float | None, scale: float) -> Path:
    with rasterio.open(path) as src:
        desc = list(src.descriptions)
        raw = np.stack([src.read(_band(desc, b)).astype(np.float64) for b in S2_BANDS])
        bad = np.zeros(raw.shape[1:], bool)
        if nodata is not None:
            bad |= (raw == nodata).any(axis=0)
        data = np.where(bad, np.nan, raw / scale)
        names = list(S2_BANDS)
        if any(d.startswith("SCL") for d in desc):
            scl = src.read(_band(desc, "SCL"))
            valid = (~np.isin(scl, _SCL_BAD) & ~bad).astype(np.float64)
            data = np.concatenate([data, valid[None]])
            names.append("valid")
        return _write(data, names, src, out, {"source": str(path.relative_to(REPO))})


def _s1(path: Path, out: Path) -> Path:
    with rasterio.open(path) as src:
        desc = list(src.descriptions)
        data = np.stack([src.read(_band(desc, b)).astype(np.float64) for b in ("VV", "VH")])
        return _write(data, ["VV", "VH"], src, out, {"source": str(path.relative_to(REPO))})


def belgium_monthly(work: Path) -> Region:
    folder = REAL / "wc-belgium-monthly-2021"
    s1, s2, clear = {}, {}, {}
    with open(folder / "index.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if not row["file"]:
                continue
            key = row["period"]
            if row["modality"] == "S1":
                s1[key] = _s1(folder / row["file"], work / f"s1_{key}.tif")
            else:
                s2[key] = _s2(folder / row["file"], work / f"s2_{key}.tif", 65535, 10000.0)
                clear[key] = float(row["valid_fraction"])
    return Region("belgium-monthly-2021", s1, s2, clear)


def belgium_2018(work: Path) -> Region:
    """Keys are the S2 dates; the S1 image of a key is the S2 date's nearest S1 (``paired_with``)."""
    folder = REAL / "wc-belgium-patch-2018"
    s1, s2, clear = {}, {}, {}
    with open(folder / "index.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            if row["modality"] != "S2":
                continue
            key = row["datetime_utc"][:10]
            s2[key] = _s2(folder / row["file"], work / f"s2_{key}.tif", 0, 10000.0)
            s1[key] = _s1(folder / row["paired_with"], work / f"s1_{key}.tif")
            clear[key] = float(row["scl_clear_fraction"])
    return Region("belgium-patch-2018", s1, s2, clear)


def slovenia_l1c(work: Path) -> Region:
    folder = REAL / "eolearn-slovenia-s2l1c-2015"
    s2, clear = {}, {}
    with open(folder / "index.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            key = row["datetime_utc"][:10]
            s2[key] = _s2(folder / row["file"], work / f"s2_{key}.tif", None, 1.0)
            clear[key] = 1.0 - float(row["clm_cloud_fraction"])
    return Region("slovenia-l1c-2015", {}, s2, clear)


def demo_world(work: Path, size_px: int = 256, seed: int = 0) -> Region:
    """The demo world on a ``size_px``² 10 m grid around the demo centre, S1 with seeded speckle."""
    from pipeline_lib.demo.surface import CLOUDY_DATE, DEMO_CRS, DEMO_DATES, demo_center_xy, simulate_surface

    x0, y0 = demo_center_xy()
    left, top = x0 - size_px * 5.0, y0 + size_px * 5.0
    transform = Affine(10.0, 0.0, left, 0.0, -10.0, top)
    xs = left + (np.arange(size_px) + 0.5) * 10.0
    ys = top - (np.arange(size_px) + 0.5) * 10.0
    xx, yy = np.meshgrid(xs, ys)
    s1, s2, clear = {}, {}, {}
    rng = np.random.default_rng(seed)
    for when in DEMO_DATES:
        key = when.isoformat()
        world = simulate_surface(xx, yy, when, seed=seed)
        looks = 4.4
        sig = np.stack([world["VV"], world["VH"]]).astype(np.float64)
        sig = sig * rng.gamma(looks, 1.0 / looks, size=sig.shape)
        db = 10.0 * np.log10(np.maximum(sig, 1e-6))
        s1[key] = work / f"s1_{key}.tif"
        write_cog(db.astype(np.float32), s1[key], crs=DEMO_CRS, transform=transform, descriptions=["VV", "VH"])
        refl = np.stack([world[b] for b in S2_BANDS]).astype(np.float64)
        cloud = world["cloud"] > 0.02 if when == CLOUDY_DATE else np.zeros(refl.shape[1:], bool)
        valid = (~cloud).astype(np.float64)
        s2[key] = work / f"s2_{key}.tif"
        write_cog(
            np.concatenate([refl, valid[None]]).astype(np.float32),
            s2[key],
            crs=DEMO_CRS,
            transform=transform,
            descriptions=[*S2_BANDS, "valid"],
        )
        clear[key] = float(valid.mean())
    return Region("demo-world", s1, s2, clear)


REGIONS = {
    "belgium-monthly-2021": belgium_monthly,
    "belgium-patch-2018": belgium_2018,
    "slovenia-l1c-2015": slovenia_l1c,
    "demo-world": demo_world,
}

#: (region, experiment name, task, target, guides). The real ones are the chips' README's; the demo's
#: are the demo region's sar2vis and vis2swir (config/regions/demo.yaml).
EXPERIMENTS: tuple[tuple[str, str, str, str, tuple[str, ...]], ...] = (
    ("belgium-monthly-2021", "bm_s2v_2021-06", "sar_to_visible", "2021-06", ("2021-05", "2021-07")),
    ("belgium-monthly-2021", "bm_s2v_2021-03", "sar_to_visible", "2021-03", ("2021-02", "2021-04")),
    ("belgium-patch-2018", "bp_s2v_2018-07-08", "sar_to_visible", "2018-07-08", ("2018-06-28", "2018-07-23")),
    ("belgium-monthly-2021", "bm_v2s_2021-06", "visible_to_swir", "2021-06", ("2021-05", "2021-07")),
    ("belgium-monthly-2021", "bm_v2s_2021-03", "visible_to_swir", "2021-03", ("2021-02", "2021-04")),
    ("belgium-patch-2018", "bp_v2s_2018-07-08", "visible_to_swir", "2018-07-08", ("2018-06-28", "2018-07-23")),
    ("slovenia-l1c-2015", "sl_v2s_2015-08-30", "visible_to_swir", "2015-08-30", ("2015-07-11", "2015-09-09")),
    ("demo-world", "demo_sar2vis", "sar_to_visible", "2022-01-04", ("2021-12-23", "2022-01-16")),
    ("demo-world", "demo_vis2swir", "visible_to_swir", "2022-01-04", ("2021-12-23", "2022-01-16")),
)


def as_date(key: str) -> date:
    """A date key (YYYY-MM-DD, or YYYY-MM for monthly composites = the 15th) as a date."""
    return date.fromisoformat(key if len(key) == 10 else f"{key}-15")
