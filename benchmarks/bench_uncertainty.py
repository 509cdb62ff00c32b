"""Which per-pixel signal ranks the blend's absolute error on the real chips? (DESIGN §6, uncertainty)

The pipeline's uncertainty of a guided prediction is the weighted spread of its per-guide reconstructions
(|R_j − R_k| for two guides; for the blend |T_j − T_k|). Bar: Spearman ρ(uncertainty, |error|) ≥ 0.5 in
most real experiments. This script asks whether any signal available *without the truth and without
training* does better, on the test experiments of :mod:`bench_select` (and their gap-matched validation
experiments, which have a truth of their own). Truth-free signals (mean over bands / channels):

- ``spread``: the current uncertainty, Σ w_g w_h |T_g − T_h| / Σ w_g w_h; ``spread5``: its 5 × 5 mean;
- ``src1``/``src5``/``src15``: the source-modality change the blend weights see, Σ_g w_g · |S_i − S_g|
  (normalised units), s × s mean; ``srcmin5``: the smallest per-guide change (5 × 5), i.e. how far even
  the best-matching guide is from S_i;
- ``grad``: gradient magnitude (Sobel) of the blend; ``ggrad``: the largest gradient among the guides;
  ``sgrad``: gradient of S_i; ``tex5``: the blend's local standard deviation (5 × 5) — edges and
  misregistration;
- ``wmix``: 1 − max_g w_g (how undecided the weights are); ``bright``: the blend's reflectance;
- ``regdis``/``regdis5``: |T̂_reg − blend|, T̂_reg a per-band linear map S → T fitted on the guide dates
  and applied to S_i (sources 1 or 5 px mean-filtered): disagreement with a second predictor;
- ``dpred``/``dpred5``: the source change mapped to target units, |Σ_g w_g β(S_i − S_g)|, β fitted on
  the guide dates' own changes (:func:`pipeline_lib.model.uncertainty.predicted_change`);
- ``spread+src``, ``spread+src+bright``: rank sums (scale-free, no fitting);
- ``ranked``: the product's rule (:mod:`pipeline_lib.model.uncertainty`, rank sum of spread, source
  change and predicted change, 5 px) as the select job writes it for the blend.

Fitted combinations (rank space: every signal and the error replaced by its rank / n per experiment; a
non-negative least-squares fit of the error's rank on the signals' ranks, so monotone in every signal):

- ``fit-own``: fitted on the test experiment's own validation experiments;
- ``fit-region``: fitted on every validation experiment of the same chip folder (both tasks) that
  neither predicts nor uses as guide the test's target date;
- ``fit-task``: fitted on every such validation experiment of the same task over all folders.

Slovenia has no validation experiment (3 clear dates): ``fit-own``/``fit-region`` fall back to
``fit-task``, which is then **cross-region** (fitted on Belgium only). ``best-val``: the single signal
with the highest mean ρ on the ``fit-region`` pool (same fallback). The test experiment's target image is
read only to score; no fit, choice or signal reads it.

Rule search: every rank sum and rank maximum of 1–3 signals, ranked by the mean ρ on the validation
experiments that neither predict nor use *any* test target date (a leakage-free choice of one fixed
rule for all experiments); the top ones with their ρ on the test experiments. ``ranked`` is its winner.

Error = mean over bands of |blend − T_i| on the valid pixels; the stacks are built from
``data/real-ts/`` as :mod:`bench_select` builds them (about 20 s on 2 cores). With ``--network V`` the
network V is also trained (``--steps``, ``--seeds``) on the test and validation stacks of
``--network-on`` (the visible→SWIR cases, where ``bench_select`` selected ``no_uc_sg``) and its own
uncertainty, the ranked rule built on it and three signals are scored against *its* error.

    PYTHONPATH=. python benchmarks/bench_uncertainty.py --out /tmp/unc [--validations 2] [--network no_uc_sg]
"""

from __future__ import annotations

import argparse
import itertools
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage, optimize, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_select import EXPERIMENTS, convert_chips

from pipeline_lib.cog import read_named_bands
from pipeline_lib.model.baselines import guide_weights, weighted_spread, weighted_sum
from pipeline_lib.model.data import StackData, load_stack
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.select import plan_validation
from pipeline_lib.model.uncertainty import predicted_change, ranked_uncertainty
from pipeline_lib.stacks import run_stack

RAW = (
    "spread",
    "spread5",
    "src1",
    "src5",
    "src15",
    "srcmin5",
    "grad",
    "ggrad",
    "sgrad",
    "tex5",
    "wmix",
    "bright",
    "regdis",
    "regdis5",
    "dpred",
    "dpred5",
)
SUMS = {"spread+src": ("spread", "src5"), "spread+src+bright": ("spread", "src5", "bright")}
PRODUCT = ("ranked",)  # the product's rule (pipeline_lib.model.uncertainty), scored as written
FITS = ("fit-own", "fit-region", "fit-task", "best-val")


@dataclass
class Scored:
    """One experiment: its identity, the rank-transformed signals and error on the scored pixels."""

    name: str
    key: str
    folder: str
    task: str
    target: str
    dates: tuple[str, ...]  # target and guides
    ranks: dict[str, np.ndarray]  # signal → rank / n on the scored pixels
    err_rank: np.ndarray


def _grad(x: np.ndarray) -> np.ndarray:
    """Sobel gradient magnitude of (band, y, x), mean over bands; NaN → 0 first."""
    x = np.nan_to_num(x)
    return np.mean([np.hypot(ndimage.sobel(b, 0), ndimage.sobel(b, 1)) for b in x], axis=0)


def _local_std(x: np.ndarray, size: int) -> np.ndarray:
    x = np.nan_to_num(x).astype(np.float64)
    m = ndimage.uniform_filter(x, (1, size, size))
    v = ndimage.uniform_filter(x * x, (1, size, size)) - m * m
    return np.sqrt(np.maximum(v, 0.0)).mean(axis=0)


def _design(s: np.ndarray) -> np.ndarray:
    """(pixels, 1 + channels) regression design of a (channel, y, x) source image."""
    x = np.nan_to_num(s).reshape(s.shape[0], -1).T.astype(np.float64)
    return np.concatenate([np.ones((x.shape[0], 1)), x], axis=1)


def regression_disagreement(data: StackData, blend: np.ndarray, size: int) -> np.ndarray:
    """|T̂_reg − blend| (mean over bands): T̂_reg = per-band linear map S → T fitted on the guide dates'
    pixels (sources s × s mean-filtered), applied to S_i; a second, independent predictor."""
    smooth = [ndimage.uniform_filter(np.nan_to_num(x), (1, size, size)) for x in (data.s_i, *data.s_g)]
    ok = [data.valid_g[g].ravel() & np.isfinite(data.t_g_phys[g]).all(axis=0).ravel() for g in range(data.n_guides)]
    x = np.concatenate([_design(smooth[g + 1])[ok[g]] for g in range(data.n_guides)])
    y = np.concatenate([data.t_g_phys[g].reshape(len(data.band_t), -1).T[ok[g]] for g in range(data.n_guides)])
    beta, *_ = np.linalg.lstsq(x, y, rcond=None)
    reg = (_design(smooth[0]) @ beta).T.reshape(blend.shape)
    return np.asarray(np.abs(reg - np.nan_to_num(blend)).mean(axis=0))


def signal_maps(data: StackData) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """(blend (band, y, x), {signal: (y, x)}) from the stack alone (no truth)."""
    p = TrainParams.for_task(data.task)
    w = guide_weights(data.s_i, data.s_g, data.valid_i, data.valid_g, p.mean_filter, p.k)
    blend = weighted_sum(data.t_g_phys, w)
    wz = np.nan_to_num(w)
    change = np.stack([np.abs(data.s_i - data.s_g[g]).mean(axis=0) for g in range(data.n_guides)])
    src1 = (wz * change).sum(axis=0)
    spread = weighted_spread(data.t_g_phys, w).mean(axis=0)
    raw = {
        "spread": spread,
        "spread5": ndimage.uniform_filter(np.nan_to_num(spread), 5),
        "src1": src1,
        "src5": ndimage.uniform_filter(src1, 5),
        "src15": ndimage.uniform_filter(src1, 15),
        "srcmin5": ndimage.uniform_filter(change, (1, 5, 5)).min(axis=0),
        "grad": _grad(blend),
        "ggrad": np.max([_grad(t) for t in data.t_g_phys], axis=0),
        "sgrad": _grad(data.s_i),
        "tex5": _local_std(blend, 5),
        "wmix": 1.0 - wz.max(axis=0),
        "bright": np.nan_to_num(blend).mean(axis=0),
        "regdis": regression_disagreement(data, blend, 1),
        "regdis5": regression_disagreement(data, blend, 5),
        "dpred": predicted_change(data, w, data.valid_i, 1),
        "dpred5": predicted_change(data, w, data.valid_i, 5),
        "ranked": ranked_uncertainty(weighted_spread(data.t_g_phys, w), data, w, 5).mean(axis=0),
    }
    return blend, raw


def _rank01(v: np.ndarray) -> np.ndarray:
    return np.asarray((stats.rankdata(v) - 0.5) / v.size)


def _error_and_mask(
    truth_tif: Path, data: StackData, pred: np.ndarray, raw: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """|pred − truth| (mean over bands) and the pixels where the truth is valid and every signal finite."""
    truth, desc, _ = read_named_bands(truth_tif, None)
    t = np.stack([truth[desc.index(b)] for b in data.band_t])
    err = np.abs(pred - t).mean(axis=0)
    ok = (truth[desc.index("valid")] > 0.5) & data.valid_i & np.isfinite(err)
    for v in raw.values():
        ok &= np.isfinite(v)
    return err, ok


def score_stack(stack: Path, truth_tif: Path, meta: dict[str, str]) -> Scored:
    """Rank-transformed signals and blend error of one experiment (the truth read only for the error)."""
    data = load_stack(stack)
    blend, raw = signal_maps(data)
    err, ok = _error_and_mask(truth_tif, data, blend, raw)
    ranks = {k: _rank01(v[ok]) for k, v in raw.items()}
    dates = (data.target_date[:10], *(d[:10] for d in data.guide_dates))
    return Scored(meta["name"], meta["key"], meta["folder"], data.task, meta["target"], dates, ranks, _rank01(err[ok]))


def fit_weights(pool: list[Scored]) -> np.ndarray:
    """Non-negative weights on the centred signal ranks that best predict the centred error rank."""
    x = np.concatenate([np.stack([s.ranks[k] - 0.5 for k in RAW], axis=1) for s in pool])
    y = np.concatenate([s.err_rank - 0.5 for s in pool])
    w, _ = optimize.nnls(x, y)
    return np.asarray(w)


def _rho(a: np.ndarray, b: np.ndarray) -> float:
    return float(stats.spearmanr(a, b).statistic)


def _pools(test: Scored, vals: list[Scored]) -> dict[str, list[Scored]]:
    """Validation pools of a test experiment; none of them predicts or uses the test's target date."""
    clean = [v for v in vals if test.target[:10] not in v.dates]
    own = [v for v in clean if v.name == test.name]
    region = [v for v in clean if v.folder == test.folder]
    task = [v for v in clean if v.task == test.task]
    return {"fit-own": own or task, "fit-region": region or task, "fit-task": task}


def all_rhos(s: Scored, pools: dict[str, list[Scored]] | None) -> dict[str, float]:
    """ρ of every signal, rank sum and (for a test with pools) fitted combination with the error."""
    out = {k: _rho(s.ranks[k], s.err_rank) for k in RAW}
    out.update({k: _rho(sum(s.ranks[c] for c in parts), s.err_rank) for k, parts in SUMS.items()})
    out.update({k: _rho(s.ranks[k], s.err_rank) for k in PRODUCT})
    if pools is None:
        return out
    x = np.stack([s.ranks[k] for k in RAW], axis=1)
    for name in ("fit-own", "fit-region", "fit-task"):
        out[name] = _rho(x @ fit_weights(pools[name]), s.err_rank)
    pool = pools["fit-region"]
    best = max(RAW, key=lambda k: float(np.mean([_rho(v.ranks[k], v.err_rank) for v in pool])))
    out["best-val"] = out[best]
    out["best-val:" + best] = out[best]
    return out


def build(args: argparse.Namespace) -> list[Scored]:
    """Every test and validation experiment, scored (stacks built once under ``--out``)."""
    converted: dict[str, tuple[dict[str, Path], dict[str, Path]]] = {}
    scored: list[Scored] = []
    for name, folder, task, target, guides in EXPERIMENTS:
        if folder not in converted:
            converted[folder] = convert_chips(folder, args.out / "chips" / folder)
        s1, s2 = converted[folder]
        dates = sorted(set(s2) & set(s1)) if task == "sar_to_visible" else sorted(s2)
        exps = [("test", {"name": name, "task": task, "target": target, "guides": guides})]
        exps += [
            (v.name, v.as_experiment({"name": name, "task": task}))
            for v in plan_validation(target, guides, dates, args.validations)
        ]
        for key, e in exps:
            st, tr = args.out / name / key / "stack.nc", args.out / name / key / "truth.tif"
            if not st.exists():
                run_stack(e, s1, s2, None, st, tr)
            scored.append(score_stack(st, tr, {"name": name, "key": key, "folder": folder, "target": target}))
    return scored


SEARCH = ("spread", "spread5", "src5", "src15", "srcmin5", "bright", "dpred", "dpred5", "regdis5")


def _rule_score(rule: tuple[str, tuple[str, ...]], s: Scored) -> np.ndarray:
    op, parts = rule
    a = np.stack([s.ranks[k] for k in parts])
    return np.asarray(a.max(axis=0) if op == "max" else a.sum(axis=0))


def search_rules(scored: list[Scored], top: int) -> None:
    """Every rank sum and rank maximum of 1–3 of :data:`SEARCH`, ranked by the mean ρ on the validation
    experiments that neither predict nor use any test target date; their ρ on the test experiments."""
    tests = [s for s in scored if s.key == "test"]
    banned = {t.target[:10] for t in tests}
    clean = [s for s in scored if s.key != "test" and not banned & set(s.dates)]
    rules = [("sum", (k,)) for k in SEARCH]
    for r in (2, 3):
        rules += [(op, c) for c in itertools.combinations(SEARCH, r) for op in ("sum", "max")]
    mean_val = {r: float(np.mean([_rho(_rule_score(r, v), v.err_rank) for v in clean])) for r in rules}
    print(f"\n{len(rules)} rules ranked on {len(clean)} validation experiments that touch no test date:")
    print(", ".join(f"{s.name}/{s.key}" for s in clean))
    print("\n| rule | mean ρ (clean validation) | " + " | ".join(t.name for t in tests) + " | ρ ≥ 0.5 |")
    print("|---|---|" + "---|" * (len(tests) + 1))
    for r in sorted(rules, key=lambda r: -mean_val[r])[:top]:
        rt = [_rho(_rule_score(r, t), t.err_rank) for t in tests]
        cells = " | ".join(f"{x:+.2f}" for x in rt)
        print(f"| {r[0]}({', '.join(r[1])}) | {mean_val[r]:.3f} | {cells} | {sum(x >= 0.5 for x in rt)} |")


def network_rhos(stack: Path, truth_tif: Path, variant: str, ck: Path, params: TrainParams) -> dict[str, float]:
    """ρ with the network's absolute error of its own uncertainty, of the ranked rule built on it, and of
    the blend signals (the network trained on the test stack if ``ck`` does not exist)."""
    import torch

    from pipeline_lib.model.predict import predict_arrays
    from pipeline_lib.model.train import build_generator, load_checkpoint, run_train

    data = load_stack(stack)
    if not ck.exists():
        run_train(stack, variant, ck, params, threads=1, device="cpu")
    c = load_checkpoint(ck)
    q = params.with_network_of(TrainParams.from_checkpoint(c["params"], str(ck)))
    g = build_generator(variant, len(data.band_s), len(data.band_t), q)
    g.load_state_dict(c["generator"])
    pred, unc = predict_arrays(data, variant, q, g, torch.device("cpu"))
    assert unc is not None, f"{variant} has no uncertainty raster"
    w = guide_weights(data.s_i, data.s_g, data.valid_i, data.valid_g, q.mean_filter, q.k)
    _, raw = signal_maps(data)
    raw = {k: raw[k] for k in ("spread5", "src5", "dpred5")}
    raw |= {"own": unc.mean(axis=0), "ranked(own)": ranked_uncertainty(unc, data, w, 5).mean(axis=0)}
    err, ok = _error_and_mask(truth_tif, data, pred, raw)
    return {k: _rho(v[ok], err[ok]) for k, v in raw.items()}


def network_table(args: argparse.Namespace) -> None:
    """ρ against the error of ``--network`` (mean and range over ``--seeds``) on the test and validation
    experiments of ``--network-on`` (a seed whose training finds no valid patch is skipped)."""
    from pipeline_lib.errors import ModelError

    cols = ("own", "ranked(own)", "spread5", "src5", "dpred5")
    print(f"\n{args.network} ({args.steps} steps, seeds {args.seeds}): ρ with its absolute error, mean [min, max]")
    print("| experiment | seeds | " + " | ".join(cols) + " |")
    print("|---|---|" + "---|" * len(cols))
    for name, _, task, _, _ in EXPERIMENTS:
        if name not in args.network_on:
            continue
        p = TrainParams.for_task(task, max_steps=args.steps, patch_px=32, tile_px=128, overlap_px=32)
        for key in sorted(d.name for d in (args.out / name).iterdir() if (d / "stack.nc").exists()):
            st, tr = args.out / name / key / "stack.nc", args.out / name / key / "truth.tif"
            net = args.out / name / ("net" if key == "test" else f"net-{key}")
            runs = []
            for sd in args.seeds:
                try:
                    runs.append(network_rhos(st, tr, args.network, net / f"seed{sd}.pt", p.replace(seed=sd)))
                except ModelError as exc:  # a small masked chip can lack a valid patch for a seed's grid
                    print(f"skipped {name}/{key} seed {sd}: {exc}", file=sys.stderr)
            cells = [
                f"{np.mean([r[k] for r in runs]):+.2f} [{min(r[k] for r in runs):+.2f}, {max(r[k] for r in runs):+.2f}]"
                for k in cols
            ]
            print(f"| {name}/{key} | {len(runs)} | " + " | ".join(cells) + " |", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="work folder (chips, stacks)")
    ap.add_argument("--validations", type=int, default=2)
    ap.add_argument("--top", type=int, default=8, help="rules shown by the search")
    ap.add_argument("--network", default=None, help="also score this network's error (trained on the test stack)")
    ap.add_argument("--network-on", nargs="*", default=["mon06-v2s", "mon03-v2s", "p18-v2s", "slo-v2s"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=60)
    args = ap.parse_args()
    scored = build(args)
    table(scored)
    search_rules(scored, args.top)
    if args.network:
        network_table(args)
    return 0


def table(scored: list[Scored]) -> None:
    """ρ of every signal and combination on every experiment, and the count of tests with ρ ≥ 0.5."""
    vals = [s for s in scored if s.key != "test"]
    cols = [*RAW, *SUMS, *PRODUCT, *FITS]
    print("| experiment | pixels | " + " | ".join(cols) + " | best-val signal |")
    print("|---|---|" + "---|" * (len(cols) + 1))
    wins = dict.fromkeys(cols, 0)
    for s in scored:
        test = s.key == "test"
        rho = all_rhos(s, _pools(s, vals) if test else None)
        best = next((k.split(":")[1] for k in rho if k.startswith("best-val:")), "")
        cells = [f"{rho[k]:+.2f}" if k in rho else "" for k in cols]
        print(f"| {s.name}/{s.key} | {s.err_rank.size} | " + " | ".join(cells) + f" | {best} |", flush=True)
        for k in cols if test else ():
            wins[k] += rho[k] >= 0.5
    n_test = sum(s.key == "test" for s in scored)
    print(f"\nρ ≥ 0.5 on the {n_test} test experiments: " + ", ".join(f"{k} {wins[k]}" for k in cols))


if __name__ == "__main__":
    raise SystemExit(main())
