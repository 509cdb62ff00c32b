"""Quicklook images for the report (DESIGN §7): fixed physical stretches, masked pixels in magenta, small PNGs.

Stretches are fixed (not per-image percentiles) so dates can be compared by eye: S1 σ0 dB
−25..0 in grey; S1 false colour R = VV, G = VH (−30..−5 dB), B = VV − VH (0..15 dB), the usual
dual-pol composite; S2 true colour B04/B03/B02 over 0..0.3 reflectance; S2 SWIR composite
R = B12, G = B11, B = B04 over 0..0.5. PNGs are encoded with Pillow and embedded as
``data:image/png;base64`` URIs (RFC 2397) so the report is one self-contained file.
"""

from __future__ import annotations

import base64
import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline_lib.errors import ProductError

__all__ = [
    "MASK_COLOUR",
    "MAX_SIDE_PX",
    "PNG_SIGNATURE",
    "stretch",
    "composite",
    "s1_grey",
    "s1_false_colour",
    "s2_true_colour",
    "s2_swir",
    "png_bytes",
    "data_uri",
    "png_file_uri",
]

MASK_COLOUR = (255, 0, 255)
"""Masked / nodata pixels (magenta: absent from every natural composite)."""

MAX_SIDE_PX = 512
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def stretch(band: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear stretch of ``band`` from [lo, hi] to [0, 1], clipped; NaN stays NaN."""
    return np.clip((np.asarray(band, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0)


def composite(channels: Sequence[np.ndarray], valid: np.ndarray | None = None) -> np.ndarray:
    """(y, x, 3) uint8 from 1 or 3 channels in [0, 1]; invalid or NaN pixels get :data:`MASK_COLOUR`."""
    chans = [np.asarray(c, dtype=np.float32) for c in channels]
    if len(chans) == 1:
        chans = chans * 3
    if len(chans) != 3:
        raise ValueError(f"composite: need 1 or 3 channels, got {len(chans)}")
    rgb = np.stack(chans, axis=-1)
    bad = ~np.all(np.isfinite(rgb), axis=-1)
    if valid is not None:
        bad |= ~np.asarray(valid, dtype=bool)
    out = np.round(np.nan_to_num(rgb, nan=0.0) * 255.0).astype(np.uint8)
    out[bad] = MASK_COLOUR
    return out


def s1_grey(vv_db: np.ndarray) -> np.ndarray:
    """σ0 VV in dB, grey over the fixed −25..0 dB range."""
    return composite([stretch(vv_db, -25.0, 0.0)])


def s1_false_colour(vv_db: np.ndarray, vh_db: np.ndarray) -> np.ndarray:
    """Dual-pol false colour: R = VV, G = VH (−30..−5 dB), B = VV − VH (0..15 dB)."""
    return composite([stretch(vv_db, -25.0, 0.0), stretch(vh_db, -30.0, -5.0), stretch(vv_db - vh_db, 0.0, 15.0)])


def s2_true_colour(b04: np.ndarray, b03: np.ndarray, b02: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """True colour B04/B03/B02 over 0..0.3 reflectance."""
    return composite([stretch(b, 0.0, 0.3) for b in (b04, b03, b02)], valid)


def s2_swir(b12: np.ndarray, b11: np.ndarray, b04: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """SWIR composite R = B12, G = B11, B = B04 over 0..0.5 reflectance."""
    return composite([stretch(b, 0.0, 0.5) for b in (b12, b11, b04)], valid)


def png_bytes(rgb: np.ndarray, max_side: int = MAX_SIDE_PX) -> bytes:
    """Encode a (y, x, 3) or (y, x) uint8 image as PNG, box-downsampled to at most ``max_side`` px."""
    img = Image.fromarray(np.ascontiguousarray(rgb))
    if max(img.size) > max_side:
        scale = max_side / max(img.size)
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BOX)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,…`` for PNG bytes."""
    if not png.startswith(PNG_SIGNATURE):
        raise ValueError("data_uri: not PNG data")
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def png_file_uri(path: str | os.PathLike[str]) -> str:
    """Data URI of a PNG file (for figures other stages wrote)."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ProductError(f"{path}: figure not readable ({exc}); rerun the rule that draws it") from exc
    if not data.startswith(PNG_SIGNATURE):
        raise ProductError(f"{path}: not a PNG file; figures in the report must be PNG")
    return data_uri(data)
