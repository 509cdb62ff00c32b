"""One TIRSIT model per region and task, trained on the clear pairs of a whole series; per-pixel guided fill.

Governing text: DESIGN §6 (the method, N guides), §8 (gap-filled series); paper §III.

**Tasks** (:data:`SERIES_TASKS`): ``sar_to_visible`` (VV, VH → B04, B03, B02), ``sar_to_swir``
(VV, VH → B11, B12: SWIR directly from SAR, a third task) and ``visible_to_swir`` (B04, B03, B02 →
B11, B12; under a cloud its source is the *predicted* visible of the same date: the chained route).

**Training** (:func:`train_series`): the paper's optimisation step (:class:`pipeline_lib.model.train.Trainer`,
unchanged) on triplets drawn from the whole series instead of one fixed (i, j, k). A triplet is a
patch origin, a date i whose source is valid over the patch, and two guide dates j ≠ k among the
``pair_window`` dates nearest to i whose source *and* target are valid (clear) over the patch —
the guides prediction will use are the nearest clear dates, so training sees the same time gaps.
Patches are drawn at random origins; every draw derives from (seed, step), so a run is
reproducible. The number of steps is ``max_steps`` (or the paper's 80 epochs of the clear area of
one date pair, if smaller): the cost is fixed by the step budget and does not grow with the number
of dates; only reading the series does. lr switches to lr2 at the paper's epoch fraction
epochs1/(epochs1 + epochs2) of the steps; the discriminator (``tirsit`` only) trains for the first
disc_epochs/(epochs1 + epochs2).

**Fill of a date** (:func:`predict_date`): each pixel that needs a value gets its guides from
:func:`pipeline_lib.gapfill.series.choose_guides`; for every distinct guide date g in use the
network runs once (overlapping tiles) and gives R_g = T_g + G(S_i − S_g, T_g)·(hi − lo);
the network runs only on the window around the pixels that guide serves, grown by the tile overlap;
a pixel's value is Σ_s w_s R_{g_s} over its own guide slots, with w the softmax of −k·a_g (a_g the
mean-filtered |S_i − S_g|, the paper's eqs. 10–12 for N guides); the uncertainty is the weighted
pairwise spread of its reconstructions (|R_j − R_k| for two guides). The blend baseline is the same
with G ≡ 0.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pipeline_lib.errors import ModelError
from pipeline_lib.gapfill.series import SWIR, VISIBLE, Series, choose_guides, day_numbers
from pipeline_lib.model.baselines import masked_mean_filter, weighted_spread, weighted_sum
from pipeline_lib.model.data import denormalise_diff, dihedral, normalise
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.predict import predict_tiled
from pipeline_lib.model.train import (
    Trainer,
    _deterministic,
    build_generator,
    load_checkpoint,
    save_checkpoint,
    select_device,
    triplet_batch,
    variant_flags,
)
from pipeline_lib.stacks import PHYSICAL_RANGES

__all__ = [
    "SERIES_TASKS",
    "GAPFILL_VARIANTS",
    "CKPT_FORMAT",
    "SeriesTask",
    "series_task",
    "FillParams",
    "task_arrays",
    "sample_triplets",
    "train_series",
    "load_series_model",
    "predict_date",
]

_LOG = logging.getLogger(__name__)
CKPT_FORMAT = "tirsit-gapfill-1"
#: Guided variants usable for filling (they need a guide encoder or at least the difference path).
GAPFILL_VARIANTS = ("tirsit", "tirsit_noadv", "no_uc", "no_sg", "no_uc_sg")


@dataclass(frozen=True)
class SeriesTask:
    """Source and target bands of a series task; ``base`` names the paper task whose defaults apply."""

    name: str
    source: tuple[str, ...]
    target: tuple[str, ...]
    base: str


SERIES_TASKS: dict[str, SeriesTask] = {
    "sar_to_visible": SeriesTask("sar_to_visible", ("VV", "VH"), VISIBLE, "sar_to_visible"),
    "sar_to_swir": SeriesTask("sar_to_swir", ("VV", "VH"), SWIR, "sar_to_visible"),
    "visible_to_swir": SeriesTask("visible_to_swir", VISIBLE, SWIR, "visible_to_swir"),
}


def series_task(name: str) -> SeriesTask:
    """The :class:`SeriesTask` called ``name``; ModelError for an unknown one."""
    if name not in SERIES_TASKS:
        raise ModelError(f"gapfill task {name!r} is unknown; use one of {list(SERIES_TASKS)}")
    return SERIES_TASKS[name]


@dataclass(frozen=True)
class FillParams:
    """Settings of the gap-fill model (schema ``gapfill``, the only home of their defaults); checks in one place."""

    variant: str  # network variant of the one model per region and task
    guides: int  # guide dates per pixel
    both_sides: bool  # first two guides: nearest clear before and after
    pair_window: int  # training guides among the nearest clear dates of i
    max_steps: int
    seed: int

    @classmethod
    def defaults(cls, **overrides: Any) -> FillParams:
        """The schema's ``gapfill`` defaults with ``overrides`` (tests, benchmarks, tools without a region)."""
        from pipeline_lib.config import schema_defaults

        cfg = schema_defaults("gapfill")
        return cls(**{**{f: cfg[f] for f in cls.__dataclass_fields__}, **overrides})

    def __post_init__(self) -> None:
        if self.variant not in GAPFILL_VARIANTS:
            raise ModelError(f"gapfill.variant={self.variant!r} is unknown; use one of {list(GAPFILL_VARIANTS)}")
        if self.guides < 2:
            raise ModelError(f"gapfill.guides={self.guides} must be ≥ 2 (TIRSIT blends at least two guides)")
        if self.pair_window < 2:
            raise ModelError(f"gapfill.pair_window={self.pair_window} must be ≥ 2")
        if self.max_steps < 1:
            raise ModelError(f"gapfill.max_steps={self.max_steps} must be ≥ 1")


def _ranges(bands: tuple[str, ...]) -> np.ndarray:
    return np.array([PHYSICAL_RANGES[b] for b in bands], dtype=np.float64)


def task_arrays(series: Series, task: SeriesTask) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Normalised (source, target) (date, band, y, x) with 0 where unusable, and their validity masks."""
    src, tgt = series.band(task.source), series.band(task.target)
    sv = series.valid_of(task.source) & np.isfinite(src).all(axis=1)
    tv = series.s2_valid & np.isfinite(tgt).all(axis=1)
    sn = np.where(sv[:, None], normalise(np.nan_to_num(src), _ranges(task.source)), 0.0).astype(np.float32)
    tn = np.where(tv[:, None], normalise(np.nan_to_num(tgt), _ranges(task.target)), 0.0).astype(np.float32)
    return sn, tn, sv, tv


def _integral(mask: np.ndarray) -> np.ndarray:
    out = np.zeros((mask.shape[0], mask.shape[1] + 1, mask.shape[2] + 1), dtype=np.int32)
    out[:, 1:, 1:] = mask.astype(np.int32).cumsum(1).cumsum(2)
    return out


def sample_triplets(
    src_valid: np.ndarray,
    pair_valid: np.ndarray,
    days: np.ndarray,
    patch: int,
    count: int,
    window: int,
    rng: np.random.Generator,
    max_tries: int = 200,
) -> np.ndarray:
    """``count`` rows (y, x, i, j, k): patch origin, target date i, guides j ≠ k (see module docstring).

    ``src_valid``/``pair_valid`` are integral images (date, y+1, x+1) of the source-valid and the
    source-and-target-valid masks. Raises ModelError when ``max_tries``·count draws find no triplet.
    """
    _, hp, wp = src_valid.shape
    h, w = hp - 1, wp - 1
    if h < patch or w < patch:
        raise ModelError(f"gapfill: the grid ({h}×{w}) is smaller than patch_px={patch}; lower train.patch_px")
    full = patch * patch
    rows: list[tuple[int, int, int, int, int]] = []
    for _ in range(max_tries * count):
        if len(rows) == count:
            break
        y, x = int(rng.integers(h - patch + 1)), int(rng.integers(w - patch + 1))

        def cover(integ: np.ndarray, y: int = y, x: int = x) -> np.ndarray:
            c = integ[:, y + patch, x + patch] - integ[:, y, x + patch] - integ[:, y + patch, x] + integ[:, y, x]
            return np.asarray(c == full)

        ok_s, ok_p = cover(src_valid), cover(pair_valid)
        cand_i = np.flatnonzero(ok_s)
        if cand_i.size == 0:
            continue
        i = int(rng.choice(cand_i))
        cand_g = np.flatnonzero(ok_p)
        cand_g = cand_g[cand_g != i]
        if cand_g.size < 2:
            continue
        near = cand_g[np.lexsort((days[cand_g], np.abs(days[cand_g] - days[i])))][:window]
        j, k = (int(v) for v in rng.choice(near, size=2, replace=False))
        rows.append((y, x, i, j, k))
    if len(rows) < count:
        raise ModelError(
            f"gapfill: found {len(rows)} of {count} training patches of {patch} px with two clear guides;"
            " lower train.patch_px or add clear dates"
        )
    return np.asarray(rows, dtype=np.int64)


def _batch(
    sn: np.ndarray, tn: np.ndarray, rows: np.ndarray, patch: int, rng: np.random.Generator, augment: bool
) -> dict[str, np.ndarray]:
    """The Trainer batch (see :func:`pipeline_lib.model.train.make_batch`) for series triplets.

    Each patch gets one of the 8 flips/rotations when ``augment`` is on (the codes are drawn either way,
    so the random stream does not depend on it).
    """
    xs, guides, tj_, tk_, tjk, sjk = [], [], [], [], [], []
    codes = rng.integers(8, size=len(rows)) * int(augment)
    for (y, x, i, j, k), code in zip(rows.tolist(), codes.tolist(), strict=True):
        sl = (slice(y, y + patch), slice(x, x + patch))
        s_i, s_j, s_k = sn[i][:, sl[0], sl[1]], sn[j][:, sl[0], sl[1]], sn[k][:, sl[0], sl[1]]
        t_j, t_k = tn[j][:, sl[0], sl[1]], tn[k][:, sl[0], sl[1]]
        sjk.append(dihedral(s_j - s_k, code))
        xs.append(dihedral(np.stack([s_j - s_k, s_i - s_j, s_i - s_k]), code))
        guides.append(dihedral(np.stack([t_k, t_j]), code))
        tj_.append(dihedral(t_j, code))
        tk_.append(dihedral(t_k, code))
        tjk.append(dihedral(t_j - t_k, code))
    return triplet_batch(xs, guides, tjk, tj_, tk_, sjk)


def train_series(
    series: Series,
    task_name: str,
    fill: FillParams,
    params: TrainParams,
    threads: int = 1,
    device: str = "cpu",
    log: logging.Logger | None = None,
) -> dict[str, Any]:
    """Train one model for ``task_name`` on the whole series; returns the checkpoint dict (see :func:`save_model`).

    ``params`` are for the task's ``base`` (paper) task; ``fill`` sets the seed and the number of steps.
    """
    log = log or _LOG
    task = series_task(task_name)
    params.check_task(task.base, f"gapfill {task_name}")
    p = params.replace(seed=fill.seed, max_steps=None)
    torch.set_num_threads(max(1, int(threads)))
    dev = select_device(device, log)
    patch, bs = p.patch_px, p.batch_size
    sn, tn, sv, tv = task_arrays(series, task)
    days = day_numbers(series.dates)
    integ_s, integ_p = _integral(sv), _integral(sv & tv)
    total = int(fill.max_steps)
    e1, e2, ed = p.epochs1, p.epochs2, p.disc_epochs
    lr2_at, d_stop = round(total * e1 / (e1 + e2)), round(total * ed / (e1 + e2))
    trainer = Trainer(fill.variant, len(task.source), len(task.target), p, dev)
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    log.info(
        "gapfill train %s (%s): %d dates, %d steps, batch %d, patch %d",
        task_name,
        fill.variant,
        len(days),
        total,
        bs,
        patch,
    )
    with _deterministic(dev.type == "cpu"):
        for step in range(total):
            rng = np.random.default_rng([int(fill.seed), step])
            rows = sample_triplets(integ_s, integ_p, days, patch, bs, fill.pair_window, rng)
            trainer.set_lr(p.lr if step < lr2_at else p.lr2)
            losses = trainer.step(_batch(sn, tn, rows, patch, rng, p.augment), step < d_stop)
            history.append({"step": step + 1, **losses})
            if (step + 1) % p.log_every == 0 or step + 1 == total:
                log.info("step %d/%d rec=%.5f con=%.5f", step + 1, total, losses["rec"], losses["con"])
    seconds = time.perf_counter() - t0
    return {
        "format": CKPT_FORMAT,
        "task": task_name,
        "variant": fill.variant,
        "params": p.as_dict(),
        "fill": fill.__dict__,
        "band_s": list(task.source),
        "band_t": list(task.target),
        "source_range": _ranges(task.source).tolist(),
        "target_range": _ranges(task.target).tolist(),
        "generator": trainer.g.state_dict(),
        "history": history,
        "dates": list(series.dates),
        "train_seconds": seconds,
        "complete": math.isfinite(history[-1]["total"]) if history else False,
    }


def save_model(ckpt: dict[str, Any], path: Path) -> None:
    """Write a series checkpoint atomically."""
    save_checkpoint(ckpt, path)


def load_series_model(path: Path) -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_model` (on CPU)."""
    return load_checkpoint(path, CKPT_FORMAT, "gap-fill model not found; run the gapfill_train rule first")


def _net(ck: dict[str, Any] | None, device: torch.device) -> tuple[Any, bool]:
    if ck is None:
        return None, False
    p = TrainParams.from_checkpoint(ck["params"], f"gap-fill {ck['task']} model")
    g = build_generator(ck["variant"], len(ck["band_s"]), len(ck["band_t"]), p)
    g.load_state_dict(ck["generator"])
    g.to(device).eval()
    return g, variant_flags(ck["variant"])["guided"]


def _bbox(mask: np.ndarray, margin: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Row and column ranges [start, stop) of the true pixels of ``mask``, grown by ``margin``."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        (max(0, int(rows[0]) - margin), min(h, int(rows[-1]) + 1 + margin)),
        (max(0, int(cols[0]) - margin), min(w, int(cols[-1]) + 1 + margin)),
    )


def predict_date(
    series: Series,
    task_name: str,
    target: int,
    need: np.ndarray,
    ckpt: dict[str, Any] | None,
    fill: FillParams,
    source_override: np.ndarray | None = None,
    *,
    tile_px: int,
    overlap_px: int,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill the pixels ``need`` (y, x) of date ``target``: (prediction (band_t, y, x), uncertainty, guides).

    ``ckpt`` None gives the blend baseline (G ≡ 0). ``source_override`` (band_s, y, x, physical units,
    NaN where unknown) replaces the source of the target date (the chained route feeds the predicted
    visible). Outside ``need``, and where the source of the date or every guide is missing, NaN.
    ``guides`` is (n, y, x) of date indices (−1: none). The blend weights (mean filter s, slope k) are the
    schema's for the task's base task, with or without a network.
    """
    task = SERIES_TASKS[task_name]
    sn, tn, sv, tv = task_arrays(series, task)
    s_range, t_range = _ranges(task.source), _ranges(task.target)
    if source_override is not None:
        ok = np.isfinite(source_override).all(axis=0)
        sn = sn.copy()
        sv = sv.copy()
        sn[target] = np.where(ok, normalise(np.nan_to_num(source_override), s_range), 0.0)
        sv[target] = ok
    base = TrainParams.for_task(task.base)
    size, k = base.mean_filter, base.k
    days = day_numbers(series.dates)
    need = need & sv[target]
    guides = choose_guides(sv & tv, days, target, fill.guides, fill.both_sides)
    guides[:, ~need] = -1
    n_t = len(task.target)
    h, w = need.shape
    recon = np.full((fill.guides, n_t, h, w), np.nan, dtype=np.float32)
    logits = np.full((fill.guides, h, w), -np.inf)
    dev = torch.device(device)
    g_net, guided = _net(ckpt, dev)
    phys = series.band(task.target)
    for g in np.unique(guides[guides >= 0]).tolist():
        use = guides == g  # (slot, y, x)
        ok = sv[target] & sv[g] & tv[g]
        diff = sn[target] - sn[g]
        a = np.mean([np.abs(masked_mean_filter(diff[c], ok, size)) for c in range(diff.shape[0])], axis=0)
        r = phys[g].copy()
        if g_net is not None:
            inp = np.where(ok, diff, 0.0)
            if guided:
                inp = np.concatenate([inp, tn[g]])

            def fn(tiles: np.ndarray) -> np.ndarray:
                t = torch.from_numpy(np.ascontiguousarray(tiles, dtype=np.float32)).to(dev)
                x, gd = (t[:, : len(task.source)], t[:, len(task.source) :]) if guided else (t, None)
                with torch.inference_mode():
                    return np.asarray(g_net(x, gd).float().cpu().numpy())

            # Only the window around the pixels this guide serves (plus the tile overlap as context).
            (y0, y1), (x0, x1) = _bbox(use.any(axis=0), overlap_px)
            d = predict_tiled(fn, inp[:, y0:y1, x0:x1].astype(np.float32), n_t, tile_px, overlap_px)
            r[:, y0:y1, x0:x1] += denormalise_diff(d, t_range)
        for s in range(fill.guides):
            m = use[s]
            recon[s][:, m] = r[:, m]
            logits[s][m] = np.where(np.isfinite(a[m]), -k * a[m], -np.inf)
    top = logits.max(axis=0)
    with np.errstate(invalid="ignore", over="ignore"):
        e = np.exp(logits - top)
        wts = (e / e.sum(axis=0)).astype(np.float32)
    wts[:, ~np.isfinite(top)] = np.nan
    pred = weighted_sum(recon, wts)
    unc = weighted_spread(recon, wts)
    pred[:, ~need] = np.nan
    unc[:, ~need] = np.nan
    # A single guide: no spread to measure; the uncertainty stays NaN there (never claimed as 0).
    return pred, unc, guides
