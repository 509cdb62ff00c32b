"""TIRSIT networks (paper eqs. 1–3, DESIGN §6) and the uniqueness-constraint identity of L_con."""

from __future__ import annotations

import math

import pytest
import torch

from pipeline_lib.model.networks import Generator, PatchDiscriminator, feature_mask
from pipeline_lib.model.train import consistency_loss, consistency_target


def test_feature_mask_known_values() -> None:
    # one channel with values −1, +1 (mean 0, population std 1): f̂ = ±1
    f = torch.tensor([[[[-1.0, 1.0], [1.0, -1.0]]]])
    m = feature_mask(f, eta=0.5)
    sig = 1 / (1 + math.exp(-1.0))
    assert m[0, 0, 0, 1].item() == pytest.approx(0.5 * sig + 0.5, abs=1e-4)
    assert m[0, 0, 0, 0].item() == pytest.approx(0.5 * (1 - sig) + 0.5, abs=1e-4)
    # standardisation: scaling and shifting the guide features leaves the mask unchanged
    assert torch.allclose(feature_mask(3 * f + 7, 0.5), m, atol=1e-4)
    # a 1×1 map has std 0: the ε keeps it finite, f̂ = 0 → mask = (1 − η)/2 + η
    one = feature_mask(torch.tensor([[[[5.0]]]]), eta=0.5)
    assert one.item() == pytest.approx(0.75)
    # the mask stays in [η, 1]
    r = feature_mask(torch.randn(2, 4, 8, 8) * 10, eta=0.5)
    assert r.min() >= 0.5 and r.max() <= 1.0


def test_generator_shapes_and_guide_path() -> None:
    torch.manual_seed(0)
    g = Generator(2, 3, 3, filters=8, levels=5, eta=0.5, zero_head=False)
    x, guide = torch.randn(2, 2, 64, 64), torch.randn(2, 3, 64, 64)
    out = g(x, guide)
    assert out.shape == (2, 3, 64, 64)
    assert len(g.masks) == 5 and len(g.enc_guide) == 5
    # the guide reaches the output through the masks
    assert not torch.allclose(out, g(x, guide.flip(-1)))
    with pytest.raises(ValueError, match="multiple of 32"):
        g(torch.randn(1, 2, 50, 50), torch.randn(1, 3, 50, 50))
    with pytest.raises(ValueError, match="guide"):
        g(x)


def test_plain_unet_has_no_guide_encoder() -> None:
    plain = Generator(2, 3, filters=8, levels=5, eta=0.5, guided=False)
    guided = Generator(2, 3, 3, filters=8, levels=5, eta=0.5)
    assert not hasattr(plain, "enc_guide")
    assert sum(p.numel() for p in plain.parameters()) < sum(p.numel() for p in guided.parameters())
    assert plain(torch.randn(1, 2, 32, 32)).shape == (1, 3, 32, 32)


def test_generator_head_is_linear() -> None:
    # no Tanh: scaling the head weights scales the output without saturation
    torch.manual_seed(1)
    g = Generator(2, 3, 3, filters=8, levels=5, eta=0.5, zero_head=False)
    x, guide = torch.randn(1, 2, 32, 32), torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        a = g(x, guide) - g.head.bias.view(1, -1, 1, 1)
        g.head.weight.mul_(100.0)
        b = g(x, guide) - g.head.bias.view(1, -1, 1, 1)
    assert torch.allclose(b, 100 * a, rtol=1e-4, atol=1e-5)


def test_patchgan_three_layers_conditioned() -> None:
    d = PatchDiscriminator(2, 3, filters=32)
    convs = [m for m in d.net if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 64, 128, 1]
    assert convs[0].in_channels == 5  # condition (source difference) + image
    logits = d(torch.randn(4, 2, 64, 64), torch.randn(4, 3, 64, 64))
    assert logits.shape == (4, 1, 14, 14)


def test_consistency_identity_on_known_answer() -> None:
    """Eq. 4: T̂_ij + T_j = T̂_ik + T_k ⇒ T̂_ij − T̂_ik = T_k − T_j (not the paper's T_jk of eq. 6)."""
    gen = torch.Generator().manual_seed(0)
    t_i, t_j, t_k = (torch.rand(2, 3, 8, 8, generator=gen) for _ in range(3))
    exact_ij, exact_ik = t_i - t_j, t_i - t_k  # a perfect network
    assert torch.equal(consistency_target(t_j, t_k), t_k - t_j)
    assert consistency_loss(exact_ij, exact_ik, t_j, t_k).item() == pytest.approx(0.0, abs=1e-12)
    # with eq. 6's sign (T_jk = T_j − T_k) the perfect network would be penalised by 4·mean((T_k − T_j)²)
    wrong = torch.mean(((exact_ij - exact_ik) - (t_j - t_k)) ** 2).item()
    assert wrong == pytest.approx(4 * torch.mean((t_k - t_j) ** 2).item(), rel=1e-5)
    assert wrong > 0.01
    # and a prediction off by δ in T̂_ij costs mean(δ²)
    delta = 0.1
    assert consistency_loss(exact_ij + delta, exact_ik, t_j, t_k).item() == pytest.approx(delta**2, rel=1e-4)


def test_shared_guides_equal_repeated_guides() -> None:
    torch.manual_seed(2)
    g = Generator(2, 3, 3, filters=8, levels=5, eta=0.5, zero_head=False)
    x, guides = torch.randn(3, 2, 32, 32), torch.randn(2, 3, 32, 32)
    idx = torch.tensor([0, 1, 0])
    assert torch.allclose(g(x, guides, idx), g(x, guides[idx]), atol=1e-6)
