"""Honest evaluation of the gap fill: real cloud masks of other dates laid over clear dates (DESIGN §8).

Governing text: DESIGN §7 (metrics, changed pixels).

- :func:`borrow_masks`: evaluation dates are (nearly) clear dates; each gets the real cloud/shadow
  mask of another date of the same series whose cloud cover is partial. Evaluation dates are never
  neighbours among the clear dates, so every masked pixel keeps clear observations on both sides.
- The masks are applied to the series *before* training (:meth:`Series.with_s2_valid`): the model
  never sees the masked truth, neither as target nor as guide.
- :func:`score_date`: only masked pixels that are truly clear are scored, for every method on the
  same pixels (all methods finite there); metrics per band (RMSE, SSIM, CC; :mod:`pipeline_lib.metrics`),
  all and ``changed`` (top quartile of |truth − blend| among the scored pixels).
- The uncertainty band is checked against the error: Spearman ρ between the uncertainty and the
  mean-over-bands |error| over all masked pixels (with two or more guides).
- :func:`summarise`: per method and band, RMSE pooled over all scored pixels of all dates; SSIM and
  CC averaged over dates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import stats

from pipeline_lib.gapfill.model import FillParams
from pipeline_lib.gapfill.product import fill_date
from pipeline_lib.gapfill.series import S2_BANDS, Series, day_numbers, linear_interpolation, nearest_clear
from pipeline_lib.metrics import band_metrics
from pipeline_lib.model.evaluate import changed_mask
from pipeline_lib.stacks import PHYSICAL_RANGES

__all__ = ["METHODS", "BLEND_TASKS", "borrow_masks", "apply_masks", "score_date", "summarise", "evaluate_fill"]

#: Methods scored: the model and the three baselines.
METHODS = ("gapfill", "linear", "nearest", "blend")


def borrow_masks(
    series: Series,
    seed: int,
    max_dates: int,
    min_clear: float,
    cloud_range: tuple[float, float],
) -> dict[int, tuple[int, np.ndarray]]:
    """{evaluation date index: (donor date index, mask (y, x) bool)}; see the module docstring."""
    rng = np.random.default_rng(seed)
    clear_frac = series.s2_valid.mean(axis=(1, 2))
    s1_frac = series.s1_valid.mean(axis=(1, 2))
    clear_dates = [int(i) for i in np.flatnonzero(clear_frac >= min_clear)]
    eligible = [i for i in clear_dates if s1_frac[i] >= min_clear]
    donors = [
        int(i)
        for i in np.flatnonzero((1 - clear_frac >= cloud_range[0]) & (1 - clear_frac <= cloud_range[1]))
        if s1_frac[i] > 0
    ]
    if not donors or not eligible:
        return {}
    # Never two neighbouring clear dates: keep every other eligible one, skipping the first and last
    # clear dates (a masked pixel there would have one side only).
    inner = [i for i in eligible if clear_dates[0] < i < clear_dates[-1]]
    picked: list[int] = []
    for i in inner:
        pos = clear_dates.index(i)
        if picked and clear_dates.index(picked[-1]) >= pos - 1:
            continue
        picked.append(i)
    if len(picked) > max_dates:
        picked = sorted(int(v) for v in rng.choice(picked, size=max_dates, replace=False))
    out: dict[int, tuple[int, np.ndarray]] = {}
    for i in picked:
        pool = [d for d in donors if d != i]
        if not pool:
            continue
        donor = int(rng.choice(pool))
        out[i] = (donor, ~series.s2_valid[donor] & series.s2_valid[i])
    return out


def score_date(truth: np.ndarray, mask: np.ndarray, preds: dict[str, np.ndarray], bands: list[str]) -> dict[str, Any]:
    """Metrics of every method over ``mask`` pixels where the truth and all predictions are finite."""
    common = mask & np.isfinite(truth).all(axis=0)
    for arr in preds.values():
        common &= np.isfinite(arr).all(axis=0)
    changed, thr = changed_mask(truth, preds["blend"], common) if "blend" in preds else (common, float("nan"))
    ranges = [float(PHYSICAL_RANGES[b][1] - PHYSICAL_RANGES[b][0]) for b in bands]
    out: dict[str, Any] = {"all": {}, "changed": {}, "sq": {}, "n": int(common.sum()), "n_changed": int(changed.sum())}
    for name, arr in preds.items():
        out["all"][name] = band_metrics(arr, truth, bands, ranges, common)
        out["changed"][name] = band_metrics(arr, truth, bands, ranges, changed)
        err = (arr - truth)[:, common]
        errc = (arr - truth)[:, changed]
        out["sq"][name] = {
            "all": (err.astype(np.float64) ** 2).sum(axis=1).tolist(),
            "changed": (errc.astype(np.float64) ** 2).sum(axis=1).tolist(),
        }
    out["changed_threshold"] = thr
    return out


def summarise(per_date: dict[str, dict[str, Any]], bands: list[str]) -> dict[str, Any]:
    """Pooled RMSE and date-mean SSIM/CC per method, band and group (all, changed)."""
    out: dict[str, Any] = {}
    methods = sorted({m for d in per_date.values() for m in d["all"]})
    for group, count_key in (("all", "n"), ("changed", "n_changed")):
        block: dict[str, Any] = {}
        n = sum(d[count_key] for d in per_date.values())
        for m in methods:
            sq = np.sum([d["sq"][m][group] for d in per_date.values() if m in d["sq"]], axis=0)
            rmse = {b: float(np.sqrt(sq[i] / n)) if n else float("nan") for i, b in enumerate(bands)}
            rmse["mean"] = float(np.mean([rmse[b] for b in bands]))
            res: dict[str, dict[str, float]] = {"rmse": rmse}
            for metric in ("ssim", "cc"):
                vals = {
                    b: float(np.nanmean([d[group][m][metric][b] for d in per_date.values()]))
                    if any(np.isfinite(d[group][m][metric][b]) for d in per_date.values())
                    else float("nan")
                    for b in bands
                }
                finite = [v for v in vals.values() if np.isfinite(v)]
                vals["mean"] = float(np.mean(finite)) if finite else float("nan")
                res[metric] = vals
            block[m] = res
        block["pixels"] = n
        out[group] = block
    return out


def evaluate_fill(
    series: Series,
    masks: dict[int, tuple[int, np.ndarray]],
    model_sets: dict[str, tuple[dict[str, dict[str, Any] | None], str]],
    fill: FillParams,
    blend_route: str,
    *,
    tile_px: int,
    overlap_px: int,
) -> dict[str, Any]:
    """Score every method on the masked pixels of the evaluation dates.

    ``series`` is the *truth* series; the masks are applied here before prediction (train the models
    on ``series.with_s2_valid(apply_masks(...))`` so they never see the masked truth either).
    ``model_sets``: {method name: (checkpoints per task, SWIR route)}. Returns
    ``{"dates": {date: {"visible"|"swir": score_date(...), "donor": date}}, "visible"|"swir": summarise(...)}``.
    """
    masked = series.with_s2_valid(apply_masks(series.s2_valid, masks))
    days = day_numbers(series.dates)
    kw: dict[str, Any] = {"tile_px": tile_px, "overlap_px": overlap_px}
    per_date: dict[str, Any] = {}
    unc_err: dict[str, list[np.ndarray]] = {name: [] for name in model_sets}
    for e, (donor, mask) in sorted(masks.items()):
        truth = series.s2[e]
        preds: dict[str, np.ndarray] = {}
        for name, (models, route) in model_sets.items():
            preds[name], _, unc = fill_date(masked, e, models, fill, route, **kw)
            err = np.abs(preds[name] - truth).mean(axis=0)
            ok = mask & np.isfinite(err) & np.isfinite(unc)
            unc_err[name].append(np.stack([unc[ok], err[ok]]))
        preds["blend"] = fill_date(masked, e, dict.fromkeys(BLEND_TASKS), fill, blend_route, **kw)[0]
        preds["linear"] = linear_interpolation(masked.s2, masked.s2_valid, days, e)
        preds["nearest"] = nearest_clear(masked.s2, masked.s2_valid, days, e)
        entry: dict[str, Any] = {"donor": series.dates[donor], "masked_pixels": int(mask.sum())}
        for group, sl in (("visible", slice(0, 3)), ("swir", slice(3, 5))):
            entry[group] = score_date(truth[sl], mask, {k: v[sl] for k, v in preds.items()}, list(S2_BANDS[sl]))
        per_date[series.dates[e]] = entry
    out: dict[str, Any] = {"dates": per_date}
    for group, sl in (("visible", slice(0, 3)), ("swir", slice(3, 5))):
        out[group] = summarise({d: v[group] for d, v in per_date.items()}, list(S2_BANDS[sl]))
    rho: dict[str, float] = {}
    for name, parts in unc_err.items():
        both = np.concatenate(parts, axis=1) if parts else np.zeros((2, 0))
        rho[name] = float(stats.spearmanr(both[0], both[1]).statistic) if both.shape[1] > 2 else float("nan")
    out["spearman_uncertainty_abs_error"] = rho
    return out


BLEND_TASKS = ("sar_to_visible", "sar_to_swir", "visible_to_swir")


def apply_masks(s2_valid: np.ndarray, masks: dict[int, tuple[int, np.ndarray]]) -> np.ndarray:
    """The clear masks with every evaluation mask removed from its date."""
    out = s2_valid.copy()
    for e, (_, mask) in masks.items():
        out[e] &= ~mask
    return out
