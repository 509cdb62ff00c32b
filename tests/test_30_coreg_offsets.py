"""Residual offsets: phase correlation recovers known shifts, shift round trip, reprojection lands on the grid."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, reproject
from scipy import ndimage

from pipeline_lib.cog import write_cog
from pipeline_lib.grid import Grid, make_centered_grid
from pipeline_lib.grid.coreg import (
    compute_offsets,
    gradient_magnitude,
    phase_correlation,
    read_corrections,
    run_offsets,
    shift_image,
)

SHAPE = 96


def _texture(seed: int, n: int = SHAPE + 32, sigma: float = 2.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=(n, n)), sigma)


def _fourier_shift(img: np.ndarray, dy: float, dx: float) -> np.ndarray:
    """Reference shift independent of shift_image: exact for periodic band-limited content."""
    return np.fft.ifft2(ndimage.fourier_shift(np.fft.fft2(img), (dy, dx))).real


@pytest.mark.parametrize("dy,dx", [(0.0, 0.0), (0.3, -0.7), (2.25, 1.6), (-3.4, 0.15), (0.5, 0.5)])
def test_phase_correlation_recovers_known_shift(dy: float, dx: float) -> None:
    base = _texture(1)
    mov = _fourier_shift(base, dy, dx)
    rng = np.random.default_rng(2)
    ref_c = base[16:-16, 16:-16] + 0.01 * rng.normal(size=(SHAPE, SHAPE))
    mov_c = mov[16:-16, 16:-16] + 0.01 * rng.normal(size=(SHAPE, SHAPE))
    ey, ex, q = phase_correlation(ref_c, mov_c)
    assert abs(ey - dy) <= 0.1 and abs(ex - dx) <= 0.1, (ey, ex)
    assert q > 0.5


def test_phase_correlation_with_nan_and_mask() -> None:
    base = _texture(3)
    mov = _fourier_shift(base, 1.3, -0.8)[16:-16, 16:-16].copy()
    mov[20:50, 30:70] = np.nan  # a cloud
    valid = np.ones((SHAPE, SHAPE), bool)
    valid[:, :10] = False
    ey, ex, q = phase_correlation(base[16:-16, 16:-16], mov, valid)
    assert abs(ey - 1.3) <= 0.1 and abs(ex + 0.8) <= 0.1
    assert q > 0.5


def test_phase_correlation_unrelated_images_low_quality_and_too_few_valid() -> None:
    a, b = _texture(4, SHAPE, 1.0), _texture(5, SHAPE, 1.0)
    assert phase_correlation(a, b)[2] < 0.3
    self_q = phase_correlation(a, a)[2]
    assert self_q > 0.7
    empty = np.full_like(a, np.nan)
    dy, dx, q = phase_correlation(a, empty)
    assert np.isnan(dy) and np.isnan(dx) and q == 0.0


def test_cross_modal_gradient_offset() -> None:
    """S1-like (dB of exp) vs S2-like (linear) of the same structure: gradient magnitudes align."""
    base = _texture(6)
    sar = 10 * np.log10(np.exp(3 * _fourier_shift(base, -0.6, 1.2)))
    opt = 0.1 + 0.05 * base
    ey, ex, q = phase_correlation(gradient_magnitude(opt)[16:-16, 16:-16], gradient_magnitude(sar)[16:-16, 16:-16])
    assert abs(ey + 0.6) <= 0.1 and abs(ex - 1.2) <= 0.1 and q > 0.5


def test_shift_round_trip_and_nan_handling() -> None:
    base = _texture(7).astype(np.float32)
    there = shift_image(base, 0.37, -1.21)
    back = shift_image(there, -0.37, 1.21)
    assert back.dtype == np.float32
    inner = (slice(8, -8), slice(8, -8))
    assert np.nanmax(np.abs(back[inner] - base[inner])) < 0.02 * float(np.std(base))
    # content moves by +dy, +dx: an integer shift is exact
    np.testing.assert_allclose(shift_image(base, 2, 3)[10:-10, 10:-10], base[8:-12, 7:-13], atol=1e-5)
    # NaN stays NaN (moved with the content) and the border that came from outside is NaN
    holed = base.copy()
    holed[40, 40] = np.nan
    moved = shift_image(holed, 2.0, 0.0)
    assert np.isnan(moved[42, 40]) and np.isnan(moved[0, 5]) and np.isfinite(moved[60, 60])
    # (band, y, x) stacks shift band by band
    stack = shift_image(np.stack([base, 2 * base]), 0.5, 0.5)
    np.testing.assert_allclose(stack[1], 2 * stack[0], rtol=1e-5, equal_nan=True)


def _surface(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """A smooth analytic surface in map metres (wavelengths 80-230 m, i.e. well sampled at 5 and 10 m)."""
    return np.sin(x / 23.0) * np.cos(y / 31.0) + 0.5 * np.sin((x + y) / 37.0) + 0.3 * np.cos((x - 2 * y) / 29.0)


@pytest.mark.parametrize("shift_m", [(0.0, 0.0), (3.3, -2.1)])
def test_reprojection_of_subpixel_shifted_raster_lands_on_grid(shift_m: tuple[float, float]) -> None:
    """A 5 m raster, origin offset by a fraction of a pixel, whose content is the surface moved by
    ``shift_m`` metres (east, north), reprojected onto the 10 m grid: the offset against the surface
    sampled at the grid's pixel centres is the known shift within 0.1 px."""
    grid = make_centered_grid((12.5, 42.0), (64, 64))
    left, bottom, right, top = grid.bounds
    src_res = 5.0
    src_transform = Affine(src_res, 0, left - 100 + 1.7, 0, -src_res, top + 100 - 3.1)
    n = int((right - left + 200) / src_res)
    sx = src_transform.c + (np.arange(n) + 0.5) * src_res
    sy = src_transform.f - (np.arange(n) + 0.5) * src_res
    east, north = shift_m
    src = _surface(sx[None, :] - east, sy[:, None] - north).astype(np.float32)
    dst = np.full(grid.shape, np.nan, np.float32)
    reproject(
        src,
        dst,
        src_transform=src_transform,
        src_crs=grid.crs,
        dst_transform=grid.transform,
        dst_crs=grid.crs,
        resampling=Resampling.cubic,
        src_nodata=np.nan,
        dst_nodata=np.nan,
    )
    truth = _surface(grid.x_coords()[None, :], grid.y_coords()[:, None])
    dy, dx, q = phase_correlation(truth, dst)
    # moving content east is +x columns; north is −y rows
    assert abs(dx - east / grid.resolution_m) <= 0.1
    assert abs(dy - (-north / grid.resolution_m)) <= 0.1
    assert q > 0.3


def _grid(n: int = 64) -> Grid:
    return make_centered_grid((12.5, 42.0), (n, n))


def _write_pair(
    tmp: Path, grid: Grid, date: str, base: np.ndarray, s1_shift: tuple[float, float], s2_shift: tuple[float, float]
) -> tuple[Path, Path]:
    sar = _fourier_shift(base, *s1_shift)[16:-16, 16:-16]
    opt = _fourier_shift(base, *s2_shift)[16:-16, 16:-16]
    vv = (-12 + 4 * sar).astype(np.float32)
    s1p, s2p = tmp / "s1" / f"{date}.tif", tmp / "s2" / f"{date}.tif"
    write_cog(np.stack([vv, vv - 6]), s1p, crs=grid.crs, transform=grid.transform, descriptions=["VV", "VH"])
    refl = (0.15 + 0.05 * opt).astype(np.float32)
    valid = np.ones_like(refl)
    s2 = np.stack([refl, refl * 0.9, refl * 0.8, refl * 1.5, refl * 1.2, valid])
    write_cog(
        s2, s2p, crs=grid.crs, transform=grid.transform, descriptions=["B04", "B03", "B02", "B11", "B12", "valid"]
    )
    return s1p, s2p


def test_run_offsets_writes_entries_and_corrections(tmp_path: Path) -> None:
    grid = _grid()
    base = _texture(8)
    dates = ["2021-12-23", "2022-01-04", "2022-01-16"]
    shifts_s1 = {"2021-12-23": (0.8, -0.6), "2022-01-04": (0.8 + 1.5, -0.6), "2022-01-16": (0.8 + 0.1, -0.6)}
    shifts_s2 = {"2021-12-23": (0.0, 0.0), "2022-01-04": (0.0, 0.0), "2022-01-16": (-0.9, 0.7)}
    s1, s2 = {}, {}
    for d in dates:
        s1[d], s2[d] = _write_pair(tmp_path, grid, d, base, shifts_s1[d], shifts_s2[d])
    out = tmp_path / "offsets.json"
    run_offsets(s1, s2, out, threshold_px=0.5)
    doc = json.loads(out.read_text())
    assert doc["reference_date"] == "2021-12-23"
    by = {(e["kind"], e["date"]): e for e in doc["entries"]}
    assert set(by) == {
        ("s1", "2022-01-04"),
        ("s1", "2022-01-16"),
        ("s2", "2022-01-04"),
        ("s2", "2022-01-16"),
        ("s1_s2", "2021-12-23"),
        ("s1_s2", "2022-01-04"),
        ("s1_s2", "2022-01-16"),
    }
    e = by[("s1", "2022-01-04")]
    assert abs(e["dy"] - 1.5) <= 0.1 and abs(e["dx"]) <= 0.1 and e["corrected"]
    e = by[("s1", "2022-01-16")]
    assert abs(e["dy"] - 0.1) <= 0.1 and not e["corrected"]  # below the threshold
    e = by[("s2", "2022-01-16")]
    assert abs(e["dy"] + 0.9) <= 0.1 and abs(e["dx"] - 0.7) <= 0.1 and e["corrected"]
    e = by[("s1_s2", "2021-12-23")]
    assert abs(e["dy"] - 0.8) <= 0.15 and abs(e["dx"] + 0.6) <= 0.15 and e["corrected"]
    corr = read_corrections(doc)
    # every image's total offset from S2 on the reference date
    assert corr["s2"]["2021-12-23"] == (0.0, 0.0)
    np.testing.assert_allclose(corr["s2"]["2022-01-16"], (-0.9, 0.7), atol=0.1)
    np.testing.assert_allclose(corr["s1"]["2022-01-04"], (2.3, -0.6), atol=0.15)
    np.testing.assert_allclose(corr["s1"]["2022-01-16"], (0.8, -0.6), atol=0.15)


def test_compute_offsets_flags_unrelated_images_low_confidence() -> None:
    a, b = _texture(9, 64, 1.0), _texture(10, 64, 1.0)
    doc = compute_offsets({"d1": {"VV": a}, "d2": {"VV": b}}, {}, threshold_px=0.1)
    (entry,) = doc["entries"]
    assert entry["low_confidence"] and not entry["corrected"]
    assert doc["corrections"]["s1"]["d2"] == [0.0, 0.0]


def test_written_cog_is_on_the_grid(tmp_path: Path) -> None:
    grid = _grid(32)
    s1p, _ = _write_pair(tmp_path, grid, "2022-01-01", _texture(11, 64), (0, 0), (0, 0))
    with rasterio.open(s1p) as src:
        assert src.crs.to_string() == grid.crs and src.transform == grid.transform
        assert src.descriptions == ("VV", "VH") and np.isnan(src.nodata)
