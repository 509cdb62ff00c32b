"""Training of TIRSIT, its ablations and pix2pix (paper §III-B.4, §IV-C.1, §IV-D.1; DESIGN §6).

One optimisation step of TIRSIT (X_ab = X_a − X_b, normalised units, guide = the image the
difference is added to):

- one batched generator pass over [S_jk; S_ij; S_ik] with guides [T_k; T_j; T_k] → T̂_jk, T̂_ij, T̂_ik;
- L_rec = MSE(T̂_jk, T_jk) (eq. 5);
- L_con = MSE(T̂_ij − T̂_ik, T_k − T_j): from eq. 4, T̂_ij + T_j = T̂_ik + T_k, so T̂_ij − T̂_ik = T_k − T_j
  (the paper's eq. 6 writes T_jk = T_j − T_k, the opposite sign; see :func:`consistency_target`);
- L_adv: BCE-with-logits of the PatchGAN D(S_jk, T̂_jk) against "real" (eq. 7 with its typo fixed);
  D is trained on (S_jk, T_jk) real vs (S_jk, T̂_jk) fake, for the first ``disc_epochs`` only;
- generator loss L_rec + λ_con·L_con + λ_adv·L_adv.

Variants: ``tirsit`` (all), ``tirsit_noadv`` (λ_adv = 0), ``no_uc`` (λ_con = 0, λ_adv = 0),
``no_sg`` (no guide encoder/masks, λ_adv = 0), ``no_uc_sg`` (both, λ_adv = 0) — the ablations are
trained without the adversarial loss, as the paper's Tables II/IV compare them with "TIRSIT w/o
adversarial loss". ``pix2pix`` (Isola et al. 2017): the same U-Net without guide, S_g → T_g on the
guide dates, L = L_GAN + λ_L1·L1 (λ_L1 = 100), PatchGAN conditioned on S_g trained throughout.

Settings: one :class:`pipeline_lib.model.params.TrainParams` for the stack's task (defaults in the schema).
Schedule: Adam β = (0.5, 0.999) for G and D; lr for ``epochs1`` epochs then lr2 for ``epochs2``.
With ``max_steps`` below the full schedule, training stops at ``max_steps`` and the lr switch and the
end of D's training fall at the same *fractions* of the capped run (epochs1/(epochs1+epochs2) and
disc_epochs/(epochs1+epochs2)) — our choice, so a capped run still sees both stages.
The schedule counts optimisation steps, never epochs: an epoch of the full schedule is
``ceil(patches of epoch 0 / batch)`` steps, so the lr switch and the end of D fall at steps
spe·epochs1 and spe·disc_epochs even when cloud masks change the patch count per epoch.

Cost (DESIGN §6; none of these changes the maths): models and 4-D batches are channels_last (NHWC, the
layout oneDNN/cuDNN convolutions use natively, so no reorder per conv); D's real and fake passes run as
one batch (D has no batch statistics); in the generator step D's parameters are frozen, so backward
computes only the gradient w.r.t. the fake image and not the D weight gradients the G step would
discard; variants without L_con (no_uc, no_uc_sg) run only the jk pass, since T̂_ij, T̂_ik enter no
loss (their ``con`` is then not logged, NaN).

Determinism: all sampling derives from (seed, epoch); on CPU ``torch.use_deterministic_algorithms``
is on during training, so two runs with the same inputs and thread count give identical weights.
On CUDA the forward/backward runs under bfloat16 autocast (no loss scaling needed).
A resumable ``<out>.partial`` checkpoint is written atomically every ``checkpoint_every`` epochs;
a new run with the same variant and parameters resumes from it; the final checkpoint replaces it.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline_lib.errors import ModelError
from pipeline_lib.io import atomic_path
from pipeline_lib.model.data import (
    VARIANTS,
    StackData,
    dihedral,
    epoch_patches,
    fit_patch_px,
    load_stack,
)
from pipeline_lib.model.losses import consistency_loss, consistency_target, departure_losses
from pipeline_lib.model.networks import Generator, PatchDiscriminator
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.variants import get_variant

__all__ = [
    "CKPT_FORMAT",
    "variant_flags",
    "select_device",
    "build_generator",
    "build_discriminator",
    "consistency_target",
    "consistency_loss",
    "make_batch",
    "Trainer",
    "run_train",
    "load_checkpoint",
    "save_checkpoint",
]

CKPT_FORMAT = "tirsit-ckpt-1"
_LOG = logging.getLogger(__name__)


def variant_flags(variant: str) -> dict[str, bool]:
    """guided (guide encoder + masks), con (a uniqueness term), adv (L_adv), pix2pix (S→T, no differences).

    Read from the registry (:mod:`pipeline_lib.model.variants`); ModelError for a baseline or unknown name.
    """
    v = get_variant(variant)
    if not v.trains:
        raise ModelError(f"variant {variant!r} is a baseline (no network); expected one of {list(VARIANTS)}")
    return {"guided": v.guided, "con": v.consistency != "none", "adv": v.adversarial, "pix2pix": v.pix2pix}


def select_device(device: str, log: logging.Logger | None = None) -> torch.device:
    """Device for ``device``: auto = CUDA if available else CPU (warned); cuda without CUDA = ModelError."""
    log = log or _LOG
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ModelError("train.device=cuda but no CUDA device is available; set train.device to auto or cpu")
        return torch.device("cuda")
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        log.warning("no CUDA device available: running on CPU (slow for the paper's full schedule)")
        return torch.device("cpu")
    raise ModelError(f"train.device={device!r} is unknown; use auto, cpu or cuda")


def build_generator(variant: str, n_s: int, n_t: int, p: TrainParams) -> Generator:
    guided = variant_flags(variant)["guided"]
    return Generator(n_s, n_t, n_t if guided else 0, filters=p.filters, levels=p.levels, eta=p.eta, guided=guided)


def build_discriminator(n_s: int, n_t: int, p: TrainParams) -> PatchDiscriminator:
    return PatchDiscriminator(n_s, n_t, filters=p.filters)


def make_batch(data: StackData, rows: np.ndarray, patch: int, pix2pix: bool) -> dict[str, np.ndarray]:
    """Crop, augment and assemble one batch of network inputs/targets (normalised units).

    TIRSIT rows give (y, x, j, k, code): ``x`` = [S_jk; S_ij; S_ik] (3B), ``guide`` = [T_k; T_j] (2B)
    with ``guide_index`` = [0..B−1; B..2B−1; 0..B−1] (the guides T_k, T_j, T_k of the three passes, T_k
    encoded once), ``t_jk``, ``t_j``, ``t_k``, ``s_jk`` (B each). pix2pix rows (y, x, g, g, code): ``x`` = S_g, ``t`` = T_g.
    """
    xs, guides, tjk, tj, tk, sjk, tt = [], [], [], [], [], [], []
    for y, x, a, b, code in rows.tolist():
        sl = (slice(y, y + patch), slice(x, x + patch))
        if pix2pix:
            xs.append(dihedral(data.s_g[a][:, sl[0], sl[1]], code))
            tt.append(dihedral(data.t_g[a][:, sl[0], sl[1]], code))
            continue
        s_i = data.s_i[:, sl[0], sl[1]]
        s_j, s_k = data.s_g[a][:, sl[0], sl[1]], data.s_g[b][:, sl[0], sl[1]]
        t_j, t_k = data.t_g[a][:, sl[0], sl[1]], data.t_g[b][:, sl[0], sl[1]]
        sjk.append(dihedral(s_j - s_k, code))
        xs.append(dihedral(np.stack([s_j - s_k, s_i - s_j, s_i - s_k]), code))
        guides.append(dihedral(np.stack([t_k, t_j]), code))
        tj.append(dihedral(t_j, code))
        tk.append(dihedral(t_k, code))
        tjk.append(dihedral(t_j - t_k, code))
    if pix2pix:
        return {"x": np.stack(xs), "t": np.stack(tt)}
    return triplet_batch(xs, guides, tjk, tj, tk, sjk)


def triplet_batch(
    xs: list[np.ndarray],
    guides: list[np.ndarray],
    tjk: list[np.ndarray],
    tj: list[np.ndarray],
    tk: list[np.ndarray],
    sjk: list[np.ndarray],
) -> dict[str, np.ndarray]:
    """The batched [all jk; all ij; all ik] generator pass from per-patch (3, C, P, P) inputs and (2, C, P, P) guides."""
    x_arr = np.stack(xs)  # (B, 3, C, P, P)
    g_arr = np.stack(guides)
    n = len(xs)
    return {
        "guide_index": np.concatenate([np.arange(n), np.arange(n, 2 * n), np.arange(n)]).astype(np.int64),
        "x": np.ascontiguousarray(x_arr.transpose(1, 0, 2, 3, 4).reshape(-1, *x_arr.shape[2:])),
        "guide": np.ascontiguousarray(g_arr.transpose(1, 0, 2, 3, 4).reshape(-1, *g_arr.shape[2:])),
        "t_jk": np.stack(tjk),
        "t_j": np.stack(tj),
        "t_k": np.stack(tk),
        "s_jk": np.stack(sjk),
    }


def _channels_last(module: nn.Module) -> None:
    """Store the 4-D weights NHWC in place (``Module.to(memory_format=)`` is missing from torch's stubs)."""
    module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled or previous)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous)


class Trainer:
    """Holds models, optimisers and history; :meth:`step` runs one optimisation step on a batch."""

    def __init__(self, variant: str, n_s: int, n_t: int, p: TrainParams, device: torch.device) -> None:
        self.variant = variant
        self.flags = variant_flags(variant)
        self.p = p
        self.device = device
        torch.manual_seed(p.seed)
        self.g = build_generator(variant, n_s, n_t, p).to(device)
        self.d: nn.Module | None = build_discriminator(n_s, n_t, p).to(device) if self.flags["adv"] else None
        for m in (self.g, self.d):
            if m is not None:
                _channels_last(m)
        betas = (0.5, 0.999)
        self.opt_g = torch.optim.Adam(self.g.parameters(), lr=p.lr, betas=betas)
        self.opt_d = torch.optim.Adam(self.d.parameters(), lr=p.lr, betas=betas) if self.d else None
        self.lambda_con = p.lambda_con if self.flags["con"] else 0.0
        self.lambda_adv = p.lambda_adv if self.flags["adv"] and not self.flags["pix2pix"] else 0.0
        self.consistency = get_variant(variant).consistency

    def _autocast(self) -> contextlib.AbstractContextManager[Any]:
        if self.device.type == "cuda":
            return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _tensors(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        out = {}
        for k, v in batch.items():
            t = torch.from_numpy(v).to(self.device, non_blocking=True)
            out[k] = t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 else t
        return out

    def set_lr(self, lr: float) -> None:
        for opt in (self.opt_g, self.opt_d):
            if opt is not None:
                for group in opt.param_groups:
                    group["lr"] = lr

    def _d_step(self, cond: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> float:
        assert self.d is not None and self.opt_d is not None
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():  # real and fake as one batch: D has no batch statistics
            logits = self.d(torch.cat([cond, cond]), torch.cat([real, fake.detach()]))
        lr_, lf = torch.chunk(logits, 2, dim=0)
        loss = 0.5 * (
            F.binary_cross_entropy_with_logits(lr_.float(), torch.ones_like(lr_, dtype=torch.float32))
            + F.binary_cross_entropy_with_logits(lf.float(), torch.zeros_like(lf, dtype=torch.float32))
        )
        loss.backward()
        self.opt_d.step()
        return float(loss.detach())

    def _adv(self, cond: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """Generator's adversarial loss; D is frozen so backward skips D's (discarded) weight gradients."""
        assert self.d is not None
        self.d.requires_grad_(False)
        try:
            with self._autocast():
                logits = self.d(cond, fake)
        finally:
            self.d.requires_grad_(True)
        return F.binary_cross_entropy_with_logits(logits.float(), torch.ones_like(logits, dtype=torch.float32))

    def step(self, batch: dict[str, np.ndarray], disc_on: bool) -> dict[str, float]:
        """One step; returns the loss values (``d`` is NaN when D did not train)."""
        b = self._tensors(batch)
        self.g.train()
        losses = {"rec": math.nan, "con": math.nan, "adv": math.nan, "d": math.nan, "total": math.nan}
        if self.flags["pix2pix"]:
            with self._autocast():
                out = self.g(b["x"]).float()
            use_d = self.d is not None
            if use_d:
                losses["d"] = self._d_step(b["x"], b["t"], out)
            l1 = F.l1_loss(out, b["t"])
            total = self.p.lambda_l1 * l1
            losses["rec"] = float(l1.detach())
            if use_d:
                adv = self._adv(b["x"], out)
                total = total + adv
                losses["adv"] = float(adv.detach())
        else:
            n = b["t_jk"].shape[0]
            departure = self.consistency not in ("none", "paper") and self.lambda_con > 0
            with self._autocast():
                if departure:  # DESIGN §11 (pipeline_lib.model.losses); tirsit & co. take the branches below
                    out_jk_dep, con_dep = departure_losses(self.consistency, self.g, b)
                    out = out_jk_dep
                elif self.lambda_con > 0 and self.flags["guided"]:
                    out = self.g(b["x"], b["guide"], b["guide_index"]).float()
                elif self.lambda_con > 0:
                    out = self.g(b["x"]).float()
                elif self.flags["guided"]:  # no L_con: only the jk pass enters a loss (guide T_k = guide[:n])
                    out = self.g(b["x"][:n], b["guide"][:n]).float()
                else:
                    out = self.g(b["x"][:n]).float()
            out_jk = out[:n]
            use_d = self.d is not None and disc_on and self.lambda_adv > 0
            if use_d:
                losses["d"] = self._d_step(b["s_jk"], b["t_jk"], out_jk)
            rec = F.mse_loss(out_jk, b["t_jk"])
            total = rec
            losses["rec"] = float(rec.detach())
            if departure:
                total = rec + self.lambda_con * con_dep
                losses["con"] = float(con_dep.detach())
            elif self.lambda_con > 0:
                out_ij, out_ik = out[n : 2 * n], out[2 * n :]
                con = consistency_loss(out_ij, out_ik, b["t_j"], b["t_k"])
                total = rec + self.lambda_con * con
                losses["con"] = float(con.detach())
            if use_d:
                adv = self._adv(b["s_jk"], out_jk)
                total = total + self.lambda_adv * adv
                losses["adv"] = float(adv.detach())
        self.opt_g.zero_grad(set_to_none=True)
        total.backward()
        self.opt_g.step()
        losses["total"] = float(total.detach())
        return losses


@dataclass(frozen=True)
class _Schedule:
    """Optimisation steps of a run: ``total``, the step where lr2 starts and the step where D stops."""

    total: int
    lr2_at: int
    d_stop: int
    capped: bool


def _schedule(p: TrainParams, spe: int) -> _Schedule:
    """The schedule for ``spe`` steps per epoch (module docstring: capped runs keep the epoch fractions)."""
    e1, e2, ed = p.epochs1, p.epochs2, p.disc_epochs
    full = spe * (e1 + e2)
    if p.max_steps is not None and p.max_steps < full:
        total = p.max_steps
        frac = total / max(e1 + e2, 1)
        return _Schedule(total, round(frac * e1), round(frac * ed), True)
    return _Schedule(full, spe * e1, spe * ed, False)


@dataclass
class _Progress:
    """Where a run stands: epochs and steps done and the per-step loss history."""

    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)


def _ckpt_payload(tr: Trainer, data: StackData, p: TrainParams, run: _Progress, done: bool) -> dict[str, Any]:
    return {
        "format": CKPT_FORMAT,
        "variant": tr.variant,
        "task": data.task,
        "experiment": data.experiment,
        "params": p.as_dict(),
        "generator": tr.g.state_dict(),
        "discriminator": tr.d.state_dict() if tr.d is not None else None,
        "opt_g": tr.opt_g.state_dict(),
        "opt_d": tr.opt_d.state_dict() if tr.opt_d is not None else None,
        "source_range": data.source_range.tolist(),
        "target_range": data.target_range.tolist(),
        "band_s": data.band_s,
        "band_t": data.band_t,
        "guide_dates": data.guide_dates,
        "history": run.history,
        "epoch": run.epoch,
        "step": run.step,
        "complete": done,
        "torch_rng": torch.get_rng_state(),
    }


def save_checkpoint(obj: dict[str, Any], path: Path) -> None:
    """Write a checkpoint dict atomically (temp file, then rename)."""
    with atomic_path(path, suffix=".pt") as tmp:
        torch.save(obj, tmp)


def load_checkpoint(
    path: Path, fmt: str = CKPT_FORMAT, missing: str = "checkpoint not found; run the train rule for this variant first"
) -> dict[str, Any]:
    """Load a checkpoint of format ``fmt`` written by :func:`save_checkpoint` (on CPU); ModelError naming ``path``."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: {missing}")
    try:
        ckpt: dict[str, Any] = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelError(f"{path}: unreadable checkpoint ({type(exc).__name__}); delete it and retrain") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != fmt:
        raise ModelError(f"{path}: not a {fmt} checkpoint; delete it and retrain")
    return ckpt


def _fit_patch(
    data: StackData, variant: str, p: TrainParams, pairs: bool, stack_nc: Path, log: logging.Logger
) -> TrainParams:
    """``p`` with the training patch :func:`fit_patch_px` finds (warned when smaller than ``patch_px``)."""
    mult = 2**p.levels
    patch = fit_patch_px(data.valid_i if pairs else None, data.valid_g, p.patch_px, mult, pairs)
    if patch == 0:
        raise ModelError(
            f"{stack_nc}: no fully valid {mult}×{mult} patch for {variant} "
            "(grid too small or too cloudy); use clearer dates or a larger AOI"
        )
    if patch != p.patch_px:
        log.warning(
            "%s: no fully valid %d px patch on this %d×%d grid; training %s on %d px patches",
            stack_nc,
            p.patch_px,
            *data.valid_i.shape,
            variant,
            patch,
        )
        return p.replace(patch_px=patch)
    return p


def _epoch_rows(data: StackData, p: TrainParams, pairs: bool) -> Callable[[int], np.ndarray]:
    """Patch rows (y, x, a, b, code) of an epoch; code 0 (no flip/rotation) unless ``augment``."""

    def rows_of(epoch: int) -> np.ndarray:
        rows = epoch_patches(data.valid_i if pairs else None, data.valid_g, p.patch_px, p.seed, epoch, pairs)
        if not p.augment:
            rows[:, 4] = 0
        return rows

    return rows_of


def _resume(tr: Trainer, partial: Path, p: TrainParams, log: logging.Logger) -> _Progress:
    """The progress of a ``.partial`` checkpoint of the same variant and parameters (state restored), else a fresh one."""
    if not partial.is_file():
        return _Progress()
    try:
        ck = load_checkpoint(partial)
    except ModelError as exc:
        log.warning("ignoring unreadable partial checkpoint %s (%s)", partial, exc)
        return _Progress()
    try:
        same = ck["variant"] == tr.variant and TrainParams.from_checkpoint(ck["params"], str(partial)) == p
    except ModelError:
        same = False
    if not same:
        log.warning("partial checkpoint %s has other variant/params: starting afresh", partial)
        return _Progress()
    tr.g.load_state_dict(ck["generator"])
    tr.opt_g.load_state_dict(ck["opt_g"])
    if tr.d is not None and tr.opt_d is not None:
        tr.d.load_state_dict(ck["discriminator"])
        tr.opt_d.load_state_dict(ck["opt_d"])
    torch.set_rng_state(ck["torch_rng"])
    run = _Progress(int(ck["epoch"]), int(ck["step"]), list(ck["history"]))
    log.info("resuming %s from %s at epoch %d, step %d", tr.variant, partial, run.epoch, run.step)
    return run


def _train_epochs(
    tr: Trainer,
    data: StackData,
    p: TrainParams,
    rows_of: Callable[[int], np.ndarray],
    sched: _Schedule,
    run: _Progress,
    partial: Path,
    log: logging.Logger,
) -> None:
    """Optimisation steps from ``run`` to ``sched.total``, a ``.partial`` checkpoint every ``checkpoint_every`` epochs."""
    pix2pix = tr.flags["pix2pix"]
    t0, s0 = time.perf_counter(), run.step
    while run.step < sched.total:
        rows = rows_of(run.epoch)
        if len(rows) == 0:  # cannot happen once fit_patch_px found a valid patch; guards the loop
            raise ModelError(
                f"{data.experiment}: epoch {run.epoch} has no valid {p.patch_px} px patch; check the masks"
            )
        for start in range(0, len(rows), p.batch_size):
            if run.step >= sched.total:
                break
            lr = p.lr if run.step < sched.lr2_at else p.lr2
            tr.set_lr(lr)
            batch = make_batch(data, rows[start : start + p.batch_size], p.patch_px, pix2pix)
            losses = tr.step(batch, run.step < sched.d_stop or pix2pix)
            run.step += 1
            run.history.append({"step": run.step, "epoch": run.epoch, "lr": lr, **losses})
            if run.step % p.log_every == 0 or run.step == sched.total:
                rate = (run.step - s0) / max(time.perf_counter() - t0, 1e-9)
                _log_step(log, run, sched.total, losses, lr, rate)
        run.epoch += 1
        if run.step < sched.total and run.epoch % p.checkpoint_every == 0:
            save_checkpoint(_ckpt_payload(tr, data, p, run, False), partial)
            log.info("checkpoint: wrote %s (epoch %d, step %d)", partial, run.epoch, run.step)


def _log_step(
    log: logging.Logger, run: _Progress, total: int, losses: dict[str, float], lr: float, rate: float
) -> None:
    log.info(
        "epoch %d step %d/%d rec=%.5f con=%.5f adv=%.4f d=%.4f lr=%.2e it/s=%.2f",
        run.epoch,
        run.step,
        total,
        losses["rec"],
        losses["con"],
        losses["adv"],
        losses["d"],
        lr,
        rate,
    )


def run_train(
    stack_nc: Path,
    variant: str,
    out_ckpt: Path,
    params: TrainParams,
    threads: int,
    device: str = "auto",
    log: logging.Logger | None = None,
) -> None:
    """Train ``variant`` on the stack with ``params`` (for the stack's task); write ``out_ckpt`` atomically."""
    log = log or _LOG
    stack_nc, out_ckpt = Path(stack_nc), Path(out_ckpt)
    pairs = not variant_flags(variant)["pix2pix"]
    data = load_stack(stack_nc)
    params.check_task(data.task, str(stack_nc))
    torch.set_num_threads(max(1, int(threads)))
    dev = select_device(device, log)
    p = _fit_patch(data, variant, params, pairs, stack_nc, log)
    rows_of = _epoch_rows(data, p, pairs)
    n0 = len(rows_of(0))
    spe = math.ceil(n0 / p.batch_size)
    sched = _schedule(p, spe)
    tr = Trainer(variant, len(data.band_s), len(data.band_t), p, dev)
    partial = out_ckpt.with_name(out_ckpt.name + ".partial")
    run = _resume(tr, partial, p, log)
    log.info(
        "train %s on %s: device=%s threads=%d patches/epoch=%d steps/epoch=%d total_steps=%d%s",
        variant,
        data.experiment,
        dev,
        threads,
        n0,
        spe,
        sched.total,
        " (capped by max_steps)" if sched.capped else "",
    )
    with _deterministic(dev.type == "cpu"):
        _train_epochs(tr, data, p, rows_of, sched, run, partial, log)
    save_checkpoint(_ckpt_payload(tr, data, p, run, True), out_ckpt)
    partial.unlink(missing_ok=True)
    log.info("train %s done: %d steps, %d epochs -> %s", variant, run.step, run.epoch, out_ckpt)
