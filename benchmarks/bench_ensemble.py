"""Seed ensembles (``train.ensemble``, DESIGN §6) on the real visible→SWIR chips: do they beat the blend more reliably?

Runs after (and reuses the work folder of) ``bench_select.py`` with the same ``--variants``, ``--seeds`` and
``--validations``: the test and validation stacks and the single-seed checkpoints
``{out}/{experiment}/{test|valN}/seed{s}/{variant}.pt``. Adds the test checkpoints of seeds up to
max(seeds) + members − 1, then per test seed s scores on the test truth (RMSE, mean over bands,
reflectance, on the pixels where every method is finite):

- ``blend``; each variant alone (seed s); each variant's ensemble (members s … s + n − 1, predicted by
  :func:`pipeline_lib.model.predict.run_predict` with the list of checkpoints, as the workflow does);
- ``selected``: the margin rule on the single-model validation scores (the pipeline with ``ensemble: 1``);
- ``selected_ens``: the same choice, applied to the ensembles' test predictions (the pipeline with
  ``ensemble: n``: validation models stay single, only the test's networks become ensembles);
- ``selected_ensval``: the margin rule on *ensemble* validation scores (the validation models of seeds
  0 … n − 1 averaged per validation experiment), applied to the ensembles (what-if, not the pipeline).

Test seeds s are ``--bases`` (default ``--seeds``; ``--bases 0 3 6`` with 3 members: disjoint
ensembles, whose spread over s is not shrunk by shared members). Experiments with no validation
experiment (Slovenia) get the schema's ``select.fallback`` for the task (``--no-fallback``: the blend,
as before that key existed). Prints Markdown, writes ``--csv`` (one row per experiment, seed, method).

    OMP_NUM_THREADS=1 python benchmarks/bench_select.py --out W --variants no_uc no_uc_sg --validations 1 \
        --seeds 0 1 2 --only mon06-v2s mon03-v2s p18-v2s slo-v2s
    OMP_NUM_THREADS=1 python benchmarks/bench_ensemble.py --out W --csv benchmarks/results/ensemble.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_select as bs

from pipeline_lib.cog import read_named_bands
from pipeline_lib.config import schema_defaults
from pipeline_lib.metrics import band_metrics
from pipeline_lib.model.data import load_stack
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.predict import run_predict
from pipeline_lib.model.select import aggregate_validation, choose_method, plan_validation, score_predictions
from pipeline_lib.model.train import run_train

V2S = ("mon06-v2s", "mon03-v2s", "p18-v2s", "slo-v2s")


def _read(path: Path) -> np.ndarray:
    arr, _, _ = read_named_bands(path, None)
    return arr


def _predict(stack: Path, variant: str, ckpts: list[Path], params: TrainParams, out: Path) -> np.ndarray:
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        run_predict(stack, variant, ckpts or None, out, None, params, 1, "cpu")
    return _read(out)


def _truth(stack: Path, truth_tif: Path) -> tuple[np.ndarray, np.ndarray, list[str], list[float]]:
    data = load_stack(stack)
    truth, desc, _ = read_named_bands(truth_tif, None)
    t = np.stack([truth[desc.index(b)] for b in data.band_t])
    valid = (truth[desc.index("valid")] > 0.5) & data.valid_i & np.isfinite(t).all(axis=0)
    return t, valid, data.band_t, [float(hi - lo) for lo, hi in data.target_range]


def _ckpt(exp_dir: Path, key: str, seed: int, variant: str) -> Path:
    return exp_dir / key / f"seed{seed}" / f"{variant}.pt"


def slim(root: Path) -> int:
    """Drop the discriminator and optimiser states of every finished checkpoint under ``root`` (bytes freed).

    Prediction reads only the generator; a 60-step no_uc checkpoint shrinks from ≈ 70 MB to ≈ 1/4 of that.
    """
    from pipeline_lib.model.train import load_checkpoint, save_checkpoint

    freed = 0
    for ck in sorted(root.rglob("*.pt")):
        obj = load_checkpoint(ck)
        if obj.get("opt_g") is None or not obj.get("complete"):
            continue
        before = ck.stat().st_size
        save_checkpoint({**obj, "discriminator": None, "opt_g": None, "opt_d": None}, ck)
        freed += before - ck.stat().st_size
    return freed


def _ensure_trained(stack: Path, exp_dir: Path, variants: list[str], seeds: list[int], params: TrainParams) -> int:
    n = 0
    for seed in seeds:
        for v in variants:
            ck = _ckpt(exp_dir, "test", seed, v)
            if not ck.exists():
                run_train(stack, v, ck, params.replace(seed=seed), threads=1, device="cpu")
                slim(ck.parent)
                n += 1
    return n


def _ensemble_validation(exp_dir: Path, plan: list[Any], variants: list[str], members: int, params: TrainParams
                         ) -> dict[str, dict[str, float]]:  # fmt: skip
    """Validation table of the blend and each variant's ensemble of the validation seeds 0 … members − 1."""
    runs = []
    for v in plan:
        st, tr = exp_dir / v.name / "stack.nc", exp_dir / v.name / "truth.tif"
        t, valid, bands, ranges = _truth(st, tr)
        preds = {"blend": _predict(st, "blend", [], params, exp_dir / v.name / "ens" / "blend.tif")}
        for var in variants:
            cks = [c for c in (_ckpt(exp_dir, v.name, s, var) for s in range(members)) if c.exists()]
            if cks:
                preds[var] = _predict(st, var, cks, params, exp_dir / v.name / "ens" / f"{var}_n{members}.tif")
        runs.append({"methods": score_predictions(t, valid, preds, bands, ranges), "valid_pixels": int(valid.sum())})
    return aggregate_validation(runs)


def _single_validation(exp_dir: Path, plan: list[Any], seeds: list[int]) -> dict[str, dict[str, float]]:
    import json

    runs = []
    for v in plan:
        for s in seeds:
            f = exp_dir / v.name / f"seed{s}" / "scores.json"
            if f.exists():
                runs.append(json.loads(f.read_text(encoding="utf-8")))
    return aggregate_validation(runs)


def _choose(table: dict[str, dict[str, float]], margin: float, fallback: str) -> tuple[str, str]:
    """The margin rule, and (as ``run_select``) the task's ``select.fallback`` when nothing was validated."""
    if "blend" not in table:
        return fallback, f"no validation score: {fallback} (select.fallback)"
    return choose_method(table, margin)


def run_experiment(name: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows (experiment, seed, method, rmse) of one visible→SWIR experiment."""
    _, folder, task, target, guides = next(e for e in bs.EXPERIMENTS if e[0] == name)
    exp_dir = args.out / name
    params = TrainParams.for_task(task, max_steps=args.steps, patch_px=args.patch, tile_px=128, overlap_px=32)
    s1, s2 = bs.convert_chips(folder, args.out / "chips" / folder)
    plan = plan_validation(target, guides, sorted(s2), args.validations)
    stack, truth_tif = exp_dir / "test" / "stack.nc", exp_dir / "test" / "truth.tif"
    if not stack.exists():
        raise SystemExit(f"{stack}: run bench_select.py --out {args.out} first (it builds the stacks)")
    bases = args.bases or args.seeds
    all_seeds = sorted({s + m for s in bases for m in range(args.members)})
    n_new = _ensure_trained(stack, exp_dir, args.variants, all_seeds, params)
    fallback = schema_defaults("select")["fallback"][task] if args.fallback else "blend"
    single_choice, why = _choose(_single_validation(exp_dir, plan, args.seeds), args.margin, fallback)
    ens_choice, why_ens = _choose(_ensemble_validation(exp_dir, plan, args.variants, args.members, params),
                                  args.margin, fallback)  # fmt: skip
    t, valid, bands, ranges = _truth(stack, truth_tif)
    rows = []
    for s in bases:
        pdir = exp_dir / "test" / "ens" / f"seed{s}"
        preds = {"blend": _predict(stack, "blend", [], params, pdir / "blend.tif")}
        for v in args.variants:
            preds[v] = _predict(stack, v, [_ckpt(exp_dir, "test", s, v)], params, pdir / f"{v}.tif")
            members = [_ckpt(exp_dir, "test", s + m, v) for m in range(args.members)]
            preds[f"{v}_ens"] = _predict(stack, v, members, params, pdir / f"{v}_n{args.members}.tif")
        preds["selected"] = preds[single_choice]
        preds["selected_ens"] = preds[single_choice if single_choice == "blend" else f"{single_choice}_ens"]
        preds["selected_ensval"] = preds[ens_choice if ens_choice == "blend" else f"{ens_choice}_ens"]
        ok = valid.copy()
        for a in preds.values():
            ok &= np.isfinite(a).all(axis=0)
        for m, a in preds.items():
            rmse = band_metrics(a, t, bands, ranges, ok)["rmse"]["mean"]
            rows.append({"experiment": name, "seed": s, "method": m, "rmse": float(rmse), "pixels": int(ok.sum()),
                         "choice": single_choice, "choice_ensval": ens_choice, "new_trainings": n_new,
                         "reason": why, "reason_ensval": why_ens})  # fmt: skip
    return rows


def _table(rows: list[dict[str, Any]], variants: list[str]) -> str:
    methods = ["blend", *variants, *(f"{v}_ens" for v in variants), "selected", "selected_ens", "selected_ensval"]
    out = ["| experiment | " + " | ".join(methods) + " | choice (single val / ensemble val) |",
           "|---" * (len(methods) + 2) + "|"]  # fmt: skip
    for name in dict.fromkeys(r["experiment"] for r in rows):
        rs = [r for r in rows if r["experiment"] == name]
        blend = float(np.mean([r["rmse"] for r in rs if r["method"] == "blend"]))
        cells = []
        for m in methods:
            v = [r["rmse"] for r in rs if r["method"] == m]
            mean, sd = float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0
            cells.append(f"{mean:.4f} ± {sd:.4f}" + ("" if m == "blend" else f" ({mean / blend - 1:+.1%})"))
        out.append(f"| {name} | " + " | ".join(cells) + f" | {rs[0]['choice']} / {rs[0]['choice_ensval']} |")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="bench_select.py's work folder")
    ap.add_argument("--csv", type=Path, default=None)
    ap.add_argument("--variants", nargs="+", default=["no_uc", "no_uc_sg"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="validation seeds (bench_select's)")
    ap.add_argument("--bases", nargs="+", type=int, default=None,
                    help="train.seed of each test run (default --seeds): single = base, ensemble = base … base + n − 1; "
                         "0 3 6 gives disjoint ensembles")  # fmt: skip
    ap.add_argument("--members", type=int, default=3)
    ap.add_argument("--validations", type=int, default=1)
    ap.add_argument("--margin", type=float, default=0.05)
    ap.add_argument("--no-fallback", dest="fallback", action="store_false",
                    help="keep the blend without validation (as before select.fallback) instead of the schema's fallback")  # fmt: skip
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--patch", type=int, default=32)
    ap.add_argument("--only", nargs="*", default=list(V2S))
    ap.add_argument("--slim", action="store_true", help="only slim the checkpoints under --out (disk space)")
    args = ap.parse_args()
    if args.slim:
        print(f"freed {slim(args.out) / 1e6:.0f} MB")
        return 0
    torch.set_num_threads(1)
    t0, c0 = time.perf_counter(), time.process_time()
    rows: list[dict[str, Any]] = []
    for name in args.only:
        rows.extend(run_experiment(name, args))
        print(f"[{time.perf_counter() - t0:6.0f} s] {name} done", file=sys.stderr, flush=True)
    print(_table(rows, args.variants))
    print(f"\nwall {time.perf_counter() - t0:.0f} s, CPU {time.process_time() - c0:.0f} s (this process)")
    if args.csv is not None:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with open(args.csv, "w", newline="", encoding="utf-8") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
            w.writeheader()
            w.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
