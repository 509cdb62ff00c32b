"""Improved Lee sigma speckle filter for intensity images (Lee et al. 2009, as implemented in ESA SNAP).

Reference: J.-S. Lee, J.-H. Wen, T. L. Ainsworth, K.-S. Chen, A. J. Chen, "Improved Sigma Filter for
Speckle Filtering of SAR Imagery", IEEE TGRS 47(1):202–213, 2009; SNAP s1tbx
``SpeckleFilterOp.computeLeeSigma`` (same steps, same constants):

1. Point targets: Z98 = 98th percentile of the image. A pixel whose value exceeds Z98 and whose
   ``target``×``target`` window holds more than 5 pixels above Z98 is a point target; it and those
   bright neighbours are kept unfiltered.
2. Prior: MMSE (Lee 1980) estimate over the target window with the speckle variance σv² = 1/L.
3. Sigma range [I1·x̂, I2·x̂]: I1, I2 from the L-look speckle distribution (Gamma, mean 1) such that
   the range holds probability ``sigma`` and the truncated distribution keeps mean 1 (bias-free);
   σv' is the standard deviation of that truncated distribution. They are computed here for any L,
   and match SNAP's tables for L = 1…4 to 3 decimals.
4. MMSE over the pixels of the ``window``×``window`` window inside the sigma range, with σv'².
Near the image border (window not fully inside) the pixel gets the plain MMSE over the valid pixels of
its window, as SNAP does at a source-tile border. NaN pixels are no-data: skipped as neighbours, kept
NaN. Deviation from SNAP, stated: Z98 is computed over the whole input (SNAP per source tile), and the
point-target mask is computed before filtering instead of during the raster sweep (order-independent).

Chunked (:func:`lee_sigma_bands`, :func:`lee_sigma_images`, :func:`run_speckle`): the image is filtered in row bands with
``max(window//2, 2·(target//2))`` halo rows (the point-target rule reaches two target half-widths),
and Z98 is selected exactly over the whole image in two streaming passes (radix select on the float
bits), so the banded result is bit-for-bit the whole-image one while memory is bounded by the band.
"""

from __future__ import annotations

import functools
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numba
import numpy as np

from pipeline_lib.sar.chunks import create_sigma0, open_sigma0, row_bands
from pipeline_lib.sar.params import SpeckleParams
from pipeline_lib.sar.quantile import z98_streaming, z98_value

__all__ = [
    "sigma_range",
    "z98_value",
    "z98_streaming",
    "point_target_mask",
    "lee_sigma",
    "halo_rows",
    "lee_sigma_bands",
    "lee_sigma_images",
    "run_speckle",
]

#: SNAP's cluster-size threshold: a point target needs more than this many bright pixels in the target window
POINT_TARGET_CLUSTER = 5


@lru_cache(maxsize=64)
def sigma_range(looks: float, sigma: float) -> tuple[float, float, float]:
    """(I1, I2, σv') of the bias-free sigma range for ``looks``-look intensity speckle and probability ``sigma``."""
    if not (0.0 < sigma < 1.0 and looks > 0):  # SpeckleParams checks user settings; this guards the maths
        raise ValueError(f"sigma_range: needs 0 < sigma < 1 and looks > 0, got {sigma=}, {looks=}")
    # Gamma(L + k, scale 1/L): cdf(x) = P(L + k, L·x), ppf(q) = P⁻¹(L + k, q) / L (regularised incomplete
    # gamma; scipy.special alone, not scipy.stats/optimize: start-up time of the speckle job)
    from scipy.special import gammainc, gammaincinv

    def cdf(k: int, x: float) -> float:
        return float(gammainc(looks + k, looks * x))

    def upper(a: float) -> float:
        return float(gammaincinv(looks, min(sigma + cdf(0, a), 1.0 - 1e-15))) / looks

    def mean_error(a: float) -> float:
        return cdf(1, upper(a)) - cdf(1, a) - sigma

    lo, hi = 1e-12, float(gammaincinv(looks, 1.0 - sigma)) / looks * (1 - 1e-9)
    f_lo = mean_error(lo)
    for _ in range(200):  # bisection: the bracket holds a sign change (as brentq's did)
        mid = 0.5 * (lo + hi)
        f_mid = mean_error(mid)
        if (f_mid > 0) == (f_lo > 0):
            lo, f_lo = mid, f_mid
        else:
            hi = mid
        if hi - lo < 1e-14:
            break
    a = 0.5 * (lo + hi)
    b = upper(a)
    second_moment = (looks + 1.0) / looks * (cdf(2, b) - cdf(2, a)) / sigma
    return a, b, float(np.sqrt(max(second_moment - 1.0, 0.0)))


@numba.njit(cache=True, nogil=True)
def _point_targets(img: np.ndarray, z98: float, half_t: int, cluster: int) -> np.ndarray:
    h, w = img.shape
    bright = np.zeros((h, w), dtype=np.bool_)
    for y in range(h):
        for x in range(w):
            v = img[y, x]
            bright[y, x] = v > z98  # False for NaN
    mask = np.zeros((h, w), dtype=np.bool_)
    for y in range(h):
        for x in range(w):
            if not bright[y, x]:
                continue
            n = 0
            for j in range(max(0, y - half_t), min(h, y + half_t + 1)):
                for i in range(max(0, x - half_t), min(w, x + half_t + 1)):
                    if bright[j, i]:
                        n += 1
            if n > cluster:
                for j in range(max(0, y - half_t), min(h, y + half_t + 1)):
                    for i in range(max(0, x - half_t), min(w, x + half_t + 1)):
                        if bright[j, i]:
                            mask[j, i] = True
    return mask


@numba.njit(cache=True, nogil=True, fastmath=False)
def _mmse(center: float, s: float, s2: float, n: int, var_noise: float) -> float:
    # MMSE (Lee 1980) with the sample variance (n - 1), as SNAP's computeMMSEEstimate
    if n == 0:
        return center
    mean = s / n
    if n < 2:
        return mean
    var_y = (s2 - s * mean) / (n - 1)
    if var_y <= 0.0:
        return mean
    var_x = (var_y - mean * mean * var_noise) / (1.0 + var_noise)
    if var_x < 0.0:
        var_x = 0.0
    b = var_x / var_y
    return (1.0 - b) * mean + b * center


_FAST = {"reassoc", "contract", "arcp", "nsz"}  # no "nnan"/"ninf": NaN is data here


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _border_pixel(img: np.ndarray, y: int, x: int, half_w: int, var_v: float) -> float:
    h, w = img.shape
    s = 0.0
    s2 = 0.0
    n = 0
    for j in range(max(0, y - half_w), min(h, y + half_w + 1)):
        for i in range(max(0, x - half_w), min(w, x + half_w + 1)):
            q = img[j, i]
            if not np.isnan(q):
                s += q
                s2 += q * q
                n += 1
    return _mmse(img[y, x], s, s2, n, var_v)


@numba.njit(cache=True, nogil=True, fastmath=_FAST)
def _lee_sigma_kernel(
    img: np.ndarray, pt: np.ndarray, half_w: int, half_t: int, i1: float, i2: float, var_v: float, var_vp: float
) -> np.ndarray:
    h, w = img.shape
    out = np.empty((h, w), dtype=np.float32)
    # NaN -> -1: never inside a sigma range (which is >= 0), so the inner loops need no NaN test
    clean = np.where(np.isnan(img), np.float32(-1.0), img)
    valid = np.where(np.isnan(img), np.float32(0.0), np.float32(1.0))
    x0 = half_w
    x1 = w - half_w
    nx = max(x1 - x0, 0)
    lo = np.empty(nx, dtype=np.float32)
    hi = np.empty(nx, dtype=np.float32)
    # float32 accumulators: twice the SIMD width; 49 terms keep ~1e-6 relative precision
    s = np.empty(nx, dtype=np.float32)
    s2 = np.empty(nx, dtype=np.float32)
    cnt = np.empty(nx, dtype=np.float32)
    for y in range(h):
        if y < half_w or y >= h - half_w or nx == 0:
            for x in range(w):
                out[y, x] = img[y, x] if (np.isnan(img[y, x]) or pt[y, x]) else _border_pixel(img, y, x, half_w, var_v)
            continue
        # 1) MMSE prior over the target window, vectorised along the row
        s[:] = 0.0
        s2[:] = 0.0
        cnt[:] = 0.0
        for j in range(y - half_t, y + half_t + 1):
            for di in range(-half_t, half_t + 1):
                qrow = clean[j, x0 + di : x0 + di + nx]
                mrow = valid[j, x0 + di : x0 + di + nx]
                for k in range(nx):
                    q = qrow[k]
                    m = mrow[k]
                    s[k] += q * m
                    s2[k] += q * q * m
                    cnt[k] += m
        for k in range(nx):
            prior = _mmse(img[y, x0 + k], float(s[k]), float(s2[k]), int(cnt[k]), var_v)
            lo[k] = prior * i1
            hi[k] = prior * i2
        # 2) MMSE over the pixels of the filter window inside the sigma range
        s[:] = 0.0
        s2[:] = 0.0
        cnt[:] = 0.0
        for j in range(y - half_w, y + half_w + 1):
            for di in range(-half_w, half_w + 1):
                qrow = clean[j, x0 + di : x0 + di + nx]
                for k in range(nx):
                    q = qrow[k]
                    m = np.float32((q >= lo[k]) & (q <= hi[k]))
                    qm = q * m
                    s[k] += qm
                    s2[k] += qm * q
                    cnt[k] += m
        for x in range(w):
            v = img[y, x]
            if np.isnan(v) or pt[y, x]:
                out[y, x] = v
            elif x < x0 or x >= x1:
                out[y, x] = _border_pixel(img, y, x, half_w, var_v)
            else:
                k = x - x0
                n = int(cnt[k])
                out[y, x] = v if n == 0 else _mmse(v, float(s[k]), float(s2[k]), n, var_vp)
    return out


def point_target_mask(intensity: np.ndarray, target: int, z98: float | None = None) -> np.ndarray:
    """Pixels kept as point targets (Z98 rule of Lee et al. 2009, SNAP cluster size > 5).

    ``z98`` None computes it over ``intensity``; a chunked caller passes the whole image's value.
    """
    img = np.ascontiguousarray(intensity, dtype=np.float32)
    z = z98_value(img) if z98 is None else float(z98)
    if not np.isfinite(z):
        return np.zeros(img.shape, dtype=bool)
    return np.asarray(_point_targets(img, z, target // 2, POINT_TARGET_CLUSTER))


def lee_sigma(
    intensity: np.ndarray,
    params: SpeckleParams,
    looks: float,
    z98: float | None = None,
) -> np.ndarray:
    """Lee sigma filter of a 2-D intensity image (linear power, NaN = no data); float32 out.

    ``looks`` is the resolved number of looks (:meth:`SpeckleParams.looks_for`). ``z98`` None computes the
    point-target threshold over ``intensity`` (the whole image); a chunked caller passes the whole image's
    value so every chunk filters as the whole image would.
    """
    img = np.ascontiguousarray(intensity, dtype=np.float32)
    if img.ndim != 2:
        raise ValueError(f"lee_sigma: expected a 2-D image, got {img.shape=}")
    window, target = params.window_px, params.target_px
    i1, i2, sigma_vp = sigma_range(float(looks), params.sigma)
    pt = point_target_mask(img, target, z98)
    return np.asarray(_lee_sigma_kernel(img, pt, window // 2, target // 2, i1, i2, 1.0 / looks, sigma_vp**2))


def halo_rows(params: SpeckleParams) -> int:
    """Rows of context a band needs on each side: the filter window, and the point-target rule (2 × target/2)."""
    return max(params.window_px // 2, 2 * (params.target_px // 2))


def _read_ahead(read: Callable[[int, int], np.ndarray], bands: Sequence[tuple[int, int]]) -> Iterator[np.ndarray]:
    """``read(a, b)`` of every band in order, the next one read on a second thread while this one is used
    (the Z98 pass: the NetCDF read and the selection overlap; only that thread reads meanwhile)."""
    with ThreadPoolExecutor(max_workers=1) as reader:
        nxt = reader.submit(read, *bands[0]) if bands else None
        for i in range(len(bands)):
            assert nxt is not None
            cur = nxt.result()
            nxt = reader.submit(read, *bands[i + 1]) if i + 1 < len(bands) else None
            yield cur


def lee_sigma_bands(
    read: Callable[[int, int], np.ndarray],
    write: Callable[[int, int, np.ndarray], None],
    n_rows: int,
    params: SpeckleParams,
    looks: float,
    band_rows: int = 256,
    threads: int = 1,
    key_histogram: np.ndarray | None = None,
) -> float:
    """Lee sigma of an image too large for memory, band by band with halo rows; returns the Z98 used.

    ``read(a, b)`` returns rows [a, b) (all columns), ``write(a, b, out)`` stores filtered rows [a, b).
    Z98 is the whole image's (two streaming passes, exact; one with ``key_histogram``, the first pass made by
    calibration: :func:`pipeline_lib.sar.quantile.z98_streaming`), and each band is filtered with
    ``halo_rows`` extra rows on both sides, so the result equals :func:`lee_sigma` of the whole image
    bit for bit. ``threads`` bands are filtered at once (the numba kernels release the GIL); the one-image
    case of :func:`lee_sigma_images`.
    """
    return lee_sigma_images([read], [write], n_rows, params, looks, band_rows, threads, [key_histogram])[0]


def lee_sigma_images(
    reads: Sequence[Callable[[int, int], np.ndarray]],
    writes: Sequence[Callable[[int, int, np.ndarray], None]],
    n_rows: int,
    params: SpeckleParams,
    looks: float,
    band_rows: int = 256,
    threads: int = 1,
    key_histograms: Sequence[np.ndarray | None] | None = None,
) -> list[float]:
    """:func:`lee_sigma_bands` of several images of ``n_rows`` rows (a scene's polarisations) in one pipeline;
    returns each image's Z98.

    The bands of every image go through one pool, so it does not drain between images, and image k + 1's
    Z98 is selected on a second thread while image k is filtered. Bands are written from the calling thread;
    ``read`` is also called from the selecting thread, so callers whose storage is not thread-safe serialise
    their ``read`` and ``write`` (:func:`run_speckle` holds one lock around its NetCDF calls).
    """
    hists = list(key_histograms) if key_histograms is not None else [None] * len(reads)
    if not len(reads) == len(writes) == len(hists):
        raise ValueError(f"lee_sigma_images: {len(reads)} readers, {len(writes)} writers, {len(hists)} histograms")
    bands = row_bands(n_rows, band_rows)
    halo = halo_rows(params)
    n = max(1, threads)

    def select(k: int) -> float:
        return z98_streaming(lambda: _read_ahead(reads[k], bands), hists[k])

    def filt(k: int, ext: np.ndarray, a: int, b: int, e0: int, z98: float) -> tuple[int, int, int, np.ndarray]:
        out = lee_sigma(ext, params, looks, z98=z98)
        return k, a, b, out[a - e0 : b - e0]

    def store(done: Future[tuple[int, int, int, np.ndarray]]) -> None:
        k, a, b, out = done.result()
        writes[k](a, b, out)

    z98s: list[float] = []
    pending: deque[Future[tuple[int, int, int, np.ndarray]]] = deque()
    with ThreadPoolExecutor(max_workers=n) as pool, ThreadPoolExecutor(max_workers=1) as selector:
        nxt = selector.submit(select, 0) if reads else None
        for k in range(len(reads)):
            assert nxt is not None
            z98s.append(nxt.result())
            nxt = selector.submit(select, k + 1) if k + 1 < len(reads) else None
            for a, b in bands:
                e0, e1 = max(a - halo, 0), min(b + halo, n_rows)
                pending.append(pool.submit(filt, k, reads[k](e0, e1), a, b, e0, z98s[k]))
                while len(pending) > n:
                    store(pending.popleft())
        while pending:
            store(pending.popleft())
    return z98s


def run_speckle(
    in_nc: Path,
    out_nc: Path,
    params: SpeckleParams,
    band_rows: int = 256,
    threads: int = 1,
) -> None:
    """Lee-sigma filter every polarisation of a calibrated σ0 NetCDF (same layout out), band by band.

    Peak memory ≈ (``threads`` + 1) × 60 bytes × ``band_rows`` × window width; the result equals the
    whole-image filter (:func:`lee_sigma_bands`).
    """
    with open_sigma0(Path(in_nc)) as src:
        product_looks = float(src.attrs.get("number_of_looks", 0) or 0) or None
        n_looks = params.looks_for(product_looks, str(in_nc))
        attrs = {
            **src.attrs,
            "speckle_filter": "Lee sigma (Lee et al. 2009, SNAP)",
            "speckle_window": params.window_px,
            "speckle_target_window": params.target_px,
            "speckle_sigma": params.sigma,
            "speckle_looks": n_looks,
        }
        var_attrs = {**src.var_attrs, "long_name": "sigma nought, Lee sigma filtered"}
        with create_sigma0(Path(out_nc), src.polarisations, src.lines, src.pixels, attrs, var_attrs) as var:
            lock = threading.Lock()  # netCDF-C is not thread-safe: one call at a time, from any thread

            def read(a: int, b: int, k: int) -> np.ndarray:
                with lock:
                    return src.read(k, slice(a, b))

            def write(a: int, b: int, out: np.ndarray, k: int) -> None:
                with lock:
                    var[k, a:b, :] = out

            pols = range(len(src.polarisations))
            lee_sigma_images(
                [functools.partial(read, k=k) for k in pols],
                [functools.partial(write, k=k) for k in pols],
                src.shape[0],
                params,
                n_looks,
                band_rows,
                threads,
                [src.key_histogram(k) for k in pols],
            )
