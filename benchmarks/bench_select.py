"""Method choice without the truth on the real chips (DESIGN §6, method choice): is ``selected`` safe and useful?

For every real experiment (data/real-ts/, README "Suggested experiments"): build the
test stack and the gap-matched validation stacks straight from the chips (a small converter below,
until the ``files`` source lands), train every network variant on each with every seed, score the
validation experiments (:func:`pipeline_lib.model.select.run_validation`), choose by the margin rule
from all validation seeds together (as the pipeline does) and score the *test* predictions of every
method and of ``selected`` against T_i (mean over the test seeds). Prints a Markdown table and writes
a CSV. Criteria (DESIGN §6): selected never > 5 % worse than the blend, better than the blend on
every visible→SWIR experiment; how often it is the test winner, how far from the best.

Cost: (1 + validations) × seeds × variants trainings per experiment (the budget is stated in the
output). On 2 CPU cores: ``--variants tirsit no_uc no_sg pix2pix --seeds 0 1 2 --steps 60``.

    python benchmarks/bench_select.py --out /tmp/select --csv benchmarks/results/select.csv
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import torch

from pipeline_lib.cog import read_named_bands, write_cog
from pipeline_lib.errors import ModelError
from pipeline_lib.metrics import band_metrics
from pipeline_lib.model.data import load_stack
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.predict import predict_arrays
from pipeline_lib.model.select import aggregate_validation, choose_method, plan_validation, run_validation
from pipeline_lib.model.train import build_generator, load_checkpoint, run_train
from pipeline_lib.stacks import run_stack

ROOT = Path(__file__).resolve().parents[1]
CHIPS = ROOT / "data" / "real-ts"
S2_OUT = ("B04", "B03", "B02", "B11", "B12")
SCL_MASKED = {0, 1, 3, 8, 9, 10}

#: (name, chip folder, task, target, guides) — data/real-ts/README.md "Suggested experiments".
EXPERIMENTS = [
    ("mon06-s2v", "wc-belgium-monthly-2021", "sar_to_visible", "2021-06-15", ["2021-05-15", "2021-07-15"]),
    ("mon03-s2v", "wc-belgium-monthly-2021", "sar_to_visible", "2021-03-15", ["2021-02-15", "2021-04-15"]),
    ("p18-s2v", "wc-belgium-patch-2018", "sar_to_visible", "2018-07-08", ["2018-06-28", "2018-07-23"]),
    ("mon06-v2s", "wc-belgium-monthly-2021", "visible_to_swir", "2021-06-15", ["2021-05-15", "2021-07-15"]),
    ("mon03-v2s", "wc-belgium-monthly-2021", "visible_to_swir", "2021-03-15", ["2021-02-15", "2021-04-15"]),
    ("p18-v2s", "wc-belgium-patch-2018", "visible_to_swir", "2018-07-08", ["2018-06-28", "2018-07-23"]),
    ("slo-v2s", "eolearn-slovenia-s2l1c-2015", "visible_to_swir", "2015-08-30", ["2015-07-11", "2015-09-09"]),
]


def _rows(folder: str) -> list[dict[str, str]]:
    with open(CHIPS / folder / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def convert_chips(folder: str, out: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Per-date S1 (VV, VH dB) and S2 (B04 B03 B02 B11 B12 reflectance + valid) COGs in the pipeline's layout."""
    s1: dict[str, Path] = {}
    s2: dict[str, Path] = {}
    rows = _rows(folder)
    (out / "s1").mkdir(parents=True, exist_ok=True)
    (out / "s2").mkdir(parents=True, exist_ok=True)

    def write(path: Path, arr: np.ndarray, desc: list[str], src: Any) -> None:
        write_cog(arr.astype(np.float32), path, crs=src.crs.to_string(), transform=src.transform, descriptions=desc)

    s1_by_file: dict[str, str] = {}
    for r in rows:
        if r["modality"] == "S2" and r.get("paired_with"):
            s1_by_file[r["paired_with"]] = r["datetime_utc"][:10]
    for r in rows:
        if not r["file"]:
            continue
        mod = r["modality"]
        date = (r.get("period") + "-15") if r.get("period") else r["datetime_utc"][:10]
        path = CHIPS / folder / r["file"]
        if mod == "S1":
            if "period" not in r:  # single acquisitions: file the S1 under its paired S2 date
                if r["file"] not in s1_by_file:
                    continue
                date = s1_by_file[r["file"]]
            with rasterio.open(path) as src:
                names = [str(d).split()[0] for d in src.descriptions]
                data = src.read([names.index("VV") + 1, names.index("VH") + 1]).astype(np.float32)
                write(out / "s1" / f"{date}.tif", data, ["VV", "VH"], src)
            s1[date] = out / "s1" / f"{date}.tif"
            continue
        with rasterio.open(path) as src:
            desc = [str(d).split()[0] for d in src.descriptions]
            raw = src.read().astype(np.float64)
            nodata = src.nodata
            scale = 1.0 if src.dtypes[0].startswith("float") else 1e-4
            valid = np.ones(raw.shape[1:], bool)
            if nodata is not None:
                valid &= ~(raw[[desc.index(b) for b in S2_OUT]] == nodata).any(axis=0)
            if "SCL" in desc:
                valid &= ~np.isin(raw[desc.index("SCL")], list(SCL_MASKED))
            if r.get("clm_cloud_fraction") and float(r["clm_cloud_fraction"]) > 0.5:
                continue
            refl = raw[[desc.index(b) for b in S2_OUT]] * scale
            refl[:, ~valid] = np.nan
            write(
                out / "s2" / f"{date}.tif",
                np.concatenate([refl, valid[None].astype(np.float64)]),
                [*S2_OUT, "valid"],
                src,
            )
            s2[date] = out / "s2" / f"{date}.tif"
    return s1, s2


def _predict_all(
    stack: Path, ckpts: dict[str, Path], q0: TrainParams
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    data = load_stack(stack)
    preds, uncs = {}, {}
    for b in ("neighbour_j", "neighbour_k", "blend"):
        preds[b], u = predict_arrays(data, b, q0)
        if u is not None:
            uncs[b] = u
    for v, ck_path in ckpts.items():
        ck = load_checkpoint(ck_path)
        q = q0.with_network_of(TrainParams.from_checkpoint(ck["params"], str(ck_path)))
        g = build_generator(v, len(data.band_s), len(data.band_t), q)
        g.load_state_dict(ck["generator"])
        preds[v], u = predict_arrays(data, v, q, g, torch.device("cpu"))
        if u is not None:
            uncs[v] = u
    return preds, uncs


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    from scipy import stats

    return float(stats.spearmanr(a, b).statistic)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="work folder (stacks, models)")
    ap.add_argument("--csv", type=Path, default=None)
    ap.add_argument(
        "--variants", nargs="+", default=["tirsit", "tirsit_noadv", "no_uc", "no_sg", "no_uc_sg", "pix2pix"]
    )
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--validations", type=int, default=2)
    ap.add_argument("--margins", nargs="+", type=float, default=[0.0, 0.02, 0.05, 0.10])
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--only", nargs="*", default=None, help="experiment names to run")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    overrides = {"max_steps": args.steps, "patch_px": args.patch, "tile_px": 128, "overlap_px": 32}
    t_start = time.perf_counter()
    n_train = 0
    results: list[dict[str, Any]] = []
    converted: dict[str, tuple[dict[str, Path], dict[str, Path]]] = {}
    for name, folder, task, target, guides in EXPERIMENTS:
        if args.only and name not in args.only:
            continue
        if folder not in converted:
            converted[folder] = convert_chips(folder, args.out / "chips" / folder)
        s1, s2 = converted[folder]
        dates = sorted(set(s2) & set(s1)) if task == "sar_to_visible" else sorted(s2)
        plan = plan_validation(target, guides, dates, args.validations)
        exp_dir = args.out / name
        params = TrainParams.for_task(task, **overrides)
        stacks: dict[str, tuple[Path, Path]] = {}
        exps = [("test", {"name": name, "task": task, "target": target, "guides": guides})]
        exps += [(v.name, v.as_experiment({"name": name, "task": task})) for v in plan]
        for key, e in exps:
            st, tr = exp_dir / key / "stack.nc", exp_dir / key / "truth.tif"
            if not st.exists():
                run_stack(e, s1, s2, None, st, tr)
            stacks[key] = (st, tr)
        runs: list[dict[str, Any]] = []
        test_rmse: dict[int, dict[str, float]] = {}
        test_preds: dict[int, tuple[dict[str, np.ndarray], dict[str, np.ndarray]]] = {}
        for seed in args.seeds:
            for key, (st, tr) in stacks.items():
                ckpts = {}
                for v in args.variants:
                    ck = exp_dir / key / f"seed{seed}" / f"{v}.pt"
                    if not ck.exists():
                        try:
                            run_train(st, v, ck, params.replace(seed=seed), threads=args.threads, device="cpu")
                        except ModelError as exc:  # a tiny masked chip can lack a valid patch for a seed's grid
                            if key == "test":
                                raise
                            print(f"skipped {name}/{key} seed {seed} {v}: {exc}", file=sys.stderr)
                            continue
                        n_train += 1
                    ckpts[v] = ck
                if key == "test":
                    test_preds[seed] = _predict_all(st, ckpts, params)
                    continue
                meta = {"validation": key, "seed": seed}
                runs.append(run_validation(st, tr, ckpts, params, exp_dir / key / f"seed{seed}" / "scores.json", meta))
            print(
                f"[{time.perf_counter() - t_start:7.0f} s] {name} seed {seed} done ({n_train} trainings)",
                file=sys.stderr,
            )
        truth, desc, _ = read_named_bands(stacks["test"][1], None)
        data = load_stack(stacks["test"][0])
        t = np.stack([truth[desc.index(b)] for b in data.band_t])
        valid = (truth[desc.index("valid")] > 0.5) & data.valid_i & np.isfinite(t).all(axis=0)
        ranges = [float(hi - lo) for lo, hi in data.target_range]
        for seed, (preds, _) in test_preds.items():
            ok = valid.copy()
            for a in preds.values():
                ok &= np.isfinite(a).all(axis=0)
            test_rmse[seed] = {m: band_metrics(a, t, data.band_t, ranges, ok)["rmse"]["mean"] for m, a in preds.items()}
        methods = sorted(test_rmse[args.seeds[0]])
        mean_test = {m: float(np.mean([test_rmse[s][m] for s in args.seeds])) for m in methods}
        sd_test = {m: float(np.std([test_rmse[s][m] for s in args.seeds])) for m in methods}
        table = aggregate_validation(runs)
        both = [m for m in methods if m in table]
        rho_vt = (
            _spearman(np.array([table[m]["rmse"] for m in both]), np.array([mean_test[m] for m in both]))
            if len(both) > 2
            else float("nan")
        )
        winner = min(mean_test, key=lambda m: mean_test[m])
        for margin in args.margins:
            method, reason = choose_method(table, margin)
            rhos = []
            for preds, uncs in test_preds.values():
                u = uncs.get(method, uncs["blend"]).mean(axis=0)
                e = np.abs(preds[method] - t).mean(axis=0)
                ok = valid & np.isfinite(u) & np.isfinite(e)
                rhos.append(_spearman(u[ok], e[ok]))
            results.append(
                {
                    "experiment": name,
                    "task": task,
                    "margin": margin,
                    "validations": ";".join(
                        f"{v.target}<-{'/'.join(v.guides)} (mismatch {v.gap_mismatch_days:.0f} d)" for v in plan
                    ),
                    "selected": method,
                    "reason": reason,
                    "selected_rmse": mean_test[method],
                    "selected_rmse_sd": sd_test[method],
                    "blend_rmse": mean_test["blend"],
                    "vs_blend": mean_test[method] / mean_test["blend"] - 1.0,
                    "test_winner": winner,
                    "winner_rmse": mean_test[winner],
                    "vs_winner": mean_test[method] / mean_test[winner] - 1.0,
                    "val_winner": min(table, key=lambda m: table[m]["rmse"]) if table else "",
                    "spearman_val_test": rho_vt,
                    "spearman_unc_err": float(np.mean(rhos)),
                    "test_rmse": json.dumps({m: round(v, 5) for m, v in mean_test.items()}),
                    "val_rmse": json.dumps({m: round(v["rmse"], 5) for m, v in table.items()}),
                }
            )
    wall = time.perf_counter() - t_start
    print(f"\n{n_train} trainings ({args.steps} steps, patch {args.patch}, {args.threads} thread(s)) in {wall:.0f} s\n")
    print(
        "| experiment | margin | validation (target ← guides) | selected | test winner | selected RMSE | blend | vs blend | vs winner | ρ(val, test) | ρ(unc, err) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['experiment']} | {r['margin']:.2f} | {r['validations'] or 'none possible'} | {r['selected']} | {r['test_winner']} | "
            f"{r['selected_rmse']:.4f} ± {r['selected_rmse_sd']:.4f} | {r['blend_rmse']:.4f} | {r['vs_blend']:+.1%} | "
            f"{r['vs_winner']:+.1%} | {r['spearman_val_test']:+.2f} | {r['spearman_unc_err']:+.2f} |"
        )
    if args.csv is not None and results:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(results[0]))
            w.writeheader()
            w.writerows(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
