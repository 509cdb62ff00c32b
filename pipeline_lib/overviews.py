"""Averaged overview levels of a float raster block, computed as the blocks of a streamed COG are written.

The GDAL COG driver (https://gdal.org/drivers/raster/cog.html) builds a COG's overviews itself, on one
thread, after the full-resolution image is complete; on a whole Sentinel-1 scene that was the largest
serial part of terrain correction (BENCHMARKS.md, "Idle runs, 2026-12-05"). A streamed COG
(:func:`pipeline_lib.cog.cog_writer`) instead reduces each tile to every overview level as it is
written, when the tile is aligned to the coarsest level, and hands the levels to the COG driver as
existing overviews (``OVERVIEWS=FORCE_USE_EXISTING``). Only a streamed COG with overviews imports this
module (it loads numba).

The levels are those the COG driver would make (:func:`pipeline_lib.cog.overview_factors`). Each
overview pixel is the mean of the valid (non-NaN) full-resolution pixels under it — the exact mean, carried as sums and counts from level to level,
where GDAL's AVERAGE takes the mean of the previous level's means; NaN where none is valid.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["average_levels"]


@numba.njit(cache=True, nogil=True)
def _first_level(values: np.ndarray, total: np.ndarray, count: np.ndarray) -> None:  # pragma: no cover - numba
    """Sums and counts of the non-NaN values of every 2 × 2 cell (edge cells may be partial)."""
    nb, h, w = values.shape
    for k in range(nb):
        for i in range(h):
            oi = i >> 1
            for j in range(w):
                v = values[k, i, j]
                if not np.isnan(v):
                    total[k, oi, j >> 1] += v
                    count[k, oi, j >> 1] += 1


@numba.njit(cache=True, nogil=True)
def _next_level(
    total: np.ndarray, count: np.ndarray, out_total: np.ndarray, out_count: np.ndarray
) -> None:  # pragma: no cover - numba
    """Sums and counts of every 2 × 2 cell of a level's sums and counts."""
    nb, h, w = total.shape
    for k in range(nb):
        for i in range(h):
            for j in range(w):
                out_total[k, i >> 1, j >> 1] += total[k, i, j]
                out_count[k, i >> 1, j >> 1] += count[k, i, j]


def _halved(shape: tuple[int, ...]) -> tuple[int, int, int]:
    return shape[0], -(-shape[1] // 2), -(-shape[2] // 2)


def average_levels(block: np.ndarray, n_levels: int) -> list[np.ndarray]:
    """The first ``n_levels`` overview levels (factors 2, 4, …) of a (band, rows, cols) float block:
    mean of the valid pixels under each overview pixel, NaN where none; same dtype as ``block``."""
    if block.ndim != 3:
        raise ValueError(f"average_levels: block must be (band, rows, cols), got shape {block.shape}")
    levels: list[np.ndarray] = []
    total = np.zeros(_halved(block.shape), dtype=np.float64)
    count = np.zeros(total.shape, dtype=np.int64)
    if n_levels > 0:
        _first_level(np.ascontiguousarray(block), total, count)
    for n in range(n_levels):
        with np.errstate(invalid="ignore", divide="ignore"):
            levels.append(np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(block.dtype))
        if n + 1 < n_levels:
            nxt_total = np.zeros(_halved(total.shape), dtype=np.float64)
            nxt_count = np.zeros(nxt_total.shape, dtype=np.int64)
            _next_level(total, count, nxt_total, nxt_count)
            total, count = nxt_total, nxt_count
    return levels
