"""Which per-pixel signal ranks the blend's absolute error on the real chips? (DESIGN §6, uncertainty)

The pipeline's uncertainty of a guided prediction is the weighted spread of its per-guide reconstructions
(|R_j − R_k| for two guides; for the blend |T_j − T_k|). Issue-level bar: Spearman ρ(uncertainty, |error|)
≥ 0.5 in most real experiments. This script asks whether any signal available *without the truth and
without training* does better, on the test experiments of :mod:`bench_select` (and their gap-matched
validation experiments, which have a truth of their own):

- ``spread``: the current uncertainty, Σ w_g w_h |T_g − T_h| / Σ w_g w_h (mean over bands);
- ``src``: the source-modality change the blend weights see, Σ_g w_g · mean_c |S_i − S_g|, 5 × 5 mean;
- ``bright``: the blend's own reflectance (absolute errors grow with the signal);
- rank sums of these (``spread+src``, ``spread+src+bright``): a scale-free combination.

Error = mean over bands of |blend − T_i| on the valid pixels. No network is trained; the stacks are built
from ``data/real-ts/`` as :mod:`bench_select` builds them (a minute on 2 cores).

    PYTHONPATH=. python benchmarks/bench_uncertainty.py --out /tmp/unc [--validations 2]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy import ndimage, stats

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_select import EXPERIMENTS, convert_chips

from pipeline_lib.cog import read_named_bands
from pipeline_lib.model.baselines import guide_weights, weighted_spread, weighted_sum
from pipeline_lib.model.data import load_stack
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.select import plan_validation
from pipeline_lib.stacks import run_stack

SIGNALS = ("spread", "src", "bright", "spread+src", "spread+src+bright")


def signals(stack: Path, truth_tif: Path) -> tuple[dict[str, float], int]:
    """Spearman ρ of each signal with the blend's absolute error, and the number of pixels scored."""
    data = load_stack(stack)
    p = TrainParams.for_task(data.task)
    w = guide_weights(data.s_i, data.s_g, data.valid_i, data.valid_g, p.mean_filter, p.k)
    blend = weighted_sum(data.t_g_phys, w)
    truth, desc, _ = read_named_bands(truth_tif, None)
    t = np.stack([truth[desc.index(b)] for b in data.band_t])
    err = np.abs(blend - t).mean(axis=0)
    wz = np.nan_to_num(w)
    change = np.stack([np.abs(data.s_i - data.s_g[g]).mean(axis=0) for g in range(data.n_guides)])
    raw = {
        "spread": weighted_spread(data.t_g_phys, w).mean(axis=0),
        "src": ndimage.uniform_filter((wz * change).sum(axis=0), 5),
        "bright": np.nan_to_num(blend).mean(axis=0),
    }
    ok = (truth[desc.index("valid")] > 0.5) & data.valid_i & np.isfinite(err)
    for v in raw.values():
        ok &= np.isfinite(v)
    ranks = {k: stats.rankdata(v[ok]) for k, v in raw.items()}
    combos = {
        **{k: v[ok] for k, v in raw.items()},
        "spread+src": ranks["spread"] + ranks["src"],
        "spread+src+bright": ranks["spread"] + ranks["src"] + ranks["bright"],
    }
    return {k: float(stats.spearmanr(v, err[ok]).statistic) for k, v in combos.items()}, int(ok.sum())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="work folder (chips, stacks)")
    ap.add_argument("--validations", type=int, default=2)
    args = ap.parse_args()
    print("| experiment | pixels | " + " | ".join(SIGNALS) + " |")
    print("|---|---|" + "---|" * len(SIGNALS))
    wins = dict.fromkeys(SIGNALS, 0)
    n_test = 0
    converted: dict[str, tuple[dict[str, Path], dict[str, Path]]] = {}
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
            rho, n = signals(st, tr)
            if key == "test":
                n_test += 1
                for k in SIGNALS:
                    wins[k] += rho[k] >= 0.5
            print(f"| {name}/{key} | {n} | " + " | ".join(f"{rho[k]:+.2f}" for k in SIGNALS) + " |", flush=True)
    print(f"\nρ ≥ 0.5 on the {n_test} test experiments: " + ", ".join(f"{k} {wins[k]}" for k in SIGNALS))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
