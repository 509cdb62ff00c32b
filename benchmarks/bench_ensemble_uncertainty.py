"""Does a seed ensemble's uncertainty rank its error? Spearman ρ(uncertainty, |error|) of `no_uc_sg` on the real
visible→SWIR test chips, single seeds against 3-member ensembles, raw and through the ranked rule.

Reads the checkpoints `bench_ensemble.py` trained (``--work``, its ``--out``: ``{experiment}/test/seed{s}/no_uc_sg.pt``,
``stack.nc``, ``truth.tif``); predicts with ``run_predict`` (members s … s + n − 1) into ``--out``. About a minute
on one core once the checkpoints exist. Usage::

    PYTHONPATH=. OMP_NUM_THREADS=1 python benchmarks/bench_ensemble_uncertainty.py --work /tmp/ens12/w --out /tmp/ensunc
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
from scipy import stats

from pipeline_lib.cog import read_named_bands
from pipeline_lib.model.data import load_stack
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.predict import run_predict
from pipeline_lib.model.uncertainty import stack_ranked_uncertainty

ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
ap.add_argument("--work", type=Path, required=True)
ap.add_argument("--out", type=Path, required=True)
args = ap.parse_args()
W, OUT = args.work, args.out
rows = []
for exp in ("mon06-v2s", "mon03-v2s", "p18-v2s", "slo-v2s"):
    d = W / exp / "test"
    stack = d / "stack.nc"
    data = load_stack(stack)
    params = TrainParams.for_task(data.task, max_steps=60, patch_px=32, tile_px=128, overlap_px=32)
    truth, desc, _ = read_named_bands(d / "truth.tif", None)
    t = np.stack([truth[desc.index(b)] for b in data.band_t])
    valid = (truth[desc.index("valid")] > 0.5) & data.valid_i & np.isfinite(t).all(axis=0)
    for base in (0, 1, 2):
        for n in (1, 3):
            ck = [d / f"seed{s}" / "no_uc_sg.pt" for s in range(base, base + n)]
            o = OUT / exp / f"b{base}_n{n}"
            o.mkdir(parents=True, exist_ok=True)
            if not (o / "u.tif").exists():
                run_predict(stack, "no_uc_sg", ck, o / "p.tif", o / "u.tif", params, 1, "cpu")
            p, _, _ = read_named_bands(o / "p.tif", data.band_t)
            u, _, _ = read_named_bands(o / "u.tif", None)
            err = np.abs(p - t).mean(axis=0)
            ok = valid & np.isfinite(err) & np.isfinite(u).all(axis=0)
            own = stats.spearmanr(u.mean(axis=0)[ok], err[ok])[0]
            rk = stack_ranked_uncertainty(u, data, params.mean_filter, params.k, 5)
            ok2 = ok & np.isfinite(rk).all(axis=0)
            ranked = stats.spearmanr(rk.mean(axis=0)[ok2], err[ok2])[0]
            rows.append(
                {"exp": exp, "base": base, "n": n, "own": round(float(own), 3), "ranked": round(float(ranked), 3)}
            )
            print(rows[-1], flush=True)
(OUT / "rows.json").write_text(json.dumps(rows, indent=1))
for exp in ("mon06-v2s", "mon03-v2s", "p18-v2s", "slo-v2s"):
    for n in (1, 3):
        r = [x for x in rows if x["exp"] == exp and x["n"] == n]
        own, ranked = np.mean([x["own"] for x in r]), np.mean([x["ranked"] for x in r])
        print(exp, n, "own", round(float(own), 3), "ranked", round(float(ranked), 3), [x["ranked"] for x in r])
