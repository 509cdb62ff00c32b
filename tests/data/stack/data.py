"""Seeded generator of a tiny stack NetCDF + truth COG in the layout of docs/CONTRACTS.md ("Stack NetCDF").

The world: four land-cover classes (water, bare soil, vegetation, urban) with a smooth texture shared
by all dates. Between dates, flood water along a diagonal river retreats (wide on the first guide,
medium on the target, narrow on the last guide) and random disks change class on every date, so
some changes exist only on the target date (no neighbour shows them: the blend cannot get them,
a network that learned ΔS → ΔT from the guide pair can). S = class backscatter in dB + texture +
noise (VV, VH); T = class reflectance × texture (B04, B03, B02). One guide has a cloud (invalid).

Usage: ``python tests/data/stack/data.py OUT_DIR`` or ``make_stack(out_dir)`` from a test.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import xarray as xr
from affine import Affine
from scipy import ndimage

from pipeline_lib.cog import write_cog

# class signatures: water, soil, vegetation, urban
S_DB = np.array([[-21.0, -25.0], [-12.0, -19.0], [-8.0, -14.0], [-4.0, -11.0]])  # VV, VH
T_REFL = np.array([[0.03, 0.04, 0.06], [0.28, 0.22, 0.16], [0.05, 0.10, 0.04], [0.20, 0.20, 0.23]])  # B04,B03,B02
DATES = ["2021-12-23", "2022-01-04", "2022-01-16", "2022-01-28"]
SOURCE_RANGE = [[-25.0, 0.0], [-25.0, 0.0]]
TARGET_RANGE = [[0.0, 0.5], [0.0, 0.5], [0.0, 0.5]]


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    f = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return (f - f.mean()) / f.std()


def class_maps(size: int, n_dates: int, seed: int) -> np.ndarray:
    """(date, y, x) class indices: base land cover, retreating flood, per-date random disks."""
    rng = np.random.default_rng(seed)
    base_field = _smooth_field(rng, (size, size), size / 12)
    base = np.digitize(base_field, [-0.6, 0.5]) + 1  # soil, vegetation, urban
    yy, xx = np.mgrid[0:size, 0:size]
    river = np.abs((yy - xx) / np.sqrt(2.0) + 0.1 * size * np.sin(yy / size * 2 * np.pi))
    widths = np.linspace(0.20, 0.04, n_dates) * size
    maps = np.empty((n_dates, size, size), dtype=np.int64)
    for d in range(n_dates):
        m = base.copy()
        m[river < widths[d]] = 0
        for _ in range(max(3, size // 24)):
            cy, cx = rng.integers(0, size, 2)
            r = rng.uniform(0.05, 0.10) * size
            m[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = rng.integers(0, 4)
        maps[d] = m
    return maps


def render(maps: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """S (date, 2, y, x) dB and T (date, 3, y, x) reflectance from class maps."""
    rng = np.random.default_rng(seed + 1)
    n, h, w = maps.shape
    tex = _smooth_field(rng, (h, w), 2.0)
    s = S_DB[maps].transpose(0, 3, 1, 2) + 1.0 * tex + 0.4 * rng.standard_normal((n, 2, h, w))
    t = T_REFL[maps].transpose(0, 3, 1, 2) * (1.0 + 0.15 * tex) + 0.003 * rng.standard_normal((n, 3, h, w))
    return s.astype(np.float32), t.astype(np.float32)


def make_stack(
    out_dir: Path, size: int = 96, n_guides: int = 2, seed: int = 0, cloud: bool = True
) -> tuple[Path, Path]:
    """Write ``stack.nc`` and ``truth.tif`` into ``out_dir``; return their paths.

    Dates: target = DATES[1]; guides = DATES[0], DATES[2] (and DATES[3] when ``n_guides`` = 3).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_dates = n_guides + 1
    maps = class_maps(size, n_dates, seed)
    s, t = render(maps, seed)
    ti = 1  # target date index
    gi = [d for d in range(n_dates) if d != ti]
    valid_g = np.ones((n_guides, size, size), dtype=np.uint8)
    t_g = t[gi].copy()
    if cloud:  # a cloud on the last guide's optical image
        yy, xx = np.mgrid[0:size, 0:size]
        disk = (yy - 0.7 * size) ** 2 + (xx - 0.25 * size) ** 2 < (0.12 * size) ** 2
        valid_g[-1][disk] = 0
        t_g[-1][:, disk] = np.nan
    valid_i = np.ones((size, size), dtype=np.uint8)
    valid_i[:3, :] = 0  # a swath edge on the target date
    s_i = s[ti].copy()
    s_i[:, :3, :] = np.nan
    res = 10.0
    x0, y0 = 280000.0, 4655000.0
    transform = Affine(res, 0.0, x0, 0.0, -res, y0)
    xs = x0 + res * (np.arange(size) + 0.5)
    ys = y0 - res * (np.arange(size) + 0.5)
    guide_dates = [DATES[d] for d in gi]
    ds = xr.Dataset(
        {
            "S_i": (("band_s", "y", "x"), s_i),
            "S_g": (("guide", "band_s", "y", "x"), s[gi]),
            "T_g": (("guide", "band_t", "y", "x"), t_g),
            "dS_ig": (("guide", "band_s", "y", "x"), s_i[None] - s[gi]),
            "valid_i": (("y", "x"), valid_i),
            "valid_g": (("guide", "y", "x"), valid_g),
        },
        coords={
            "guide_date": ("guide", guide_dates),
            "band_s": ["VV", "VH"],
            "band_t": ["B04", "B03", "B02"],
            "y": ys,
            "x": xs,
        },
        attrs={
            "experiment": "synthetic",
            "task": "sar_to_visible",
            "target_date": DATES[ti],
            "crs": "EPSG:32633",
            "transform": json.dumps(list(transform)[:6]),
            "source_range": json.dumps(SOURCE_RANGE),
            "target_range": json.dumps(TARGET_RANGE),
            "offsets_applied": json.dumps({}),
        },
    )
    stack = out_dir / "stack.nc"
    ds.to_netcdf(stack)
    truth = out_dir / "truth.tif"
    truth_data = np.concatenate([t[ti], np.ones((1, size, size), np.float32)])
    write_cog(truth_data, truth, crs="EPSG:32633", transform=transform, descriptions=["B04", "B03", "B02", "valid"])
    return stack, truth


if __name__ == "__main__":
    print(make_stack(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(".")))
