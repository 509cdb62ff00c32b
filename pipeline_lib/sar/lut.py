"""The σ0 calibration LUT of a Sentinel-1 GRD, read and interpolated with numpy (no xarray on the calibrate path).

Governing spec: S1-RS-MDA-52-7441 §9.3 / ESA-EOPG-CSCOP-TN-0002: the calibration annotation's
``calibrationVectorList`` gives ``sigmaNought`` on a sparse (line, pixel) grid; values in between are
interpolated bilinearly, as xarray-sentinel's ``calibrate_amplitude`` does with ``DataArray.interp``
(linear in line and pixel, NaN outside the LUT's span). Parsing the XML here instead of through
xarray-sentinel (xmlschema, xarray) keeps those imports out of the calibrate job's start-up;
``tests/test_20_sar_lut.py`` checks the values against xarray-sentinel's.
"""

from __future__ import annotations

from dataclasses import dataclass
from xml.etree.ElementTree import Element

import numpy as np

from pipeline_lib.errors import ProductError

__all__ = ["CalibrationLut", "parse_sigma_lut", "blend_rows"]


def blend_rows(rows: np.ndarray, lo: np.ndarray, hi: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``(1 − w[i]) · rows[lo[i]] + w[i] · rows[hi[i]]`` for every output line i, float64 (lines × pixels).

    The lines of a band share one or two (lo, hi) pairs, so each run of equal pairs is filled with one
    broadcast multiply-add from the pair's difference row — two passes over the output instead of the
    expression's fancy-indexed copies and temporaries (same values to rounding: a + w·(b − a)).
    """
    out = np.empty((lo.size, rows.shape[1]), dtype=np.float64)
    if lo.size == 0:
        return out
    change = np.flatnonzero((lo[1:] != lo[:-1]) | (hi[1:] != hi[:-1])) + 1
    starts = np.concatenate([[0], change])
    stops = np.concatenate([change, [lo.size]])
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        base = rows[lo[a]]
        np.multiply(w[a:b, None], rows[hi[a]] - base, out=out[a:b])
        out[a:b] += base
    return out


@dataclass(frozen=True)
class CalibrationLut:
    """A calibration LUT on its (line, pixel) grid: ``values[i, j]`` at ``lines[i]``, ``pixels[j]``."""

    lines: np.ndarray
    pixels: np.ndarray
    values: np.ndarray

    def interp(self, lines: np.ndarray, pixels: np.ndarray) -> np.ndarray:
        """Bilinear values on ``lines`` × ``pixels`` (float64), NaN outside the LUT's span."""
        ln = np.asarray(lines, dtype=np.float64)
        i0 = np.clip(np.searchsorted(self.lines, ln, side="right") - 1, 0, max(self.lines.size - 2, 0))
        i1 = np.minimum(i0 + 1, self.lines.size - 1)
        span = np.where(i1 > i0, self.lines[i1] - self.lines[i0], 1.0)
        w = (ln - self.lines[i0]) / span
        needed, back = np.unique(np.concatenate([i0, i1]), return_inverse=True)
        rows = np.array([np.interp(pixels, self.pixels, self.values[k]) for k in needed])  # along pixel
        out = blend_rows(rows, back[: i0.size], back[i0.size :], w)
        outside_l = (ln < self.lines[0]) | (ln > self.lines[-1])
        pp = np.asarray(pixels, dtype=np.float64)
        outside_p = (pp < self.pixels[0]) | (pp > self.pixels[-1])
        out[outside_l, :] = np.nan
        out[:, outside_p] = np.nan
        return np.asarray(out, dtype=np.float64)


def parse_sigma_lut(calibration: Element, label: str = "calibration") -> CalibrationLut:
    """The ``sigmaNought`` LUT of a parsed calibration annotation; ProductError if it is malformed."""
    vectors = calibration.findall("calibrationVectorList/calibrationVector")
    try:
        lines = np.array([int(v.findtext("line", "")) for v in vectors], dtype=np.float64)
        pixels = [np.array((v.findtext("pixel") or "").split(), dtype=np.float64) for v in vectors]
        # float32 as xarray-sentinel stores them (the XML carries 7 significant digits): identical σ0
        values = [np.array((v.findtext("sigmaNought") or "").split(), dtype=np.float32) for v in vectors]
    except ValueError as exc:
        raise ProductError(f"{label}: unreadable calibration vector ({exc}); download the product again") from exc
    if (
        len(vectors) < 1
        or any(
            p.size == 0 or p.size != s.size or not np.array_equal(p, pixels[0])
            for p, s in zip(pixels, values, strict=True)
        )
        or np.any(np.diff(lines) <= 0)
        or np.any(np.diff(pixels[0]) <= 0)
    ):
        raise ProductError(f"{label}: calibration vectors are not on one ascending (line, pixel) grid; download again")
    if not all(np.all(np.isfinite(v) & (v > 0)) for v in values):
        # σ0 = DN²/A²: a zero, negative or infinite A gives inf/0 silently (DESIGN §9)
        raise ProductError(f"{label}: sigmaNought values must be finite and positive; download the product again")
    return CalibrationLut(lines=lines, pixels=pixels[0], values=np.stack(values).astype(np.float64))
