"""TIRSIT generator (two encoders + feature masks), the plain U-Net and the PatchGAN discriminator.

Paper: Liu et al., "TIRSIT ...", IEEE TGRS 2021, §III-B (Fig. 2–3, eqs. 1–3) and §IV-C.1; DESIGN §6.

- Encoder level n (n = 1..levels): 4×4 conv, stride 2, padding 1, leaky ReLU (slope 0.2); filters
  32·2^(n-1) capped at 8× the first level (pix2pix's U-Net convention [Isola 2017]).
- Two encoders: E_input on the difference image, E_guide on the target-modality guide image.
  At every level the **feature mask** (eqs. 1–3): f̂ = (f_guide − mean_c) / (std_c + ε) per sample and
  channel over space, mask = (1 − η)·sigmoid(f̂) + η, f_input' = mask ⊙ f_input. f_input' feeds both
  the next E_input level and the skip connection; E_guide continues on its own unmasked features.
  ε = 1e-5 (std is 0 on a 1×1 map). The statistics are computed in float32 even under autocast.
- Decoder mirrors the encoder: 4×4 transposed conv stride 2 + ReLU, concatenating the skip of the
  same level; a last full-resolution 3×3 conv + leaky ReLU then a 1×1 **linear** head (no Tanh:
  differences are not clipped). The head starts at zero (``zero_head``, our choice): an untrained
  TIRSIT predicts ΔT̂ = 0, i.e. exactly the blend baseline, and training moves away from it. No normalisation layers (the paper names none; batch statistics would
  also make tiles depend on their neighbours in a batch).
- ``guided=False`` (the ``no_sg`` ablation, and pix2pix's generator): E_guide and the masks are
  removed, leaving a plain U-Net on the input.
- PatchGAN (3 layers, 32 filters): conv 4×4 s2 (32) → s2 (64) → s1 (128), leaky ReLU, then a 4×4
  conv to one logit per patch; conditioned by concatenating the source image/difference with the
  (real or generated) target image/difference. Logits are fed to BCE-with-logits.

Spatial size must be a multiple of 2^levels (64 for 5 levels: the paper's 50 px is not).
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["FeatureMask", "Generator", "PatchDiscriminator", "feature_mask"]

MASK_EPS = 1e-5


def feature_mask(f_guide: torch.Tensor, eta: float) -> torch.Tensor:
    """Eqs. 1–2: per-channel standardised guide features through a floored sigmoid, in float32."""
    f = f_guide.float()
    mean = f.mean(dim=(2, 3), keepdim=True)
    std = f.std(dim=(2, 3), keepdim=True, unbiased=False)
    f_hat = (f - mean) / (std + MASK_EPS)
    return (1.0 - eta) * torch.sigmoid(f_hat) + eta


class FeatureMask(nn.Module):
    """Semantic guidance module of one encoder level (eq. 3: f_input' = mask ⊙ f_input)."""

    def __init__(self, eta: float) -> None:
        super().__init__()
        self.eta = float(eta)

    def mask(self, f_guide: torch.Tensor) -> torch.Tensor:
        return feature_mask(f_guide, self.eta)

    def forward(self, f_input: torch.Tensor, f_guide: torch.Tensor) -> torch.Tensor:
        return f_input * self.mask(f_guide).to(f_input.dtype)


def _widths(filters: int, levels: int) -> list[int]:
    return [filters * min(2**n, 8) for n in range(levels)]


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, stride=2, padding=1), nn.LeakyReLU(0.2))


class Generator(nn.Module):
    """U-Net generator: difference (or source) image in, target difference (or image) out."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        guide_channels: int = 0,
        *,
        filters: int,
        levels: int,
        eta: float,
        guided: bool = True,
        zero_head: bool = True,
    ) -> None:
        super().__init__()
        if guided and guide_channels < 1:
            raise ValueError("Generator: a guided generator needs guide_channels >= 1")
        self.guided = guided
        self.levels = levels
        self.eta = float(eta)
        w = _widths(filters, levels)
        self.enc = nn.ModuleList(_down(c_in, c_out) for c_in, c_out in zip([in_channels, *w[:-1]], w, strict=True))
        if guided:
            self.enc_guide = nn.ModuleList(
                _down(c_in, c_out) for c_in, c_out in zip([guide_channels, *w[:-1]], w, strict=True)
            )
            self.masks = nn.ModuleList(FeatureMask(eta) for _ in w)
        # decoder: level n upsamples to the size of encoder level n-1 and concatenates its skip
        ups: list[nn.Module] = []
        for n in range(levels - 1, 0, -1):
            cin = w[n] if n == levels - 1 else 2 * w[n]
            ups.append(nn.Sequential(nn.ConvTranspose2d(cin, w[n - 1], 4, stride=2, padding=1), nn.ReLU()))
        self.ups = nn.ModuleList(ups)
        last_in = 2 * w[0] if levels > 1 else w[0]
        self.up_full = nn.Sequential(nn.ConvTranspose2d(last_in, w[0], 4, stride=2, padding=1), nn.ReLU())
        self.refine = nn.Sequential(nn.Conv2d(w[0] + in_channels, w[0], 3, padding=1), nn.LeakyReLU(0.2))
        self.head = nn.Conv2d(w[0], out_channels, 1)
        if zero_head:
            nn.init.zeros_(self.head.weight)
            if self.head.bias is not None:
                nn.init.zeros_(self.head.bias)

    def forward(
        self,
        x: torch.Tensor,
        guide: torch.Tensor | None = None,
        guide_index: torch.Tensor | None = None,
        detach_guide_from: int | None = None,
    ) -> torch.Tensor:
        """ΔT̂ for inputs ``x``; ``guide[guide_index]`` is sample i's guide (default: guide i).

        ``guide_index`` lets a batch share guide images (TIRSIT's jk and ik passes both use T_k):
        the guide encoder and the masks then run once per distinct guide. With ``detach_guide_from``
        = m, samples m, m+1, … use the masks with their gradient stopped, so a loss on those samples
        does not train the guide encoder (the ``stopgrad`` departure, :mod:`pipeline_lib.model.losses`).
        """
        mult = 2**self.levels
        if x.shape[-1] % mult or x.shape[-2] % mult:
            raise ValueError(f"Generator: spatial size {tuple(x.shape[-2:])} is not a multiple of {mult}")
        if self.guided and guide is None:
            raise ValueError("Generator: the guided generator needs a guide image")
        skips: list[torch.Tensor] = []
        f, g = x, guide
        for n in range(self.levels):
            f = self.enc[n](f)
            if self.guided:
                assert g is not None
                g = self.enc_guide[n](g)
                mask = feature_mask(g, self.eta).to(f.dtype)  # = self.masks[n].mask(g)
                m = mask if guide_index is None else mask[guide_index]
                if detach_guide_from is not None:
                    m = torch.cat([m[:detach_guide_from], m[detach_guide_from:].detach()])
                f = f * m
            skips.append(f)
        h = skips[-1]
        for i, up in enumerate(self.ups):
            h = up(h)
            h = torch.cat([h, skips[self.levels - 2 - i]], dim=1)
        h = self.up_full(h)
        h = self.refine(torch.cat([h, x], dim=1))
        out: torch.Tensor = self.head(h)
        return out


class PatchDiscriminator(nn.Module):
    """Three-layer PatchGAN conditioned on the source: logits per patch for (condition, image)."""

    def __init__(self, cond_channels: int, image_channels: int, filters: int) -> None:
        super().__init__()
        f = filters
        self.net = nn.Sequential(
            nn.Conv2d(cond_channels + image_channels, f, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(f, 2 * f, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(2 * f, 4 * f, 4, stride=1, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(4 * f, 1, 4, stride=1, padding=1),
        )

    def forward(self, cond: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(torch.cat([cond, image], dim=1))
        return out
