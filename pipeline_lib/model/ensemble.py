"""Seed ensembles of one network variant (schema ``train.ensemble``; docs/DESIGN.md §6, ensembles).

``train.ensemble: n`` trains n members of every network variant of an experiment, identical but for the
seed: member m uses ``train.seed + m`` (weights and patch draws). Member 0 is the single model of
``n = 1`` (``models/{experiment}/{variant}.pt``), members 1 … n − 1 are ``{variant}.member{m}.pt`` beside
it, each its own resumable training job, so raising n reuses the models already trained and n = 1
changes nothing (same files, same results).

Prediction averages the members' predictions (physical units, before clipping to reflectance) and
joins their disagreement to the uncertainty in quadrature: with U_m the member's own uncertainty (the
guide spread, :func:`pipeline_lib.model.baselines.weighted_spread`) and σ the members' per-pixel sample
standard deviation (ddof 1), U = sqrt(mean_m U_m² + σ²) — the law of total variance with U_m read as a
standard deviation. U ≥ sqrt(mean U_m²) ≥ mean U_m everywhere, strictly where the members disagree.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline_lib.errors import ConfigError, ModelError

__all__ = [
    "ENSEMBLE_KEY",
    "check_ensemble",
    "member_seeds",
    "member_checkpoint",
    "member_checkpoints",
    "combine_members",
]

ENSEMBLE_KEY = "train.ensemble"
"""The config key of the ensemble size (a region's ``train`` section)."""


def check_ensemble(n: object) -> int:
    """``n`` as an int ≥ 1; a one-line ConfigError naming :data:`ENSEMBLE_KEY` otherwise."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"{ENSEMBLE_KEY}: {n!r} must be an integer >= 1; give 1 (one model) or more seed members")
    return n


def member_seeds(seed: int, n: int) -> list[int]:
    """Training seeds of the n members: ``seed``, ``seed + 1``, …"""
    return [int(seed) + m for m in range(check_ensemble(n))]


def member_checkpoint(model_dir: str, variant: str, member: int) -> str:
    """Checkpoint path of ``member`` (0: the single model's ``{variant}.pt``; m ≥ 1: ``{variant}.member{m}.pt``)."""
    if member < 0:
        raise ModelError(f"ensemble member {member} of {variant!r}: members count from 0")
    return f"{model_dir}/{variant}.pt" if member == 0 else f"{model_dir}/{variant}.member{member}.pt"


def member_checkpoints(model_dir: str, variant: str, n: int) -> list[str]:
    """Checkpoint paths of all n members, member 0 first."""
    return [member_checkpoint(model_dir, variant, m) for m in range(check_ensemble(n))]


def combine_members(
    preds: Sequence[np.ndarray], uncs: Sequence[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray | None]:
    """(mean prediction, uncertainty) of the members; one member is returned unchanged.

    ``uncs`` are the members' own uncertainty rasters (all None for variants without one: the result's
    is None too, the spread is not written). Shapes (band, y, x); NaN where any member is NaN.
    """
    if not preds or len(preds) != len(uncs):
        raise ModelError(
            f"ensemble: {len(preds)} predictions and {len(uncs)} uncertainties; give one of each per member"
        )
    if len(preds) == 1:
        return preds[0], uncs[0]
    stack = np.stack([np.asarray(p, dtype=np.float64) for p in preds])
    mean = stack.mean(axis=0).astype(np.float32)
    if any(u is None for u in uncs):
        return mean, None
    spread = stack.std(axis=0, ddof=1)
    own = np.mean(np.stack([np.asarray(u, dtype=np.float64) ** 2 for u in uncs if u is not None]), axis=0)
    return mean, np.sqrt(own + spread**2).astype(np.float32)
