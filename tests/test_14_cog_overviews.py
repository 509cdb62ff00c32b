"""Streamed COGs: overview levels computed block by block (pipeline_lib.overviews) and the tile-index check.

The reference for the overviews is GDAL's own AVERAGE overviews of the same image (the path taken when the
blocks are not aligned) and, exactly, the mean of the valid full-resolution pixels under each overview pixel.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.windows import Window

from pipeline_lib.cog import cog_writer, is_aligned, overview_factors, overview_shape, write_cog
from pipeline_lib.overviews import average_levels

TRANSFORM = Affine(10, 0, 300000, 0, -10, 4650000)


def _exact_mean(img: np.ndarray, f: int) -> np.ndarray:
    """Mean of the non-NaN pixels of every f × f cell (edge cells partial); NaN where none."""
    b, h, w = img.shape
    hh, ww = overview_shape(h, w, f)
    pad = np.full((b, hh * f, ww * f), np.nan, dtype=np.float64)
    pad[:, :h, :w] = img
    cells = pad.reshape(b, hh, f, ww, f)
    count = np.isfinite(cells).sum(axis=(2, 4))
    total = np.where(np.isfinite(cells), cells, 0.0).sum(axis=(2, 4))
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


@settings(max_examples=30, deadline=None)
@given(
    h=st.integers(1, 70),
    w=st.integers(1, 70),
    n_levels=st.integers(1, 4),
    nan_fraction=st.sampled_from([0.0, 0.3, 1.0]),
    seed=st.integers(0, 2**16),
)
def test_average_levels_are_the_exact_mean_of_valid_pixels(
    h: int, w: int, n_levels: int, nan_fraction: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    img = rng.normal(-12, 4, size=(2, h, w)).astype(np.float32)
    img[rng.random(img.shape) < nan_fraction] = np.nan
    levels = average_levels(img, n_levels)
    assert len(levels) == n_levels
    for n, got in enumerate(levels):
        f = 2 ** (n + 1)
        expected = _exact_mean(img.astype(np.float64), f)
        assert got.dtype == np.float32 and got.shape == expected.shape
        np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
        np.testing.assert_allclose(got[np.isfinite(got)], expected[np.isfinite(expected)], rtol=1e-6, atol=1e-5)


def test_flat_field_keeps_its_value_at_every_level() -> None:
    img = np.full((1, 37, 50), -7.25, dtype=np.float32)
    img[0, 3:9, 4:30] = np.nan  # holes do not bias a flat field
    for level in average_levels(img, 5):
        finite = level[np.isfinite(level)]
        assert finite.size and np.all(finite == np.float32(-7.25))


def test_factors_and_alignment_follow_gdal() -> None:
    assert overview_factors(512, 512, 512) == []
    assert overview_factors(513, 10, 512) == [2]
    assert overview_factors(21597, 29105, 512) == [2, 4, 8, 16, 32, 64]
    assert overview_shape(21597, 29105, 64) == (338, 455)
    assert is_aligned(2048, 4096, 2048, 2048, 21597, 29105, 64)
    assert is_aligned(20480, 28672, 1117, 433, 21597, 29105, 64)  # ragged last tile reaches both edges
    assert not is_aligned(250, 0, 250, 700, 1100, 700, 4)
    assert not is_aligned(0, 0, 102, 64, 1100, 700, 4)  # 102 rows neither a multiple of 4 nor the edge


def _stream(path: Path, img: np.ndarray, tile: int) -> bool:
    """Write ``img`` through cog_writer in tile × tile blocks; whether the stream kept its own overviews."""
    b, h, w = img.shape
    with cog_writer(
        path,
        height=h,
        width=w,
        count=b,
        crs="EPSG:32633",
        transform=TRANSFORM,
        descriptions=["VV", "VH"][:b],
        stac=False,
    ) as dst:
        for r0 in range(0, h, tile):
            for c0 in range(0, w, tile):
                block = img[:, r0 : r0 + tile, c0 : c0 + tile]
                dst.write(block, window=Window(c0, r0, block.shape[2], block.shape[1]))
        own = dst.overviews_complete
    return own


def _overviews(path: Path) -> list[np.ndarray]:
    with rasterio.open(path) as ds:
        n = len(ds.overviews(1))
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
    out = []
    for i in range(n):
        with rasterio.open(path, overview_level=i) as ov:
            out.append(ov.read())
    return out


def test_aligned_stream_writes_its_own_overviews_like_gdal(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    h, w = 1300, 1100  # factors 2, 4: ragged last tiles on both axes
    img = rng.normal(-12, 3, size=(2, h, w)).astype(np.float32)
    img[:, :, :600] = np.nan  # outside the swath: whole 512² blocks the stage leaves sparse
    img[:, 700:705, 300:900] = np.nan
    assert _stream(tmp_path / "own.tif", img, tile=256)  # 256 is a multiple of the coarsest factor (4)
    assert not _stream(tmp_path / "gdal.tif", img, tile=250)  # unaligned: GDAL averages from the stage
    own, gdal = _overviews(tmp_path / "own.tif"), _overviews(tmp_path / "gdal.tif")
    assert len(own) == len(gdal) == 2
    with rasterio.open(tmp_path / "own.tif") as a, rasterio.open(tmp_path / "gdal.tif") as b:
        np.testing.assert_array_equal(a.read(), b.read())
        assert a.descriptions == b.descriptions == ("VV", "VH") and np.isnan(a.nodata)
    for f, mine, theirs in zip((2, 4), own, gdal, strict=True):
        np.testing.assert_array_equal(np.isnan(mine), np.isnan(theirs))
        exact = _exact_mean(img.astype(np.float64), f)
        np.testing.assert_allclose(mine, exact, rtol=1e-6, atol=1e-5)  # the exact mean of valid pixels
        # GDAL's mean of means can differ only in a cell whose sub-cells hold different numbers of valid pixels
        count = np.isfinite(img).reshape(2, h // f, f, w // f, f).sum(axis=(2, 4))  # h, w divide by 4
        same = (count == f * f) | (count == 0)
        np.testing.assert_allclose(mine[same], theirs[same], rtol=1e-6, atol=1e-5)
        assert same.mean() > 0.75
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gdal.tif", "own.tif"]  # no stages left


def test_a_cut_short_cog_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A COG whose last tiles lie past the end of the file (a full disk) fails the tile-index check."""
    import rasterio.shutil as rshutil

    from pipeline_lib import cog

    real_copy = rshutil.copy

    def truncating_copy(src: object, dst: object, **kw: object) -> None:
        real_copy(src, dst, **kw)
        with open(str(dst), "r+b") as fh:
            fh.truncate(os.path.getsize(str(dst)) - 5000)

    monkeypatch.setattr(cog.rasterio.shutil, "copy", truncating_copy)
    img = np.random.default_rng(0).normal(size=(1, 600, 700)).astype(np.float32)
    with pytest.raises(OSError, match="does not read back"):
        write_cog(img, tmp_path / "x.tif", crs="EPSG:32633", transform=TRANSFORM, descriptions=["b"], stac=False)
    assert not list(tmp_path.iterdir())  # nothing half-written under the final name


def test_predictor_follows_the_data_type(tmp_path: Path) -> None:
    """Floats get the floating-point predictor, integers horizontal differencing; values survive exactly."""
    rng = np.random.default_rng(1)
    for dtype, predictor in (("float32", "3"), ("uint16", "2")):
        img = (rng.random((1, 600, 700)) * 1000).astype(dtype)
        path = tmp_path / f"{dtype}.tif"
        nodata = float("nan") if dtype == "float32" else 0
        write_cog(img, path, crs="EPSG:32633", transform=TRANSFORM, descriptions=["b"], nodata=nodata, stac=False)
        with rasterio.open(path) as ds:
            assert ds.tags(ns="IMAGE_STRUCTURE")["PREDICTOR"] == predictor
            np.testing.assert_array_equal(ds.read(), img)
