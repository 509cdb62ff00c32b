"""The shortcut G(·, T_g) = −T_g + c: zero on the paper's L_con, non-zero on the departures (DESIGN §11).

A linear world T = A·S + b (per pixel) has the true difference G(S_ab, T_b) = A·S_ab, which must
score zero on every uniqueness term; the degenerate generator −T_g + c must score zero on L_con
and clearly non-zero on ``cycle`` and ``identity``. ``stopgrad`` keeps L_con's value and stops
its gradient at the guide encoder and masks.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

from pipeline_lib.model.losses import consistency_loss, departure_losses
from pipeline_lib.model.networks import Generator

N, CS, CT, P = 4, 2, 3, 8


def _world(seed: int) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A batch of make_batch's layout from a random linear world, and its matrix A."""
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(CT, CS, generator=g) * 0.5
    s_i, s_j, s_k = (torch.rand(N, CS, P, P, generator=g) for _ in range(3))

    def t_of(s: torch.Tensor) -> torch.Tensor:
        return torch.einsum("ts,nsyx->ntyx", a, s) + 0.3

    t_j, t_k = t_of(s_j), t_of(s_k)
    b = {
        "x": torch.cat([s_j - s_k, s_i - s_j, s_i - s_k]),
        "guide": torch.cat([t_k, t_j]),
        "guide_index": torch.cat([torch.arange(N), torch.arange(N, 2 * N), torch.arange(N)]),
        "t_j": t_j,
        "t_k": t_k,
        "t_jk": t_j - t_k,
    }
    return b, a


def _true_difference(a: torch.Tensor) -> Any:
    def g(x: torch.Tensor, guide: Any = None, guide_index: Any = None, detach_guide_from: Any = None) -> torch.Tensor:
        return torch.einsum("ts,nsyx->ntyx", a, x)

    return g


def _degenerate(c: float) -> Any:
    def g(x: torch.Tensor, guide: torch.Tensor, guide_index: Any = None, detach_guide_from: Any = None) -> torch.Tensor:
        gd = guide if guide_index is None else guide[guide_index]
        return -gd + c

    return g


def _paper(g: Any, b: dict[str, torch.Tensor]) -> float:
    out = g(b["x"], b["guide"], b["guide_index"])
    return float(consistency_loss(out[N : 2 * N], out[2 * N :], b["t_j"], b["t_k"]))


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("c", [0.0, 0.5])
@pytest.mark.parametrize("kind", ["cycle", "identity"])
def test_degenerate_solution_is_free_under_lcon_but_not_under_the_departure(seed: int, c: float, kind: str) -> None:
    b, _ = _world(seed)
    g = _degenerate(c)
    assert _paper(g, b) < 1e-12
    _, term = departure_losses(kind, g, b)
    # the scale of the guides' own variance: clearly non-zero
    assert float(term) > 0.1 * float(b["t_j"].var())
    assert float(term) > 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", ["cycle", "identity", "stopgrad"])
def test_true_difference_scores_zero_on_both(seed: int, kind: str) -> None:
    b, a = _world(seed)
    g = _true_difference(a)
    assert _paper(g, b) < 1e-10
    out_jk, term = departure_losses(kind, g, b)
    assert float(term) < 1e-10
    torch.testing.assert_close(out_jk, b["t_jk"], atol=1e-5, rtol=0)


def _grads(kind: str | None) -> tuple[float, float, float]:
    """|∇| of the uniqueness term w.r.t. (guide encoder, input encoder) and the term's value."""
    torch.manual_seed(0)
    net = Generator(CS, CT, CT, filters=4, levels=2, eta=0.5, zero_head=False)
    b, _ = _world(3)
    if kind is None:
        out = net(b["x"], b["guide"], b["guide_index"])
        term = consistency_loss(out[N : 2 * N], out[2 * N :], b["t_j"], b["t_k"])
    else:
        _, term = departure_losses(kind, net, b)
    net.zero_grad()
    term.backward()
    g_guide = sum(float(p.grad.abs().sum()) for p in net.enc_guide.parameters() if p.grad is not None)
    g_input = sum(float(p.grad.abs().sum()) for p in net.enc.parameters() if p.grad is not None)
    return g_guide, g_input, float(term.detach())


def test_stopgrad_keeps_the_value_and_cuts_the_guide_gradient() -> None:
    paper_guide, paper_input, paper_value = _grads(None)
    sg_guide, sg_input, sg_value = _grads("stopgrad")
    assert sg_value == pytest.approx(paper_value, rel=1e-6)
    assert paper_guide > 0 and paper_input > 0
    assert sg_guide == 0.0
    assert sg_input == pytest.approx(paper_input, rel=1e-5)


def test_unknown_kind_is_refused() -> None:
    b, a = _world(0)
    with pytest.raises(ValueError, match="kind"):
        departure_losses("paper", _true_difference(a), b)


def test_departure_variants_train_one_step() -> None:
    """Each departure runs through Trainer.step with finite losses (the real network, CPU)."""
    from pipeline_lib.model.params import TrainParams
    from pipeline_lib.model.train import Trainer

    p = TrainParams.for_task("sar_to_visible", filters=4, levels=2, patch_px=8, tile_px=8, overlap_px=2)
    b, _ = _world(4)
    batch = {k: v.numpy() for k, v in b.items()}
    batch["s_jk"] = batch["x"][:N]
    for name in ("tirsit_cycle", "tirsit_identity", "tirsit_stopgrad"):
        tr = Trainer(name, CS, CT, p, torch.device("cpu"))
        losses = tr.step(batch, disc_on=False)
        assert np.isfinite(losses["rec"]) and np.isfinite(losses["con"]) and np.isnan(losses["adv"])
