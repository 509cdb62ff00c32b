"""Sentinel-1 native chain: calibration + thermal-noise removal, Lee sigma speckle filter, terrain correction.

Rule-facing entry points (docs/CONTRACTS.md): :func:`run_calibrate`, :func:`run_speckle`, :func:`run_terrain`.
They are imported on first use (PEP 562), so a job imports only its own step's module and libraries
(calibration needs neither numba nor sarsen): start-up time, benchmarks/bench_startup.py.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline_lib.sar.calibration import run_calibrate
    from pipeline_lib.sar.speckle import run_speckle
    from pipeline_lib.sar.terrain import run_terrain

__all__ = ["run_calibrate", "run_speckle", "run_terrain"]

_HOME = {
    "run_calibrate": "pipeline_lib.sar.calibration",
    "run_speckle": "pipeline_lib.sar.speckle",
    "run_terrain": "pipeline_lib.sar.terrain",
}


def __getattr__(name: str) -> Any:
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
