"""Stack loading, fixed physical normalisation and patch sampling.

Governing text: docs/CONTRACTS.md ("Stack NetCDF"), DESIGN §6, paper §IV-C.1 / §IV-D.1.

- Every band is normalised by its **fixed physical range** ``[lo, hi]`` from the stack attrs
  ``source_range`` / ``target_range`` (JSON): x_n = (clip(x, lo, hi) − lo) / (hi − lo). Differences
  are taken between normalised images, so they live in [−1, 1]. The ranges go into the checkpoint.
- A pixel of a date is usable where its validity flag is set and all its bands are finite. Network
  inputs get 0 where unusable (the loss and the outputs never use such pixels).
- Patches (``patch_px`` of :class:`pipeline_lib.model.params.TrainParams`, a multiple of 2^levels, so
  not the paper's 50) come only from wholly valid areas. An **epoch** is one pass over the
  non-overlapping patch grid of the valid area; each epoch shifts that grid by a random offset (< one patch) — on an axis
  shorter than two patches, folded into the slack the grid leaves (``(n − patch) mod patch`` px: a
  64 px patch on a 100 px grid shifts by 0–36 px, on a 64 px grid not at all), so every axis holds
  at least one whole patch — and visits its patches in random order, each with a random ordered guide pair (j, k) valid over the whole
  patch (so with two guides the reverse pair kj is the free augmentation of DESIGN §6) and, when
  ``augment`` is on, one of the 8 flips/rotations (our choice: the paper states no augmentation).
  When clouds or nodata leave no fully valid patch on an epoch's shifted grid, the epoch draws as
  many patches as the valid area holds from all fully valid origins (stride 1) instead, so no epoch
  is empty while any fully valid patch exists. :func:`fit_patch_px` picks the training patch:
  ``patch_px`` when a fully valid patch of that size exists, else the largest multiple of 2^levels
  (down to 2^levels, i.e. 32 px) that has one — small grids (64 × 64, 100 × 101) and cloudy ones train.
- All randomness of an epoch derives from ``(seed, epoch)``, so a resumed run replays it exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from pipeline_lib.errors import ModelError
from pipeline_lib.model.params import TASKS
from pipeline_lib.model.variants import networks
from pipeline_lib.stacks import open_stack

__all__ = [
    "TASKS",
    "VARIANTS",
    "StackData",
    "load_stack",
    "normalise",
    "denormalise_diff",
    "patch_origins",
    "valid_origins",
    "fit_patch_px",
    "epoch_patches",
    "dihedral",
]

#: Trained variants, from the registry (:mod:`pipeline_lib.model.variants`), shortcut-fix candidates included.
VARIANTS = networks()


@dataclass(frozen=True)
class StackData:
    """A stack in normalised units. Arrays are float32 with 0 where unusable; masks are bool."""

    s_i: np.ndarray  # (band_s, y, x)
    s_g: np.ndarray  # (guide, band_s, y, x)
    t_g: np.ndarray  # (guide, band_t, y, x)
    valid_i: np.ndarray  # (y, x)
    valid_g: np.ndarray  # (guide, y, x)
    band_s: list[str]
    band_t: list[str]
    source_range: np.ndarray  # (band_s, 2)
    target_range: np.ndarray  # (band_t, 2)
    task: str
    experiment: str
    guide_dates: list[str]
    target_date: str
    crs: str
    transform: tuple[float, ...]
    t_g_phys: np.ndarray  # (guide, band_t, y, x) physical units, NaN where unusable

    @property
    def n_guides(self) -> int:
        return int(self.s_g.shape[0])


def normalise(x: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """(clip(x, lo, hi) − lo)/(hi − lo) per band; ``x`` has the band axis at −3. NaN stays NaN."""
    lo = ranges[:, 0].reshape(-1, 1, 1)
    hi = ranges[:, 1].reshape(-1, 1, 1)
    return np.asarray(((np.clip(x, lo, hi) - lo) / (hi - lo)).astype(np.float32))


def denormalise_diff(d: np.ndarray, ranges: np.ndarray) -> np.ndarray:
    """A normalised difference (band, y, x) back to physical units: d·(hi − lo)."""
    return np.asarray((d * (ranges[:, 1] - ranges[:, 0]).reshape(-1, 1, 1)).astype(np.float32))


def _ranges(ds: xr.Dataset, key: str, bands: list[str], path: Path) -> np.ndarray:
    raw = ds.attrs.get(key)
    if raw is None:
        raise ModelError(f"{path}: attr {key!r} missing; rebuild the stack (stacks.run_stack writes it)")
    try:
        val = json.loads(raw) if isinstance(raw, str) else raw
        if isinstance(val, dict):
            val = [val[b] for b in bands]
        arr = np.asarray(val, dtype=np.float64).reshape(len(bands), 2)
    except (ValueError, KeyError, TypeError) as exc:
        raise ModelError(f"{path}: attr {key!r}={raw!r} is not [lo, hi] per band for {bands}; rebuild it") from exc
    if not np.all(arr[:, 1] > arr[:, 0]):
        raise ModelError(f"{path}: attr {key!r}={raw!r} needs hi > lo for every band")
    return arr


def load_stack(path: Path) -> StackData:
    """Read a stack NetCDF (CONTRACTS.md) into normalised arrays and validity masks."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: stack not found; run the stacks rule first")
    need = ("S_i", "S_g", "T_g", "valid_i", "valid_g")
    ds = open_stack(path)  # loaded, file closed, refused if it holds T_i
    missing = [v for v in need if v not in ds]
    if missing:
        raise ModelError(f"{path}: variables {missing} missing; rebuild the stack (CONTRACTS.md layout)")
    band_s = [str(b) for b in ds["band_s"].values]
    band_t = [str(b) for b in ds["band_t"].values]
    s_range = _ranges(ds, "source_range", band_s, path)
    t_range = _ranges(ds, "target_range", band_t, path)
    s_i = ds["S_i"].transpose("band_s", "y", "x").values.astype(np.float32)
    s_g = ds["S_g"].transpose("guide", "band_s", "y", "x").values.astype(np.float32)
    t_g = ds["T_g"].transpose("guide", "band_t", "y", "x").values.astype(np.float32)
    if s_g.shape[0] < 2:
        raise ModelError(f"{path}: {s_g.shape[0]} guide date(s); TIRSIT needs at least 2")
    valid_i = ds["valid_i"].values.astype(bool) & np.isfinite(s_i).all(axis=0)
    valid_g = (
        ds["valid_g"].transpose("guide", "y", "x").values.astype(bool)
        & np.isfinite(s_g).all(axis=1)
        & np.isfinite(t_g).all(axis=1)
    )
    sn_i = np.where(valid_i, normalise(s_i, s_range), 0.0).astype(np.float32)
    sn_g = np.where(valid_g[:, None], normalise(s_g, s_range), 0.0).astype(np.float32)
    tn_g = np.where(valid_g[:, None], normalise(t_g, t_range), 0.0).astype(np.float32)
    t_phys = np.where(valid_g[:, None], t_g, np.nan).astype(np.float32)
    transform = ds.attrs.get("transform")
    if transform is None:
        raise ModelError(f"{path}: attr 'transform' missing; rebuild the stack (CONTRACTS.md layout)")
    transform_t = tuple(float(v) for v in (json.loads(transform) if isinstance(transform, str) else transform))
    dates = ds["guide_date"].values if "guide_date" in ds.coords else np.arange(s_g.shape[0])
    return StackData(
        s_i=sn_i,
        s_g=sn_g,
        t_g=tn_g,
        valid_i=valid_i,
        valid_g=valid_g,
        band_s=band_s,
        band_t=band_t,
        source_range=s_range,
        target_range=t_range,
        task=str(ds.attrs.get("task", "")),
        experiment=str(ds.attrs.get("experiment", path.stem)),
        guide_dates=[str(d) for d in dates],
        target_date=str(ds.attrs.get("target_date", "")),
        crs=str(ds.attrs.get("crs", "")),
        transform=transform_t,
        t_g_phys=t_phys,
    )


def patch_origins(valid: np.ndarray, patch: int, offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """(n, 2) top-left corners of the non-overlapping patch grid (shifted by ``offset``) fully inside ``valid``.

    ``valid`` may be (y, x) or (..., y, x); the result then has shape (..., ny, nx) booleans instead.
    """
    h, w = valid.shape[-2:]
    oy, ox = offset
    ys = np.arange(oy, h - patch + 1, patch)
    xs = np.arange(ox, w - patch + 1, patch)
    integ = np.zeros((*valid.shape[:-2], h + 1, w + 1), dtype=np.int64)
    integ[..., 1:, 1:] = valid.astype(np.int64).cumsum(-2).cumsum(-1)
    y0, x0 = np.meshgrid(ys, xs, indexing="ij")
    count = (
        integ[..., y0 + patch, x0 + patch]
        - integ[..., y0, x0 + patch]
        - integ[..., y0 + patch, x0]
        + integ[..., y0, x0]
    )
    full = count == patch * patch
    if valid.ndim == 2:
        return np.stack([y0[full], x0[full]], axis=1)
    return np.asarray(full)


def valid_origins(valid: np.ndarray, patch: int) -> np.ndarray:
    """(..., y, x) booleans: the ``patch``-sized window with top-left corner (y, x) is fully inside ``valid``.

    Every origin (stride 1); the result has ``max(0, n − patch + 1)`` entries per axis.
    """
    h, w = valid.shape[-2:]
    if patch > h or patch > w:
        return np.zeros((*valid.shape[:-2], 0, 0), dtype=bool)
    integ = np.zeros((*valid.shape[:-2], h + 1, w + 1), dtype=np.int64)
    integ[..., 1:, 1:] = valid.astype(np.int64).cumsum(-2).cumsum(-1)
    count = (
        integ[..., patch:, patch:]
        - integ[..., :-patch, patch:]
        - integ[..., patch:, :-patch]
        + integ[..., :-patch, :-patch]
    )
    return np.asarray(count == patch * patch)


def _pair_masks(
    valid_i: np.ndarray | None, valid_g: np.ndarray, pairs: bool
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """The guide combinations of one training sample and, per combination, where all its inputs are valid."""
    n = valid_g.shape[0]
    if pairs:
        if valid_i is None:
            raise ValueError("epoch_patches: pairs=True needs valid_i")
        combos = [(a, b) for a in range(n) for b in range(n) if a != b]
        return combos, np.stack([valid_i & valid_g[a] & valid_g[b] for a, b in combos])
    return [(a, a) for a in range(n)], np.asarray(valid_g)


def fit_patch_px(valid_i: np.ndarray | None, valid_g: np.ndarray, patch: int, multiple: int, pairs: bool) -> int:
    """The training patch size: ``patch`` if any fully valid patch of that size exists, else the largest
    smaller multiple of ``multiple`` that has one; 0 when not even a ``multiple``-px patch is fully valid.
    """
    _, masks = _pair_masks(valid_i, valid_g, pairs)
    for size in range(int(patch), int(multiple) - 1, -int(multiple)):
        if size > 0 and valid_origins(masks, size).any():
            return size
    return 0


def _axis_offset(rng: np.random.Generator, n: int, patch: int) -> int:
    """Random shift (< one patch) of the patch grid along an axis of ``n`` px.

    A shift that would leave no whole patch on the axis (only possible when n < 2·patch) is folded
    into the slack the grid leaves, ``(n − patch) mod patch``; larger grids keep the plain shift.
    """
    offset = int(rng.integers(patch))
    if n - offset < patch:
        slack = (n - patch) % patch if n >= patch else 0
        offset %= slack + 1
    return offset


def epoch_patches(
    valid_i: np.ndarray | None, valid_g: np.ndarray, patch: int, seed: int, epoch: int, pairs: bool
) -> np.ndarray:
    """Patches of one epoch: rows (y, x, a, b, d) — origin, guide(s) and dihedral code, shuffled.

    ``pairs=True`` (TIRSIT): (a, b) = (j, k) ordered distinct guides with valid_i, valid_g[j],
    valid_g[k] all true over the patch. ``pairs=False`` (pix2pix): a = b = one guide valid over it.
    The rows come from the randomly shifted non-overlapping patch grid; when that grid holds no fully
    valid patch, from a random draw among all fully valid origins (as many as the valid area holds).
    """
    rng = np.random.default_rng([seed, epoch])
    h, w = valid_g.shape[-2:]
    offset = (_axis_offset(rng, h, patch), _axis_offset(rng, w, patch))
    combos, masks = _pair_masks(valid_i, valid_g, pairs)
    full = patch_origins(masks, patch, offset)  # (combo, ny, nx)
    iy, ix = np.nonzero(full.any(axis=0))
    oy = offset[0] + iy * patch
    ox = offset[1] + ix * patch
    ok = full[:, iy, ix]  # (combo, n)
    if iy.size == 0:
        every = valid_origins(masks, patch)  # (combo, h - patch + 1, w - patch + 1)
        ys, xs = np.nonzero(every.any(axis=0)) if every.size else (np.zeros(0, int), np.zeros(0, int))
        if ys.size:
            area = int(masks.any(axis=0).sum())
            take = rng.permutation(ys.size)[: max(1, min(ys.size, area // (patch * patch)))]
            oy, ox = ys[take], xs[take]
            ok = every[:, oy, ox]
    # random combo among those valid at each location: argmax of uniform noise restricted to valid ones
    noise = rng.random((len(combos), oy.size))
    noise[~ok] = -1.0
    choice = noise.argmax(axis=0)
    codes = rng.integers(8, size=oy.size)
    order = rng.permutation(oy.size)
    combo_arr = np.asarray(combos, dtype=np.int64).reshape(-1, 2)
    rows = np.stack(
        [
            np.asarray(oy, dtype=np.int64),
            np.asarray(ox, dtype=np.int64),
            combo_arr[choice, 0],
            combo_arr[choice, 1],
            codes,
        ],
        axis=1,
    )
    return rows[order]


def dihedral(x: np.ndarray, code: int) -> np.ndarray:
    """One of the 8 flips/rotations of the last two axes (code 0 = identity)."""
    if code & 4:
        x = np.swapaxes(x, -1, -2)
    if code & 2:
        x = x[..., ::-1, :]
    if code & 1:
        x = x[..., :, ::-1]
    return np.ascontiguousarray(x)
