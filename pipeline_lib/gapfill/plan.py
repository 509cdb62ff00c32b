"""What a gap-filled series consists of, decided at DAG time (docs/DESIGN.md §8): the dates to fill and the
model tasks. Kept free of torch so that the workflow can plan the jobs without importing the network code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline_lib.errors import ConfigError, ModelError

__all__ = ["SWIR_ROUTES", "gapfill_dates", "swir_task"]

SWIR_ROUTES = ("direct", "chained")


def swir_task(route: str) -> str:
    """The model task that predicts SWIR under clouds: SAR → SWIR (``direct``) or visible → SWIR (``chained``)."""
    if route not in SWIR_ROUTES:
        raise ModelError(f"gapfill.swir={route!r} is unknown; use one of {list(SWIR_ROUTES)}")
    return "sar_to_swir" if route == "direct" else "visible_to_swir"


def gapfill_dates(dates: Sequence[str], cfg: Mapping[str, Any]) -> list[str]:
    """The dates to fill: ``gapfill.dates`` ("all" = every region date, within ``gapfill.range`` if set)."""
    region_dates = sorted(str(d) for d in dates)
    chosen = cfg.get("dates", "all")
    if chosen == "all":
        out = region_dates
    else:
        out = sorted(str(d) for d in chosen)
        missing = [d for d in out if d not in region_dates]
        if missing:
            raise ConfigError(f"gapfill.dates: {missing} are not among the region's dates; add them to dates")
    rng = cfg.get("range")
    if rng:
        lo, hi = str(rng[0]), str(rng[1])
        out = [d for d in out if lo <= d <= hi]
    if not out:
        raise ConfigError("gapfill.dates/range select no date; widen gapfill.range or list dates")
    return out
