"""Sentinel-1 native chain: calibration + thermal-noise removal, Lee sigma speckle filter, terrain correction.

Rule-facing entry points (docs/CONTRACTS.md): :func:`run_calibrate`, :func:`run_speckle`, :func:`run_terrain`.
"""

from pipeline_lib.sar.calibration import run_calibrate
from pipeline_lib.sar.speckle import run_speckle
from pipeline_lib.sar.terrain import run_terrain

__all__ = ["run_calibrate", "run_speckle", "run_terrain"]
