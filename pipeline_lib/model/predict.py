"""Full-scene prediction of T_i by TIRSIT, its ablations, pix2pix and the baselines (paper §III-C).

- Guided variants (tirsit, tirsit_noadv, no_uc, no_sg, no_uc_sg): for every guide g the network
  predicts the normalised difference T̂_ig = G(S_i − S_g, T_g) (no guide for no_sg/no_uc_sg); the
  reconstruction is R_g = T_g + T̂_ig·(hi − lo) (eqs. 8–9, in physical units); the prediction is
  Σ_g w_g R_g with the local weights of :mod:`pipeline_lib.model.baselines` (eqs. 10–12, softmax for
  N guides) and the uncertainty is their weighted pairwise spread (|R_j − R_k| for two guides).
- pix2pix: T̂_i = lo + G(S_i)·(hi − lo). Baselines need no network.
- The network runs over the full grid in overlapping tiles (``tile_px``, ``overlap_px``), each
  multiplied by a separable raised-cosine window that tapers over the overlap (floor 1e-3 so border
  pixels keep a weight) and normalised by the summed window. The feature mask standardises per tile
  (eq. 1), so tiled ≠ untiled bit for bit; tests check that errors along seams are no larger.
- Grids smaller than ``tile_px`` (from 32 px) run as one tile of the smallest multiple of 2^levels that
  holds them, padded by reflection (:func:`fit_tile_px`); the padding is cropped from the output.
- Network predictions are clipped to the physical range of reflectance, [0, 1] (real chips: up to
  1.4 % of predicted reflectances were negative on the real chips); the file's tags
  ``clipped_below`` / ``clipped_above`` count the clipped values (evaluation reports them in
  ``info.clipped_predictions``). Baselines are observed values and are never changed.
- Seed ensembles (``train.ensemble``, :mod:`pipeline_lib.model.ensemble`): the members' unclipped
  predictions are averaged, then clipped; their sample standard deviation joins the uncertainty in
  quadrature. One checkpoint is the single-model path, unchanged.
- Output: COG on the stack's grid with the target bands, NaN where S_i is invalid or no guide is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from affine import Affine

from pipeline_lib.cog import write_cog
from pipeline_lib.errors import ModelError
from pipeline_lib.model.baselines import BASELINES, guide_weights, weighted_spread, weighted_sum
from pipeline_lib.model.data import VARIANTS, StackData, denormalise_diff, load_stack
from pipeline_lib.model.ensemble import combine_members
from pipeline_lib.model.networks import Generator
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.train import build_generator, load_checkpoint, select_device, variant_flags
from pipeline_lib.model.variants import uncertainty_variants

__all__ = [
    "UNCERTAINTY_VARIANTS",
    "REFLECTANCE_RANGE",
    "clip_reflectance",
    "tile_starts",
    "fit_tile_px",
    "blend_window",
    "predict_tiled",
    "predict_arrays",
    "run_predict",
]

_LOG = logging.getLogger(__name__)
#: Variants with an uncertainty raster (several reconstructions to compare).
UNCERTAINTY_VARIANTS = uncertainty_variants()


REFLECTANCE_RANGE = (0.0, 1.0)
"""Physical range of (surface or top-of-atmosphere) reflectance that predictions are clipped to."""


def clip_reflectance(pred: np.ndarray) -> tuple[np.ndarray, dict[str, int]]:
    """``pred`` clipped to :data:`REFLECTANCE_RANGE` (NaN stays NaN) and the counts below / above it."""
    lo, hi = REFLECTANCE_RANGE
    counts = {"below": int(np.sum(pred < lo)), "above": int(np.sum(pred > hi))}
    return np.clip(pred, lo, hi).astype(np.float32), counts


def tile_starts(n: int, tile: int, overlap: int) -> list[int]:
    """Tile origins along one axis: step tile − overlap, the last tile flush with the end."""
    if n <= tile:
        return [0]
    step = tile - overlap
    starts = list(range(0, n - tile, step))
    starts.append(n - tile)
    return sorted(set(starts))


def fit_tile_px(shape: tuple[int, ...], tile: int, overlap: int, multiple: int) -> tuple[int, int]:
    """(tile, overlap) for a grid of ``shape``: a grid smaller than ``tile`` runs as one tile of the smallest
    multiple of ``multiple`` (2^levels) holding it, reflection-padded, so the per-tile feature-mask
    statistics (eq. 1) see as little padding as possible (a 64 × 64 grid: one 64 px tile; 100 × 101: 128 px).
    """
    need = -(-max(int(n) for n in shape[-2:]) // multiple) * multiple
    if need >= tile:
        return tile, overlap
    return need, min(overlap, need // 2)


def blend_window(tile: int, overlap: int, floor: float = 1e-3) -> np.ndarray:
    """(tile, tile) separable window: raised-cosine ramps over ``overlap`` px at each edge, 1 inside."""
    w = np.ones(tile, dtype=np.float64)
    if overlap > 0:
        ramp = np.sin(0.5 * np.pi * (np.arange(overlap) + 0.5) / overlap) ** 2
        w[:overlap] = ramp
        w[-overlap:] = np.minimum(w[-overlap:], ramp[::-1])
    w = np.maximum(w, floor)
    return np.outer(w, w).astype(np.float32)


def predict_tiled(
    fn: Callable[[np.ndarray], np.ndarray],
    image: np.ndarray,
    out_channels: int,
    tile: int,
    overlap: int,
    batch: int = 8,
) -> np.ndarray:
    """Apply ``fn`` ((n, c, tile, tile) → (n, out, tile, tile)) over (c, H, W) by overlapping tiles."""
    _, h, w = image.shape
    ph, pw = max(h, tile), max(w, tile)
    if (ph, pw) != (h, w):
        image = np.pad(image, ((0, 0), (0, ph - h), (0, pw - w)), mode="reflect" if min(h, w) > 1 else "edge")
    win = blend_window(tile, overlap)
    acc = np.zeros((out_channels, ph, pw), dtype=np.float64)
    wsum = np.zeros((ph, pw), dtype=np.float64)
    origins = [(y, x) for y in tile_starts(ph, tile, overlap) for x in tile_starts(pw, tile, overlap)]
    for b0 in range(0, len(origins), batch):
        chunk = origins[b0 : b0 + batch]
        tiles = np.stack([image[:, y : y + tile, x : x + tile] for y, x in chunk])
        out = fn(tiles)
        for (y, x), o in zip(chunk, out, strict=True):
            acc[:, y : y + tile, x : x + tile] += o * win
            wsum[y : y + tile, x : x + tile] += win
    return (acc / wsum)[:, :h, :w].astype(np.float32)


def _net_fn(g: Generator, device: torch.device, n_s: int, guided: bool) -> Callable[[np.ndarray], np.ndarray]:
    def fn(tiles: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(tiles)).to(device)
        x, guide = (t[:, :n_s], t[:, n_s:]) if guided else (t, None)
        with torch.inference_mode():
            if device.type == "cuda":
                with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
                    out = g(x, guide)
            else:
                out = g(x, guide)
        return np.asarray(out.float().cpu().numpy())

    return fn


def predict_arrays(
    data: StackData,
    variant: str,
    p: TrainParams,
    generator: Generator | None = None,
    device: torch.device | None = None,
    clip: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """(prediction, uncertainty or None), (band_t, y, x) physical units, NaN where invalid.

    Network predictions are clipped to :data:`REFLECTANCE_RANGE` unless ``clip`` is false.
    """
    device = device or torch.device("cpu")
    size, k = p.mean_filter, p.k
    n_t = len(data.band_t)
    invalid = ~data.valid_i
    if variant == "neighbour_j" or variant == "neighbour_k":
        g = 0 if variant == "neighbour_j" else data.n_guides - 1
        pred = data.t_g_phys[g].copy()
        pred[:, invalid] = np.nan
        return pred, None
    w = guide_weights(data.s_i, data.s_g, data.valid_i, data.valid_g, size, k)
    if variant == "blend":
        recon = data.t_g_phys
        return weighted_sum(recon, w), weighted_spread(recon, w)
    if generator is None:
        raise ModelError(f"variant {variant!r} needs a trained generator (checkpoint)")
    generator.eval()
    tile, overlap = fit_tile_px(data.valid_i.shape, p.tile_px, p.overlap_px, 2**p.levels)
    if variant == "pix2pix":
        fn = _net_fn(generator, device, len(data.band_s), guided=False)
        out_n = predict_tiled(fn, data.s_i, n_t, tile, overlap)
        lo = data.target_range[:, 0].reshape(-1, 1, 1)
        pred = (lo + denormalise_diff(out_n, data.target_range)).astype(np.float32)
        pred[:, invalid] = np.nan
        return (clip_reflectance(pred)[0] if clip else pred), None
    guided = variant_flags(variant)["guided"]
    fn = _net_fn(generator, device, len(data.band_s), guided)
    recon = np.empty((data.n_guides, n_t, *data.valid_i.shape), dtype=np.float32)
    for g in range(data.n_guides):
        x = np.where(data.valid_i & data.valid_g[g], data.s_i - data.s_g[g], 0.0)
        inp = np.concatenate([x, data.t_g[g]]) if guided else x
        d = predict_tiled(fn, inp.astype(np.float32), n_t, tile, overlap)
        recon[g] = data.t_g_phys[g] + denormalise_diff(d, data.target_range)
    pred = weighted_sum(recon, w)
    return (clip_reflectance(pred)[0] if clip else pred), weighted_spread(recon, w)


def _load_member(
    ckpt: Path, variant: str, data: StackData, p: TrainParams, dev: torch.device, stack_nc: Path
) -> tuple[Generator, TrainParams]:
    """The generator of one checkpoint, checked against the variant and the stack, with its network shape."""
    ck = load_checkpoint(Path(ckpt))
    if ck["variant"] != variant:
        raise ModelError(f"{ckpt}: holds variant {ck['variant']!r}, not {variant!r}; pass the right checkpoint")
    if ck["band_s"] != data.band_s or ck["band_t"] != data.band_t:
        raise ModelError(f"{ckpt}: bands {ck['band_s']}/{ck['band_t']} differ from the stack's; retrain")
    if not (np.allclose(ck["source_range"], data.source_range) and np.allclose(ck["target_range"], data.target_range)):
        raise ModelError(f"{ckpt}: normalisation ranges differ from {stack_nc}'s; retrain")
    q = p.with_network_of(TrainParams.from_checkpoint(ck["params"], str(ckpt)))
    generator = build_generator(variant, len(data.band_s), len(data.band_t), q)
    generator.load_state_dict(ck["generator"])
    generator.to(dev)
    return generator, q


def _predict_members(
    data: StackData, variant: str, ckpts: Sequence[Path], p: TrainParams, device: str, stack_nc: Path
) -> tuple[np.ndarray, np.ndarray | None]:
    """Unclipped (prediction, uncertainty) of a network variant: its one checkpoint, or the ensemble's mean
    and quadrature-joined uncertainty over several (:func:`pipeline_lib.model.ensemble.combine_members`)."""
    if not ckpts:
        raise ModelError(f"variant {variant!r} needs a checkpoint; pass models/{{experiment}}/{variant}.pt")
    dev = select_device(device, _LOG)
    preds, uncs = [], []
    for ckpt in ckpts:
        generator, q = _load_member(Path(ckpt), variant, data, p, dev, stack_nc)
        pred, unc = predict_arrays(data, variant, q, generator, dev, clip=False)
        preds.append(pred)
        uncs.append(unc)
    return combine_members(preds, uncs)


def run_predict(
    stack_nc: Path,
    variant: str,
    ckpt: Path | Sequence[Path] | None,
    out_tif: Path,
    out_uncertainty_tif: Path | None,
    params: TrainParams,
    threads: int,
    device: str = "auto",
) -> None:
    """Predict T_i for ``variant`` (network or baseline) and write the COG(s) on the stack's grid.

    ``params`` are for the stack's task; a network's shape (filters, levels, eta) comes from its checkpoint.
    ``ckpt`` is one checkpoint or the members of a seed ensemble (``train.ensemble``; several: their mean,
    the members' spread joining the uncertainty, tags ``ensemble_members`` and ``ensemble_checkpoints``).
    """
    if variant not in VARIANTS and variant not in BASELINES:
        raise ModelError(f"variant {variant!r} is unknown; expected one of {list(VARIANTS) + list(BASELINES)}")
    if out_uncertainty_tif is not None and variant not in UNCERTAINTY_VARIANTS:
        raise ModelError(f"variant {variant!r} has no uncertainty raster; request it only for {UNCERTAINTY_VARIANTS}")
    torch.set_num_threads(max(1, int(threads)))
    data = load_stack(Path(stack_nc))
    params.check_task(data.task, str(stack_nc))
    ckpts = [] if ckpt is None else [Path(ckpt)] if isinstance(ckpt, str | Path) else [Path(c) for c in ckpt]
    counts = {"below": 0, "above": 0}
    if variant in VARIANTS:
        pred, unc = _predict_members(data, variant, ckpts, params, device, Path(stack_nc))
        pred, counts = clip_reflectance(pred)
    else:
        pred, unc = predict_arrays(data, variant, params, None, torch.device("cpu"), clip=False)
    transform = Affine(*data.transform[:6])
    tags = {
        "variant": variant,
        "experiment": data.experiment,
        "target_date": data.target_date,
        "task": data.task,
        "clipped_below": str(counts["below"]),
        "clipped_above": str(counts["above"]),
    }
    spread = "weighted mean |R_g - R_h| over guide pairs (= |T_i^(j->i) - T_i^(k->i)| for 2)"
    quantity = f"uncertainty: {spread}"
    if variant in VARIANTS and len(ckpts) > 1:
        tags = {**tags, "ensemble_members": str(len(ckpts)), "ensemble_checkpoints": ";".join(c.name for c in ckpts)}
        quantity = f"uncertainty: sqrt(mean over members of ({spread})^2 + members' sample variance (ddof 1))"
    write_cog(pred, out_tif, crs=data.crs, transform=transform, descriptions=data.band_t, tags=tags)
    if out_uncertainty_tif is not None:
        assert unc is not None
        utags = {**tags, "quantity": quantity}
        write_cog(unc, out_uncertainty_tif, crs=data.crs, transform=transform, descriptions=data.band_t, tags=utags)
