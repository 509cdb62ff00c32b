"""The optimised training step computes the same update as the plain textbook step (DESIGN §6, training cost).

Reference: one separate generator pass per use, D's real and fake passes separately, D's weight
gradients computed (and discarded) in the generator step, contiguous NCHW tensors — the algorithm of
DESIGN §6 written without any of :class:`pipeline_lib.model.train.Trainer`'s shortcuts. After two
steps both must hold the same weights up to float rounding (op order differs, so not bit-equal).
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.train import Trainer, consistency_loss

B, P, NS, NT = 3, 32, 2, 3


def _batch(variant: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    def r(*shape: int) -> np.ndarray:
        return rng.random(shape, dtype=np.float32)

    if variant == "pix2pix":
        return {"x": r(B, NS, P, P), "t": r(B, NT, P, P)}
    t_j, t_k = r(B, NT, P, P), r(B, NT, P, P)
    return {
        "x": r(3 * B, NS, P, P) - 0.5,
        "guide": np.concatenate([t_k, t_j]),
        "guide_index": np.concatenate([np.arange(B), np.arange(B, 2 * B), np.arange(B)]),
        "t_jk": t_j - t_k,
        "t_j": t_j,
        "t_k": t_k,
        "s_jk": r(B, NS, P, P) - 0.5,
    }


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, target))


def _reference_step(
    tr: Trainer,
    g: nn.Module,
    d: nn.Module | None,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer | None,
    batch: dict[str, np.ndarray],
    disc_on: bool,
) -> None:
    b = {k: torch.from_numpy(v) for k, v in batch.items()}
    if tr.flags["pix2pix"]:
        out = g(b["x"])
        cond, real = b["x"], b["t"]
        total = tr.p.lambda_l1 * F.l1_loss(out, real)
        use_d = True
    else:
        x, guide = b["x"], b["guide"]
        gj, gk = guide[B:], guide[:B]
        if tr.flags["guided"]:
            out_jk, out_ij, out_ik = g(x[:B], gk), g(x[B : 2 * B], gj), g(x[2 * B :], gk)
        else:
            out_jk, out_ij, out_ik = g(x[:B]), g(x[B : 2 * B]), g(x[2 * B :])
        out, cond, real = out_jk, b["s_jk"], b["t_jk"]
        total = F.mse_loss(out_jk, real)
        if tr.lambda_con > 0:
            total = total + tr.lambda_con * consistency_loss(out_ij, out_ik, b["t_j"], b["t_k"])
        use_d = d is not None and disc_on and tr.lambda_adv > 0
    if use_d:
        assert d is not None and opt_d is not None
        opt_d.zero_grad()
        loss_d = 0.5 * (_bce(d(cond, real), 1.0) + _bce(d(cond, out.detach()), 0.0))
        loss_d.backward()
        opt_d.step()
        lam = 1.0 if tr.flags["pix2pix"] else tr.lambda_adv
        total = total + lam * _bce(d(cond, out), 1.0)
    opt_g.zero_grad()
    total.backward()
    opt_g.step()


@pytest.mark.parametrize("variant", ["tirsit", "no_uc", "no_uc_sg", "pix2pix"])
def test_optimised_step_equals_the_reference_step(variant: str) -> None:
    torch.set_num_threads(1)
    p = TrainParams.for_task("sar_to_visible", filters=8, batch_size=B, patch_px=P)
    tr = Trainer(variant, NS, NT, p, torch.device("cpu"))
    assert next(tr.g.refine.parameters()).is_contiguous(memory_format=torch.channels_last)  # NHWC weights
    nchw = torch.contiguous_format
    g = copy.deepcopy(tr.g).to(memory_format=nchw)  # type: ignore[call-overload]
    d = copy.deepcopy(tr.d).to(memory_format=nchw) if tr.d is not None else None  # type: ignore[call-overload]
    betas = (0.5, 0.999)
    opt_g = torch.optim.Adam(g.parameters(), lr=p.lr, betas=betas)
    opt_d = torch.optim.Adam(d.parameters(), lr=p.lr, betas=betas) if d is not None else None
    init = {k: v.clone() for k, v in g.state_dict().items()}
    rng = np.random.default_rng(1)
    for _ in range(2):
        batch = _batch(variant, rng)
        losses = tr.step(batch, disc_on=True)
        _reference_step(tr, g, d, opt_g, opt_d, batch, disc_on=True)
    assert np.isfinite(losses["rec"]) and np.isfinite(losses["con"]) == (tr.lambda_con > 0)
    for (name, a), b_ in zip(tr.g.state_dict().items(), g.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b_, rtol=1e-4, atol=1e-6, msg=name)
    if d is not None:
        assert tr.d is not None
        for (name, a), b_ in zip(tr.d.state_dict().items(), d.state_dict().values(), strict=True):
            torch.testing.assert_close(a, b_, rtol=1e-4, atol=1e-6, msg=name)
    changed = [k for k, v in g.state_dict().items() if not torch.equal(v, init[k])]
    assert len(changed) > len(init) // 2, "the reference step barely moved the weights"
