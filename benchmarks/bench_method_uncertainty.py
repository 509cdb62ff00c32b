"""Does the methods' disagreement, or the network's error on the guide dates, rank the error of ``selected``?

``selected`` is the blend on SAR→visible and ``no_uc_sg`` on visible→SWIR (``bench_select``). The pipeline
predicts every variant on an experiment anyway, so their disagreement is available to the select job at no
extra training. Truth-free signals scored here (each mean over bands, ``5`` = 5 × 5 mean):

- ``own5``: the selected method's own spread; ``src5``, ``dpred5``: the source change and predicted change
  of the ranked rule (:mod:`pipeline_lib.model.uncertainty`); ``ranked``: that rule as the select job
  writes it (on the selected method's spread);
- ``dnb5``: |no_uc_sg − blend| (network against blend, whichever is selected);
- ``dp2p5``: |pix2pix − selected| (an unguided network against it);
- ``sdall5``: the standard deviation over the predictions of every variant and the blend; ``sdnet5``: over
  the guided networks only; ``dsel5``: the mean |m − selected| over the other methods m;
- ``self5``: ``no_uc_sg``'s own error on the guide dates (guide h predicted from guide g, both known,
  mean over ordered pairs), and ``selfw5`` the same weighted by the blend weights of the *source* guide;
  ``selfp2p5``: pix2pix's error on the guide dates (T_g from S_g).

None reads the target image of date i; it is read only for the error. Rules: every rank sum of 1–4
signals of :data:`SEARCH`, ranked by the mean ρ (over seeds) on the validation experiments that neither
predict nor use any test target date (as ``bench_uncertainty`` chose ``ranked``); plus a non-negative
rank-space fit (scipy NNLS) on the same validation experiments; the same choice per task and per test
experiment (validation experiments that avoid its own target date); and, for reference only, the rule
with the most test passes chosen *on the test truth* (an oracle, the ceiling of the search). Each network
is trained ``--steps`` steps per seed on the experiment's own stack (60 steps ≈ 5 s on a core; 5 networks
× 19 experiments × 3 seeds ≈ 25 min of one core); predictions are cached under ``--out``
(``{experiment}/{key}/methods/seed{s}.npz``), so a rerun only scores (about 3 min).

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_method_uncertainty.py --out /tmp/unc6/w \
        --seeds 0 1 2 --val-seeds 0 --max-parts 3

``--out`` is ``bench_uncertainty.py``'s work folder (its stacks are reused; run that one first).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import sys
import time
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_select import EXPERIMENTS

from pipeline_lib.cog import read_named_bands
from pipeline_lib.errors import ModelError
from pipeline_lib.model.baselines import guide_weights, weighted_spread, weighted_sum
from pipeline_lib.model.data import StackData, load_stack
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.uncertainty import predicted_change, ranked_uncertainty, source_change

NETS = ("no_uc_sg", "no_uc", "no_sg", "tirsit", "pix2pix")
GUIDED = ("no_uc_sg", "no_uc", "no_sg", "tirsit")
SIGNALS = (
    "own5",
    "src5",
    "dpred5",
    "ranked",
    "dnb5",
    "dp2p5",
    "sdall5",
    "sdnet5",
    "dsel5",
    "self5",
    "selfw5",
    "selfp2p5",
)
SEARCH = ("own5", "src5", "dpred5", "dnb5", "dp2p5", "sdall5", "sdnet5", "dsel5", "self5", "selfw5", "selfp2p5")


def _selected_of(task: str) -> str:
    return "blend" if task == "sar_to_visible" else "no_uc_sg"


def _m5(x: np.ndarray) -> np.ndarray:
    return np.asarray(ndimage.uniform_filter(np.nan_to_num(np.asarray(x, dtype=np.float64)), 5))


def _generator(stack: Path, variant: str, ck: Path, params: TrainParams):
    from pipeline_lib.model.train import build_generator, load_checkpoint, run_train

    data = load_stack(stack)
    if not ck.exists():
        ck.parent.mkdir(parents=True, exist_ok=True)
        run_train(stack, variant, ck, params, threads=1, device="cpu")
    c = load_checkpoint(ck)
    q = params.with_network_of(TrainParams.from_checkpoint(c["params"], str(ck)))
    g = build_generator(variant, len(data.band_s), len(data.band_t), q)
    g.load_state_dict(c["generator"])
    return g, q


def _guide_pair(data: StackData, a: int, b: int) -> StackData:
    """The stack seen as 'predict guide b from guide a': S_i = S_b, the only guide a."""
    one = slice(a, a + 1)
    return dataclasses.replace(
        data,
        s_i=data.s_g[b],
        valid_i=data.valid_g[b],
        s_g=data.s_g[one],
        t_g=data.t_g[one],
        valid_g=data.valid_g[one],
        t_g_phys=data.t_g_phys[one],
        guide_dates=[data.guide_dates[a]],
        target_date=data.guide_dates[b],
    )


def self_error(data: StackData, variant: str, q: TrainParams, g) -> np.ndarray:
    """(guide, y, x): the network's |error| on guide date h (mean over bands), NaN where unknown. A guided
    network predicts h from every other guide (mean over them); pix2pix predicts T_h from S_h."""
    import torch

    from pipeline_lib.model.predict import predict_arrays

    n = data.n_guides
    out = np.full((n, *data.valid_i.shape), np.nan)
    for h in range(n):
        errs = []
        for a in [a for a in range(n) if a != h] if variant != "pix2pix" else [0]:
            pd = (
                _guide_pair(data, a, h)
                if variant != "pix2pix"
                else dataclasses.replace(data, s_i=data.s_g[h], valid_i=data.valid_g[h])
            )
            pred, _ = predict_arrays(pd, variant, q, g, torch.device("cpu"))
            errs.append(np.abs(pred - data.t_g_phys[h]).mean(axis=0))
        out[h] = np.nanmean(np.stack(errs), axis=0)
    return out


def predictions(
    stack: Path, cache: Path, seed: int, params: TrainParams, nets: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """{variant: pred, variant+':unc': spread, variant+':self': (guide, y, x) error on the guides}, cached."""
    import torch

    from pipeline_lib.model.predict import predict_arrays

    f = cache / f"seed{seed}.npz"
    have: dict[str, np.ndarray] = dict(np.load(f)) if f.exists() else {}
    data = load_stack(stack)
    todo = [v for v in nets if v not in have]
    for v in todo:
        t0 = time.time()
        g, q = _generator(stack, v, cache / f"{v}_s{seed}.pt", params.replace(seed=seed))
        pred, unc = predict_arrays(data, v, q, g, torch.device("cpu"))
        have[v] = pred
        if unc is not None:
            have[v + ":unc"] = unc
        have[v + ":self"] = self_error(data, v, q, g)
        print(
            f"  {stack.parent.parent.name}/{stack.parent.name} {v} seed {seed}: {time.time() - t0:.1f} s",
            file=sys.stderr,
        )
    if todo:
        np.savez(f, **have)
        for v in todo:  # about 50 MB each; the predictions are cached
            (cache / f"{v}_s{seed}.pt").unlink(missing_ok=True)
    return have


def signals(
    data: StackData, p: dict[str, np.ndarray], params: TrainParams, nets: tuple[str, ...]
) -> dict[str, np.ndarray]:
    """Every truth-free (y, x) signal of :data:`SIGNALS` for the selected method of the stack's task."""
    w = guide_weights(data.s_i, data.s_g, data.valid_i, data.valid_g, params.mean_filter, params.k)
    blend, bspread = weighted_sum(data.t_g_phys, w), weighted_spread(data.t_g_phys, w)
    sel_name = _selected_of(data.task)
    sel = blend if sel_name == "blend" else p[sel_name]
    own = bspread if sel_name == "blend" else p[sel_name + ":unc"]
    ok = data.valid_i & np.isfinite(own).all(axis=0)
    allp = np.stack([blend] + [p[v] for v in nets])
    guided = [v for v in GUIDED if v in nets]
    others = [m for m in ["blend", *nets] if m != sel_name]
    pm = {"blend": blend, **{v: p[v] for v in nets}}
    wz = np.nan_to_num(w)
    selfw = np.nansum(wz * p["no_uc_sg:self"], axis=0)  # guide g's own error, weighted as the blend weights it
    out = {
        "own5": _m5(own.mean(axis=0)),
        "src5": source_change(data.s_i, data.s_g, w, ok, 5),
        "dpred5": predicted_change(data, w, ok, 5),
        "ranked": ranked_uncertainty(own, data, w, 5).mean(axis=0),
        "dnb5": _m5(np.abs(p["no_uc_sg"] - blend).mean(axis=0)),
        "dp2p5": _m5(np.abs(p["pix2pix"] - sel).mean(axis=0)) if "pix2pix" in nets else np.zeros(ok.shape),
        "sdall5": _m5(allp.std(axis=0).mean(axis=0)),
        "sdnet5": _m5(np.stack([p[v] for v in guided]).std(axis=0).mean(axis=0)),
        "dsel5": _m5(np.mean([np.abs(pm[m] - sel).mean(axis=0) for m in others], axis=0)),
        "self5": _m5(np.nanmean(p["no_uc_sg:self"], axis=0)),
        "selfw5": _m5(selfw),
        "selfp2p5": _m5(np.nanmean(p["pix2pix:self"], axis=0)) if "pix2pix" in nets else np.zeros(ok.shape),
    }
    out["_sel"] = sel
    return out


def _rank01(v: np.ndarray) -> np.ndarray:
    return np.asarray((stats.rankdata(v) - 0.5) / v.size)


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.spearmanr(a, b).statistic)


@dataclasses.dataclass
class Run:
    name: str
    key: str
    seed: int
    dates: tuple[str, ...]
    target: str
    ranks: dict[str, np.ndarray]
    err_rank: np.ndarray


def score(args: argparse.Namespace) -> list[Run]:
    runs = []
    for name, _, task, target, _ in EXPERIMENTS:
        if args.only and name not in args.only:
            continue
        params = TrainParams.for_task(task, max_steps=args.steps, patch_px=32, tile_px=128, overlap_px=32)
        for key in sorted(d.name for d in (args.out / name).iterdir() if (d / "stack.nc").exists()):
            st, tr = args.out / name / key / "stack.nc", args.out / name / key / "truth.tif"
            data = load_stack(st)
            truth, desc, _ = read_named_bands(tr, None)
            t = np.stack([truth[desc.index(b)] for b in data.band_t])
            for seed in args.seeds if key == "test" else (args.val_seeds or args.seeds):
                try:
                    p = predictions(st, args.out / name / key / "methods", seed, params, args.nets)
                except ModelError as exc:
                    print(f"skipped {name}/{key} seed {seed}: {exc}", file=sys.stderr)
                    continue
                sig = signals(data, p, params, args.nets)
                err = np.abs(sig.pop("_sel") - t).mean(axis=0)
                ok = (truth[desc.index("valid")] > 0.5) & data.valid_i & np.isfinite(err)
                for v in sig.values():
                    ok &= np.isfinite(v)
                dates = (data.target_date[:10], *(d[:10] for d in data.guide_dates))
                runs.append(
                    Run(name, key, seed, dates, target, {k: _rank01(v[ok]) for k, v in sig.items()}, _rank01(err[ok]))
                )
    return runs


def _cell(xs: list[float]) -> str:
    return f"{np.mean(xs):+.2f} [{min(xs):+.2f}, {max(xs):+.2f}]"


def _rule(parts: tuple[str, ...], r: Run) -> np.ndarray:
    return np.asarray(np.sum([r.ranks[k] for k in parts], axis=0))


def report(runs: list[Run], top: int, max_parts: int) -> None:
    tests = [r for r in runs if r.key == "test"]
    names = list(dict.fromkeys(r.name for r in tests))
    banned = {r.target[:10] for r in tests}
    clean = [r for r in runs if r.key != "test" and not banned & set(r.dates)]
    print("ρ(signal, |error of selected|) on the test experiments, mean [min, max] over seeds\n")
    print("| signal | " + " | ".join(names) + " | ρ ≥ 0.5 |")
    print("|---|" + "---|" * (len(names) + 1))

    def row(label: str, f) -> list[float]:
        """One table row: ``label`` (its first cells), then mean [min, max] per test experiment."""
        means, cells = [], []
        for n in names:
            xs = [_rho(f(r), r.err_rank) for r in tests if r.name == n]
            means.append(float(np.mean(xs)))
            cells.append(_cell(xs))
        print(f"| {label} | " + " | ".join(cells) + f" | {sum(m >= 0.5 for m in means)} |", flush=True)
        return means

    for k in SIGNALS:
        row(k, lambda r, k=k: r.ranks[k])
    print(
        "\nvalidation experiments (clean: touch no test date): "
        + ", ".join(sorted({f"{r.name}/{r.key}" for r in clean}))
    )
    print("\n| signal | " + " | ".join(sorted({f"{r.name}/{r.key}" for r in runs if r.key != "test"})) + " |")
    vkeys = sorted({(r.name, r.key) for r in runs if r.key != "test"})
    print("|---|" + "---|" * len(vkeys))
    for k in SIGNALS:
        cells = [_cell([_rho(r.ranks[k], r.err_rank) for r in runs if (r.name, r.key) == nk]) for nk in vkeys]
        print(f"| {k} | " + " | ".join(cells) + " |")
    rules = [c for n in range(1, max_parts + 1) for c in itertools.combinations(SEARCH, n)]
    ref = ("own5", "src5", "dpred5")
    rules += [ref] if ref not in rules else []
    rho = {c: [_rho(_rule(c, r), r.err_rank) for r in runs] for c in rules}  # rule → ρ per run
    idx = {id(r): n for n, r in enumerate(runs)}

    def val_mean(c: tuple[str, ...], pool: list[Run]) -> float:
        return float(np.mean([rho[c][idx[id(r)]] for r in pool]))

    order = sorted(rules, key=lambda c: -val_mean(c, clean))
    print(f"\n{len(rules)} rank sums ranked by mean ρ on the {len(clean)} clean validation runs (experiments × seeds)")
    print("| rule | val ρ | " + " | ".join(names) + " | ρ ≥ 0.5 |")
    print("|---|---|" + "---|" * (len(names) + 1))
    for c in [*order[:top], ref]:
        row(f"sum({', '.join(c)}) | {val_mean(c, clean):.3f}", lambda r, c=c: _rule(c, r))

    def choose(pool_of) -> dict[str, tuple[str, ...]]:
        """Per test experiment, the rule with the best mean ρ on its validation pool."""
        out = {}
        for n in names:
            pool = pool_of(next(r for r in tests if r.name == n)) or clean  # Slovenia has no validation
            out[n] = max(rules, key=lambda c: val_mean(c, pool))
        return out

    task_of = {n: _task(n) for n in {r.name for r in runs}}
    protocols = {
        "per task (clean validation of the task)": lambda t: [r for r in clean if task_of[r.name] == task_of[t.name]],
        "per test (same-task validation avoiding its own date)": lambda t: [
            r for r in runs if r.key != "test" and task_of[r.name] == task_of[t.name] and t.target[:10] not in r.dates
        ],
        "per test (any validation avoiding its own date)": lambda t: [
            r for r in runs if r.key != "test" and t.target[:10] not in r.dates
        ],
    }
    for label, pool_of in protocols.items():
        chosen = choose(pool_of)
        print(f"\nRule chosen {label}: " + "; ".join(f"{n}: sum({', '.join(c)})" for n, c in chosen.items()))
        row(label + " | ", lambda r, ch=chosen: _rule(ch[r.name], r))
    counts = {c: sum(np.mean([rho[c][idx[id(r)]] for r in tests if r.name == n]) >= 0.5 for n in names) for c in rules}
    best_count = max(rules, key=lambda c: (counts[c], val_mean(c, clean)))
    print("\nOracle (chosen on the test truth, not a valid choice):")
    row(f"sum({', '.join(best_count)}) | {val_mean(best_count, clean):.3f}", lambda r, c=best_count: _rule(c, r))
    for label, pools in {
        "all clean": {n: clean for n in names},
        "task clean": {
            n: protocols["per task (clean validation of the task)"](next(r for r in tests if r.name == n)) or clean
            for n in names
        },
    }.items():
        fits = {}
        for n, pool in pools.items():
            x = np.concatenate([np.stack([r.ranks[k] - 0.5 for k in SEARCH], axis=1) for r in pool])
            y = np.concatenate([r.err_rank - 0.5 for r in pool])
            fits[n] = optimize.nnls(x, y)[0]
        w0 = fits[names[0]]
        print(
            f"\nNNLS ({label}), first test's weights: "
            + ", ".join(f"{k} {w:.3f}" for k, w in zip(SEARCH, w0, strict=True) if w > 0)
        )
        row(f"nnls({label}) | ", lambda r, f=fits: np.stack([r.ranks[k] for k in SEARCH], axis=1) @ f[r.name])


def _task(name: str) -> str:
    return next(t for n, _, t, _, _ in EXPERIMENTS if n == name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="bench_uncertainty.py's work folder (stacks)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--val-seeds", nargs="*", type=int, default=[], help="seeds on the validation experiments")
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--nets", nargs="+", default=list(NETS))
    ap.add_argument("--only", nargs="*", default=[])
    ap.add_argument("--top", type=int, default=12)
    ap.add_argument("--max-parts", type=int, default=4)
    args = ap.parse_args()
    args.nets = tuple(args.nets)
    report(score(args), args.top, args.max_parts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
