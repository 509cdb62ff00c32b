"""The paper's full training schedule on a large stack, timed: train + full-scene prediction (DESIGN §6).

Renders the demo world (``benchmarks/realts.py``, :func:`realts.demo_world`) on a 512² 10 m grid,
mirror-tiled to ``--size``² (rendering 2048² directly costs minutes on one core),
builds the sar2vis stack with :func:`pipeline_lib.stacks.run_stack`, then trains ``--variant`` with the
paper's schedule (64 px patches, batch 16, 60 + 20 epochs over the non-overlapping patch grid, no
``max_steps``; bf16 autocast on CUDA) and predicts the whole grid. Prints one JSON line (steps,
seconds, steps/s, prediction Mpix/s, RMSE against the held-out truth next to the blend's).

Prepared for a GPU session (goal: ≤ 10 min for 2048²); the one command, under 8 min:

    timeout 470 sh -c 'PYTHONPATH=. python benchmarks/bench_train_step.py --device cuda --steps 50 \
        --scene 2048 && PYTHONPATH=. python benchmarks/bench_gpu_full.py --size 2048 --device cuda'

On CPU it runs as a smoke test: ``--size 256 --max-steps 5 --device cpu``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import realts


def _mirror_tiled(region: realts.Region, size: int, out: Path) -> realts.Region:
    """Every image of ``region`` mirror-tiled (reflect padding) to ``size``² on the same origin and pixel size.

    Rendering the demo world costs minutes at 2048² on one core; the schedule's cost depends on the
    pixel count and the valid area, not on new content, so a mirrored 512² world stands in for it.
    """
    import rasterio

    from pipeline_lib.cog import write_cog

    out.mkdir(parents=True, exist_ok=True)

    def enlarge(path: Path) -> Path:
        with rasterio.open(path) as src:
            data, desc, crs, tr = src.read(), list(src.descriptions), src.crs, src.transform
        h, w = data.shape[1:]
        big = np.pad(data, ((0, 0), (0, size - h), (0, size - w)), mode="symmetric")
        dest = out / path.name
        write_cog(big, dest, crs=crs, transform=tr, descriptions=[str(d) for d in desc])
        return dest

    return realts.Region(
        region.name,
        {k: enlarge(v) for k, v in region.s1.items()},
        {k: enlarge(v) for k, v in region.s2.items()},
        region.clear_s2,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--variant", default="tirsit")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--max-steps", type=int, default=None, help="cap (default: the paper's full schedule)")
    ap.add_argument("--threads", type=int, default=8)
    args = ap.parse_args()

    from pipeline_lib.model.evaluate import read_bands
    from pipeline_lib.model.params import TrainParams
    from pipeline_lib.model.predict import run_predict
    from pipeline_lib.model.train import load_checkpoint, run_train
    from pipeline_lib.stacks import run_stack

    work = Path(tempfile.mkdtemp(prefix="bench-gpu-full-"))
    t0 = time.perf_counter()
    base = min(args.size, 512)
    region = realts.demo_world(work / "inputs", size_px=base)
    if args.size > base:
        region = _mirror_tiled(region, args.size, work / "big")
    exp = {"name": "sar2vis", "task": "sar_to_visible", "target": "2022-01-04", "guides": ["2021-12-23", "2022-01-16"]}
    stack, truth = work / "sar2vis.nc", work / "truth.tif"
    run_stack(exp, region.s1, region.s2, None, stack, truth)
    t_prep = time.perf_counter() - t0
    params = TrainParams.for_task("sar_to_visible", max_steps=args.max_steps)
    ckpt = work / f"{args.variant}.pt"
    t0 = time.perf_counter()
    run_train(stack, args.variant, ckpt, params, threads=args.threads, device=args.device)
    t_train = time.perf_counter() - t0
    steps = int(load_checkpoint(ckpt)["step"])
    t0 = time.perf_counter()
    run_predict(stack, args.variant, ckpt, work / "pred.tif", None, params, threads=args.threads, device=args.device)
    t_pred = time.perf_counter() - t0
    run_predict(stack, "blend", None, work / "blend.tif", None, params, threads=args.threads, device="cpu")
    bands = ["B04", "B03", "B02"]
    t = read_bands(truth, bands)
    ok = np.isfinite(t).all(axis=0)

    def rmse(path: Path) -> float:
        p = read_bands(path, bands)
        m = ok & np.isfinite(p).all(axis=0)
        return float(np.sqrt(np.mean((p[:, m] - t[:, m]) ** 2)))

    print(
        json.dumps(
            {
                "size": args.size,
                "variant": args.variant,
                "device": args.device,
                "prep_s": round(t_prep, 1),
                "train_steps": steps,
                "train_s": round(t_train, 1),
                "steps_per_s": round(steps / max(t_train, 1e-9), 2),
                "predict_s": round(t_pred, 1),
                "predict_mpix_s": round(args.size**2 / 1e6 / max(t_pred, 1e-9), 2),
                "rmse": round(rmse(work / "pred.tif"), 5),
                "rmse_blend": round(rmse(work / "blend.tif"), 5),
            }
        )
    )


if __name__ == "__main__":
    main()
