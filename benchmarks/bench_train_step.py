"""Training-step time of TIRSIT vs pix2pix (batch 16, 64 px, same width) and prediction throughput.

Usage (repo root): ``PYTHONPATH=. python benchmarks/bench_train_step.py [--device cpu|cuda] [--threads 2] [--steps 10] [--scene 512]``.
Prints one line per measurement (median seconds per step over ``--steps`` after 2 warm-up steps; for
prediction, Mpix/s of a full-scene TIRSIT prediction with two guides at the default 256 px tiles).
Numbers go to BENCHMARKS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from pipeline_lib.model.data import resolve_params
from pipeline_lib.model.predict import predict_tiled
from pipeline_lib.model.train import Trainer, build_generator


def _batch(variant: str, bs: int, patch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    def r(*shape: int) -> np.ndarray:
        return rng.random(shape, dtype=np.float32)

    if variant == "pix2pix":
        return {"x": r(bs, 2, patch, patch), "t": r(bs, 3, patch, patch)}
    return {
        "x": r(3 * bs, 2, patch, patch) - 0.5,
        "guide": r(2 * bs, 3, patch, patch),
        "guide_index": np.concatenate([np.arange(bs), np.arange(bs, 2 * bs), np.arange(bs)]),
        "t_jk": r(bs, 3, patch, patch) - 0.5,
        "t_j": r(bs, 3, patch, patch),
        "t_k": r(bs, 3, patch, patch),
        "s_jk": r(bs, 2, patch, patch) - 0.5,
    }


def time_steps(variant: str, device: torch.device, steps: int, bs: int = 16, patch: int = 64) -> float:
    p = resolve_params("sar_to_visible", {"batch_size": bs, "patch_px": patch})
    tr = Trainer(variant, 2, 3, p, device)
    rng = np.random.default_rng(0)
    batch = _batch(variant, bs, patch, rng)
    times = []
    for i in range(steps + 2):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        tr.step(batch, disc_on=True)
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def predict_mpix_s(device: torch.device, scene: int) -> float:
    p = resolve_params("sar_to_visible", {})
    g = build_generator("tirsit", 2, 3, p).to(device).eval()
    img = np.random.default_rng(1).random((5, scene, scene), dtype=np.float32)

    def fn(tiles: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(tiles).to(device)
        with torch.inference_mode():
            if device.type == "cuda":
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    return g(t[:, :2], t[:, 2:]).float().cpu().numpy()
            return g(t[:, :2], t[:, 2:]).float().cpu().numpy()

    predict_tiled(fn, img[:, :256, :256], 3, 256, 64)  # warm-up
    t0 = time.perf_counter()
    for _ in range(2):  # two guides → two network passes over the scene
        predict_tiled(fn, img, 3, int(p["tile_px"]), int(p["overlap_px"]))
    if device.type == "cuda":
        torch.cuda.synchronize()
    return scene * scene / (time.perf_counter() - t0) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--scene", type=int, default=512)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU x{args.threads} threads"
    t_tirsit = time_steps("tirsit", dev, args.steps)
    t_p2p = time_steps("pix2pix", dev, args.steps)
    print(f"device: {name}; batch 16, 64 px, filters 32, levels 5")
    print(f"train step tirsit  : {t_tirsit * 1e3:8.1f} ms")
    print(f"train step pix2pix : {t_p2p * 1e3:8.1f} ms")
    print(f"ratio tirsit/pix2pix: {t_tirsit / t_p2p:.2f}")
    print(f"predict tirsit {args.scene}^2 (2 guides): {predict_mpix_s(dev, args.scene):.3f} Mpix/s")


if __name__ == "__main__":
    main()
