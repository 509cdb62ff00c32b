"""Quality benchmark on the real time-series chips and the demo world (DESIGN §6).

For every experiment of :data:`realts.EXPERIMENTS` the stacks are built with the project's own
:func:`pipeline_lib.stacks.run_stack` from the chips (``benchmarks/realts.py``), then every variant
of the registry (the paper's six and the shortcut-fix candidates) is trained with
:func:`pipeline_lib.model.train.run_train` for each seed, predicted with ``run_predict`` and scored
with ``run_evaluate`` next to the baselines (neighbour_j, neighbour_k, blend). Budget per training:
``patch_px`` 32, ``max_steps`` 60 (the issue's budget), batch 16, prediction tiles 128/32, CPU,
torch threads 1 per worker.

Also measured per trained guided model: the **shortcut diagnostic** — the slope of G(0, T_g) on T_g
(normalised units, per band, mean over bands and guides) beside the truth's own slope of
T_i − T_g on T_g. The shortcut G(·, T_g) = −T_g + c has slope −1; a network that reads the source
difference has slope ≈ 0 at zero source change.

Part 2 (``--part2``): for the SAR→visible experiments, a second stack with ``guides: auto`` (every
clear date within ``--window-days`` of the target, :func:`pipeline_lib.guides.auto_guides`); the
networks train on every ordered pair of those dates and predict (a) with all of them (``<v>_auto``)
and (b) with the experiment's two guides (``<v>_allpairs``); ``blend_auto`` is the N-guide blend.

Output: ``--out`` CSV (one row per experiment, seed, method, subset, metric) and a Markdown summary
beside it (mean ± sd over seeds). Extra methods (e.g. the ``selected`` prediction, DESIGN §6)
join through :data:`EXTRA_METHODS`: name → function(stack_nc, work_dir, seed) → (pred_tif, unc_tif).

Usage (≈ 30 min on 2 idle cores for the real chips, 3 seeds):
    nice -n 10 python benchmarks/bench_quality.py --workers 2 --seeds 0 1 2 --part2
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import math
import multiprocessing
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import realts

from pipeline_lib.guides import auto_guides
from pipeline_lib.model import variants as reg
from pipeline_lib.model.params import TrainParams

REPO = Path(__file__).resolve().parents[1]
PARAMS: dict[str, Any] = {"patch_px": 32, "max_steps": 60, "tile_px": 128, "overlap_px": 32, "log_every": 1000}
#: name → fn(stack_nc, work_dir, seed) → (prediction COG, uncertainty COG or None); scored like the rest.
KEEP_MODELS = os.environ.get("BENCH_KEEP_MODELS") == "1"
EXTRA_METHODS: dict[str, Callable[[Path, Path, int], tuple[Path, Path | None]]] = {}


def _params(stack_nc: Path, seed: int) -> TrainParams:
    """The schema's settings for the stack's task with PARAMS and ``seed``."""
    import xarray as xr

    with xr.open_dataset(stack_nc) as ds:
        task = str(ds.attrs["task"])
    return TrainParams.for_task(task, **PARAMS, seed=seed)


def build_stacks(work: Path, experiments: list[tuple[str, str, str, str, tuple[str, ...]]], window_days: int,
                 part2: bool) -> dict[str, dict[str, Any]]:  # fmt: skip
    """Stacks and truths per experiment (and ``<name>_auto`` with auto guides when ``part2``)."""
    from pipeline_lib.stacks import run_stack

    regions: dict[str, realts.Region] = {}
    out: dict[str, dict[str, Any]] = {}
    for region, name, task, target, guides in experiments:
        if region not in regions:
            (work / "inputs" / region).mkdir(parents=True, exist_ok=True)
            regions[region] = realts.REGIONS[region](work / "inputs" / region)
        r = regions[region]
        todo = [(name, list(guides))]
        if part2 and task == "sar_to_visible":
            have = {d: f for d, f in r.clear_s2.items() if d in r.s1 or task == "visible_to_swir"}
            dates = {d: realts.as_date(d) for d in have}
            todo.append((f"{name}_auto", auto_guides(have, dates, target, window_days, 0.9)))
        for exp_name, g in todo:
            stack = work / "stacks" / f"{exp_name}.nc"
            truth = work / "truth" / f"{exp_name}.tif"
            if not stack.is_file():
                exp = {"name": exp_name, "task": task, "target": target, "guides": g}
                run_stack(exp, r.s1, r.s2, None, stack, truth)
            out[exp_name] = {"region": region, "task": task, "target": target, "guides": g, "stack": stack,
                             "truth": truth}  # fmt: skip
    return out


def shortcut_slopes(ckpt: Path, stack_nc: Path, truth_tif: Path) -> tuple[float, float]:
    """(slope of G(0, T_g) on T_g, slope of T_i − T_g on T_g): normalised units, mean over bands and guides."""
    import torch

    from pipeline_lib.model.data import load_stack, normalise
    from pipeline_lib.model.evaluate import read_bands
    from pipeline_lib.model.predict import predict_tiled
    from pipeline_lib.model.train import build_generator, load_checkpoint

    data = load_stack(stack_nc)
    ck = load_checkpoint(ckpt)
    p = TrainParams.from_checkpoint(ck["params"], str(ckpt))
    g = build_generator(ck["variant"], len(data.band_s), len(data.band_t), p)
    g.load_state_dict(ck["generator"])
    g.eval()
    n_s = len(data.band_s)

    def fn(tiles: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(tiles))
        with torch.inference_mode():
            return g(t[:, :n_s], t[:, n_s:]).float().numpy()

    truth = normalise(read_bands(truth_tif, data.band_t), data.target_range)
    net, tru = [], []
    for k in range(data.n_guides):
        ok = data.valid_g[k] & data.valid_i & np.isfinite(truth).all(axis=0)
        inp = np.concatenate([np.zeros_like(data.s_i), data.t_g[k]]).astype(np.float32)
        out = predict_tiled(fn, inp, len(data.band_t), p.tile_px, p.overlap_px)
        for b in range(len(data.band_t)):
            tg = data.t_g[k, b][ok]
            var = float(np.var(tg))
            if var <= 0:
                continue
            net.append(float(np.cov(out[b][ok], tg, bias=True)[0, 1]) / var)
            tru.append(float(np.cov(truth[b][ok] - tg, tg, bias=True)[0, 1]) / var)
    return float(np.mean(net)), float(np.mean(tru))


def _job(args: tuple[str, int, Path, Path, str, list[tuple[str, Path, Path]]]) -> list[dict[str, Any]]:
    """Train (variant, seed) on ``train_stack``; predict on each (method, stack, truth); paths, time, slopes."""
    import torch

    from pipeline_lib.model.predict import run_predict
    from pipeline_lib.model.train import run_train

    torch.set_num_threads(1)
    variant, seed, train_stack, work, tag, targets = args
    ckpt = work / "models" / tag / f"{variant}_s{seed}.pt"
    t0 = time.perf_counter()
    if not ckpt.is_file():
        run_train(train_stack, variant, ckpt, _params(train_stack, seed), threads=1, device="cpu")
    t_train = time.perf_counter() - t0
    out: list[dict[str, Any]] = []
    for method, pred_stack, truth in targets:
        out_dir = work / "pred" / pred_stack.stem
        pred = out_dir / f"{method}_s{seed}.tif"
        unc = out_dir / f"{method}_s{seed}_uncertainty.tif" if reg.get_variant(variant).uncertainty else None
        run_predict(pred_stack, variant, ckpt, pred, unc, _params(pred_stack, seed), threads=1, device="cpu")
        res: dict[str, Any] = {"method": method, "seed": seed, "pred": pred, "unc": unc, "train_s": t_train,
                               "experiment": pred_stack.stem}  # fmt: skip
        if reg.get_variant(variant).guided:
            res["shortcut_slope"], res["truth_slope"] = shortcut_slopes(ckpt, pred_stack, truth)
        out.append(res)
    if not KEEP_MODELS:
        ckpt.unlink()  # ≈ 70 MB each (weights + Adam state of G and D)
    return out


def _baselines(stacks: dict[str, dict[str, Any]], work: Path) -> dict[str, dict[str, tuple[Path, Path | None]]]:
    from pipeline_lib.model.predict import run_predict

    out: dict[str, dict[str, tuple[Path, Path | None]]] = defaultdict(dict)
    for name, s in stacks.items():
        for b in reg.baselines():
            if name.endswith("_auto") and b != "blend":
                continue
            pred = work / "pred" / name / f"{b}.tif"
            unc = work / "pred" / name / f"{b}_uncertainty.tif" if reg.get_variant(b).uncertainty else None
            if not pred.is_file():  # deterministic; concurrent runs (one per seed) share them
                run_predict(s["stack"], b, None, pred, unc, _params(s["stack"], 0), threads=1, device="cpu")
            out[name][b] = (pred, unc)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=list(reg.networks()))
    ap.add_argument("--experiments", nargs="+", default=[e[1] for e in realts.EXPERIMENTS])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--part2", action="store_true", help="also train on every ordered pair of the auto guides")
    ap.add_argument("--part2-variants", nargs="+", default=["tirsit", "no_uc", "no_uc_sg"])
    ap.add_argument("--window-days", type=int, default=62)
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench_quality")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "quality.csv")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, help="only merge these CSVs into --out (+ .md)")
    ap.add_argument("--evaluate-only", action="store_true",
                    help="score the predictions already in --work (an interrupted run; no shortcut slopes)")  # fmt: skip
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.merge:
        merge(args.merge, args.out)
        return
    if args.evaluate_only:
        evaluate_from_disk(args)
        return
    PARAMS["max_steps"] = args.steps
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t_start = time.perf_counter()
    exps = [e for e in realts.EXPERIMENTS if e[1] in args.experiments]
    work = args.work
    stacks = build_stacks(work, exps, args.window_days, args.part2)
    base = _baselines(stacks, work)
    jobs = []
    for region, name, task, target, guides in exps:
        del region, task, target, guides
        s = stacks[name]
        for seed in args.seeds:
            for v in args.variants:
                jobs.append((v, seed, s["stack"], work, name, [(v, s["stack"], s["truth"])]))
            if f"{name}_auto" in stacks:
                a = stacks[f"{name}_auto"]
                for v in args.part2_variants:
                    both = [(f"{v}_auto", a["stack"], a["truth"]), (f"{v}_allpairs", s["stack"], s["truth"])]
                    jobs.append((v, seed, a["stack"], work, f"{name}_auto", both))
    print(f"{len(jobs)} trainings/predictions on {args.workers} worker(s)", file=sys.stderr, flush=True)
    results: list[dict[str, Any]] = []
    # spawn, not fork: a forked child deadlocks in GDAL/OpenMP state inherited from the parent
    with ProcessPoolExecutor(max_workers=args.workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        for i, res in enumerate(pool.map(_job, jobs), 1):
            results.extend(res)
            if i % 10 == 0:
                print(f"  {i}/{len(jobs)} done, {time.perf_counter() - t_start:.0f} s", file=sys.stderr, flush=True)
    rows = evaluate_all(exps, stacks, base, results, args.seeds, work)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["experiment", "task", "region", "seed", "method", "subset", "metric",
                                           "value"], lineterminator="\n")  # fmt: skip
        w.writeheader()
        w.writerows(rows)
    wall = time.perf_counter() - t_start
    train_s = [r["train_s"] for r in results if r["train_s"] > 0.5]
    meta = {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "workers": args.workers,
        "seeds": args.seeds,
        "params": PARAMS,
        "wall_s": round(wall, 1),
        "trainings": len(train_s),
        "train_s_median": round(float(np.median(train_s)), 2) if train_s else None,
        "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
    }
    summary = summarise(rows, meta)
    args.out.with_suffix(".md").write_text(summary, encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")
    print(summary)
    print(json.dumps(meta))


def evaluate_from_disk(args: argparse.Namespace) -> None:
    """Score whatever predictions of ``--seeds`` are in ``--work`` (e.g. after an interrupted run)."""
    import re

    exps = [e for e in realts.EXPERIMENTS if e[1] in args.experiments]
    stacks = {}
    for region, name, task, _, _ in exps:
        for n in (name, f"{name}_auto"):
            st = args.work / "stacks" / f"{n}.nc"
            if st.is_file():
                stacks[n] = {"region": region, "task": task, "stack": st, "truth": args.work / "truth" / f"{n}.tif"}
    base: dict[str, dict[str, tuple[Path, Path | None]]] = defaultdict(dict)
    results: list[dict[str, Any]] = []
    pat = re.compile(r"^(?P<m>.+)_s(?P<s>\d+)$")
    for n in stacks:
        for tif in sorted((args.work / "pred" / n).glob("*.tif")):
            if tif.stem.endswith("_uncertainty"):
                continue
            unc = tif.with_name(f"{tif.stem}_uncertainty.tif")
            hit = pat.match(tif.stem)
            if hit is None:
                base[n][tif.stem] = (tif, unc if unc.is_file() else None)
            elif int(hit["s"]) in args.seeds:
                results.append({"method": hit["m"], "seed": int(hit["s"]), "pred": tif,
                                "unc": unc if unc.is_file() else None, "experiment": n})  # fmt: skip
    done = [e for e in exps if e[1] in base]
    rows = evaluate_all(done, stacks, base, results, args.seeds, args.work)
    with open(args.out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=["experiment", "task", "region", "seed", "method", "subset", "metric",
                                           "value"], lineterminator="\n")  # fmt: skip
        w.writeheader()
        w.writerows(rows)
    meta = {"machine": platform.platform(), "workers": args.workers, "seeds": args.seeds, "params": PARAMS,
            "wall_s": 0.0, "trainings": len(results), "train_s_median": None,
            "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())}  # fmt: skip
    args.out.with_suffix(".md").write_text(summarise(rows, meta), encoding="utf-8")
    args.out.with_suffix(".json").write_text(json.dumps(meta), encoding="utf-8")


def merge(parts: list[Path], out: Path) -> None:
    """Concatenate per-seed CSVs (runs of this script) and write the summary of all of them."""
    rows: list[dict[str, Any]] = []
    for part in parts:
        with open(part, newline="", encoding="utf-8") as fh:
            rows.extend(csv.DictReader(fh))
    with open(out, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    metas = [
        json.loads(p.with_suffix(".json").read_text(encoding="utf-8"))
        for p in parts
        if p.with_suffix(".json").is_file()
    ]
    meta = {**(metas[0] if metas else {}), "seeds": sorted({int(r["seed"]) for r in rows}),
            "wall_s": round(sum(m.get("wall_s", 0.0) for m in metas), 1),
            "trainings": sum(m.get("trainings", 0) for m in metas)}  # fmt: skip
    out.with_suffix(".md").write_text(summarise(rows, meta), encoding="utf-8")


def evaluate_all(exps: list[tuple[str, str, str, str, tuple[str, ...]]], stacks: dict[str, dict[str, Any]],
                 base: dict[str, dict[str, tuple[Path, Path | None]]], results: list[dict[str, Any]],
                 seeds: list[int], work: Path) -> list[dict[str, Any]]:  # fmt: skip
    """run_evaluate per (experiment, seed) over baselines, networks, part-2 methods and extras; CSV rows."""
    from pipeline_lib.model.evaluate import run_evaluate

    rows: list[dict[str, Any]] = []
    for region, name, task, _, _ in exps:
        s = stacks[name]
        for seed in seeds:
            preds = {b: p for b, (p, _) in base[name].items()}
            uncs = {b: u for b, (_, u) in base[name].items() if u is not None}
            if f"{name}_auto" in base:
                preds["blend_auto"], uncs["blend_auto"] = base[f"{name}_auto"]["blend"]  # type: ignore[assignment]
            for r in results:
                if r["seed"] != seed or not (r["experiment"] == name or r["experiment"] == f"{name}_auto"):
                    continue
                preds[r["method"]] = r["pred"]
                if r["unc"] is not None:
                    uncs[r["method"]] = r["unc"]
                for key in ("shortcut_slope", "truth_slope"):
                    if key in r:
                        rows.append(_row(name, task, region, seed, r["method"], "all", key, r[key]))
            for m, fn in EXTRA_METHODS.items():
                p, u = fn(s["stack"], work, seed)
                preds[m] = p
                if u is not None:
                    uncs[m] = u
            out = work / "metrics" / f"{name}_s{seed}.json"
            run_evaluate(s["truth"], preds, s["stack"], out, out.with_suffix(".csv"), uncs)
            block = json.loads(out.read_text(encoding="utf-8"))[name]
            for m in preds:
                for metric in ("rmse", "ssim", "cc"):
                    rows.append(_row(name, task, region, seed, m, "all", metric, block[m][metric]["mean"]))
                    rows.append(_row(name, task, region, seed, m, "changed", metric,
                                     block["changed"][m][metric]["mean"]))  # fmt: skip
                rho = block["info"]["spearman_uncertainty_abs_error"].get(m)
                if rho is not None:
                    rows.append(_row(name, task, region, seed, m, "all", "spearman_unc", rho))
    return rows


def _row(exp: str, task: str, region: str, seed: int, method: str, subset: str, metric: str, value: float
         ) -> dict[str, Any]:  # fmt: skip
    return {"experiment": exp, "task": task, "region": region, "seed": seed, "method": method, "subset": subset,
            "metric": metric, "value": f"{float(value):.6g}"}  # fmt: skip


def _ms(values: list[float]) -> str:
    v = [x for x in values if math.isfinite(x)]
    if not v:
        return "–"
    if len(v) == 1:
        return f"{v[0]:.4f}"
    return f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f}"


_PAPER = ("neighbour_j", "neighbour_k", "blend", "pix2pix", "tirsit", "tirsit_noadv", "no_uc", "no_sg", "no_uc_sg")
_REF = ("blend", "tirsit")


def _is_ref(m: str) -> bool:
    return m in _REF


def _order(m: str) -> tuple[int, int, str]:
    if m in _PAPER:
        return (0, _PAPER.index(m), m)
    if m.endswith("_auto") or m.endswith("_allpairs"):
        return (2, 0 if m.startswith("blend") else 1, m)
    return (1, 0, m)


GROUPS: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("the paper's variants and the baselines", lambda m: m in _PAPER),
    ("shortcut departures (part 3) vs blend and tirsit", lambda m: _is_ref(m) or _order(m)[0] == 1),
    (
        "whole series (part 2): _auto = guides: auto, _allpairs = trained on all pairs, 2 guides at prediction",
        lambda m: _is_ref(m) or m in ("no_uc", "no_uc_sg") or _order(m)[0] == 2,
    ),
)


def summarise(rows: list[dict[str, Any]], meta: dict[str, Any]) -> str:
    """Markdown tables (mean ± sd over seeds): RMSE all / changed, SSIM, CC, Spearman, shortcut slopes."""
    table: dict[tuple[str, str, str, str], list[float]] = defaultdict(list)
    methods: list[str] = []
    exps: list[str] = []
    for r in rows:
        table[(r["experiment"], r["method"], r["subset"], r["metric"])].append(float(r["value"]))
        if r["method"] not in methods:
            methods.append(r["method"])
        if r["experiment"] not in exps:
            exps.append(r["experiment"])
    g = meta.get
    out = [f"# Quality benchmark ({g('date_utc')} UTC, {g('machine')}, {g('workers')} workers)\n",
           f"params {json.dumps(g('params'))}, seeds {g('seeds')}, wall {g('wall_s')} s, "
           f"{g('trainings')} trainings (median {g('train_s_median')} s each)\n"]  # fmt: skip
    for subset, metric in (("all", "rmse"), ("changed", "rmse"), ("all", "ssim"), ("all", "cc"),
                           ("changed", "cc"), ("all", "spearman_unc"), ("all", "shortcut_slope"),
                           ("all", "truth_slope")):  # fmt: skip
        present = sorted((m for m in methods if any((e, m, subset, metric) in table for e in exps)), key=_order)
        for group, pick in GROUPS:
            cols = [m for m in present if pick(m)]
            rows_e = [e for e in exps if any((e, m, subset, metric) in table for m in cols if not _is_ref(m))]
            if not cols or not rows_e:
                continue
            out.append(f"\n## {metric} ({subset} pixels) — {group}\n")
            out.append("| experiment | " + " | ".join(cols) + " |")
            out.append("|---" * (len(cols) + 1) + "|")
            for e in rows_e:
                cells = [_ms(table.get((e, m, subset, metric), [])) for m in cols]
                out.append(f"| {e} | " + " | ".join(cells) + " |")
    out.extend(_versus(table, exps, methods, "tirsit"))
    out.extend(_versus(table, exps, methods, "blend"))
    return "\n".join(out) + "\n"


def _versus(table: dict[tuple[str, str, str, str], list[float]], exps: list[str], methods: list[str], ref: str
            ) -> list[str]:  # fmt: skip
    """Per method: wins over ``ref`` (mean RMSE over seeds, all pixels) and the geometric-mean RMSE ratio,
    separately for the real chips' SAR→visible, visible→SWIR and the demo."""

    def mean(e: str, m: str) -> float:
        v = table.get((e, m, "all", "rmse"), [])
        return float(np.mean(v)) if v else math.nan

    groups = {
        "real SAR→visible": [e for e in exps if "_s2v_" in e and not e.startswith("demo")],
        "real visible→SWIR": [e for e in exps if "_v2s_" in e and not e.startswith("demo")],
        "demo": [e for e in exps if e.startswith("demo")],
    }
    lines = [f"\n## RMSE against {ref} (mean over seeds; wins/experiments, geometric-mean ratio)\n",
             "| method | " + " | ".join(groups) + " |", "|---" * (len(groups) + 1) + "|"]  # fmt: skip
    for m in sorted(set(methods), key=_order):
        if m == ref:
            continue
        cells = []
        for es in groups.values():
            pairs = [(mean(e, m), mean(e, ref)) for e in es]
            pairs = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b) and b > 0]
            if not pairs:
                cells.append("–")
                continue
            wins = sum(a < b for a, b in pairs)
            ratio = math.exp(float(np.mean([math.log(a / b) for a, b in pairs])))
            cells.append(f"{wins}/{len(pairs)}, ×{ratio:.3f}")
        if any(c != "–" for c in cells):
            lines.append(f"| {m} | " + " | ".join(cells) + " |")
    return lines


if __name__ == "__main__":
    main()
