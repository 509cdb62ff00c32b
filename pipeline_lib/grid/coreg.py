"""Residual offsets between dates and between Sentinel-1 and Sentinel-2 on the grid (DESIGN §5 "Grid").

Every S1/S2 output is already on the one grid (``grid.json``); what remains are residual
geolocation errors (S1 orbit/DEM errors, S2 multi-temporal registration). They are measured by
phase correlation (Kuglin & Hines 1975) with sub-pixel refinement by the matrix-multiply
upsampled DFT of Guizar-Sicairos, Thurman & Fienup, "Efficient subpixel image registration
algorithms", Opt. Lett. 33(2), 2008 (the algorithm behind ``skimage.registration.
phase_cross_correlation``; written here with numpy FFTs so invalid pixels, apodisation and the
peak quality are under our control).

The cross-power spectrum is whitened by the square root of its magnitude (generalised phase
correlation), which measured more accurately than full whitening on band-limited images.

Sign convention used throughout: an offset ``(dy, dx)`` of ``mov`` relative to ``ref`` means
``mov(y, x) = ref(y - dy, x - dx)``, i.e. the content of ``mov`` sits ``dy`` rows lower and ``dx``
columns further right. :func:`shift_image` moves content by ``(+dy, +dx)``, so
``shift_image(mov, -dy, -dx)`` registers ``mov`` onto ``ref``.

``offsets.json`` (docs/CONTRACTS.md) holds one entry per measurement and a ``corrections`` table:
the total offset of every S1 and S2 image relative to the common reference (S2 on the reference
date), composed from the entries marked ``corrected``; :mod:`pipeline_lib.stacks` applies it with
:func:`correct_offset`.

Which offsets are corrected (DESIGN §5, from the real chips):

- only *significant* ones: magnitude above ``threshold_px`` (schema default 1 px: on composites and
  on S2's own multi-temporal registration, sub-pixel estimates are within the noise and resampling
  them only blurs), peak quality ≥ ``min_quality``, and magnitude ≤ ``max_offset_px`` (an estimate
  of tens of pixels from a residual-offset measurement is a false peak, not a geolocation error:
  the real monthly chips gave S1–S2 "offsets" of −41/+31 px with quality 0.33);
- an entry is marked ``corrected`` only if the corrections table uses it. The table composes S2
  dates from their S2 entries and S1 dates from their S1 entries plus the S1–S2 tie of the reference
  date; the S1–S2 entries of the other dates are consistency checks (``role: "check"``) and are
  never applied, so they are never marked corrected (they were, a bug the real chips exposed);
- the correction is a bilinear shift (:func:`correct_offset`), which cannot overshoot: every
  output pixel is a convex combination of input pixels, so reflectance stays in its range (the cubic
  spline of :func:`shift_image` rang a bright pixel to −0.10 reflectance).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import rasterio
from scipy import ndimage
from scipy.signal.windows import tukey

from pipeline_lib.cog import read_named_bands
from pipeline_lib.io import write_json_atomic

__all__ = [
    "phase_correlation",
    "shift_image",
    "correct_offset",
    "gradient_magnitude",
    "read_bands",
    "measure_offset",
    "compute_offsets",
    "run_offsets",
    "read_corrections",
    "MIN_QUALITY",
    "MIN_VALID_FRACTION",
    "MAX_OFFSET_PX",
]

MIN_QUALITY = 0.3
"""Peak distinctness (1 − second peak / main peak) below which an estimate is low-confidence."""

MAX_OFFSET_PX = 10.0
"""Largest offset (px) accepted as a residual geolocation error; larger estimates are false peaks."""

MIN_VALID_FRACTION = 0.2
"""Fewer jointly valid pixels than this fraction of the window: no estimate (NaN, quality 0)."""

S1_BAND = "VV"
S2_BAND = "B04"
S2_CROSS_BAND = "B11"


def _fill_invalid(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Zero-mean copy of ``img`` with invalid pixels set to the mean of the valid ones (so to 0)."""
    out = np.where(valid, img, 0.0).astype(np.float64)
    mean = out[valid].mean() if valid.any() else 0.0
    out[valid] -= mean
    out[~valid] = 0.0
    return out


def _window(shape: tuple[int, int], alpha: float = 0.5) -> np.ndarray:
    """Separable Tukey apodisation window (flat centre, cosine edges) against FFT edge effects."""
    return np.outer(tukey(shape[0], alpha), tukey(shape[1], alpha))


def _upsampled_dft(spec: np.ndarray, size: int, upsample: int, offset_y: float, offset_x: float) -> np.ndarray:
    """Inverse DFT of ``spec`` on a ``size``² grid of spacing 1/upsample px starting at −offset (Guizar-Sicairos eq. 12)."""
    ny, nx = spec.shape
    ky = np.fft.fftfreq(ny, 1.0 / ny)
    kx = np.fft.fftfreq(nx, 1.0 / nx)
    pos = np.arange(size, dtype=np.float64)
    ker_y = np.exp(2j * np.pi / (ny * upsample) * np.outer(pos - offset_y, ky))
    ker_x = np.exp(2j * np.pi / (nx * upsample) * np.outer(kx, pos - offset_x))
    return np.asarray(ker_y @ spec @ ker_x)


def _peak_quality(surface: np.ndarray, iy: int, ix: int, radius: int = 3) -> float:
    """1 − (highest value outside a cyclic ``radius`` around the peak) / peak, clipped to [0, 1]."""
    peak = float(surface[iy, ix])
    if not np.isfinite(peak) or peak <= 0:
        return 0.0
    ny, nx = surface.shape
    dy = np.minimum(np.abs(np.arange(ny) - iy), ny - np.abs(np.arange(ny) - iy))
    dx = np.minimum(np.abs(np.arange(nx) - ix), nx - np.abs(np.arange(nx) - ix))
    near = (dy[:, None] <= radius) & (dx[None, :] <= radius)
    second = float(np.max(np.where(near, -np.inf, surface)))
    return float(np.clip(1.0 - max(second, 0.0) / peak, 0.0, 1.0))


def _phase_correlation_once(
    ref: np.ndarray, mov: np.ndarray, valid: np.ndarray, upsample: int
) -> tuple[float, float, float]:
    win = _window(ref.shape)
    if not valid.all():
        # taper the mask edges too, so the holes' borders (same place in both) do not pull the peak to 0
        taper = ndimage.gaussian_filter(
            ndimage.binary_erosion(valid, iterations=2, border_value=1).astype(np.float64), 2.0
        )
        win = win * taper
    f_ref = np.fft.fft2(_fill_invalid(ref, valid) * win)
    f_mov = np.fft.fft2(_fill_invalid(mov, valid) * win)
    cross = f_mov * np.conj(f_ref)
    mag = np.abs(cross)
    cross = cross / np.sqrt(mag + 1e-12 * max(float(mag.max()), 1e-30))
    surface = np.fft.ifft2(cross).real
    iy, ix = np.unravel_index(int(np.argmax(surface)), surface.shape)
    quality = _peak_quality(surface, int(iy), int(ix))
    ny, nx = surface.shape
    dy0 = float(iy - ny if iy > ny // 2 else iy)
    dx0 = float(ix - nx if ix > nx // 2 else ix)
    if upsample <= 1:
        return dy0, dx0, quality
    size = int(math.ceil(upsample * 1.5))
    centre = float(size // 2)
    dy0 = round(dy0 * upsample) / upsample
    dx0 = round(dx0 * upsample) / upsample
    fine = np.abs(_upsampled_dft(cross, size, upsample, centre - dy0 * upsample, centre - dx0 * upsample))
    fy, fx = np.unravel_index(int(np.argmax(fine)), fine.shape)
    return dy0 + (fy - centre) / upsample, dx0 + (fx - centre) / upsample, quality


def phase_correlation(
    ref: np.ndarray, mov: np.ndarray, valid: np.ndarray | None = None, upsample: int = 100
) -> tuple[float, float, float]:
    """Offset ``(dy, dx)`` of ``mov`` relative to ``ref`` in pixels, and the peak quality in [0, 1].

    NaN/non-finite pixels and pixels where ``valid`` is false are filled with the image mean;
    both images are apodised with a Tukey window. The cross-power spectrum is divided by the square
    root of its magnitude ("generalised" phase correlation, between plain cross-correlation and
    pure phase correlation): full whitening amplifies the noise in the frequencies smooth or
    speckled images do not carry and costs sub-pixel accuracy, no whitening blurs the peak. The
    peak is refined to 1/``upsample`` px by the upsampled DFT. The window biases the estimate towards 0
    by a few hundredths of a pixel, so the estimate is refined once: ``mov`` is shifted back by
    the first estimate and the (small) residual is measured and added. Quality is the peak
    distinctness 1 − second peak / main peak (1: unambiguous, 0: noise); with too few valid pixels
    the result is ``(nan, nan, 0.0)``.
    """
    r = np.asarray(ref, dtype=np.float64)
    m = np.asarray(mov, dtype=np.float64)
    if r.shape != m.shape or r.ndim != 2:
        raise ValueError(f"phase_correlation: shapes {r.shape} and {m.shape} must be equal and 2-D")
    ok = np.isfinite(r) & np.isfinite(m)
    if valid is not None:
        ok &= np.asarray(valid, dtype=bool)
    if ok.mean() < MIN_VALID_FRACTION or min(r.shape) < 8:
        return float("nan"), float("nan"), 0.0
    dy, dx, quality = _phase_correlation_once(r, m, ok, upsample)
    if abs(dy) < r.shape[0] / 4 and abs(dx) < r.shape[1] / 4:
        back = shift_image(np.where(ok, m, np.nan), -dy, -dx)
        ok2 = ok & np.isfinite(back)
        if ok2.mean() >= MIN_VALID_FRACTION:
            ry, rx, _ = _phase_correlation_once(r, back, ok2, upsample)
            if abs(ry) < 1.0 and abs(rx) < 1.0:
                dy, dx = dy + ry, dx + rx
    return float(dy), float(dx), float(quality)


def _shift_2d(img: np.ndarray, dy: float, dx: float, order: int = 3) -> np.ndarray:
    bad = ~np.isfinite(img)
    filled = np.where(bad, np.nanmean(img) if (~bad).any() else 0.0, img)
    out = ndimage.shift(filled, (dy, dx), order=order, mode="nearest", prefilter=order > 1)
    # a pixel is invalid when its bilinear footprint touches an invalid or outside pixel
    bad_shifted = ndimage.shift(bad.astype(np.float64), (dy, dx), order=1, mode="constant", cval=1.0)
    out[bad_shifted > 1e-3] = np.nan
    return np.asarray(out)


def shift_image(arr: np.ndarray, dy: float, dx: float, order: int = 3) -> np.ndarray:
    """Move the content of ``arr`` by ``(dy, dx)`` pixels (cubic spline): ``out(y, x) = arr(y − dy, x − dx)``.

    ``order`` is the spline order (3: cubic, the accurate but overshooting one used for measurement;
    1: bilinear, see :func:`correct_offset`).
    Works on (y, x) or (..., y, x) arrays. NaN stays NaN: pixels whose interpolation footprint
    touches a NaN or falls outside the image become NaN. The dtype is kept for floats.
    """
    a = np.asarray(arr)
    dtype = a.dtype if np.issubdtype(a.dtype, np.floating) else np.dtype(np.float64)
    if dy == 0 and dx == 0:
        return a.astype(dtype, copy=True)
    flat = a.reshape((-1,) + a.shape[-2:]).astype(np.float64)
    out = np.stack([_shift_2d(band, float(dy), float(dx), order) for band in flat])
    return out.reshape(a.shape).astype(dtype)


def correct_offset(arr: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Move content by ``(dy, dx)`` with bilinear interpolation: no overshoot, values stay within their neighbours'.

    What :mod:`pipeline_lib.stacks` applies to remove a residual offset (``correct_offset(img, -dy, -dx)``).
    NaN handling as :func:`shift_image`; an integer shift is exact.
    """
    return shift_image(arr, dy, dx, order=1)


def gradient_magnitude(img: np.ndarray, sigma: float = 1.5) -> np.ndarray:
    """Sobel gradient magnitude of the Gaussian-smoothed image, NaN where the stencil touches NaN.

    A structure measure shared by SAR and optical images (edges of fields, rivers, roads), used
    for the cross-modal offsets where the raw intensities are not comparable.
    """
    a = np.asarray(img, dtype=np.float64)
    bad = ~np.isfinite(a)
    filled = np.where(bad, np.nanmean(a) if (~bad).any() else 0.0, a)
    smooth = ndimage.gaussian_filter(filled, sigma)
    mag = np.hypot(ndimage.sobel(smooth, axis=0), ndimage.sobel(smooth, axis=1))
    reach = int(math.ceil(3 * sigma)) + 1
    mag[ndimage.binary_dilation(bad, iterations=reach)] = np.nan
    return np.asarray(mag)


def read_bands(path: str | os.PathLike[str], names: list[str]) -> dict[str, np.ndarray]:
    """Read the bands named (by band description) ``names`` from a GeoTIFF as float arrays."""
    data, _, _ = read_named_bands(path, names)
    return {n: data[i].astype(np.float64) for i, n in enumerate(names)}


def _s2_valid(bands: Mapping[str, np.ndarray]) -> np.ndarray | None:
    return bands["valid"] > 0.5 if "valid" in bands else None


def measure_offset(
    ref: np.ndarray,
    mov: np.ndarray,
    *,
    valid: np.ndarray | None,
    threshold_px: float,
    min_quality: float = MIN_QUALITY,
    upsample: int = 100,
    max_offset_px: float = MAX_OFFSET_PX,
) -> dict[str, Any]:
    """One offsets.json entry: dy, dx, quality, low_confidence, implausible, significant.

    ``significant`` = finite, quality ≥ ``min_quality``, threshold < |offset| ≤ ``max_offset_px``;
    ``corrected`` starts equal to it and :func:`compute_offsets` clears it for entries it does not apply.
    """
    dy, dx, quality = phase_correlation(ref, mov, valid, upsample)
    finite = bool(np.isfinite(dy) and np.isfinite(dx))
    low = (not finite) or quality < min_quality
    magnitude = math.hypot(dy, dx) if finite else float("nan")
    implausible = bool(finite and magnitude > max_offset_px)
    significant = bool(finite and not low and not implausible and magnitude > threshold_px)
    return {
        "dy": round(dy, 3) if finite else None,
        "dx": round(dx, 3) if finite else None,
        "magnitude": round(magnitude, 3) if finite else None,
        "quality": round(quality, 4),
        "low_confidence": bool(low),
        "implausible": implausible,
        "significant": significant,
        "corrected": significant,
    }


class _Limits(TypedDict):
    """When a measured offset counts (:func:`measure_offset`'s keyword arguments)."""

    threshold_px: float
    min_quality: float
    max_offset_px: float


def compute_offsets(
    s1: Mapping[str, Mapping[str, np.ndarray]],
    s2: Mapping[str, Mapping[str, np.ndarray]],
    *,
    threshold_px: float,
    reference_date: str | None = None,
    min_quality: float = MIN_QUALITY,
    max_offset_px: float = MAX_OFFSET_PX,
) -> dict[str, Any]:
    """All offsets from in-memory bands: ``s1[date] = {"VV": dB}``, ``s2[date] = {"B04", "B11", "valid"}``.

    Entries: every S1 date vs the S1 reference date (VV dB), every S2 date vs the S2 reference date
    (B04), and S1 vs S2 per date (gradient magnitude of VV vs of B11, ``kind`` ``s1_s2``). The
    common reference is S2 on the reference date (default: the earliest date both modalities
    have). ``corrections`` gives each image's total offset from it, composed from corrected entries:
    S2 date d = its S2 entry; S1 date d = its S1 entry + the S1-vs-S2 entry of the reference date.
    The other dates' S1-vs-S2 entries are checks (``role: "check"``, never ``corrected``); every
    entry marked ``corrected`` is in the table.
    """
    common = sorted(set(s1) & set(s2))
    all_dates = sorted(set(s1) | set(s2))
    if reference_date is None:
        reference_date = common[0] if common else (all_dates[0] if all_dates else None)
    if reference_date is None:
        raise ValueError("compute_offsets: no S1 or S2 dates given")
    limits = _Limits(threshold_px=threshold_px, min_quality=min_quality, max_offset_px=max_offset_px)
    intra = _intra_offsets(s1, s2, reference_date, limits)
    cross = {d: _cross_offset(s1[d], s2[d], d, reference_date, limits) for d in common}
    return {
        "reference_date": reference_date,
        "reference": f"s2:{reference_date}",
        **limits,
        "method": "phase correlation, Tukey window, upsampled DFT (Guizar-Sicairos 2008), 1/100 px",
        "convention": "mov(y, x) = ref(y - dy, x - dx); correct with shift_image(mov, -dy, -dx)",
        "entries": [*intra.values(), *cross.values()],
        "corrections": _corrections(sorted(s1), sorted(s2), reference_date, intra, cross),
    }


def _intra_offsets(
    s1: Mapping[str, Mapping[str, np.ndarray]],
    s2: Mapping[str, Mapping[str, np.ndarray]],
    reference_date: str,
    limits: _Limits,
) -> dict[tuple[str, str], dict[str, Any]]:
    """Every date vs the reference date within each modality (S1 VV dB; S2 B04 on pixels valid in both)."""
    intra: dict[tuple[str, str], dict[str, Any]] = {}
    for kind, images, band in (("s1", s1, S1_BAND), ("s2", s2, S2_BAND)):
        if reference_date not in images:
            continue
        ref = images[reference_date]
        for d in sorted(images):
            if d == reference_date:
                continue
            mov = images[d]
            valid = None
            if kind == "s2":
                vr, vm = _s2_valid(ref), _s2_valid(mov)
                valid = None if vr is None or vm is None else (vr & vm)
            e = measure_offset(ref[band], mov[band], valid=valid, **limits)
            e.update(
                role="applied", kind=kind, date=d, reference=f"{kind}:{reference_date}", moving=f"{kind}:{d}", band=band
            )
            intra[(kind, d)] = e
    return intra


def _cross_offset(
    b1: Mapping[str, np.ndarray],
    b2: Mapping[str, np.ndarray],
    date: str,
    reference_date: str,
    limits: _Limits,
) -> dict[str, Any]:
    """S1 vs S2 on one date: gradient magnitude of VV vs of B11 (B04 without B11), S2-masked pixels as no data.

    Only the reference date's entry is applied (it ties S1 to S2); the others are checks, never corrected.
    """
    opt = b2.get(S2_CROSS_BAND, b2[S2_BAND]).copy()
    v2 = _s2_valid(b2)
    if v2 is not None:
        opt[~v2] = np.nan
    e = measure_offset(gradient_magnitude(opt), gradient_magnitude(b1[S1_BAND]), valid=None, **limits)
    role = "applied" if date == reference_date else "check"
    if role == "check":
        e["corrected"] = False  # S1 dates are tied to S2 through the reference date only
    e.update(
        role=role,
        kind="s1_s2",
        date=date,
        reference=f"s2:{date}",
        moving=f"s1:{date}",
        band=f"grad({S1_BAND}) vs grad({S2_CROSS_BAND if S2_CROSS_BAND in b2 else S2_BAND})",
    )
    return e


def _corrections(
    s1_dates: Sequence[str],
    s2_dates: Sequence[str],
    reference_date: str,
    intra: Mapping[tuple[str, str], Mapping[str, Any]],
    cross: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[str, list[float]]]:
    """Each image's total offset from S2 on the reference date, from the corrected entries only."""

    def offset_of(entry: Mapping[str, Any] | None) -> tuple[float, float]:
        if entry is None or not entry["corrected"]:
            return 0.0, 0.0
        return float(entry["dy"]), float(entry["dx"])

    corr: dict[str, dict[str, list[float]]] = {"s1": {}, "s2": {}}
    tie_y, tie_x = offset_of(cross.get(reference_date))
    for d in s2_dates:
        dy, dx = (0.0, 0.0) if d == reference_date else offset_of(intra.get(("s2", d)))
        corr["s2"][d] = [round(dy, 3), round(dx, 3)]
    for d in s1_dates:
        dy, dx = (0.0, 0.0) if d == reference_date else offset_of(intra.get(("s1", d)))
        corr["s1"][d] = [round(dy + tie_y, 3), round(dx + tie_x, 3)]
    return corr


def run_offsets(
    s1: dict[str, Path],
    s2: dict[str, Path],
    out_json: Path,
    threshold_px: float,
    reference_date: str | None = None,
    min_quality: float = MIN_QUALITY,
    max_offset_px: float = MAX_OFFSET_PX,
) -> None:
    """Measure all residual offsets of ``s1/{date}.tif`` and ``s2/{date}.tif`` and write ``offsets.json``."""
    s1_bands = {d: read_bands(p, [S1_BAND]) for d, p in s1.items()}
    s2_bands = {}
    for d, p in s2.items():
        with rasterio.open(p) as src:
            have = list(src.descriptions)
        names = [S2_BAND] + [n for n in (S2_CROSS_BAND, "valid") if n in have]
        s2_bands[d] = read_bands(p, names)
    result = compute_offsets(
        s1_bands,
        s2_bands,
        threshold_px=threshold_px,
        reference_date=reference_date,
        min_quality=min_quality,
        max_offset_px=max_offset_px,
    )
    write_json_atomic(out_json, result)


def read_corrections(offsets: Mapping[str, Any] | None) -> dict[str, dict[str, tuple[float, float]]]:
    """``{"s1": {date: (dy, dx)}, "s2": {...}}`` from a loaded offsets.json (empty when ``None``)."""
    out: dict[str, dict[str, tuple[float, float]]] = {"s1": {}, "s2": {}}
    if not offsets:
        return out
    for kind in ("s1", "s2"):
        for d, v in offsets.get("corrections", {}).get(kind, {}).items():
            out[kind][d] = (float(v[0]), float(v[1]))
    return out
