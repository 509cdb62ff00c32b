"""The paper's uniqueness constraint L_con and three departures that remove its shortcut (DESIGN §11).

Notation (DESIGN §6): X_ab = X_a − X_b in normalised units, G(ΔS, guide) → ΔT̂ with the guide the
image the difference is added to. The paper's L_con (eq. 6, with eq. 4's sign) is
MSE(T̂_ij − T̂_ik, T_k − T_j). Its target is a function of the two guides only, and the ij/ik passes
are guided by T_j/T_k, so the **degenerate solution** G(·, T_g) = −T_g + c satisfies it exactly
without reading the source difference (README, "Known result: the L_con shortcut"). The true
difference G(S_ab, T_b) = T_a − T_b satisfies it too. The departures keep L_rec and the network
and change only the uniqueness term; each is zero for the true difference:

- ``cycle`` — a temporal cycle through the target date, supervised at a known date: from T_k go to
  date i, R_i = T_k + G(S_ik, T_k), and on to date j, T̂_j = R_i + G(S_ji, R_i), compared with T_j
  (and j → i → k with T_k); replaces L_con. The degenerate solution gives R_i = c and T̂_j = c, so
  the loss is MSE(c, T_j) > 0 unless T_j is constant.
- ``identity`` — L_con plus the zero-change pairs (g, g): G(0, T_g) must be T_g − T_g = 0. These
  are true, known training pairs the paper never uses; the degenerate solution gives −T_g + c ≠ 0.
- ``stopgrad`` — L_con with its gradient stopped at the guide encoder and masks: L_con can train
  the input path and decoder, but cannot teach the guide path to output −T_g. Its *value* equals
  L_con's (so the degenerate solution still scores zero on it); what changes is that L_con's
  gradient never reaches the guide encoder (tested as such).

Weights: the departure's term takes λ_con's place; no L_adv (like ``tirsit_noadv``).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

__all__ = ["consistency_target", "consistency_loss", "departure_losses"]

#: G(x, guide, guide_index, detach_guide_from) → ΔT̂, the signature of :class:`~pipeline_lib.model.networks.Generator`.
GeneratorFn = Callable[..., torch.Tensor]


def consistency_target(t_j: torch.Tensor, t_k: torch.Tensor) -> torch.Tensor:
    """What T̂_ij − T̂_ik must equal under the uniqueness constraint (eq. 4): T_k − T_j."""
    return t_k - t_j


def consistency_loss(
    pred_ij: torch.Tensor, pred_ik: torch.Tensor, t_j: torch.Tensor, t_k: torch.Tensor
) -> torch.Tensor:
    """L_con = MSE((T̂_ij − T̂_ik), T_k − T_j)."""
    return F.mse_loss(pred_ij - pred_ik, consistency_target(t_j, t_k))


def departure_losses(kind: str, g: GeneratorFn, b: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """(T̂_jk, uniqueness term) of a departure for one batch ``b`` of :func:`~pipeline_lib.model.train.make_batch`.

    ``b["x"]`` = [S_jk; S_ij; S_ik] (3B rows), ``b["guide"]`` = [T_k; T_j], ``b["guide_index"]`` picks
    each row's guide, ``b["t_j"]``, ``b["t_k"]`` (B rows). Outputs are float32.
    """
    x, guide, gi, t_j, t_k = b["x"], b["guide"], b["guide_index"], b["t_j"], b["t_k"]
    n = t_j.shape[0]
    if kind == "stopgrad":
        out = g(x, guide, gi, detach_guide_from=n).float()
        return out[:n], consistency_loss(out[n : 2 * n], out[2 * n :], t_j, t_k)
    if kind == "identity":
        zero = torch.zeros_like(x[:n])
        gi_zero = torch.arange(n, 2 * n, device=gi.device, dtype=gi.dtype)  # guide T_j
        out = g(torch.cat([x, zero]), guide, torch.cat([gi, gi_zero])).float()
        con = consistency_loss(out[n : 2 * n], out[2 * n : 3 * n], t_j, t_k)
        return out[:n], con + F.mse_loss(out[3 * n :], torch.zeros_like(out[3 * n :]))
    if kind == "cycle":
        out = g(x, guide, gi).float()
        r_from_k = t_k + out[2 * n :]  # T_i reconstructed from k
        r_from_j = t_j + out[n : 2 * n]  # T_i reconstructed from j
        back = g(torch.cat([-x[n : 2 * n], -x[2 * n :]]), torch.cat([r_from_k, r_from_j])).float()
        cyc = 0.5 * (F.mse_loss(r_from_k + back[:n], t_j) + F.mse_loss(r_from_j + back[n:], t_k))
        return out[:n], cyc
    raise ValueError(f"departure_losses: kind {kind!r} is not one of cycle, identity, stopgrad")
