"""Guide dates chosen from the time series: ``guides: auto`` (DESIGN §6 "more than two guides").

A model trained on one guide pair sees one change (64–100 px of it on the real chips); with N guide
dates every ordered pair (j, k) is a training example (:func:`pipeline_lib.model.data.epoch_patches`)
and the prediction blends N reconstructions. :func:`auto_guides` picks the dates: every date other
than the target with both modalities present and a clear fraction of at least ``min_clear``, within
``window_days`` of the target; at least two, else the two nearest clear dates outside the window.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from pipeline_lib.errors import ConfigError

__all__ = ["auto_guides"]


def auto_guides(
    clear_fraction: Mapping[str, float],
    dates: Mapping[str, date],
    target: str,
    window_days: int,
    min_clear: float = 0.9,
) -> list[str]:
    """Guide date keys (sorted by date) for ``target``.

    ``clear_fraction``: date key → clear fraction of the target-modality image (only keys where the
    source modality also exists); ``dates``: date key → calendar date.
    """
    if target not in dates:
        raise ConfigError(f"guides: auto: target {target!r} is not one of the region's dates")
    if window_days < 1:
        raise ConfigError(f"guides_window_days={window_days} must be at least 1")
    t0 = dates[target]
    clear = [d for d, f in clear_fraction.items() if d != target and d in dates and f >= min_clear]
    near = [d for d in clear if abs((dates[d] - t0).days) <= window_days]
    if len(near) < 2:
        near = sorted(clear, key=lambda d: (abs((dates[d] - t0).days), dates[d]))[:2]
    if len(near) < 2:
        raise ConfigError(
            f"guides: auto: fewer than 2 clear dates (clear fraction ≥ {min_clear}) besides {target}; list guides"
        )
    return sorted(near, key=lambda d: dates[d])
