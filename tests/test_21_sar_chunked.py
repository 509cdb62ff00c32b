"""The chunked native S1 chain equals the whole-array one: calibration, Lee sigma, coarse lookup, tiles, COG."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import xarray_sentinel
from hypothesis import event, given, settings
from hypothesis import strategies as st
from rasterio.windows import Window
from test_20_sar_synthetic import ROME_DEM, SARSEN_SAFE, make_centered_grid, make_product, tiny_grid

from pipeline_lib.cog import cog_writer
from pipeline_lib.grid import Grid
from pipeline_lib.safe import open_product
from pipeline_lib.sar import run_calibrate, run_speckle, run_terrain
from pipeline_lib.sar.calibration import CACHE_LINES, calibrate_sigma0, interp_lut
from pipeline_lib.sar.chunks import create_sigma0, open_sigma0
from pipeline_lib.sar.noise import noise_power, parse_noise
from pipeline_lib.sar.params import SpeckleParams
from pipeline_lib.sar.product import find_pol_files, open_sigma_lut
from pipeline_lib.sar.quantile import key_histogram, z98_streaming, z98_value
from pipeline_lib.sar.speckle import lee_sigma, lee_sigma_images
from pipeline_lib.sar.terrain import (
    LOOKUP_STEP,
    CoarseLookup,
    Geocoder,
    _grd_window,
    _numba_threads,
    _srgr_pixel,
    compute_coarse_lookup,
    grid_ecef,
    grid_lonlat,
    height_levels,
    interp_lookup,
    sample_db,
    srgr_table,
    terrain_tile,
    tile_heights,
    tile_window,
)


def test_chunked_calibrate_equals_whole_window(tmp_path: Path) -> None:
    grid = tiny_grid(48)
    safe = make_product(tmp_path, grid)
    out, out_raw = tmp_path / "cal.nc", tmp_path / "raw.nc"
    run_calibrate(safe, grid, out, margin_px=20, band_lines=9)  # many bands, last one short
    run_calibrate(safe, grid, out_raw, polarisations=("VV",), margin_px=20, band_lines=1000, thermal_noise=False)
    # bands of 40 lines: each computed in cache blocks of CACHE_LINES (16, 16, 8), the last band shorter
    out_blocks = tmp_path / "blocks.nc"
    run_calibrate(safe, grid, out_blocks, margin_px=20, band_lines=40)
    with xr.open_dataset(out) as ds, xr.open_dataset(out_raw) as raw, xr.open_dataset(out_blocks) as blocks:
        assert CACHE_LINES < 40 and 40 % CACHE_LINES != 0 and ds["line"].size % 40 != 0
        np.testing.assert_array_equal(blocks["sigma0"].values, ds["sigma0"].values)
        lines, pixels = ds["line"].values, ds["pixel"].values
        assert lines.size % 9 != 0 and lines.size > 20
        chunked, no_noise = ds["sigma0"].values, raw["sigma0"].values[0]
        assert ds.attrs["thermal_noise_removed"] == 1 and raw.attrs["thermal_noise_removed"] == 0
    for k, pol in enumerate(("VV", "VH")):
        files = find_pol_files(open_product(safe), pol)
        with rasterio.open(safe / str(files.measurement)) as src:
            dn = src.read(1, window=Window(int(pixels[0]), int(lines[0]), pixels.size, lines.size))
        lut = interp_lut(open_sigma_lut(files), lines, pixels)
        eta = noise_power(parse_noise(files.reader.parse_xml(files.noise)), lines, pixels)
        np.testing.assert_array_equal(chunked[k], calibrate_sigma0(dn, lut, eta))  # bit for bit
        if pol == "VV":
            dn_da = xr.DataArray(dn, dims=("line", "pixel"), coords={"line": lines, "pixel": pixels})
            ref = xarray_sentinel.calibrate_intensity(dn_da, open_sigma_lut(files)).values
            np.testing.assert_allclose(no_noise, ref, rtol=1e-6)
            assert np.all(no_noise > chunked[k])  # the noise power was subtracted


def test_streaming_z98_is_exact() -> None:
    rng = np.random.default_rng(5)
    img = rng.gamma(2.0, 0.5, (301, 53)).astype(np.float32) - 0.3  # negatives too
    img[rng.random(img.shape) < 0.1] = np.nan
    bands = [img[a : a + 37] for a in range(0, img.shape[0], 37)]
    assert z98_streaming(lambda: iter(bands)) == z98_value(img)
    assert np.isnan(z98_streaming(lambda: iter([np.full((3, 3), np.nan, np.float32)])))
    # pass 1 made elsewhere (calibration): one pass left, same value; a histogram of other values is ignored
    hist = sum(key_histogram(b) for b in bands)
    passes = []

    def counted() -> Iterator[np.ndarray]:
        passes.append(1)
        return iter(bands)

    assert z98_streaming(counted, hist) == z98_value(img) and len(passes) == 1
    passes.clear()
    assert z98_streaming(counted, key_histogram(img[:100])) == z98_value(img) and len(passes) == 3


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.floats(width=32, allow_nan=True, allow_infinity=True),
            st.sampled_from([0.0, -0.0, 1e-5, -1e-5, 3.0]),
        ),
        min_size=1,
        max_size=300,
    )
)
def test_z98_by_histogram_equals_the_sort(values: list[float]) -> None:
    """Any float32 values (both zeros, infinities, NaN, denormals), in bands or not, with or without pass 1."""
    img = np.asarray(values, dtype=np.float32)
    bands = [img[a : a + 7] for a in range(0, img.size, 7)]
    expected = z98_value(img)
    for hist in (None, sum(key_histogram(b) for b in bands)):
        got = z98_streaming(lambda: iter(bands), hist)
        assert (np.isnan(got) and np.isnan(expected)) or got == expected


def test_calibration_stores_pass_one_of_z98(tmp_path: Path) -> None:
    """The calibrated file's key histograms are exactly those of its σ0, so speckle reads it once less."""
    grid = tiny_grid()
    safe = make_product(tmp_path, grid)
    nc = tmp_path / "cal.nc"
    run_calibrate(safe, grid, nc, band_lines=7, threads=2)
    with open_sigma0(nc) as src:
        for k in range(len(src.polarisations)):
            hist = src.key_histogram(k)
            assert hist is not None and hist.sum() > 0
            np.testing.assert_array_equal(hist, key_histogram(src.read(k, slice(None))))


def _write_nc(path: Path, data: np.ndarray, line0: int = 1000, pixel0: int = 2000, looks: float = 4.0) -> None:
    lines = np.arange(line0, line0 + data.shape[1])
    pixels = np.arange(pixel0, pixel0 + data.shape[2])
    with create_sigma0(path, ["VV", "VH"][: data.shape[0]], lines, pixels, {"number_of_looks": looks}, {}) as var:
        var[:] = data


def test_chunked_lee_sigma_equals_whole_image(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    data = (0.05 * rng.gamma(4.0, 0.25, (2, 211, 90))).astype(np.float32)
    data[:, 60:75, 20:40] *= 30.0  # bright area: point targets
    data[:, 150:153, 5:8] = 5.0
    data[:, :4, :] = np.nan  # no-data border and holes
    data[1, 100, 45] = np.nan
    src, dst = tmp_path / "cal.nc", tmp_path / "fil.nc"
    _write_nc(src, data)
    for band_rows, threads in ((16, 2), (5, 1)):  # bands smaller than the halo rows too
        run_speckle(src, dst, SpeckleParams(7, 3, 0.9, None), band_rows=band_rows, threads=threads)
        with xr.open_dataset(dst) as ds:
            out = ds["sigma0"].values
            assert ds.attrs["speckle_window"] == 7 and list(ds["line"].values[:2]) == [1000, 1001]
        for k in range(2):
            np.testing.assert_array_equal(out[k], lee_sigma(data[k], SpeckleParams(7, 3, 0.9, None), 4.0))
    run_speckle(src, dst, SpeckleParams(9, 5, 0.8, None), band_rows=8)
    with xr.open_dataset(dst) as ds:
        np.testing.assert_array_equal(ds["sigma0"].values[0], lee_sigma(data[0], SpeckleParams(9, 5, 0.8, None), 4.0))


def test_images_in_one_pipeline_each_use_their_own_z98() -> None:
    """Two images through one pool (the second's Z98 selected while the first is filtered): each gets its
    own Z98 and equals its whole-image filter; the errors of a writer reach the caller."""
    rng = np.random.default_rng(5)
    images = [(s * rng.gamma(4.0, 0.25, (97, 60))).astype(np.float32) for s in (0.05, 2.0)]
    images[1][10:20, 10:20] *= 40.0
    params = SpeckleParams(7, 3, 0.9, None)
    outs = [np.full_like(im, -1.0) for im in images]

    def writer(k: int) -> Callable[[int, int, np.ndarray], None]:
        def write(a: int, b: int, out: np.ndarray) -> None:
            outs[k][a:b] = out

        return write

    reads = [lambda a, b, im=im: im[a:b] for im in images]
    z98s = lee_sigma_images(reads, [writer(0), writer(1)], 97, params, 4.0, band_rows=11, threads=2)
    assert z98s == [z98_value(im) for im in images] and z98s[0] != z98s[1]
    for im, out in zip(images, outs, strict=True):
        np.testing.assert_array_equal(out, lee_sigma(im, params, 4.0))

    def broken(a: int, b: int, out: np.ndarray) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        lee_sigma_images(reads, [writer(0), broken], 97, params, 4.0, band_rows=11, threads=2)


@pytest.fixture(scope="module")
def geocoder() -> Geocoder:
    return Geocoder.from_files(find_pol_files(open_product(SARSEN_SAFE), "VV", need_measurement=False))


@pytest.mark.parametrize("with_dem", [False, True])
def test_coarse_lookup_error_bound(geocoder: Geocoder, with_dem: bool) -> None:
    grid = make_centered_grid((12.50, 42.00), (160, 144), 10.0)
    full = (slice(0, grid.height), slice(0, grid.width))
    lon, lat = grid_lonlat(grid)
    heights = tile_heights(ROME_DEM, grid, *full) if with_dem else np.zeros(grid.shape)
    exact_line, exact_pixel = geocoder.lookup(grid_ecef(lon, lat, heights))
    errors = {}
    for step in (LOOKUP_STEP, 4 * LOOKUP_STEP):
        levels = height_levels(ROME_DEM, grid, step, 500.0)[0] if with_dem else np.zeros(1)
        coarse = compute_coarse_lookup(geocoder, grid, step, levels)
        line, pixel = interp_lookup(coarse, *full, heights if with_dem else None)
        err = np.hypot(line - exact_line, pixel - exact_pixel)
        errors[step] = float(err.max())
        # at the lattice nodes the interpolation is exact (the SRGR conversion matches xarray-sentinel's)
        np.testing.assert_allclose(line[::step, ::step], exact_line[::step, ::step], atol=1e-6)
        np.testing.assert_allclose(pixel[::step, ::step], exact_pixel[::step, ::step], atol=1e-6)
    assert errors[LOOKUP_STEP] < 0.01  # documented: ~1.3e-3 px, bound 0.05 px
    assert errors[LOOKUP_STEP] < errors[4 * LOOKUP_STEP]  # the error is the lattice's, it grows with the step


def test_tabulated_srgr_equals_the_polynomials(geocoder: Geocoder) -> None:
    """Per-pixel slant → ground range from the tables is the annotation polynomials' value (< 1e-4 px), in the
    table and outside it (where the kernel falls back to the polynomial), NaN outside the polynomials' time."""
    plines, sr0, coef = geocoder.srgr_tables()
    spacing = float(geocoder.info.range_pixel_spacing_m)
    rng = np.random.default_rng(0)
    lines = rng.uniform(plines[0], plines[-1], 4000)
    k = np.clip(np.searchsorted(plines, lines, side="right") - 1, 0, plines.size - 2)
    w = (lines - plines[k]) / (plines[k + 1] - plines[k])
    sr0_w = (1 - w) * sr0[k] + w * sr0[k + 1]
    x = rng.uniform(0.0, 60e3, lines.size)  # slant-range offsets across an IW swath
    table, x0 = srgr_table(sr0_w[:100, None] + np.array([[0.0, 50e3]]), sr0, coef, spacing)  # covers ≤ 50 km
    expected = np.array(
        [
            np.polyval(((1 - wi) * coef[ki] + wi * coef[ki + 1])[::-1], xi) / spacing
            for ki, wi, xi in zip(k, w, x, strict=True)
        ]
    )
    got = np.empty(lines.size)
    hint = 0
    for i in range(lines.size):
        got[i], hint = _srgr_pixel(lines[i], sr0_w[i] + x[i], plines, sr0, coef, spacing, table, x0, hint)
    assert np.abs(got - expected).max() < 1e-4
    assert (x > 51e3).any()  # some points beyond the table: the polynomial path
    assert np.isnan(_srgr_pixel(plines[-1] + 1.0, sr0[0] + 1e3, plines, sr0, coef, spacing, table, x0, 0)[0])


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    shape=st.tuples(st.integers(1, 40), st.integers(1, 40)),
    nan_share=st.floats(0.0, 1.0),
    threads=st.integers(1, 2),
)
def test_grd_window_is_the_bounding_box_of_the_points_inside(
    seed: int, shape: tuple[int, int], nan_share: float, threads: int
) -> None:
    """The tile's GRD window (parallel per-row bounds, dynamic chunks) equals the numpy bounding box of the
    lookup points that fall inside the stored window, plus the bilinear neighbour; None if none does."""
    rng = np.random.default_rng(seed)
    line0, pixel0, win = 100, 200, (30, 50)
    line = rng.uniform(line0 - 10, line0 + 40, shape)
    pixel = rng.uniform(pixel0 - 10, pixel0 + 60, shape)
    line[rng.random(shape) < nan_share] = np.nan
    with _numba_threads(threads):
        got = _grd_window(line, pixel, line0, pixel0, win)
    r, c = line - line0, pixel - pixel0
    inside = (r >= 0) & (r <= win[0] - 1) & (c >= 0) & (c <= win[1] - 1)
    if not inside.any():
        assert got is None
        return
    rows = slice(int(np.floor(r[inside].min())), min(int(np.floor(r[inside].max())) + 2, win[0]))
    cols = slice(int(np.floor(c[inside].min())), min(int(np.floor(c[inside].max())) + 2, win[1]))
    assert got == (rows, cols)


@pytest.fixture(scope="module")
def rome_lookups(geocoder: Geocoder) -> dict[str, tuple[Grid, CoarseLookup, np.ndarray]]:
    """A 200 × 180 px grid near Rome with its coarse lookups: on the ellipsoid, and at DEM height levels
    (with the DEM's heights on the grid)."""
    grid = make_centered_grid((12.50, 42.00), (200, 180), 10.0)
    heights = tile_heights(ROME_DEM, grid, slice(0, grid.height), slice(0, grid.width))
    levels = height_levels(ROME_DEM, grid, LOOKUP_STEP, 500.0)[0]
    return {
        "ellipsoid": (grid, compute_coarse_lookup(geocoder, grid, LOOKUP_STEP, np.zeros(1)), np.zeros(grid.shape)),
        "dem": (grid, compute_coarse_lookup(geocoder, grid, LOOKUP_STEP, levels), heights),
    }


@settings(max_examples=150, deadline=None)
@given(
    case=st.sampled_from(["ellipsoid", "dem", "no table"]),
    r0=st.integers(0, 170),
    c0=st.integers(0, 170),
    size=st.tuples(st.integers(1, 120), st.integers(1, 120)),
    lift=st.floats(-400.0, 2500.0),
    offset=st.tuples(st.integers(-120, 10), st.integers(-120, 10)),
    stored=st.tuples(st.integers(2, 260), st.integers(2, 260)),
)
def test_tile_window_holds_every_sample_and_the_fused_tile_is_lookup_then_sample(
    rome_lookups: dict[str, tuple[Grid, CoarseLookup, np.ndarray]],
    case: str,
    r0: int,
    c0: int,
    size: tuple[int, int],
    lift: float,
    offset: tuple[int, int],
    stored: tuple[int, int],
) -> None:
    """The GRD window bounded from the lattice alone contains the bounding box of the exact lookup's samples
    (None only where no sample falls in the stored window), for tiles anywhere on the grid, heights beyond
    the lookup's levels (extrapolated) and stored windows cutting the tile; where the SRGR table cannot bound
    the ground range ("no table") the exact lookup decides. On that window the fused tile kernel gives the
    bits of :func:`interp_lookup` then :func:`sample_db` on the exact window."""
    grid, coarse, grid_heights = rome_lookups["ellipsoid" if case == "ellipsoid" else "dem"]
    if case == "no table":  # the table covers no offset: the kernels use the polynomials themselves
        coarse = dataclasses.replace(coarse, srgr_table=coarse.srgr_table[:, :2], srgr_x0=-1e9)
    rows = slice(r0, min(r0 + size[0], grid.height))
    cols = slice(c0, min(c0 + size[1], grid.width))
    heights = None if case == "ellipsoid" else grid_heights[rows, cols] + lift
    line, pixel = interp_lookup(coarse, rows, cols, heights)
    line0 = int(np.nanmin(line)) + offset[0]
    pixel0 = int(np.nanmin(pixel)) + offset[1]
    exact = _grd_window(line, pixel, line0, pixel0, stored)
    got = tile_window(coarse, rows, cols, heights, line0, pixel0, stored)
    event(f"{case}: window {'none' if got is None else 'read'}, samples {'none' if exact is None else 'some'}")
    if got is None:
        assert exact is None
        return
    if exact is None:
        return  # the lattice's box reaches the stored window, the samples do not: read, then all NaN
    assert got[0].start <= exact[0].start and got[0].stop >= exact[0].stop
    assert got[1].start <= exact[1].start and got[1].stop >= exact[1].stop
    rng = np.random.default_rng(r0 * 1000 + c0)
    data = rng.uniform(0.01, 0.5, (2, *stored)).astype(np.float32)
    data[1, ::7] = -1.0  # σ0 ≤ 0: NaN dB
    fused = terrain_tile(
        coarse, rows, cols, heights, data[:, got[0], got[1]], line0 + got[0].start, pixel0 + got[1].start
    )
    for k in range(2):
        ref = sample_db(data[k, exact[0], exact[1]], line0 + exact[0].start, pixel0 + exact[1].start, line, pixel)
        np.testing.assert_array_equal(fused[k], ref)


def test_tile_window_is_none_outside_the_polynomials_time_span(
    rome_lookups: dict[str, tuple[Grid, CoarseLookup, np.ndarray]],
) -> None:
    """Lines past the last SRGR polynomial have no ground range: no window, whatever the stored window."""
    grid, coarse, _ = rome_lookups["ellipsoid"]
    late = dataclasses.replace(coarse, srgr_lines=coarse.srgr_lines - coarse.srgr_lines[-1] - 1e4)
    line, _ = interp_lookup(coarse, slice(0, 64), slice(0, 64))
    args = (int(line.min()) - 100, 0, (100_000, 100_000))
    assert tile_window(late, slice(0, 64), slice(0, 64), None, *args) is None
    assert tile_window(coarse, slice(0, 64), slice(0, 64), None, *args) is not None


def test_tiled_terrain_matches_per_pixel_lookup(tmp_path: Path, geocoder: Geocoder) -> None:
    """A σ0 field linear in (line, pixel) is resampled exactly by bilinear: only the lookup error remains."""
    grid = make_centered_grid((12.50, 42.00), (150, 170), 10.0)
    lon, lat = grid_lonlat(grid)
    heights = tile_heights(ROME_DEM, grid, slice(0, grid.height), slice(0, grid.width))
    line, pixel = geocoder.lookup(grid_ecef(lon, lat, heights))
    line0, pixel0 = int(line.min()) - 3, int(pixel.min()) + 40  # the window misses part of the grid: NaN there
    nl, npx = int(line.max()) + 4 - line0, int(pixel.max()) + 4 - pixel0
    ll, pp = np.meshgrid(np.arange(nl, dtype=np.float64), np.arange(npx, dtype=np.float64), indexing="ij")
    field = np.stack([0.02 + 1e-4 * ll + 2e-4 * pp, 0.005 + 3e-5 * ll + 1e-5 * pp]).astype(np.float32)
    nc = tmp_path / "fil.nc"
    _write_nc(nc, field, line0, pixel0)
    tif = tmp_path / "s1.tif"
    run_terrain(nc, SARSEN_SAFE, grid, tif, dem=ROME_DEM, tile=64, threads=2)  # 3 × 3 tiles, ragged edges
    with rasterio.open(tif) as ds:
        got = ds.read()
        assert ds.descriptions == ("VV", "VH") and ds.shape == grid.shape and ds.transform == grid.transform
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    r, c = line - line0, pixel - pixel0
    inside = (r >= 0) & (r <= nl - 1) & (c >= 0) & (c <= npx - 1)
    edge = (r < 0.05) | (r > nl - 1.05) | (c < 0.05) | (c > npx - 1.05)  # within the lookup error of the edge
    assert 0.2 < inside.mean() < 0.95
    expected = np.stack([10 * np.log10(0.02 + 1e-4 * r + 2e-4 * c), 10 * np.log10(0.005 + 3e-5 * r + 1e-5 * c)])
    for k in range(2):
        ok = inside & ~edge
        assert np.isfinite(got[k][ok]).all() and np.isnan(got[k][~inside & ~edge]).all()
        # |dσ0/dpx| / σ0 ≤ 0.01 per px here: 0.05 px of lookup error is < 0.003 dB
        assert np.abs(got[k][ok] - expected[k][ok]).max() < 0.003


def test_cog_writer_streams_a_valid_cog(tmp_path: Path) -> None:
    path = tmp_path / "out.tif"
    from affine import Affine

    with cog_writer(
        path,
        height=1100,
        width=700,
        count=2,
        crs="EPSG:32633",
        transform=Affine(10, 0, 300000, 0, -10, 4650000),
        descriptions=["VV", "VH"],
        tags={"units": "dB"},
        band_tags=[{"polarisation": "VV"}, {"polarisation": "VH"}],
        stac=False,
    ) as dst:
        for r0 in range(0, 1000, 250):  # rows 1000-1099 are never written: block row 1024+ is never touched
            block = np.full((2, 250, 700), r0, dtype=np.float32)
            block[1] += 0.5
            dst.write(block, window=Window(0, r0, 700, 250))
        assert not path.exists()  # only the staged file so far
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]  # no temporaries left
    with rasterio.open(path) as ds:
        assert ds.is_tiled and ds.block_shapes[0] == (512, 512)
        assert ds.overviews(1) and ds.descriptions == ("VV", "VH")
        assert ds.tags()["units"] == "dB" and ds.tags(2)["polarisation"] == "VH"
        assert ds.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG" and ds.profile["compress"] == "zstd"
        assert ds.crs.to_epsg() == 32633 and np.isnan(ds.nodata)
        data = ds.read()
    assert data[0, 260, 5] == 250.0 and data[1, 760, 5] == 750.5
    assert np.isnan(data[:, 1024:]).all()
    # an error inside the block leaves nothing behind
    with (
        pytest.raises(RuntimeError),
        cog_writer(
            tmp_path / "bad.tif",
            height=64,
            width=64,
            count=1,
            crs="EPSG:32633",
            transform=Affine(10, 0, 0, 0, -10, 0),
            descriptions=["x"],
            stac=False,
        ),
    ):
        raise RuntimeError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.tif"]


def test_open_sigma0_reads_xarray_written_files(tmp_path: Path) -> None:
    """Files written by xarray (the pre-chunking writer, tests' fixtures) read the same through chunks."""
    data = np.arange(2 * 5 * 4, dtype=np.float32).reshape(2, 5, 4)
    ds = xr.Dataset(
        {"sigma0": (("polarisation", "line", "pixel"), data)},
        coords={"polarisation": ["VV", "VH"], "line": np.arange(10, 15), "pixel": np.arange(3, 7)},
        attrs={"number_of_looks": 4.4},
    )
    ds.to_netcdf(tmp_path / "x.nc")
    with open_sigma0(tmp_path / "x.nc") as f:
        assert f.polarisations == ("VV", "VH") and (f.line0, f.pixel0, f.shape) == (10, 3, (5, 4))
        np.testing.assert_array_equal(f.read(1, slice(1, 3), slice(2, 4)), data[1, 1:3, 2:4])
        assert f.attrs["number_of_looks"] == 4.4
