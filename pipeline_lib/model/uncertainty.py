"""Ranked uncertainty of ``selected``: three truth-free signals combined by rank (DESIGN §6, uncertainty).

The guide spread alone (Σ w_g w_h |R_g − R_h| / Σ w_g w_h) ranked the blend's absolute error with
Spearman ρ ≥ 0.5 in 1 of the 7 real test experiments (BENCHMARKS.md, "Which truth-free signal ranks the
blend's error"). The ranked uncertainty orders the pixels by the sum of the within-image ranks of

- the spread (mean over bands), ``size`` × ``size`` mean (where the guides disagree);
- the source change Σ_g w_g · mean_c |S_i − S_g| (normalised units), ``size`` × ``size`` mean (what
  changed since the guide dates, as the blend weights see it);
- the predicted change |Σ_g w_g β(S_i − S_g)| (mean over target bands): the source change in target
  units, β a linear map fitted on the guide dates' own changes (T_h − T_g on S_h − S_g, sources
  ``size`` × ``size`` mean-filtered; at most :data:`FIT_PIXELS` pixels per guide pair, and the prediction
  per pixel without a pixels × channels design matrix, so a tile's memory stays bounded).

The ranks are then mapped onto the spread's own distribution, band by band (the pixel with score
quantile q gets the spread's q-quantile of that band), so the raster keeps reflectance units and the
spread's range while its order is the combination's. Only the stack (S_i, the guides) and the
selected method's spread are read; never the target image. The rule was chosen among 249 rank sums and
maxima on validation experiments that use none of the test dates (``benchmarks/bench_uncertainty.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import stats

from pipeline_lib.errors import ConfigError, ModelError
from pipeline_lib.model.baselines import guide_weights, masked_mean_filter

if TYPE_CHECKING:
    from pipeline_lib.model.data import StackData

__all__ = [
    "UNCERTAINTY_RULES",
    "RankedFromStack",
    "source_change",
    "predicted_change",
    "rank01",
    "ranked_uncertainty",
    "stack_ranked_uncertainty",
]

UNCERTAINTY_RULES = ("spread", "ranked")
"""``spread``: the selected method's raster as it is; ``ranked``: :func:`ranked_uncertainty`."""


@dataclass(frozen=True)
class RankedFromStack:
    """The ranked rule for one test experiment: its stack, the task's blend-weight filter and k
    (``train.mean_filter``, ``train.k``) and the signals' filter (schema ``select.uncertainty_px``)."""

    stack: Path
    mean_filter: int
    k: float
    size: int

    def __post_init__(self) -> None:
        if self.size < 1:
            raise ConfigError(f"select.uncertainty_px={self.size} must be ≥ 1")

    def apply(self, spread: np.ndarray) -> np.ndarray:
        """(band, y, x) ranked uncertainty from ``spread`` (the selected method's raster) and the stack."""
        from pipeline_lib.model.data import load_stack  # xarray/netCDF4: only the select job needs it

        return stack_ranked_uncertainty(spread, load_stack(self.stack), self.mean_filter, self.k, self.size)


def source_change(s_i: np.ndarray, s_g: np.ndarray, w: np.ndarray, ok: np.ndarray, size: int) -> np.ndarray:
    """(y, x) Σ_g w_g · mean_c |S_i − S_g|, ``size`` × ``size`` mean over ``ok`` pixels."""
    wz = np.nan_to_num(w)
    change = sum(wz[g] * np.abs(s_i - s_g[g]).mean(axis=0) for g in range(s_g.shape[0]))
    return masked_mean_filter(np.asarray(change), ok, size)


def _smooth(s: np.ndarray, ok: np.ndarray, size: int) -> np.ndarray:
    """(channel, y, x) ``size`` × ``size`` mean over ``ok`` pixels, 0 where none is."""
    return np.asarray(np.nan_to_num(np.stack([masked_mean_filter(c, ok, size) for c in s])))


#: pixels per guide pair used to fit β at most (a deterministic subset beyond it: the fit has 1 + channels
#: unknowns per target band, so a few hundred thousand pixels pin it down and memory stays bounded on a tile)
FIT_PIXELS = 200_000


def predicted_change(data: StackData, w: np.ndarray, ok: np.ndarray, size: int) -> np.ndarray:
    """(y, x) |Σ_g w_g β(S_i − S_g)| (mean over target bands), β fitted on the guide pairs' changes."""
    sm = [_smooth(data.s_i, ok, size)] + [_smooth(s, data.valid_g[g], size) for g, s in enumerate(data.s_g)]
    rng = np.random.default_rng(0)
    xs, ys = [], []
    for g in range(data.n_guides):
        for h in range(g + 1, data.n_guides):
            dt = (data.t_g_phys[h] - data.t_g_phys[g]).reshape(len(data.band_t), -1).T
            use = np.flatnonzero((data.valid_g[g] & data.valid_g[h]).ravel() & np.isfinite(dt).all(axis=1))
            if use.size > FIT_PIXELS:
                use = np.sort(rng.choice(use, FIT_PIXELS, replace=False))
            ds = np.nan_to_num((sm[h + 1] - sm[g + 1]).reshape(len(sm[0]), -1)[:, use]).T.astype(np.float64)
            xs.append(np.concatenate([np.ones((use.size, 1)), ds], axis=1))  # a constant and the channels
            ys.append(dt[use])
    x, y = np.concatenate(xs), np.concatenate(ys)
    if x.shape[0] <= x.shape[1]:  # too few pixels to fit β: no predicted change
        return np.zeros(ok.shape)
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)  # (1 + channels, target bands); the offset is dropped:
    wz = np.nan_to_num(w)  # a change predicted from S_i − S_g has none
    pred = np.zeros((beta.shape[1], *ok.shape))
    for g in range(data.n_guides):
        d = sm[0] - sm[g + 1]
        pred += wz[g][None] * np.tensordot(beta[1:].T, d, axes=1)  # per pixel, no (pixels × channels) matrix
    return np.asarray(np.abs(pred).mean(axis=0))


def rank01(x: np.ndarray, ok: np.ndarray) -> np.ndarray:
    """Ranks of ``x`` over the ``ok`` pixels scaled to (0, 1) (ties averaged); NaN elsewhere."""
    out = np.full(x.shape, np.nan)
    if ok.any():
        out[ok] = (stats.rankdata(x[ok]) - 0.5) / int(ok.sum())
    return out


def ranked_uncertainty(spread: np.ndarray, data: StackData, w: np.ndarray, size: int) -> np.ndarray:
    """(band, y, x) uncertainty: the rank sum of spread, source change and predicted change, mapped onto
    each band's spread quantiles. NaN where the spread is NaN or S_i is invalid."""
    ok = data.valid_i & np.isfinite(spread).all(axis=0)
    out = np.full(spread.shape, np.nan, dtype=np.float32)
    if not ok.any():
        return out
    signals = (
        masked_mean_filter(spread.mean(axis=0), ok, size),
        source_change(data.s_i, data.s_g, w, ok, size),
        predicted_change(data, w, ok, size),
    )
    q = rank01(np.sum([rank01(np.nan_to_num(s), ok) for s in signals], axis=0), ok)
    for b in range(spread.shape[0]):
        out[b][ok] = _quantiles(spread[b][ok], q[ok])
    return out


def _quantiles(values: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``numpy.quantile(values, q)`` (linear method) for one q per pixel: one sort and a linear interpolation.
    ``numpy.quantile`` partitions once per distinct q — 29 s per band on a 512² grid, against 0.03 s."""
    ordered = np.sort(values)
    return np.asarray(np.interp(q * (ordered.size - 1), np.arange(ordered.size), ordered))


def stack_ranked_uncertainty(spread: np.ndarray, data: StackData, mean_filter: int, k: float, size: int) -> np.ndarray:
    """:func:`ranked_uncertainty` with the blend weights of the stack (mean filter and k of the task)."""
    w = guide_weights(data.s_i, data.s_g, data.valid_i, data.valid_g, mean_filter, k)
    if spread.shape[1:] != data.valid_i.shape:
        raise ModelError(f"uncertainty grid {spread.shape[1:]} is not the stack's {data.valid_i.shape}")
    return ranked_uncertainty(spread, data, w, size)
