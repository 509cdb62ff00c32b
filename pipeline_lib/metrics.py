"""Image-quality metrics of the TIRSIT evaluation: RMSE, CC and SSIM per band, with masks.

Definitions (DESIGN §7; paper §IV-B):

- RMSE: sqrt(mean((pred - truth)²)) over valid pixels, in the band's physical units (reflectance).
- CC: Pearson correlation over the valid pixels of the image.
- SSIM: Wang, Bovik, Sheikh & Simoncelli, "Image quality assessment: from error visibility to
  structural similarity", IEEE TIP 13(4), 2004, eq. 13 with an 11×11 circular-symmetric Gaussian
  window (σ = 1.5, scipy ``gaussian_filter`` truncated at 3.5 σ), K1 = 0.01, K2 = 0.03, population
  (not sample) covariances, and a **fixed** data range L per band (not the image's min-max), so
  numbers are comparable across variants. This matches ``skimage.metrics.structural_similarity(...,
  gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=L)`` on unmasked images
  (including its crop of the 5-pixel border). With a mask, the SSIM map is averaged over the pixels
  whose whole 11×11 window is valid (invalid pixels never enter a window that is counted).

A pixel is valid where the mask is true and both images are finite.

:func:`merge_metrics` is the metrics rule's code: it merges the per-experiment ``metrics/{experiment}.json``
and ``.csv`` that :func:`pipeline_lib.model.evaluate.run_evaluate` writes into the region's files.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from pipeline_lib.io import write_json_atomic, write_text_atomic

__all__ = [
    "SSIM_K1",
    "SSIM_K2",
    "SSIM_SIGMA",
    "SSIM_TRUNCATE",
    "SSIM_WIN",
    "valid_mask",
    "rmse",
    "cc",
    "ssim",
    "ssim_map",
    "band_metrics",
    "merge_metrics",
]

SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_SIGMA = 1.5
SSIM_TRUNCATE = 3.5
SSIM_WIN = 2 * int(SSIM_TRUNCATE * SSIM_SIGMA + 0.5) + 1  # 11


def valid_mask(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Pixels where both images are finite and ``mask`` (if given) is true."""
    if pred.shape != truth.shape:
        raise ValueError(f"metrics: shapes differ ({pred.shape=} vs {truth.shape=})")
    ok = np.isfinite(pred) & np.isfinite(truth)
    if mask is not None:
        if mask.shape != pred.shape:
            raise ValueError(f"metrics: mask shape {mask.shape} differs from image shape {pred.shape}")
        ok &= mask.astype(bool)
    return np.asarray(ok)


def rmse(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Root-mean-square error over valid pixels (NaN when none is valid)."""
    ok = valid_mask(pred, truth, mask)
    if not ok.any():
        return float("nan")
    diff = pred[ok].astype(np.float64) - truth[ok].astype(np.float64)
    return float(np.sqrt(np.mean(diff * diff)))


def cc(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Pearson correlation over valid pixels (NaN when fewer than 2 or either image is constant)."""
    ok = valid_mask(pred, truth, mask)
    if ok.sum() < 2:
        return float("nan")
    a = pred[ok].astype(np.float64)
    b = truth[ok].astype(np.float64)
    a -= a.mean()
    b -= b.mean()
    den = np.sqrt(np.sum(a * a) * np.sum(b * b))
    if den == 0.0:
        return float("nan")
    return float(np.sum(a * b) / den)


def _gauss(x: np.ndarray) -> np.ndarray:
    return np.asarray(ndimage.gaussian_filter(x, sigma=SSIM_SIGMA, truncate=SSIM_TRUNCATE, mode="reflect"))


def ssim_map(pred: np.ndarray, truth: np.ndarray, data_range: float) -> np.ndarray:
    """Per-pixel SSIM (Wang 2004 eq. 13) of two finite 2-D images with a fixed data range."""
    if data_range <= 0:
        raise ValueError(f"ssim: data_range must be > 0, got {data_range}")
    x = pred.astype(np.float64)
    y = truth.astype(np.float64)
    mx, my = _gauss(x), _gauss(y)
    vx = _gauss(x * x) - mx * mx
    vy = _gauss(y * y) - my * my
    cxy = _gauss(x * y) - mx * my
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    return np.asarray(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2)))


def ssim(pred: np.ndarray, truth: np.ndarray, data_range: float, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over pixels whose full 11×11 window is valid and lies inside the image.

    Invalid pixels are filled with the truth before filtering (their value never reaches a counted
    window anyway, because counted windows are entirely valid). NaN when no window qualifies.
    """
    ok = valid_mask(pred, truth, mask)
    if pred.ndim != 2:
        raise ValueError(f"ssim: expected a 2-D band, got {pred.shape=}")
    pad = (SSIM_WIN - 1) // 2
    inner = np.zeros_like(ok)
    inner[pad:-pad, pad:-pad] = True
    counted = ndimage.binary_erosion(ok, structure=np.ones((SSIM_WIN, SSIM_WIN), bool), border_value=0) & inner
    if not counted.any():
        return float("nan")
    fill = np.where(np.isfinite(truth), truth, 0.0)
    x = np.where(ok, pred, fill)
    y = fill
    return float(ssim_map(x, y, data_range)[counted].mean())


def band_metrics(
    pred: np.ndarray,
    truth: np.ndarray,
    band_names: list[str],
    data_ranges: list[float],
    mask: np.ndarray | None = None,
) -> dict[str, dict[str, float]]:
    """``{"rmse"|"cc"|"ssim": {band: value, "mean": value}}`` for (band, y, x) arrays."""
    if pred.ndim != 3 or pred.shape[0] != len(band_names) or len(data_ranges) != len(band_names):
        raise ValueError(f"band_metrics: {pred.shape=} does not match bands {band_names} / ranges {data_ranges}")
    out: dict[str, dict[str, float]] = {"rmse": {}, "cc": {}, "ssim": {}}
    for b, name in enumerate(band_names):
        out["rmse"][name] = rmse(pred[b], truth[b], mask)
        out["cc"][name] = cc(pred[b], truth[b], mask)
        out["ssim"][name] = ssim(pred[b], truth[b], data_ranges[b], mask)
    for vals in out.values():
        arr = np.array([vals[n] for n in band_names], dtype=np.float64)
        vals["mean"] = float(np.nanmean(arr)) if np.isfinite(arr).any() else float("nan")
    return out


def merge_metrics(per_experiment: Sequence[Path], out_json: Path, out_csv: Path) -> dict[str, Any]:
    """Merge ``metrics/{experiment}.json`` (and .csv) into the region's metrics.json / metrics.csv."""
    merged: dict[str, Any] = {}
    rows: list[dict[str, str]] = []
    fields: list[str] = []
    for path in per_experiment:
        merged.update(json.loads(Path(path).read_text(encoding="utf-8")))
        with open(Path(path).with_suffix(".csv"), newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            fields = fields or list(reader.fieldnames or [])
            rows.extend(reader)
    write_json_atomic(out_json, merged)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_text_atomic(out_csv, buf.getvalue())
    return merged
