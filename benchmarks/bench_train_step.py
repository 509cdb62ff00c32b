"""Training-step time of TIRSIT vs pix2pix (batch 16, 64 px, same width) and prediction throughput.

Usage (repo root): ``PYTHONPATH=. python benchmarks/bench_train_step.py [--device cpu|cuda] [--threads 2] [--steps 10] [--scene 512]``.
Prints one line per measurement (median per step over ``--steps`` after 2 warm-up steps, wall time
and, on CPU, the process CPU time; for prediction, Mpix/s of a full-scene TIRSIT prediction with two
guides at the default 256 px tiles). TIRSIT and pix2pix steps are **interleaved** (one of each in
turn), so load from other processes on a shared machine hits both alike and the ratio stays
meaningful. ``--baseline OLD_TRAIN_PY`` also times the ``Trainer`` of another version of
``pipeline_lib/model/train.py`` (e.g. ``git show <commit>:pipeline_lib/model/train.py > /tmp/train_old.py``)
in the same interleaved loop, for before/after figures under the same load.
Numbers go to BENCHMARKS.md with the command and the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from pipeline_lib.model.params import TrainParams
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


def _load_trainer_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_baseline", path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"--baseline {path}: not a Python file")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def time_steps(
    variants: list[str],
    device: torch.device,
    steps: int,
    bs: int = 16,
    patch: int = 64,
    trainers: dict[str, type] | None = None,
) -> dict[tuple[str, str], tuple[float, float]]:
    """{(version, variant): (median wall s, median process CPU s) per step}, all steps interleaved.

    ``trainers`` maps a version label to a Trainer class (default: this checkout's, as "current").
    """
    p = TrainParams.for_task("sar_to_visible", batch_size=bs, patch_px=patch)
    trainers = trainers or {"current": Trainer}
    rng = np.random.default_rng(0)
    batches = {v: _batch(v, bs, patch, rng) for v in variants}
    runs = {
        (tag, v): (cls(v, 2, 3, _params_for(cls, p), device), batches[v])
        for tag, cls in trainers.items()
        for v in variants
    }
    wall: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    cpu: dict[tuple[str, str], list[float]] = {k: [] for k in runs}
    for i in range(steps + 2):
        for k, (tr, batch) in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            tr.step(batch, disc_on=True)
            if device.type == "cuda":
                torch.cuda.synchronize()
            if i >= 2:
                wall[k].append(time.perf_counter() - t0)
                cpu[k].append(time.process_time() - c0)
    return {k: (statistics.median(wall[k]), statistics.median(cpu[k])) for k in runs}


def _params_for(cls: type, p: TrainParams) -> Any:
    """``p`` as the Trainer ``cls`` takes it: TrainParams, or the plain dict of train.py versions before it."""
    return p if "TrainParams" in str(cls.__init__.__annotations__.get("p")) else p.as_dict()


def predict_mpix_s(device: torch.device, scene: int) -> float:
    p = TrainParams.for_task("sar_to_visible")
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
        predict_tiled(fn, img, 3, p.tile_px, p.overlap_px)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return scene * scene / (time.perf_counter() - t0) / 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--scene", type=int, default=512, help="prediction benchmark scene size (0: skip it)")
    ap.add_argument("--baseline", default=None, help="another train.py whose Trainer is timed alongside")
    ap.add_argument("--extra", nargs="*", default=[], help="more variants to time (e.g. no_uc)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    name = torch.cuda.get_device_name() if dev.type == "cuda" else f"CPU x{args.threads} threads"
    trainers: dict[str, type] = {"current": Trainer}
    if args.baseline:
        trainers = {"baseline": _load_trainer_module(Path(args.baseline)).Trainer, **trainers}
    variants = ["tirsit", "pix2pix", *args.extra]
    t = time_steps(variants, dev, args.steps, trainers=trainers)
    print(f"device: {name}; batch 16, 64 px, filters 32, levels 5; steps interleaved")
    for tag in trainers:
        for v in variants:
            w, c = t[(tag, v)]
            print(f"{tag:8s} train step {v:12s}: {w * 1e3:8.1f} ms wall, {c * 1e3:8.1f} ms process CPU")
        r_w = t[(tag, "tirsit")][0] / t[(tag, "pix2pix")][0]
        r_c = t[(tag, "tirsit")][1] / t[(tag, "pix2pix")][1]
        print(f"{tag:8s} ratio tirsit/pix2pix: {r_w:.2f} wall, {r_c:.2f} CPU")
    if args.scene <= 0:
        return
    print(f"predict tirsit {args.scene}^2 (2 guides): {predict_mpix_s(dev, args.scene):.3f} Mpix/s")


if __name__ == "__main__":
    main()
