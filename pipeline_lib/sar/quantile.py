"""Exact Z98 (SNAP's 98th percentile of an image) of images too large for memory, by radix select.

Lee sigma's point-target threshold is SNAP's Z98 (``SpeckleFilterOp.computeZ98Values``: the sorted
finite values' element ``int(0.98·n) − 1``), here over the whole image. Radix select finds it exactly in
two streaming passes over order-preserving uint32 keys of the float32 values (the IEEE-754 bit trick):
pass 1 histograms the keys' top 16 bits, pass 2 keeps only the values of the bin holding the rank and
selects among them.

Pass 1 needs nothing but the values, so calibration makes it as it writes each band
(:func:`key_histogram`, stored beside σ0 by :mod:`pipeline_lib.sar.chunks`) and Lee sigma only makes
pass 2 — one read of the calibrated image instead of two, and no keys computed: a bin of keys is an
interval of floats (:func:`bin_interval`). Numpy only, so the calibration job imports no numba.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable

import numpy as np

__all__ = ["KEY_BINS", "z98_value", "key_histogram", "bin_interval", "z98_streaming"]

#: bins of the pass-1 histogram (the keys' top 16 bits)
KEY_BINS = 1 << 16

#: SNAP's percentile
Z98_FRACTION = 0.98

#: values per bincount call (its intp copy of them: 8 MB)
_COUNT_CHUNK = 1 << 20

#: raw top-16-bit patterns whose exponent bits are all ones: ±infinity and NaN
_NON_FINITE_BINS = np.flatnonzero((np.arange(KEY_BINS) & 0x7F80) == 0x7F80)


def z98_value(values: np.ndarray) -> float:
    """SNAP's Z98 of the finite values: sorted[int(0.98·n) − 1] (NaN when there is none)."""
    valid = np.asarray(values, dtype=np.float32)
    valid = valid[np.isfinite(valid)]
    if valid.size == 0:
        return float("nan")
    k = _rank(valid.size)
    return float(np.partition(valid, k)[k])


def _rank(n: int) -> int:
    return max(int(n * Z98_FRACTION) - 1, 0)  # SNAP computeZ98Values


def _sortable_key(values: np.ndarray) -> np.ndarray:
    """uint32 keys ordered as the float32 values (flip all bits of negatives, the sign bit of others)."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    flip = np.where(bits >> np.uint32(31), np.uint32(0xFFFFFFFF), np.uint32(0x80000000))
    return np.asarray(bits ^ flip)


def _key_to_float(key: int) -> float:
    """The float32 whose :func:`_sortable_key` is ``key``."""
    bits = key ^ 0x80000000 if key >> 31 else key ^ 0xFFFFFFFF
    return float(np.array([bits], dtype=np.uint32).view(np.float32)[0])


def key_histogram(values: np.ndarray) -> np.ndarray:
    """Pass 1 on one band: int64 counts of the finite float32 values by the top 16 bits of their key.

    One bincount over the values' raw top 16 bits (sign, exponent, 7 mantissa bits), then the bins are
    put in key order — positives keep theirs above 0x8000, negatives are mirrored below — and the bins
    whose exponent is all ones (infinities and NaN, nothing else) are emptied: no temporary key array.
    """
    v = np.ascontiguousarray(values, dtype=np.float32).reshape(-1)
    if sys.byteorder == "little":
        high = v.view(np.uint16)[1::2]  # the high half of each little-endian float32
    else:
        high = (v.view(np.uint32) >> np.uint32(16)).astype(np.uint16)
    raw = np.zeros(KEY_BINS, dtype=np.int64)
    for a in range(0, high.size, _COUNT_CHUNK):  # bincount converts to intp: bound that copy
        raw += np.bincount(high[a : a + _COUNT_CHUNK], minlength=KEY_BINS)
    raw[_NON_FINITE_BINS] = 0
    hist = np.empty(KEY_BINS, dtype=np.int64)
    hist[0x8000:] = raw[:0x8000]  # sign 0: key = bits | 0x80000000
    hist[:0x8000] = raw[:0x7FFF:-1]  # sign 1: key = ~bits, i.e. bin 0xFFFF − raw bin
    return hist


def bin_interval(b: int) -> tuple[float, float]:
    """The closed float interval [lo, hi] of the values whose key falls in bin ``b``."""
    return _key_to_float(b << 16), _key_to_float((b << 16) | 0xFFFF)


def z98_streaming(bands: Callable[[], Iterable[np.ndarray]], histogram: np.ndarray | None = None) -> float:
    """Exactly :func:`z98_value` of the concatenated bands, in at most two streaming passes.

    ``bands`` is called once per pass and must yield the same values each time. With ``histogram`` (pass 1
    of the same values, :func:`key_histogram` summed over the bands) only pass 2 runs; a histogram that does
    not match the values (pass 2 counts another number in the bin) is ignored and both passes run. Memory:
    one band plus one bin's values.
    """
    if histogram is not None:
        z98 = _select_in_bin(bands, np.asarray(histogram, dtype=np.int64))
        if z98 is not None:
            return z98
    hist = np.zeros(KEY_BINS, dtype=np.int64)
    for band in bands():
        hist += key_histogram(band)
    z98 = _select_in_bin(bands, hist)
    if z98 is None:  # −0.0 and +0.0 compare equal across the bins' border: select by key instead
        z98 = _select_in_bin(bands, hist, by_key=True)
    assert z98 is not None  # the histogram was made from these values
    return z98


def _select_in_bin(bands: Callable[[], Iterable[np.ndarray]], hist: np.ndarray, by_key: bool = False) -> float | None:
    """Pass 2: the value of rank k among the values of the bin holding it (found by float interval, or by
    key with ``by_key``); None if ``hist`` does not fit the values."""
    if hist.shape != (KEY_BINS,):
        return None
    n = int(hist.sum())
    if n == 0:
        return float("nan")
    k = _rank(n)
    cum = np.cumsum(hist)
    b = int(np.searchsorted(cum, k, side="right"))
    before = int(cum[b - 1]) if b > 0 else 0
    lo, hi = bin_interval(b)
    kept = []
    for band in bands():
        v = np.asarray(band, dtype=np.float32)
        if by_key:
            v = v[np.isfinite(v)]
            kept.append(v[(_sortable_key(v) >> np.uint32(16)) == b])
        else:
            kept.append(v[(v >= lo) & (v <= hi)])  # NaN fails both comparisons
    vals = np.concatenate(kept) if kept else np.zeros(0, np.float32)
    if vals.size != int(hist[b]):
        return None
    r = k - before
    return float(np.partition(vals, r)[r])
