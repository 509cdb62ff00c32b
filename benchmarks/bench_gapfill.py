"""Gap-fill quality on the real Belgian 2018 series with real cloud masks (DESIGN §8).

Reads data/real-ts/wc-belgium-patch-2018/original/ (S2 L2A 10 m + 20 m netCDFs, 118 dates with SCL;
S1 ascending, 159 dates; EPSG:32631, 64 × 64 px at 10 m; 20 m data repeated ×2). Each S2 date is
paired with the nearest S1 date within ``--pair-days``; SCL classes 0, 1, 3, 8, 9, 10 (the pipeline's
mask) and 11 (snow/ice: in this lowland series, 2017-08 … 2018-11, the only date with class 11 is
2018-09-23, a bright cloud misclassified as snow, reflectance ≈ 0.6) are cloudy, and so is any
pixel whose visible reflectance exceeds 0.5, the top of the models' visible range (SCL leaves
undetected cloud pixels on nearly overcast dates, e.g. 2017-11-05 with 5 % "clear" pixels at
reflectance 1.3-1.7; as the nearest clear date at their pixel they would become guides).
Evaluation dates (clear, never neighbours among the clear dates) get the real SCL mask of another,
partly cloudy date; the models are trained on the series with those masks applied and score only
the masked pixels. Methods: gapfill with SWIR direct from SAR and chained through the predicted
visible, the blend (G ≡ 0), per-pixel linear interpolation, the nearest clear date.

    nice -n 10 python benchmarks/bench_gapfill.py --seeds 0 1 2 --steps 200 --out /tmp/gapfill.json
    (or one process per seed, --seeds N --out sN.json, then --merge s0.json s1.json s2.json --out all.json)
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from pipeline_lib.gapfill.evaluate import apply_masks, borrow_masks, evaluate_fill
from pipeline_lib.gapfill.model import FillParams, series_task, train_series
from pipeline_lib.gapfill.series import Series
from pipeline_lib.model.params import TrainParams
from pipeline_lib.optical.l2a import SCL_MASKED_CLASSES

ROOT = Path(__file__).resolve().parents[1] / "data/real-ts/wc-belgium-patch-2018/original"
STEM = "00002806639B424A_32631_2017-08-01_2018-11-30.nc"


def _up(a: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(a, 2, axis=-2), 2, axis=-1)


def load_belgium(pair_days: float) -> Series:
    s10 = xr.open_dataset(ROOT / f"S2_L2A_10m_{STEM}", mask_and_scale=False)
    s20 = xr.open_dataset(ROOT / f"S2_L2A_20m_{STEM}", mask_and_scale=False)
    s1 = xr.open_dataset(ROOT / f"S1_GRD-ASCENDING_20m_{STEM}", mask_and_scale=False)
    t2 = s10["timestamp"].values.astype("datetime64[s]")
    t1 = s1["timestamp"].values.astype("datetime64[s]")
    dn = np.stack([s10[b].values for b in ("B04", "B03", "B02")] + [_up(s20[b].values) for b in ("B11", "B12")], 1)
    refl = np.where(dn > 0, dn.astype(np.float32) / 10000.0, np.nan).astype(np.float32)
    cloudy_classes = (*SCL_MASKED_CLASSES, 11)
    clear = ~np.isin(_up(s20["SCL"].values), cloudy_classes) & np.isfinite(refl).all(axis=1)
    clear &= (refl[:, :3] <= 0.5).all(axis=1)
    sar = _up(np.stack([s1["VV"].values, s1["VH"].values], 1).astype(np.float32))
    d, _, h, w = refl.shape
    s1_arr = np.full((d, 2, h, w), np.nan, dtype=np.float32)
    for i, t in enumerate(t2):
        gap = np.abs((t1 - t).astype(np.float64)) / 86400.0
        j = int(np.argmin(gap))
        if gap[j] <= pair_days:
            s1_arr[i] = sar[j]
    s1_ok = np.isfinite(s1_arr).all(axis=1)
    dates = [str(t)[:10] for t in t2]
    keep = np.unique(dates, return_index=True)[1]  # one acquisition per day
    x0, y0 = float(s10["x"].values[0]) - 5.0, float(s10["y"].values[0]) + 5.0
    return Series(
        dates=tuple(dates[i] for i in keep),
        s1=s1_arr[keep],
        s2=np.where(clear[:, None], refl, np.nan)[keep].astype(np.float32),
        s1_valid=s1_ok[keep],
        s2_valid=clear[keep],
        crs="EPSG:32631",
        transform=(10.0, 0.0, x0, 0.0, -10.0, y0),
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--variant", default="no_uc_sg")
    ap.add_argument("--pair-days", type=float, default=3.5)
    ap.add_argument("--max-dates", type=int, default=12)
    ap.add_argument("--out", type=Path, default=Path("gapfill_bench.json"))
    ap.add_argument("--merge", type=Path, nargs="+", help="only summarise these result files into --out")
    args = ap.parse_args()
    if args.merge:
        merge(args.merge, args.out)
        return
    torch.set_num_threads(1)
    series = load_belgium(args.pair_days)
    print(f"{len(series.dates)} dates, S1 paired on {int(series.s1_valid.any(axis=(1, 2)).sum())}", flush=True)
    train = {"batch_size": args.batch, "patch_px": args.patch, "log_every": 50}
    runs = []
    for seed in args.seeds:
        masks = borrow_masks(series, seed=seed, max_dates=args.max_dates, min_clear=0.95, cloud_range=(0.05, 0.7))
        masked = series.with_s2_valid(apply_masks(series.s2_valid, masks))
        fill = FillParams.defaults(variant=args.variant, max_steps=args.steps, seed=seed)
        models, times = {}, {}
        for task in ("sar_to_visible", "sar_to_swir", "visible_to_swir"):
            t0 = time.perf_counter()
            params = TrainParams.for_task(series_task(task).base, **train)
            models[task] = train_series(masked, task, fill, params, threads=1)
            times[task] = time.perf_counter() - t0
            print(f"seed {seed} {task}: {times[task]:.0f} s", flush=True)
        t0 = time.perf_counter()
        res = evaluate_fill(
            series,
            masks,
            {"gapfill_direct": (models, "direct"), "gapfill_chained": (models, "chained")},
            fill,
            "chained",
            tile_px=64,
            overlap_px=0,
        )
        res["train_seconds"] = times
        res["evaluate_seconds"] = time.perf_counter() - t0
        res["seed"] = seed
        runs.append(res)
        for group in ("visible", "swir"):
            row = {m: round(v["rmse"]["mean"], 4) for m, v in res[group]["all"].items() if m != "pixels"}
            print(f"seed {seed} {group} RMSE (all masked, {res[group]['all']['pixels']} px): {row}", flush=True)
    write_summary(runs, args.out, vars(args) | {"out": str(args.out)})


def write_summary(runs: list[dict], out: Path, meta: dict) -> None:
    """Mean over the runs (seeds) of each method's mean-over-bands metrics; print and write JSON."""
    summary: dict[str, dict[str, dict[str, float]]] = {}
    for group in ("visible", "swir"):
        summary[group] = {}
        for sub in ("all", "changed"):
            methods = [m for m in runs[0][group][sub] if m != "pixels"]
            summary[group][sub] = {
                f"{m}.{metric}": float(np.nanmean([r[group][sub][m][metric]["mean"] for r in runs]))
                for m in methods
                for metric in ("rmse", "ssim", "cc")
            }
    rho = {
        m: float(np.mean([r["spearman_uncertainty_abs_error"][m] for r in runs]))
        for m in runs[0]["spearman_uncertainty_abs_error"]
    }
    summary["spearman_uncertainty_abs_error"] = rho  # type: ignore[assignment]
    out.write_text(json.dumps({"args": meta, "summary": summary, "runs": runs}, indent=1, default=float))
    for group in ("visible", "swir"):
        for sub in ("all", "changed"):
            print(f"{group} {sub}: " + ", ".join(f"{k}={v:.4f}" for k, v in summary[group][sub].items()))
    print(f"Spearman rho(uncertainty, |error|): {rho}")


def merge(paths: list[Path], out: Path) -> None:
    """Summarise the runs of several result files (one seed each, run in parallel)."""
    runs = [r for p in paths for r in json.loads(p.read_text())["runs"]]
    write_summary(runs, out, {"merged": [str(p) for p in paths], "seeds": [r["seed"] for r in runs]})


if __name__ == "__main__":
    main()
