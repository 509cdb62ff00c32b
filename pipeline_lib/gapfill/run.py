"""Entry points of the gap-fill rules (docs/CONTRACTS.md "Gap-filled series"): train, fill, collection, evaluate.

Governing text: DESIGN §8. Settings arrive as explicit arguments (the rule's ``params``),
never from config or the environment. The evaluation masks (:func:`pipeline_lib.gapfill.evaluate.borrow_masks`,
seeded by ``gapfill.seed``) are removed from the series before training, so one model per region
and task serves both the product and an evaluation that never saw the masked truth.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pipeline_lib.errors import ConfigError
from pipeline_lib.gapfill.evaluate import apply_masks, borrow_masks, evaluate_fill
from pipeline_lib.gapfill.model import FillParams, load_series_model, save_model, series_task, train_series
from pipeline_lib.gapfill.plan import swir_task
from pipeline_lib.gapfill.product import SOURCE_PREDICTED, fill_date, stac_collection, write_product
from pipeline_lib.gapfill.series import Series, read_series
from pipeline_lib.io import write_json_atomic
from pipeline_lib.model.params import TrainParams

__all__ = [
    "fill_params",
    "run_gapfill_train",
    "run_gapfill_fill",
    "run_gapfill_collection",
    "run_gapfill_evaluate",
]

_LOG = logging.getLogger(__name__)
_FILL_KEYS = ("variant", "guides", "both_sides", "pair_window", "max_steps", "seed")


def fill_params(cfg: Mapping[str, Any]) -> FillParams:
    """The :class:`FillParams` of a validated ``gapfill`` config block (the schema fills every key)."""
    missing = [k for k in _FILL_KEYS if k not in cfg]
    if missing:
        raise ConfigError(f"gapfill.{missing[0]}: missing; validate the config against the schema, which fills it")
    return FillParams(**{k: cfg[k] for k in _FILL_KEYS})


def _series(s1: Mapping[str, str | os.PathLike[str]], s2: Mapping[str, str | os.PathLike[str]]) -> Series:
    return read_series(dict(s1), dict(s2))


def _masks(series: Series, cfg: Mapping[str, Any]) -> dict[int, tuple[int, np.ndarray]]:
    ev = cfg["evaluate"]  # the schema fills every key
    return borrow_masks(
        series,
        seed=int(cfg["seed"]),
        max_dates=int(ev["max_dates"]),
        min_clear=float(ev["min_clear"]),
        cloud_range=(float(ev["min_cloud"]), float(ev["max_cloud"])),
    )


def run_gapfill_train(
    s1: Mapping[str, str | os.PathLike[str]],
    s2: Mapping[str, str | os.PathLike[str]],
    task: str,
    out_ckpt: Path,
    cfg: Mapping[str, Any],
    train: Mapping[str, Any],
    threads: int,
    device: str = "auto",
    log: logging.Logger | None = None,
) -> None:
    """Train the region's model for ``task`` on the whole series (evaluation masks removed).

    ``train`` is the region's validated ``train`` section; its settings for the task's base task apply.
    """
    params = TrainParams.from_config(series_task(task).base, train)
    series = _series(s1, s2)
    masks = _masks(series, cfg)
    masked = series.with_s2_valid(apply_masks(series.s2_valid, masks))
    ck = train_series(masked, task, fill_params(cfg), params, threads, device, log or _LOG)
    ck["evaluation_masks"] = {series.dates[e]: series.dates[d] for e, (d, _) in masks.items()}
    save_model(ck, Path(out_ckpt))


def _models(ckpts: Mapping[str, str | os.PathLike[str]]) -> dict[str, dict[str, Any] | None]:
    return {task: load_series_model(Path(p)) for task, p in ckpts.items()}


def run_gapfill_fill(
    s1: Mapping[str, str | os.PathLike[str]],
    s2: Mapping[str, str | os.PathLike[str]],
    date: str,
    ckpts: Mapping[str, str | os.PathLike[str]],
    out_tif: Path,
    cfg: Mapping[str, Any],
    predict: Mapping[str, Any],
    threads: int,
    device: str = "cpu",
) -> None:
    """Write ``gapfill/{date}.tif`` and its STAC item (observed where clear, predicted elsewhere)."""
    import torch

    torch.set_num_threads(max(1, int(threads)))
    series = _series(s1, s2)
    if date not in series.dates:
        raise ConfigError(f"gapfill: date {date} has no S1/S2 image in the series; add it to the region's dates")
    i = series.dates.index(date)
    route = str(cfg["swir"])
    models = _models(ckpts)
    for need in ("sar_to_visible", swir_task(route)):
        if need not in models:
            raise ConfigError(f"gapfill.swir={route}: the {need} model is missing from the rule's inputs")
    bands, source, unc = fill_date(
        series,
        i,
        models,
        fill_params(cfg),
        route,
        tile_px=predict["tile_px"],
        overlap_px=predict["overlap_px"],
        device=device if device != "auto" else "cpu",
    )
    tags = {"swir_route": route, "variant": str(cfg["variant"]), "region_dates": ",".join(series.dates)}
    write_product(out_tif, date, bands, source, unc, series.crs, series.transform, tags)
    _LOG.info("gapfill %s: %.1f %% predicted", date, 100 * float((source == SOURCE_PREDICTED).mean()))


def run_gapfill_collection(tifs: Sequence[str | os.PathLike[str]], out_json: Path, region: str) -> None:
    """The STAC collection of the region's gap-filled dates."""
    stac_collection([Path(t).with_suffix(".stac.json") for t in tifs], out_json, region)


def run_gapfill_evaluate(
    s1: Mapping[str, str | os.PathLike[str]],
    s2: Mapping[str, str | os.PathLike[str]],
    ckpts: Mapping[str, str | os.PathLike[str]],
    fills: Sequence[str | os.PathLike[str]],
    out_json: Path,
    cfg: Mapping[str, Any],
    predict: Mapping[str, Any],
    threads: int,
) -> dict[str, Any]:
    """``gapfill/metrics.json``: the masked-pixel evaluation and the share predicted / mean uncertainty per date."""
    import rasterio
    import torch

    torch.set_num_threads(max(1, int(threads)))
    series = _series(s1, s2)
    masks = _masks(series, cfg)
    route = str(cfg["swir"])
    models = _models(ckpts)
    tiles = {"tile_px": predict["tile_px"], "overlap_px": predict["overlap_px"]}
    res = evaluate_fill(series, masks, {"gapfill": (models, route)}, fill_params(cfg), route, **tiles)
    per_date: dict[str, Any] = {}
    for path in fills:
        with rasterio.open(path) as ds:
            desc = list(ds.descriptions)
            src = ds.read(desc.index("source") + 1)
            unc = ds.read(desc.index("uncertainty") + 1)
        pred = src == SOURCE_PREDICTED
        per_date[Path(path).stem] = {
            "share_predicted": float(pred.mean()),
            "share_none": float((src == 0).mean()),
            "mean_uncertainty": float(np.nanmean(unc[pred])) if np.isfinite(unc[pred]).any() else float("nan"),
        }
    out = {
        "swir_route": route,
        "variant": str(cfg["variant"]),
        "evaluation": {k: v for k, v in res.items() if k in ("visible", "swir")},
        "spearman_uncertainty_abs_error": res["spearman_uncertainty_abs_error"].get("gapfill", float("nan")),
        "evaluation_dates": {
            d: {"donor": v["donor"], "masked_pixels": v["masked_pixels"]} for d, v in res["dates"].items()
        },
        "products": per_date,
    }
    write_json_atomic(out_json, out)
    return out
