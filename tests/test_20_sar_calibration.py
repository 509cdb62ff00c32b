"""Calibration and thermal-noise removal on the real S1 metadata fixtures (sarsen GRD, pyroSAR 2015 zip)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import xarray_sentinel
from test_20_sar_synthetic import (
    LEGACY_ZIP,
    SARSEN_SAFE,
    SHAPE,
    make_centered_grid,
    make_product,
    tiny_grid,
    zip_product,
)

from pipeline_lib.errors import CoverageError, ProductError
from pipeline_lib.safe import open_product
from pipeline_lib.sar import run_calibrate
from pipeline_lib.sar.calibration import SIGMA0_FLOOR, calibrate_sigma0, interp_lut
from pipeline_lib.sar.noise import noise_power, parse_noise
from pipeline_lib.sar.product import find_pol_files, open_sigma_lut


def test_sigma0_matches_xarray_sentinel_where_noise_is_zero() -> None:
    files = find_pol_files(open_product(SARSEN_SAFE), "VV")
    lut = open_sigma_lut(files)
    lines, pixels = np.arange(5000, 5040), np.arange(12000, 12050)
    dn = np.random.default_rng(1).integers(1, 2000, (lines.size, pixels.size)).astype(np.uint16)
    ours = calibrate_sigma0(dn, interp_lut(lut, lines, pixels), 0.0)
    dn_da = xr.DataArray(dn, dims=("line", "pixel"), coords={"line": lines, "pixel": pixels})
    ref = xarray_sentinel.calibrate_intensity(dn_da, lut).values
    np.testing.assert_allclose(ours, np.maximum(ref, SIGMA0_FLOOR), rtol=1e-5)


def test_noise_uses_every_azimuth_block() -> None:
    files = find_pol_files(open_product(SARSEN_SAFE), "VV")
    model = parse_noise(files.reader.parse_xml(files.noise))
    assert not model.legacy and len(model.azimuth_blocks) == 3
    assert [b.swath for b in model.azimuth_blocks] == ["IW1", "IW2", "IW3"]
    # xarray-sentinel keeps only the first block
    xs = xarray_sentinel.sentinel1.open_noise_azimuth_dataset(str(SARSEN_SAFE / files.noise))
    assert xs.sizes["line"] == model.azimuth_blocks[0].line.size
    for block in model.azimuth_blocks:
        k = block.line.size // 2
        line = np.array([int(block.line[k])])
        pixels = np.array([block.first_sample, (block.first_sample + block.last_sample) // 2, block.last_sample])
        # at a block node the azimuth factor is exactly the block's LUT value
        rv = [r for r in model.range_vectors if r.line <= line[0]][-1]
        rv2 = [r for r in model.range_vectors if r.line > line[0]][0]
        w = (line[0] - rv.line) / (rv2.line - rv.line)
        expected_range = (1 - w) * np.interp(pixels, rv.pixel, rv.lut) + w * np.interp(pixels, rv2.pixel, rv2.lut)
        np.testing.assert_allclose(noise_power(model, line, pixels)[0], expected_range * block.lut[k], rtol=1e-9)
    # across the IW1/IW2 boundary the factor switches block
    b1, b2 = model.azimuth_blocks[:2]
    line = np.array([int(b1.line[100])])
    eta = noise_power(model, line, np.array([b1.last_sample, b2.first_sample]))[0]
    from pipeline_lib.sar.noise import azimuth_noise

    az = azimuth_noise(model, line, np.array([b1.last_sample, b2.first_sample]))[0]
    assert az[0] == pytest.approx(np.interp(line[0], b1.line, b1.lut))
    assert az[1] == pytest.approx(np.interp(line[0], b2.line, b2.lut))
    assert np.all(eta > 0)


def test_noise_on_a_window_is_the_plain_formula_in_any_order() -> None:
    """η on a window (in-place blocks, runs of equal vector pairs) equals N_range · N_az from the plain
    per-element formula, for ordered and shuffled lines and pixels, with and without overlapping blocks."""
    import dataclasses

    from pipeline_lib.sar.noise import azimuth_noise, range_noise

    files = find_pol_files(open_product(SARSEN_SAFE), "VV")
    model = parse_noise(files.reader.parse_xml(files.noise))
    b1, b2 = model.azimuth_blocks[:2]
    lines = np.arange(int(b1.line[40]), int(b1.line[40]) + 300)
    pixels = np.arange(b1.last_sample - 200, b2.first_sample + 200)
    rng = np.random.default_rng(0)
    vec_lines = np.array([r.line for r in model.range_vectors], dtype=np.float64)
    overlapping = dataclasses.replace(
        model, azimuth_blocks=(dataclasses.replace(b1, last_sample=b2.first_sample + 50), *model.azimuth_blocks[1:])
    )
    for m in (model, overlapping):
        for ll, pp in ((lines, pixels), (rng.permutation(lines), rng.permutation(pixels))):
            got = noise_power(m, ll, pp)
            for i in range(0, ll.size, 37):
                hi = int(np.clip(np.searchsorted(vec_lines, ll[i], side="right"), 1, vec_lines.size - 1))
                w = (ll[i] - vec_lines[hi - 1]) / (vec_lines[hi] - vec_lines[hi - 1])
                lo_v, hi_v = m.range_vectors[hi - 1], m.range_vectors[hi]
                rng_row = (1 - w) * np.interp(pp, lo_v.pixel, lo_v.lut) + w * np.interp(pp, hi_v.pixel, hi_v.lut)
                np.testing.assert_allclose(range_noise(m, ll[i : i + 1], pp)[0], rng_row, rtol=1e-12)
                az = np.ones(pp.size)
                for b in m.azimuth_blocks:  # later blocks win where they overlap
                    inside = (pp >= b.first_sample) & (pp <= b.last_sample)
                    if b.first_line <= ll[i] <= b.last_line:
                        az[inside] = np.interp(float(ll[i]), b.line, b.lut)
                np.testing.assert_allclose(azimuth_noise(m, ll[i : i + 1], pp)[0], az, rtol=1e-12)
                np.testing.assert_allclose(got[i], rng_row * az, rtol=1e-12)


def test_legacy_range_only_noise_lut() -> None:
    files = find_pol_files(open_product(LEGACY_ZIP), "VV", need_measurement=False)
    root = files.reader.parse_xml(files.noise)
    model = parse_noise(root)
    assert model.legacy and model.azimuth_blocks == ()
    assert len(model.range_vectors) == 27
    # the 2015 IPF 2.x product annotates zero noise: sigma0 is then plain calibration
    assert all(np.all(v.lut == 0) for v in model.range_vectors)
    assert np.all(noise_power(model, np.arange(0, 16000, 997), np.arange(0, 25000, 1231)) == 0)
    # derived variant: a noiseLut linear in (line, pixel) must be reproduced exactly between the vectors
    for vec in root.findall("noiseVectorList/noiseVector"):
        line = float(vec.findtext("line") or 0)
        pix = np.array((vec.findtext("pixel") or "").split(), dtype=float)
        lut_el = vec.find("noiseLut")
        assert lut_el is not None
        lut_el.text = " ".join(f"{v:.6f}" for v in 100.0 + 0.01 * line + 0.02 * pix)
    derived = parse_noise(root)
    lines, pixels = np.array([10, 333, 5000, 12345]), np.array([7, 4001, 19999])
    expected = 100.0 + 0.01 * lines[:, None] + 0.02 * pixels[None, :]
    np.testing.assert_allclose(noise_power(derived, lines, pixels), expected, rtol=1e-6)


def test_run_calibrate_window_values_and_zip(tmp_path: Path) -> None:
    grid = tiny_grid()
    safe = make_product(tmp_path, grid)
    out = tmp_path / "cal.nc"
    run_calibrate(safe, grid, out, polarisations=("VV", "VH"), margin_px=32)
    with xr.open_dataset(out) as ds:
        assert ds["sigma0"].dims == ("polarisation", "line", "pixel")
        assert list(ds["polarisation"].values) == ["VV", "VH"]
        assert ds.attrs["product"] == SARSEN_SAFE.name[:-5]
        assert ds.attrs["number_of_looks"] == 5.0
        lines, pixels = ds["line"].values, ds["pixel"].values
        assert 0 < lines[0] < lines[-1] < SHAPE[0] and 0 < pixels[0] < pixels[-1] < SHAPE[1]
        assert np.all(np.diff(lines) == 1) and np.all(np.diff(pixels) == 1)
        assert lines.size < 400 and pixels.size < 400  # a window, not the product
        sigma0 = ds["sigma0"].values
    files = find_pol_files(open_product(safe), "VV")
    import rasterio
    from rasterio.windows import Window

    with rasterio.open(safe / str(files.measurement)) as src:
        dn = src.read(1, window=Window(int(pixels[0]), int(lines[0]), pixels.size, lines.size)).astype(float)
    lut = open_sigma_lut(files).interp(line=lines, pixel=pixels).values
    eta = noise_power(parse_noise(files.reader.parse_xml(files.noise)), lines, pixels)
    expected = np.maximum((dn**2 - eta) / lut**2, SIGMA0_FLOOR)
    np.testing.assert_allclose(sigma0[0], expected, rtol=1e-5)
    assert np.nanmean(10 * np.log10(sigma0[0])) == pytest.approx(10 * np.log10(np.mean(expected)), abs=1.0)
    # the same product as a zip gives the same numbers
    out_zip = tmp_path / "cal_zip.nc"
    run_calibrate(zip_product(safe, tmp_path / (safe.name[:-5] + ".zip")), grid, out_zip, margin_px=32)
    with xr.open_dataset(out_zip) as dz:
        np.testing.assert_array_equal(dz["sigma0"].values, sigma0)
        assert dz.attrs["product"] == SARSEN_SAFE.name[:-5]


def test_run_calibrate_errors(tmp_path: Path) -> None:
    grid = tiny_grid()
    safe = make_product(tmp_path / "a", grid, pols=("VV",))
    far = make_centered_grid((2.35, 48.85), (32, 32), 10.0)  # Paris
    with pytest.raises(CoverageError, match=SARSEN_SAFE.name[:-5]):
        run_calibrate(safe, far, tmp_path / "x.nc", polarisations=("VV",))
    with pytest.raises(ProductError, match="VH"):
        run_calibrate(safe, grid, tmp_path / "x.nc", polarisations=("VV", "VH"))
    small = make_product(tmp_path / "b", grid, pols=("VV",), size=(1000, 1000))
    with pytest.raises(ProductError, match="measurement is 1000×1000"):
        run_calibrate(small, grid, tmp_path / "x.nc", polarisations=("VV",))
    assert not (tmp_path / "x.nc").exists()
