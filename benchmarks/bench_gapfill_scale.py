"""Gap-fill cost: training vs prediction for an N-date series on a grid (DESIGN §8).

A synthetic series (smooth random reflectance and S1 fields, which is enough for timing: the
network's cost does not depend on the values), every other date with a random 30 % cloud blob.
Training is timed for ``--steps`` steps per task (the cost per step is independent of the grid and
of the number of dates; the configured budget is ``gapfill.max_steps``), then every cloudy date is
filled (both tasks: visible and the chained SWIR). The fill time is reported per date and per
megapixel, the basis of the extrapolation to a 10980 × 10980 tile.

    nice -n 10 python benchmarks/bench_gapfill_scale.py --size 512 --dates 20 --steps 10
    nice -n 10 python benchmarks/bench_gapfill_scale.py --size 2048 --dates 5 --steps 5 --fill-dates 1
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from scipy import ndimage

from pipeline_lib.config import schema_defaults
from pipeline_lib.gapfill.model import FillParams, series_task, train_series
from pipeline_lib.gapfill.product import fill_date
from pipeline_lib.gapfill.series import Series
from pipeline_lib.model.params import TrainParams


def synthetic(size: int, dates: int, seed: int = 0) -> Series:
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((size, size)), 8).astype(np.float32)
    base = (base - base.min()) / (np.ptp(base) + 1e-9)
    s2 = np.empty((dates, 5, size, size), np.float32)
    s1 = np.empty((dates, 2, size, size), np.float32)
    valid = np.ones((dates, size, size), bool)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(dates):
        r = 0.05 + 0.2 * base * (1 + 0.02 * i)
        s2[i] = np.stack([r, 0.9 * r, 0.8 * r, 1.6 * r, 1.2 * r])
        s1[i] = np.stack([-15 + 20 * r, -22 + 20 * r])
        if i % 2 == 1:
            cy, cx = rng.random(2)
            valid[i] = (yy - cy) ** 2 + (xx - cx) ** 2 > 0.3 / np.pi
    dates_iso = tuple(str(np.datetime64("2021-01-01") + np.timedelta64(6 * i, "D")) for i in range(dates))
    s2 = np.where(valid[:, None], s2, np.nan).astype(np.float32)
    return Series(dates_iso, s1, s2, np.ones_like(valid), valid, "EPSG:32633", (10.0, 0, 500000.0, 0, -10.0, 4650000.0))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--dates", type=int, default=20)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--budget", type=int, default=200, help="gapfill.max_steps to extrapolate training to")
    ap.add_argument("--fill-dates", type=int, default=0, help="fill only this many cloudy dates (0 = all)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    series = synthetic(args.size, args.dates)
    fill = FillParams.defaults(max_steps=args.steps)
    models, per_step = {}, {}
    for task in ("sar_to_visible", "visible_to_swir"):
        t0 = time.perf_counter()
        params = TrainParams.for_task(series_task(task).base, log_every=1000)
        models[task] = train_series(series, task, fill, params, threads=args.threads)
        per_step[task] = (time.perf_counter() - t0) / args.steps
    cloudy = [i for i in range(args.dates) if not series.s2_valid[i].all()]
    if args.fill_dates:
        cloudy = cloudy[: args.fill_dates]
    t0 = time.perf_counter()
    for i in cloudy:
        fill_date(series, i, models, fill, "chained", **schema_defaults("predict"))
    fill_s = (time.perf_counter() - t0) / max(len(cloudy), 1)
    mpix = args.size**2 / 1e6
    train_budget_s = sum(per_step.values()) * args.budget
    all_cloudy = sum(1 for i in range(args.dates) if not series.s2_valid[i].all())
    out = {
        "size": args.size,
        "dates": args.dates,
        "cloudy_dates": all_cloudy,
        "threads": args.threads,
        "train_s_per_step": per_step,
        "train_s_at_budget": train_budget_s,
        "fill_s_per_date": fill_s,
        "fill_s_per_mpix_date": fill_s / mpix,
        "series_total_s": train_budget_s + fill_s * all_cloudy,
        "tile_10980_fill_s_per_date": fill_s / mpix * 10980**2 / 1e6,
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
