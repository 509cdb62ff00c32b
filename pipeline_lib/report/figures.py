"""Quicklook images for the report (DESIGN §7): fixed physical stretches, masked pixels in magenta, small PNGs.

Stretches are fixed (not per-image percentiles) so dates can be compared by eye: S1 σ0 dB
−25..0 in grey; S1 false colour R = VV, G = VH (−30..−5 dB), B = VV − VH (0..15 dB), the usual
dual-pol composite; S2 true colour B04/B03/B02 over 0..0.3 reflectance; S2 SWIR composite
R = B12, G = B11, B = B04 over 0..0.5.

Encoding (Pillow) keeps the report small (DESIGN §7: the demo report ≤ 3 MB): composites are
area-averaged (box filter) to thumbnails of at most :data:`THUMB_SIDE_PX` on the long side and
stored as baseline JPEG (ITU-T T.81; quality 85, single-channel when grey), which every browser
decodes; scalar maps (errors, uncertainty) are area-averaged *before* colour mapping and stored as
palette PNGs (64 colour-map levels + the mask colour; ISO/IEC 15948 colour type 3), so no colour is
invented by resampling. Images are embedded as ``data:`` URIs (RFC 2397) with the MIME
type sniffed from the bytes, so the report stays one self-contained file.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = [
    "MASK_COLOUR",
    "MAX_SIDE_PX",
    "THUMB_SIDE_PX",
    "PNG_SIGNATURE",
    "JPEG_SIGNATURE",
    "stretch",
    "composite",
    "s1_grey",
    "s1_false_colour",
    "s2_true_colour",
    "s2_swir",
    "png_bytes",
    "thumbnail_size",
    "downsample",
    "jpeg_bytes",
    "heat_png_bytes",
    "quantised_png_bytes",
    "data_uri",
]

MASK_COLOUR = (255, 0, 255)
"""Masked / nodata pixels (magenta: absent from every natural composite)."""

MAX_SIDE_PX = 512
"""Long side of a larger view (and the default of :func:`png_bytes`)."""
THUMB_SIDE_PX = 256
"""Long side of the thumbnails in the report's image grids."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"


def stretch(band: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Linear stretch of ``band`` from [lo, hi] to [0, 1], clipped; NaN stays NaN."""
    return np.asarray(np.clip((np.asarray(band, dtype=np.float32) - lo) / (hi - lo), 0.0, 1.0))


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


def thumbnail_size(height: int, width: int, max_side: int) -> tuple[int, int]:
    """(height, width) scaled so the long side is at most ``max_side`` (aspect kept, ≥ 1 px)."""
    if max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def downsample(img: np.ndarray, max_side: int) -> np.ndarray:
    """Area-average (box filter) a (y, x) float or (y, x, 3) uint8 image to at most ``max_side`` px.

    Float input keeps NaN where any contributing pixel is NaN (masks grow, never shrink).
    """
    arr = np.asarray(img)
    h, w = thumbnail_size(arr.shape[0], arr.shape[1], max_side)
    if (h, w) == arr.shape[:2]:
        return arr
    if arr.dtype == np.uint8:
        return np.asarray(Image.fromarray(np.ascontiguousarray(arr)).resize((w, h), Image.Resampling.BOX))
    f = Image.fromarray(np.ascontiguousarray(arr, dtype=np.float32))  # mode F
    return np.asarray(f.resize((w, h), Image.Resampling.BOX), dtype=np.float32)


def png_bytes(rgb: np.ndarray, max_side: int = MAX_SIDE_PX) -> bytes:
    """Encode a (y, x, 3) or (y, x) uint8 image as PNG, box-downsampled to at most ``max_side`` px."""
    img = Image.fromarray(np.ascontiguousarray(downsample(rgb, max_side)))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def jpeg_bytes(rgb: np.ndarray, max_side: int = THUMB_SIDE_PX, quality: int = 85) -> bytes:
    """Baseline JPEG of a (y, x, 3) or (y, x) uint8 image, box-downsampled to ``max_side``; grey → 1 channel."""
    arr = downsample(np.asarray(rgb, dtype=np.uint8), max_side)
    if arr.ndim == 3 and np.array_equal(arr[..., 0], arr[..., 1]) and np.array_equal(arr[..., 0], arr[..., 2]):
        arr = arr[..., 0]
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def heat_png_bytes(
    values: np.ndarray, vmax: float, cmap: str = "magma", max_side: int = THUMB_SIDE_PX, levels: int = 64
) -> bytes:
    """Palette PNG of a scalar map over 0..``vmax`` in ``levels`` steps of ``cmap``; NaN in :data:`MASK_COLOUR`.

    The map is area-averaged to ``max_side`` first, then colour-mapped. 64 levels (a step of vmax/63)
    halve the size of noisy error maps against 255 levels with no visible banding.
    """
    from matplotlib import colormaps  # lazy: matplotlib is only needed for colour maps

    if not 2 <= levels <= 255:
        raise ValueError(f"heat_png_bytes: levels={levels} must be in 2..255")
    v = downsample(np.asarray(values, dtype=np.float32), max_side)
    idx = np.round(np.clip(np.nan_to_num(v, nan=0.0) / vmax, 0.0, 1.0) * (levels - 1)).astype(np.uint8)
    idx[~np.isfinite(v)] = levels
    lut = (colormaps[cmap](np.linspace(0.0, 1.0, levels))[:, :3] * 255.0).round().astype(np.uint8)
    palette = np.concatenate([lut, np.asarray([MASK_COLOUR], dtype=np.uint8)])
    img = Image.fromarray(idx)  # mode L; putpalette makes it P
    img.putpalette(palette.ravel().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def quantised_png_bytes(png: bytes, colours: int = 64) -> bytes:
    """Re-encode PNG bytes (a plot) as a palette PNG with at most ``colours`` colours (median cut)."""
    with Image.open(io.BytesIO(png)) as img:
        pal = img.convert("RGB").quantize(colors=colours, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
    buf = io.BytesIO()
    pal.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def data_uri(image: bytes) -> str:
    """``data:image/png;base64,…`` or ``data:image/jpeg;base64,…`` for PNG or JPEG bytes (sniffed)."""
    if image.startswith(PNG_SIGNATURE):
        mime = "image/png"
    elif image.startswith(JPEG_SIGNATURE):
        mime = "image/jpeg"
    else:
        raise ValueError("data_uri: neither PNG nor JPEG data")
    return f"data:{mime};base64," + base64.b64encode(image).decode("ascii")
