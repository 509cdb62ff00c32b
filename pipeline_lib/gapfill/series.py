"""A co-registered S1 + S2 time series on one grid, per-pixel guide choice and the temporal baselines.

Governing text: DESIGN §6 ("more than two guide dates"), §8 ("gap-filled series").

- :class:`Series` holds every date of a region: S1 σ0 (dB) and S2 L2A reflectance in physical units,
  NaN where unusable, with per-date validity masks (S2 valid = clear by SCL and all bands finite).
- **Guide choice per pixel** (:func:`choose_guides`): for a target date, each pixel gets the ``n``
  dates nearest in time at which *that pixel* is clear (and its source is valid). With
  ``both_sides`` the first two slots are the nearest clear date before and the nearest after (when
  both exist), so a guide pair brackets the target the way temporal interpolation does; the
  remaining slots take the nearest others by |Δt| (ties: the earlier date).
- **Baselines** (what time-series pipelines do today): per-pixel linear interpolation in time between
  the nearest clear observations before and after (the nearest one alone where only one side exists),
  and the nearest clear date.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from pipeline_lib.errors import ProductError
from pipeline_lib.stacks import read_image

__all__ = [
    "S1_BANDS",
    "S2_BANDS",
    "VISIBLE",
    "SWIR",
    "Series",
    "day_numbers",
    "read_series",
    "choose_guides",
    "bracketing_dates",
    "linear_interpolation",
    "nearest_clear",
]

S1_BANDS: tuple[str, ...] = ("VV", "VH")
S2_BANDS: tuple[str, ...] = ("B04", "B03", "B02", "B11", "B12")
VISIBLE: tuple[str, ...] = ("B04", "B03", "B02")
SWIR: tuple[str, ...] = ("B11", "B12")


@dataclass(frozen=True)
class Series:
    """Every date of a region on one grid; arrays (date, band, y, x) float32, NaN where not usable."""

    dates: tuple[str, ...]  # ISO dates, increasing
    s1: np.ndarray  # (date, 2, y, x) σ0 dB (VV, VH)
    s2: np.ndarray  # (date, 5, y, x) reflectance (S2_BANDS)
    s1_valid: np.ndarray  # (date, y, x) bool
    s2_valid: np.ndarray  # (date, y, x) bool: clear
    crs: str
    transform: tuple[float, ...]

    def __post_init__(self) -> None:
        d = len(self.dates)
        if list(self.dates) != sorted(self.dates) or len(set(self.dates)) != d:
            raise ValueError(f"Series: dates must be distinct and increasing, got {self.dates}")
        for name, arr, nb in (("s1", self.s1, len(S1_BANDS)), ("s2", self.s2, len(S2_BANDS))):
            if arr.ndim != 4 or arr.shape[:2] != (d, nb):
                raise ValueError(f"Series: {name} has shape {arr.shape}, expected ({d}, {nb}, y, x)")
        for name, arr in (("s1_valid", self.s1_valid), ("s2_valid", self.s2_valid)):
            if arr.shape != (d, *self.s1.shape[2:]) or arr.dtype != bool:
                raise ValueError(f"Series: {name} must be bool ({d}, y, x), got {arr.dtype} {arr.shape}")

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.s1.shape[2]), int(self.s1.shape[3])

    def band(self, names: Sequence[str]) -> np.ndarray:
        """(date, len(names), y, x) of S1 or S2 bands by name (one modality per call)."""
        if all(n in S1_BANDS for n in names):
            return self.s1[:, [S1_BANDS.index(n) for n in names]]
        if all(n in S2_BANDS for n in names):
            return self.s2[:, [S2_BANDS.index(n) for n in names]]
        raise ValueError(f"Series.band: {list(names)} mixes modalities or names unknown bands")

    def valid_of(self, names: Sequence[str]) -> np.ndarray:
        return self.s1_valid if all(n in S1_BANDS for n in names) else self.s2_valid

    def with_s2_valid(self, s2_valid: np.ndarray) -> Series:
        """The same series with another S2 clear mask (S2 values set to NaN where no longer clear)."""
        s2 = np.where(s2_valid[:, None], self.s2, np.nan).astype(np.float32)
        return replace(self, s2=s2, s2_valid=s2_valid.astype(bool))


def day_numbers(dates: Sequence[str]) -> np.ndarray:
    """Proleptic ordinal day of each ISO date (float64)."""
    return np.array([dt.date.fromisoformat(str(d)[:10]).toordinal() for d in dates], dtype=np.float64)


def read_series(
    s1_paths: Mapping[str, str | os.PathLike[str]], s2_paths: Mapping[str, str | os.PathLike[str]]
) -> Series:
    """Read per-date S1 and S2 COGs (CONTRACTS.md ``s1/{date}.tif``, ``s2/{date}.tif``) into a :class:`Series`.

    Dates are the union of both mappings; a date without an S1 (S2) file is all-invalid for it.
    All files must share one grid.
    """
    dates = sorted({*s1_paths, *s2_paths})
    if not dates:
        raise ProductError("gapfill: no S1 or S2 file given; configure gapfill dates that have images")
    grid: tuple[Any, ...] | None = None
    prof0: dict[str, Any] = {}
    s1: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    s2: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for out, paths, bands in ((s1, s1_paths, S1_BANDS), (s2, s2_paths, S2_BANDS)):
        for date, path in paths.items():
            data, valid, prof = read_image(path, bands)
            key = (prof["height"], prof["width"], prof["crs"], tuple(prof["transform"])[:6])
            if grid is None:
                grid, prof0 = key, prof
            elif key != grid:
                raise ProductError(f"{path}: grid {key} differs from the series' {grid}; rebuild it on grid.json")
            out[date] = (data, valid)
    h, w = int(prof0["height"]), int(prof0["width"])

    def stack(src: dict[str, tuple[np.ndarray, np.ndarray]], nb: int) -> tuple[np.ndarray, np.ndarray]:
        arr = np.full((len(dates), nb, h, w), np.nan, dtype=np.float32)
        ok = np.zeros((len(dates), h, w), dtype=bool)
        for i, d in enumerate(dates):
            if d in src:
                arr[i], ok[i] = src[d]
        return arr, ok

    a1, v1 = stack(s1, len(S1_BANDS))
    a2, v2 = stack(s2, len(S2_BANDS))
    return Series(
        dates=tuple(dates),
        s1=a1,
        s2=a2,
        s1_valid=v1,
        s2_valid=v2,
        crs=str(prof0["crs"]),
        transform=tuple(float(v) for v in tuple(prof0["transform"])[:6]),
    )


def choose_guides(usable: np.ndarray, days: np.ndarray, target: int, n: int, both_sides: bool = True) -> np.ndarray:
    """(n, y, x) date indices of the guides of each pixel for date ``target``; −1 where none is left.

    ``usable`` (date, y, x): the pixel may guide (target clear and source valid). The target date
    itself is never a guide.
    """
    if n < 1:
        raise ValueError(f"choose_guides: n={n} must be ≥ 1")
    out = np.full((n, *usable.shape[1:]), -1, dtype=np.int64)
    if both_sides and n >= 2:
        out[0], out[1] = bracketing_dates(usable, days, target)
    dist = np.abs(days - days[target])
    for g in np.lexsort((days, dist)):  # nearest first, ties: the earlier date
        if g == target:
            continue
        cand = usable[g] & (out < 0).any(axis=0) & ~(out == g).any(axis=0)
        if not cand.any():
            continue
        first_empty = np.argmax(out < 0, axis=0)
        yy, xx = np.nonzero(cand)
        out[first_empty[yy, xx], yy, xx] = g
    return out


def bracketing_dates(usable: np.ndarray, days: np.ndarray, target: int) -> tuple[np.ndarray, np.ndarray]:
    """Per pixel, the index of the nearest usable date strictly before and after ``target`` (−1: none)."""
    shape = usable.shape[1:]
    before = np.full(shape, -1, dtype=np.int64)
    after = np.full(shape, -1, dtype=np.int64)
    t = days[target]
    for g in np.argsort(days, kind="stable"):
        if days[g] < t:
            before[usable[g]] = g  # later dates overwrite: ends with the nearest before
    for g in np.argsort(days, kind="stable")[::-1]:
        if days[g] > t:
            after[usable[g]] = g  # earlier dates overwrite: ends with the nearest after
    return before, after


def _gather(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """values (date, band, y, x) at per-pixel date idx (y, x) → (band, y, x); NaN where idx < 0."""
    safe = np.clip(idx, 0, values.shape[0] - 1)
    out = np.take_along_axis(values, safe[None, None], axis=0)[0]
    return np.where(idx[None] >= 0, out, np.nan).astype(np.float32)


def linear_interpolation(values: np.ndarray, usable: np.ndarray, days: np.ndarray, target: int) -> np.ndarray:
    """Per-pixel linear interpolation in time between the nearest usable dates before and after.

    Where only one side exists, that date's value (constant extrapolation); NaN where neither does.
    """
    before, after = bracketing_dates(usable, days, target)
    vb, va = _gather(values, before), _gather(values, after)
    tb = np.where(before >= 0, days[np.clip(before, 0, None)], np.nan)
    ta = np.where(after >= 0, days[np.clip(after, 0, None)], np.nan)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = (days[target] - tb) / (ta - tb)
    both = (before >= 0) & (after >= 0)
    out = np.where(both[None], vb + (va - vb) * frac[None], np.where(before[None] >= 0, vb, va))
    return out.astype(np.float32)


def nearest_clear(values: np.ndarray, usable: np.ndarray, days: np.ndarray, target: int) -> np.ndarray:
    """Per pixel, the value of the usable date nearest in time (ties: the earlier); NaN where none."""
    idx = choose_guides(usable, days, target, 1, both_sides=False)[0]
    return _gather(values, idx)
