"""The built-in demo data source: a deterministic, seeded generator of real-format products.

See DESIGN §4 "demo" and docs/CONTRACTS.md "The demo world". :mod:`.surface` is the simulated
world, :mod:`.s1` writes Sentinel-1 IW GRDH SAFE products and :mod:`.s2` Sentinel-2 L2A SAFE
products from it. Nothing here imports the pipeline's readers (``pipeline_lib.sar`` /
``pipeline_lib.optical``): the round trip through the readers is a real test.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from pathlib import Path

from pipeline_lib.demo.s1 import write_s1_product
from pipeline_lib.demo.s2 import write_s2_product
from pipeline_lib.demo.surface import (
    CLOUDY_DATE,
    DEMO_CENTER_LONLAT,
    DEMO_CRS,
    DEMO_DATES,
    demo_center_xy,
    simulate_surface,
)

__all__ = [
    "CLOUDY_DATE",
    "DEMO_CENTER_LONLAT",
    "DEMO_CRS",
    "DEMO_DATES",
    "DEFAULT_MARGIN_M",
    "demo_bounds",
    "generate_demo_products",
    "simulate_surface",
    "write_s1_product",
    "write_s2_product",
]

DEFAULT_MARGIN_M = 500.0


def demo_bounds(
    size_px: int = 512, margin_m: float = DEFAULT_MARGIN_M, resolution_m: float = 10.0
) -> tuple[float, float, float, float]:
    """Rendered area (UTM 33N left, bottom, right, top): the centred ``size_px`` AOI plus ``margin_m``."""
    x0, y0 = demo_center_xy()
    half = size_px * resolution_m / 2.0 + margin_m
    return (x0 - half, y0 - half, x0 + half, y0 + half)


def generate_demo_products(
    dest: Path, dates: Sequence[date] = DEMO_DATES, size_px: int = 512, seed: int = 0
) -> list[Path]:
    """Write one S1 and one S2 product per date into ``dest`` (no DemoSource needed); returns the SAFE paths."""
    dest.mkdir(parents=True, exist_ok=True)
    bounds = demo_bounds(size_px)
    out: list[Path] = []
    for d in dates:
        out.append(write_s1_product(dest, d, bounds, seed))
        out.append(write_s2_product(dest, d, bounds, seed)[0])
    return out
