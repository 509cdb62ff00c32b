"""Evaluation of predictions against the truth T_i: metrics.json / metrics.csv (DESIGN §7, CONTRACTS.md).

``metrics.json`` = ``{experiment: {variant: {"rmse"|"ssim"|"cc": {band: v, "mean": v}},
"changed": {variant: {...same...}}, "info": {...}}}`` where

- every variant is scored on the **same** pixels: truth valid (its ``valid`` band and finite),
  S_i valid (the stack's ``valid_i``) and every prediction finite; the others are excluded and
  counted (``info.valid_pixels``, ``info.excluded_pixels``);
- ``changed`` = the valid pixels where |T_i − blend| (mean over bands) is in the top quartile
  (≥ its 75th percentile), the blend being the ``blend`` prediction if given, else computed from the
  stack with the task's default s and k;
- SSIM uses a fixed data range per band = hi − lo of the stack's ``target_range``
  (``info.ssim_data_range``);
- ``info.clipped_inputs`` = per band, the valid values of the stack that its fixed normalisation
  range clips (below / above / of); ``info.clipped_predictions[variant]`` = the predicted
  reflectances clipped to [0, 1] (below / above), from the prediction's tags;
- ``info.spearman_uncertainty_abs_error[variant]`` = Spearman's ρ between the uncertainty (mean over
  bands) and the absolute error (mean over bands) over the valid pixels, for each variant whose
  uncertainty raster is given.

- ``selected`` (DESIGN §6, method choice), when the select rule's outputs are given: the recommended
  prediction's test metrics (``rmse``/``ssim``/``cc`` and ``changed``, on the same pixels as every
  variant), which ``method`` it is and why, the validation table (mean ± sd RMSE per method over
  validation experiments and seeds) beside the test ranking, the Spearman ρ between the validation
  and test RMSE of the methods scored in both, where the selection ranks on the test, and the
  Spearman ρ of its uncertainty against its absolute error.

``metrics.csv`` has one row per (experiment, subset ∈ {all, changed}, variant, metric, band), the
selected prediction as variant ``selected``.
The truth file is read here and nowhere else.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from scipy import stats

from pipeline_lib.cog import read_named_bands
from pipeline_lib.errors import ModelError
from pipeline_lib.io import write_json_atomic, write_text_atomic
from pipeline_lib.metrics import band_metrics
from pipeline_lib.model.data import load_stack
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.predict import predict_arrays
from pipeline_lib.stacks import read_truth

__all__ = ["read_bands", "changed_mask", "evaluate_arrays", "metrics_rows", "selected_block", "run_evaluate"]


def read_bands(path: Path, bands: list[str]) -> np.ndarray:
    """(len(bands), y, x) float32 from a GeoTIFF whose band descriptions name the bands."""
    return read_named_bands(path, bands)[0]


def changed_mask(truth: np.ndarray, blend: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, float]:
    """Valid pixels where mean-over-bands |T_i − blend| ≥ its 75th percentile; and that threshold."""
    d = np.mean(np.abs(truth - blend), axis=0)
    if not valid.any():
        return np.zeros_like(valid), float("nan")
    thr = float(np.quantile(d[valid], 0.75))
    return valid & (d >= thr), thr


def evaluate_arrays(
    truth: np.ndarray,
    valid: np.ndarray,
    preds: dict[str, np.ndarray],
    blend: np.ndarray,
    band_names: list[str],
    data_ranges: list[float],
    uncertainty: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """The per-experiment block of metrics.json for arrays (band, y, x) in physical units."""
    common = valid & np.isfinite(truth).all(axis=0)
    for arr in preds.values():
        common &= np.isfinite(arr).all(axis=0)
    changed, thr = changed_mask(truth, blend, common)
    out: dict[str, Any] = {}
    out["changed"] = {}
    for name, arr in preds.items():
        out[name] = band_metrics(arr, truth, band_names, data_ranges, np.broadcast_to(common, arr.shape[1:]))
        out["changed"][name] = band_metrics(arr, truth, band_names, data_ranges, changed)
    rho: dict[str, float] = {}
    for name, unc in (uncertainty or {}).items():
        if name not in preds:
            continue
        u = np.mean(unc, axis=0)
        e = np.mean(np.abs(preds[name] - truth), axis=0)
        ok = common & np.isfinite(u)
        rho[name] = float(stats.spearmanr(u[ok], e[ok]).statistic) if ok.sum() > 2 else float("nan")
    out["info"] = {
        "bands": band_names,
        "valid_pixels": int(common.sum()),
        "excluded_pixels": int(common.size - common.sum()),
        "changed_pixels": int(changed.sum()),
        "changed_threshold": thr,
        "ssim_data_range": dict(zip(band_names, data_ranges, strict=True)),
        "spearman_uncertainty_abs_error": rho,
    }
    return out


def metrics_rows(experiment: str, block: dict[str, Any]) -> list[dict[str, Any]]:
    """Flatten one experiment block into CSV rows."""
    rows: list[dict[str, Any]] = []
    variants_all = {k: v for k, v in block.items() if k not in ("changed", "info", "selected")}
    variants_changed = dict(block.get("changed", {}))
    if "selected" in block:
        variants_all["selected"] = {m: block["selected"][m] for m in ("rmse", "ssim", "cc")}
        variants_changed["selected"] = block["selected"]["changed"]
    for subset, variants in (("all", variants_all), ("changed", variants_changed)):
        for variant, mets in variants.items():
            for metric, per_band in mets.items():
                for band, value in per_band.items():
                    rows.append(
                        {
                            "experiment": experiment,
                            "subset": subset,
                            "variant": variant,
                            "metric": metric,
                            "band": band,
                            "value": value,
                        }
                    )
    return rows


def _stack_clipped(stack_nc: Path) -> dict[str, Any]:
    """The stack's ``clipped`` attr (values outside the normalisation ranges), {} for older stacks."""
    with xr.open_dataset(stack_nc) as ds:
        raw = ds.attrs.get("clipped")
    return dict(json.loads(raw)) if isinstance(raw, str) else {}


def _clipped_tags(path: Path) -> dict[str, int]:
    """Counts of reflectances clipped to the physical range, from a prediction's tags (0 when absent)."""
    with rasterio.open(path) as src:
        tags = src.tags()
    return {k: int(tags.get(f"clipped_{k}", 0)) for k in ("below", "above")}


def selected_block(
    block: Mapping[str, Any],
    selection: Mapping[str, Any],
    truth: np.ndarray,
    pred: np.ndarray,
    uncertainty: np.ndarray,
    valid: np.ndarray,
    changed: np.ndarray,
    bands: list[str],
    ranges: list[float],
) -> dict[str, Any]:
    """The ``selected`` entry: test metrics of the selected prediction beside the validation table."""
    methods = [k for k in block if k not in ("changed", "info", "selected")]
    test = {m: float(block[m]["rmse"]["mean"]) for m in methods}
    test_ranking = sorted(test, key=lambda m: test[m])
    val = {m: float(v["rmse"]) for m, v in selection.get("validation", {}).items() if m in test}
    both = sorted(val)
    rho = float(stats.spearmanr([val[m] for m in both], [test[m] for m in both]).statistic) if len(both) > 2 else None
    mask = np.broadcast_to(valid, pred.shape[1:])
    allm = band_metrics(pred, truth, bands, ranges, mask)
    chm = band_metrics(pred, truth, bands, ranges, changed)
    u = np.mean(uncertainty, axis=0)
    e = np.mean(np.abs(pred - truth), axis=0)
    ok = valid & np.isfinite(u) & np.isfinite(e)
    rho_u = float(stats.spearmanr(u[ok], e[ok]).statistic) if ok.sum() > 2 else float("nan")
    method = str(selection["method"])
    best = test_ranking[0] if test_ranking else method
    return {
        "method": method,
        "reason": selection.get("reason", ""),
        "margin": selection.get("margin"),
        "uncertainty_from": selection.get("uncertainty_from"),
        "uncertainty_rule": selection.get("uncertainty_rule", "spread"),
        **allm,
        "changed": chm,
        "test_rank": test_ranking.index(method) + 1 if method in test_ranking else None,
        "test_winner": best,
        "excess_over_best": float(allm["rmse"]["mean"] / test[best] - 1.0) if best in test else None,
        "vs_blend": float(allm["rmse"]["mean"] / test["blend"] - 1.0) if "blend" in test else None,
        "spearman_uncertainty_abs_error": rho_u,
        "validation": dict(selection.get("validation", {})),
        "validation_ranking": list(selection.get("validation_ranking", [])),
        "validation_runs": list(selection.get("validation_runs", [])),
        "test_rmse": test,
        "test_ranking": test_ranking,
        "spearman_validation_test": rho,
    }


def run_evaluate(
    truth_tif: Path,
    preds: dict[str, Path],
    stack_nc: Path,
    out_json: Path,
    out_csv: Path,
    uncertainty: dict[str, Path] | None = None,
    selected: tuple[Path, Path, Path] | None = None,
) -> None:
    """Score every prediction against the truth and write ``{experiment: block}`` as JSON and CSV.

    ``selected`` = (selected.tif, selected_uncertainty.tif, selected.json) of the select rule.
    """
    data = load_stack(Path(stack_nc))
    bands = data.band_t
    t_i, t_valid = read_truth(Path(truth_tif))
    missing = [b for b in bands if b not in t_i["band_t"].values]
    if missing:
        raise ModelError(f"{truth_tif}: truth bands {missing} missing; rebuild it with the stack rule")
    truth, tvalid = t_i.sel(band_t=bands).values, t_valid.values
    if truth.shape[1:] != data.valid_i.shape:
        raise ModelError(f"{truth_tif}: shape {truth.shape[1:]} differs from the stack grid {data.valid_i.shape}")
    arrays = {name: read_bands(Path(path), bands) for name, path in preds.items()}
    if "blend" in arrays:
        blend = arrays["blend"]
    else:  # the workflow always scores the blend; a caller without it gets the schema's blend weights
        blend, _ = predict_arrays(data, "blend", TrainParams.for_task(data.task))
    uncs = {name: read_bands(Path(path), bands) for name, path in (uncertainty or {}).items()}
    ranges = [float(hi - lo) for lo, hi in data.target_range]
    block = evaluate_arrays(truth, tvalid & data.valid_i, arrays, blend, bands, ranges, uncs)
    block["info"].update({"task": data.task, "target_date": data.target_date, "guide_dates": data.guide_dates})
    block["info"]["clipped_inputs"] = _stack_clipped(Path(stack_nc))
    block["info"]["clipped_predictions"] = {name: _clipped_tags(Path(path)) for name, path in preds.items()}
    if selected is not None:
        sel_pred = read_bands(Path(selected[0]), bands)
        sel_unc = read_bands(Path(selected[1]), bands)
        selection = json.loads(Path(selected[2]).read_text(encoding="utf-8"))
        common = tvalid & data.valid_i & np.isfinite(truth).all(axis=0) & np.isfinite(sel_pred).all(axis=0)
        for arr in arrays.values():
            common &= np.isfinite(arr).all(axis=0)
        changed, _ = changed_mask(truth, blend, common)
        block["selected"] = selected_block(block, selection, truth, sel_pred, sel_unc, common, changed, bands, ranges)
    write_json_atomic(out_json, {data.experiment: block})
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["experiment", "subset", "variant", "metric", "band", "value"])
    writer.writeheader()
    writer.writerows(metrics_rows(data.experiment, block))
    write_text_atomic(out_csv, buf.getvalue())
