"""Local guide weights (paper eqs. 10–12, generalised to N guides), the blend and neighbour baselines.

Paper §III-C: p_j = 1 / (1 + exp(−k·(|f_s * S_ik| − |f_s * S_ij|))), p_k = 1 − p_j, f_s an s×s mean
filter. DESIGN §6: computed on the *normalised* source differences, |·| averaged over channels.

For N guides (the paper's stated extension) the weights are a softmax of −k·a_g with
a_g = mean_c |f_s * S_ig|_c; for N = 2 this is exactly eq. 11. A guide is excluded (weight 0) where
its pair is unusable (valid_i and valid_g[g]); the mean filter is a normalised convolution over the
usable pixels (masked pixels do not pull the local mean), with reflecting borders. Where no guide is
usable the weights are NaN.

The **uncertainty** of a guided prediction is the weighted mean absolute pairwise difference of
the per-guide reconstructions, Σ_{g≠h} w_g w_h |R_g − R_h| / Σ_{g≠h} w_g w_h, which equals
|T̂_i^{j→i} − T̂_i^{k→i}| for two guides; NaN where fewer than two guides are usable.

Baselines (DESIGN §6): ``neighbour_j`` = T of the first guide, ``neighbour_k`` = T of the last guide,
``blend`` = Σ_g w_g T_g (TIRSIT with G ≡ 0).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipeline_lib.model.variants import baselines

__all__ = ["BASELINES", "masked_mean_filter", "guide_weights", "weighted_sum", "weighted_spread"]

BASELINES = baselines()


def masked_mean_filter(x: np.ndarray, valid: np.ndarray, size: int) -> np.ndarray:
    """s×s mean of ``x`` over valid pixels only (normalised convolution); NaN where none is valid."""
    v = valid.astype(np.float64)
    num = ndimage.uniform_filter(np.where(valid, x, 0.0).astype(np.float64), size=size, mode="reflect")
    den = ndimage.uniform_filter(v, size=size, mode="reflect")
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den
    return np.where(den > 1e-9, out, np.nan)


def guide_weights(
    s_i: np.ndarray, s_g: np.ndarray, valid_i: np.ndarray, valid_g: np.ndarray, size: int, k: float
) -> np.ndarray:
    """(guide, y, x) weights summing to 1 from normalised S_i (c, y, x) and S_g (g, c, y, x)."""
    n = s_g.shape[0]
    logits = np.full((n, *valid_i.shape), -np.inf)
    for g in range(n):
        ok = valid_i & valid_g[g]
        diff = s_i - s_g[g]
        a = np.mean([np.abs(masked_mean_filter(diff[c], ok, size)) for c in range(diff.shape[0])], axis=0)
        logits[g] = np.where(ok & np.isfinite(a), -k * a, -np.inf)
    top = logits.max(axis=0)
    with np.errstate(invalid="ignore"):
        e = np.exp(logits - top)
        w = e / e.sum(axis=0)
    w[:, ~np.isfinite(top)] = np.nan
    return np.asarray(w.astype(np.float32))


def weighted_sum(images: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Σ_g w_g·X_g for X (g, band, y, x) with NaN in X ignored where w_g = 0; NaN where w is NaN."""
    x = np.where(w[:, None] > 0, images, 0.0)
    out = np.sum(w[:, None] * np.nan_to_num(x), axis=0)
    return np.where(np.isfinite(w).all(axis=0), out, np.nan).astype(np.float32)


def weighted_spread(recon: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted mean |R_g − R_h| over guide pairs g ≠ h (= |R_j − R_k| for two guides)."""
    n = recon.shape[0]
    num = np.zeros(recon.shape[1:], dtype=np.float64)
    den = np.zeros(w.shape[1:], dtype=np.float64)
    wz = np.nan_to_num(w)
    for g in range(n):
        for h in range(g + 1, n):
            pair = wz[g] * wz[h]
            d = np.abs(np.nan_to_num(recon[g]) - np.nan_to_num(recon[h]))
            num += pair[None] * d
            den += pair
    with np.errstate(invalid="ignore", divide="ignore"):
        out = num / den[None]
    return np.where(den[None] > 0, out, np.nan).astype(np.float32)
