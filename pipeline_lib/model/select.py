"""Choosing the method per experiment without the truth: gap-matched temporal validation (DESIGN §6, method choice).

DESIGN §6 "Method choice without the truth", made careful by what the real chips showed:

- **Gap-matched validation experiments.** The test predicts T_i from guides at signed day offsets
  o_g = t_g − t_i. A validation experiment predicts a *known* date v from guides of the region's
  other dates at offsets as close as possible to the test's: its cost is Σ |o_g − o'_g| over the
  offsets sorted in time order (days). Date i is never used, neither as a validation target nor as a
  guide, so neither S_i nor T_i enters validation. Naive leave-one-out (predict a guide date from the
  remaining ones) forces wider gaps than the test has, which hurts the no-network baselines more than
  the networks, and ranked methods unrelated to the test (real chips: Spearman −0.08/+0.15 over 9
  methods); gap-matched ones tracked the test (+0.63…+0.90). The best validation experiment of each
  distinct target date is kept, the ``validations`` cheapest overall.
- **Several seeds.** Every network is trained once per validation experiment and seed; its
  validation score is the mean RMSE (mean over bands, reflectance) over experiments and seeds.
  Baselines (neighbours, blend) have no seed. Cost: ``validations × len(seeds)`` trainings per
  network variant, on top of the test training.
- **Margin rule.** The blend is kept unless another method's validation RMSE is below
  ``(1 − margin) ×`` the blend's; then the lowest-scoring method is selected. Seed-to-seed spread on
  the real chips (0.001–0.007) is as large as the gaps between variants, so a hair's lead is noise.

The selected method's *test* prediction is copied to ``pred/{experiment}/selected.tif`` (its tags
name the method) with an uncertainty: the method's own raster where it has one (guided networks,
blend), else the blend's guide disagreement (neighbours, pix2pix) — stated in the tags — as it is
(``select.uncertainty: spread``) or re-ordered by the ranked rule of :mod:`pipeline_lib.model.uncertainty`
from the test stack (``ranked``, tag ``uncertainty_rule``).
Nothing here reads the truth file of the test experiment; evaluation scores ``selected`` later.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from affine import Affine

from pipeline_lib.cog import read_named_bands, write_cog
from pipeline_lib.errors import ConfigError, ModelError
from pipeline_lib.io import write_json_atomic
from pipeline_lib.model.params import TASKS, TrainParams
from pipeline_lib.model.variants import baselines

if TYPE_CHECKING:  # scipy and xarray: the select job's, not the DAG's (the workflow imports this module)
    from pipeline_lib.model.uncertainty import RankedFromStack

__all__ = [
    "SelectParams",
    "ValidationExperiment",
    "plan_validation",
    "plan_auto_validation",
    "score_predictions",
    "run_validation",
    "aggregate_validation",
    "NEIGHBOURS",
    "choose_method",
    "run_select",
    "SELECTED",
]

SELECTED = "selected"
"""Name of the recommended prediction (``pred/{experiment}/selected.tif``) and its metrics block."""

_MAX_COMBINATIONS = 200_000


@dataclass(frozen=True)
class SelectParams:
    """The region's ``select`` section (workflow schema ``select``)."""

    validations: int = 2  # gap-matched validation experiments per test experiment (0: selected = blend)
    neighbours: bool = False  # may a neighbour (T_j or T_k as is) be selected?
    variants: tuple[str, ...] | None = None  # networks validated (None: the experiment's); others not selectable
    seeds: tuple[int, ...] = (0, 1, 2)  # training seeds of every network on every validation experiment
    margin: float = 0.05  # relative lead over the blend's validation RMSE needed to replace the blend
    max_steps: int | None = None  # training cap of validation models (None: the region's train.max_steps)
    max_gap_mismatch_days: float | None = None  # drop validation experiments costlier than this
    fallback: Mapping[str, str] | None = None  # task -> method when no validation score exists (None: blend)

    def validated_variants(self, configured: Sequence[str]) -> list[str]:
        """The experiment's network variants that are trained on the validation experiments."""
        return [v for v in configured if self.variants is None or v in self.variants]

    def __post_init__(self) -> None:
        if self.validations < 0:
            raise ConfigError(f"select.validations={self.validations} must be ≥ 0")
        if self.validations and not self.seeds:
            raise ConfigError("select.seeds is empty; give at least one training seed")
        if not 0.0 <= self.margin < 1.0:
            raise ConfigError(f"select.margin={self.margin} must be in [0, 1)")
        if self.max_steps is not None and self.max_steps < 1:
            raise ConfigError(f"select.max_steps={self.max_steps} must be ≥ 1 or null")
        for task, method in (self.fallback or {}).items():
            if task not in TASKS or not isinstance(method, str):
                raise ConfigError(f"select.fallback.{task}: {method!r} is no task's method; give {{task: method}}")

    def fallback_for(self, task: str) -> str:
        """The method selected for ``task`` when an experiment has no validation score (``select.fallback``)."""
        return str((self.fallback or {}).get(task, "blend"))

    @classmethod
    def from_config(cls, section: Mapping[str, Any] | None) -> SelectParams:
        s = dict(section or {})
        keys = {"validations", "neighbours", "variants", "seeds", "margin", "max_steps", "max_gap_mismatch_days"}
        keys |= {"fallback"}
        unknown = set(s) - keys - {"uncertainty", "uncertainty_px"}  # the select job's, passed as rule params
        if unknown:
            raise ConfigError(f"select: unknown keys {sorted(unknown)}")
        kw: dict[str, Any] = {k: v for k, v in s.items() if k in keys and (v is not None or k == "max_steps")}
        if "seeds" in kw:
            kw["seeds"] = tuple(int(x) for x in kw["seeds"])
        if kw.get("variants") is not None:
            kw["variants"] = tuple(str(x) for x in kw["variants"])
        return cls(**kw)


@dataclass(frozen=True)
class ValidationExperiment:
    """A known date ``target`` predicted from ``guides`` (never the test's date i)."""

    name: str
    target: str
    guides: tuple[str, ...]
    gap_mismatch_days: float
    auto: bool = False  # guides chosen by the stack rule (``guides: auto``), never the test's target date

    def as_experiment(self, parent: Mapping[str, Any]) -> dict[str, Any]:
        """An experiment dict (as in the region config) for the stack builder."""
        exp: dict[str, Any] = {"name": f"{parent['name']}-{self.name}", "task": parent["task"], "target": self.target}
        if not self.auto:
            return {**exp, "guides": list(self.guides)}
        keys = ("guides_window_days", "guides_min_clear")
        return {**exp, "guides": "auto", "exclude": [str(parent["target"])], **{k: parent[k] for k in keys}}


def _day(d: str) -> dt.date:
    try:
        return dt.date.fromisoformat(str(d)[:10])
    except ValueError as exc:
        raise ConfigError(f"date {d!r} is not YYYY-MM-DD") from exc


def plan_validation(
    target: str, guides: Sequence[str], dates: Sequence[str], n: int, max_mismatch_days: float | None = None
) -> list[ValidationExperiment]:
    """Up to ``n`` gap-matched validation experiments for the test (``target``, ``guides``) among ``dates``.

    Candidates use only dates other than ``target``; each keeps the test's number of guides. Cost =
    Σ |o_g − o'_g| (days) between the test's and the candidate's guide offsets in time order. The
    cheapest candidate of each validation target is kept, then the ``n`` cheapest targets (ties: the
    target nearest the test date, then the earlier). Names are ``val1``, ``val2``, … in that order.
    """
    if n <= 0:
        return []
    t0 = _day(target)
    test_off = sorted((_day(g) - t0).days for g in guides)
    pool = sorted({str(d) for d in dates} - {str(target)})
    m = len(test_off)
    best: dict[str, tuple[float, tuple[str, ...]]] = {}
    count = 0
    for v in pool:
        tv = _day(v)
        others = [d for d in pool if d != v]
        for combo in itertools.combinations(others, m):
            count += 1
            if count > _MAX_COMBINATIONS:
                raise ConfigError(
                    f"select: {len(pool)} dates × {m} guides give too many validation candidates; list fewer dates"
                )
            off = sorted((_day(g) - tv).days for g in combo)
            cost = float(sum(abs(a - b) for a, b in zip(off, test_off, strict=True)))
            if v not in best or cost < best[v][0]:
                best[v] = (cost, tuple(sorted(combo)))
    ranked = sorted(best.items(), key=lambda kv: (kv[1][0], abs((_day(kv[0]) - t0).days), kv[0]))
    if max_mismatch_days is not None:
        ranked = [r for r in ranked if r[1][0] <= max_mismatch_days]
    return [
        ValidationExperiment(name=f"val{i + 1}", target=v, guides=g, gap_mismatch_days=c)
        for i, (v, (c, g)) in enumerate(ranked[:n])
    ]


def plan_auto_validation(target: str, dates: Sequence[str], n: int) -> list[ValidationExperiment]:
    """Up to ``n`` validation experiments for a test with ``guides: auto``: the region dates nearest the
    target (ties: the earlier), each with its own auto guides chosen by the same rule without the target.
    The same window and clear-fraction rule makes the guide gaps alike (gap-matched by construction)."""
    t0 = _day(target)
    pool = sorted({str(d) for d in dates} - {str(target)}, key=lambda d: (abs((_day(d) - t0).days), d))
    if len(pool) < 3:  # a validation target needs two guide dates besides itself and the test's target
        return []
    return [
        ValidationExperiment(name=f"val{i + 1}", target=v, guides=(), gap_mismatch_days=0.0, auto=True)
        for i, v in enumerate(pool[: max(n, 0)])
    ]


def score_predictions(
    truth: np.ndarray, valid: np.ndarray, preds: Mapping[str, np.ndarray], band_names: list[str], ranges: list[float]
) -> dict[str, dict[str, float]]:
    """``{method: {"rmse", "ssim", "cc"}}`` (means over bands) on the pixels where all are finite."""
    from pipeline_lib.metrics import band_metrics  # scipy: only the validate job needs it, not the DAG or select

    common = valid & np.isfinite(truth).all(axis=0)
    for arr in preds.values():
        common &= np.isfinite(arr).all(axis=0)
    out: dict[str, dict[str, float]] = {}
    for name, arr in preds.items():
        m = band_metrics(arr, truth, band_names, ranges, np.broadcast_to(common, arr.shape[1:]))
        out[name] = {k: float(m[k]["mean"]) for k in ("rmse", "ssim", "cc")}
    return out


def run_validation(
    stack_nc: Path,
    truth_tif: Path,
    checkpoints: Mapping[str, Path],
    params: TrainParams,
    out_json: Path,
    meta: Mapping[str, Any] | None = None,
    threads: int = 1,
) -> dict[str, Any]:
    """Score every baseline and the given network checkpoints on one validation experiment (one seed).

    ``truth_tif`` is the validation target's own truth (a known date, never the test's T_i).
    Writes ``{"methods": {method: {rmse, ssim, cc}}, "valid_pixels": n, **meta}``.
    """
    import torch  # here, not at module level: the workflow plans validation experiments at DAG time

    from pipeline_lib.model.data import load_stack  # xarray/netCDF4: the validate job only
    from pipeline_lib.model.predict import predict_arrays
    from pipeline_lib.model.train import build_generator, load_checkpoint

    torch.set_num_threads(max(1, int(threads)))
    data = load_stack(Path(stack_nc))
    params.check_task(data.task, str(stack_nc))
    p = params
    preds: dict[str, np.ndarray] = {}
    for b in baselines():
        preds[b] = predict_arrays(data, b, p)[0]
    for variant, ck_path in checkpoints.items():
        ck = load_checkpoint(Path(ck_path))
        if ck["variant"] != variant:
            raise ModelError(f"{ck_path}: holds variant {ck['variant']!r}, not {variant!r}; pass the right checkpoint")
        q = p.with_network_of(TrainParams.from_checkpoint(ck["params"], str(ck_path)))
        g = build_generator(variant, len(data.band_s), len(data.band_t), q)
        g.load_state_dict(ck["generator"])
        preds[variant] = predict_arrays(data, variant, q, g, torch.device("cpu"))[0]
    truth, desc, _ = read_named_bands(truth_tif, None)
    if "valid" not in desc:
        raise ModelError(f"{truth_tif}: no 'valid' band; rebuild it with stacks.run_stack")
    t = np.stack([truth[desc.index(b)] for b in data.band_t])
    valid = (truth[desc.index("valid")] > 0.5) & data.valid_i
    ranges = [float(hi - lo) for lo, hi in data.target_range]
    scores = score_predictions(t, valid, preds, data.band_t, ranges)
    n_valid = int((valid & np.isfinite(t).all(axis=0)).sum())
    out = {
        **dict(meta or {}),
        "target_date": data.target_date,
        "guide_dates": data.guide_dates,
        "valid_pixels": n_valid,
        "methods": scores,
    }
    write_json_atomic(out_json, out)
    return out


def aggregate_validation(runs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    """Per method: mean and sd of the validation RMSE over runs (experiments × seeds), and the count.

    Runs with no valid pixel are ignored; a method missing from a run is averaged over the others.
    """
    values: dict[str, list[float]] = {}
    for run in runs:
        if int(run.get("valid_pixels", 1)) == 0:
            continue
        for method, s in run["methods"].items():
            if math.isfinite(float(s["rmse"])):
                values.setdefault(method, []).append(float(s["rmse"]))
    return {m: {"rmse": float(np.mean(v)), "rmse_sd": float(np.std(v)), "n": len(v)} for m, v in sorted(values.items())}


NEIGHBOURS = ("neighbour_j", "neighbour_k")


def choose_method(table: Mapping[str, Mapping[str, float]], margin: float, neighbours: bool = False) -> tuple[str, str]:
    """(method, reason) by the margin rule: the blend unless a method beats it by ``margin`` (relative).

    The neighbours are candidates only with ``neighbours``: which guide date is closer to the target
    is a property of that date, not of the method, so a neighbour's validation score says nothing
    about the test's neighbour (on the real chips it picked a neighbour 85 % worse than the blend).
    """
    if "blend" not in table:
        return "blend", "no validation score: blend by default"  # run_select applies select.fallback first
    blend = float(table["blend"]["rmse"])
    pool = [m for m in table if neighbours or m not in NEIGHBOURS]
    best = min(pool, key=lambda m: (float(table[m]["rmse"]), m != "blend"))
    best_rmse = float(table[best]["rmse"])
    if best == "blend":
        return "blend", f"blend has the lowest validation RMSE ({blend:.5f})"
    if best_rmse <= (1.0 - margin) * blend:
        lead = 1.0 - best_rmse / blend
        return best, f"{best} beats the blend on validation by {lead:.1%} (margin {margin:.0%})"
    lead = 1.0 - best_rmse / blend
    return "blend", f"{best} leads the blend on validation by only {lead:.1%} (< margin {margin:.0%}): blend kept"


def _fallback(fallback: str, preds: Mapping[str, Path]) -> tuple[str, str]:
    """(method, reason) when no validation score exists: ``fallback`` if it was predicted, else the blend."""
    if fallback in preds:
        return fallback, f"no validation score: {fallback}, the task's select.fallback"
    return "blend", f"no validation score and no {fallback} prediction (select.fallback): blend"


def run_select(
    validation_jsons: Sequence[Path],
    preds: Mapping[str, Path],
    uncertainty: Mapping[str, Path],
    margin: float,
    out_tif: Path,
    out_uncertainty_tif: Path,
    out_json: Path,
    neighbours: bool = False,
    fallback: str = "blend",
    ranked: RankedFromStack | None = None,
) -> dict[str, Any]:
    """Choose the method from the validation runs and write selected.tif, its uncertainty and selected.json.

    ``preds``/``uncertainty`` are the *test* experiment's rasters by method; only the chosen one's
    are read (the truth never is). With no validation score, ``fallback`` (the task's ``select.fallback``)
    is selected when the experiment has its prediction, else the blend. The uncertainty is
    the chosen method's raster as it is (``ranked`` None: rule ``spread``) or, with ``ranked``, that
    raster re-ordered by the ranked rule (:mod:`pipeline_lib.model.uncertainty`) from the test stack.
    """
    runs = [json.loads(Path(p).read_text(encoding="utf-8")) for p in validation_jsons]
    table = aggregate_validation(runs)
    available = {m: s for m, s in table.items() if m in preds}
    method, reason = choose_method(available, margin, neighbours)
    if "blend" not in available:
        method, reason = _fallback(fallback, preds)
    if method not in preds:
        raise ModelError(f"selected method {method!r} has no test prediction; pass pred/{{experiment}}/{method}.tif")
    unc_from = method if method in uncertainty else "blend"
    if unc_from not in uncertainty:
        raise ModelError(f"no uncertainty raster for {method!r} nor for the blend; pass {unc_from}_uncertainty.tif")
    with rasterio.open(preds[method]) as src:
        arr = src.read().astype(np.float32)
        desc = [str(d) for d in src.descriptions]
        crs = src.crs.to_string()
        transform: Affine = src.transform
        tags = dict(src.tags())
    with rasterio.open(uncertainty[unc_from]) as src:
        unc = src.read().astype(np.float32)
        udesc = [str(d) for d in src.descriptions]
    rule = "spread" if ranked is None else "ranked"
    if ranked is not None:
        unc = ranked.apply(unc)
    sel_tags = {**tags, "variant": SELECTED, "selected_method": method, "selection": reason}
    write_cog(arr, out_tif, crs=crs, transform=transform, descriptions=desc, tags=sel_tags)
    write_cog(
        unc,
        out_uncertainty_tif,
        crs=crs,
        transform=transform,
        descriptions=udesc,
        tags={**sel_tags, "uncertainty_from": unc_from, "uncertainty_rule": rule},
    )
    ranking = sorted(table, key=lambda m: table[m]["rmse"])
    out = {
        "method": method,
        "reason": reason,
        "margin": margin,
        "neighbours": neighbours,
        "fallback": fallback,
        "uncertainty_from": unc_from,
        "uncertainty_rule": rule,
        "validation": table,
        "validation_ranking": ranking,
        "validation_runs": [
            {k: r.get(k) for k in ("validation", "seed", "target_date", "guide_dates", "gap_mismatch_days")}
            for r in runs
        ],
    }
    write_json_atomic(out_json, out)
    return out
