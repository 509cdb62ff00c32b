"""Physical sanity on real inputs (DESIGN §5): offsets corrected only when significant, by a shift
that cannot overshoot, and only if applied; normalisation ranges for real σ0 with clip counts;
predicted reflectance clipped to [0, 1] with counts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

from pipeline_lib.cog import write_cog
from pipeline_lib.grid import make_centered_grid
from pipeline_lib.grid.coreg import compute_offsets, correct_offset, read_corrections, shift_image
from pipeline_lib.model.predict import clip_reflectance
from pipeline_lib.stacks import PHYSICAL_RANGES, open_stack, run_stack

N = 96


def _texture(seed: int, n: int = N + 40) -> np.ndarray:
    return ndimage.gaussian_filter(np.random.default_rng(seed).normal(size=(n, n)), 2.0)


def _crop(img: np.ndarray, dy: int = 0, dx: int = 0) -> np.ndarray:
    """An N×N window of ``img`` whose content sits (dy, dx) further down/right (integer shift)."""
    return img[20 - dy : 20 - dy + N, 20 - dx : 20 - dx + N]


@settings(max_examples=40, deadline=None)
@given(
    dy=st.floats(-3, 3, allow_nan=False),
    dx=st.floats(-3, 3, allow_nan=False),
    seed=st.integers(0, 2**16),
)
def test_correct_offset_cannot_overshoot(dy: float, dx: float, seed: int) -> None:
    rng = np.random.default_rng(seed)
    img = np.zeros((24, 24), np.float32) + 0.02 * rng.random((24, 24), dtype=np.float32)
    img[12, 12] = 0.9  # one bright pixel on a dark field: where a cubic spline rings
    out = correct_offset(img, dy, dx)
    ok = np.isfinite(out)
    assert ok.any()
    assert out[ok].min() >= img.min() - 1e-6 and out[ok].max() <= img.max() + 1e-6


def test_cubic_shift_rings_where_the_correction_does_not() -> None:
    img = np.zeros((24, 24), np.float32)
    img[12, 12] = 0.9
    assert np.nanmin(shift_image(img, 0.45, 0.0)) < -0.01  # what the real chips showed: negative reflectance
    assert np.nanmin(correct_offset(img, 0.45, 0.0)) >= 0.0
    np.testing.assert_allclose(correct_offset(img, 2, 1)[2:, 1:], img[:-2, :-1], atol=1e-6)  # integer: exact


def _images(s1_shift: dict[str, tuple[int, int]], s2_shift: dict[str, tuple[int, int]]) -> tuple[dict, dict]:
    base = _texture(5)
    s1 = {d: {"VV": _crop(base, *s1_shift[d])} for d in s1_shift}
    s2 = {d: {"B04": _crop(base, *s2_shift[d]), "B11": _crop(base, *s2_shift[d])} for d in s2_shift}
    return s1, s2


def _check_applied(doc: dict) -> None:
    """Every entry marked corrected is in the corrections table (the issue-12 bug: it was not)."""
    corr = read_corrections(doc)
    ref = doc["reference_date"]
    tie = next((e for e in doc["entries"] if e["kind"] == "s1_s2" and e["date"] == ref), None)
    ty, tx = (tie["dy"], tie["dx"]) if tie and tie["corrected"] else (0.0, 0.0)
    for e in doc["entries"]:
        if not e["corrected"]:
            continue
        if e["kind"] == "s2":
            np.testing.assert_allclose(corr["s2"][e["date"]], (e["dy"], e["dx"]), atol=1e-3)
        elif e["kind"] == "s1":
            np.testing.assert_allclose(corr["s1"][e["date"]], (e["dy"] + ty, e["dx"] + tx), atol=1e-3)
        else:
            assert e["date"] == ref, e  # the only S1-S2 entry the table uses


def test_offsets_marked_corrected_are_applied_and_checks_are_not_marked() -> None:
    # S1 on d2 sits 3 px lower than everything else; S2 on d3 sits 2 px right
    s1, s2 = _images({"d1": (0, 0), "d2": (3, 0), "d3": (0, 0)}, {"d1": (0, 0), "d2": (0, 0), "d3": (0, 2)})
    doc = compute_offsets(s1, s2, threshold_px=1.0)
    by = {(e["kind"], e["date"]): e for e in doc["entries"]}
    assert by[("s1", "d2")]["corrected"] and by[("s2", "d3")]["corrected"]
    # the S1-S2 entries of d2 and d3 measure real offsets, but the table ties S1 to S2 only through d1
    for d in ("d2", "d3"):
        e = by[("s1_s2", d)]
        assert e["role"] == "check" and e["significant"] and not e["corrected"], e
    _check_applied(doc)
    corr = read_corrections(doc)
    np.testing.assert_allclose(corr["s1"]["d2"], (3.0, 0.0), atol=0.1)
    np.testing.assert_allclose(corr["s2"]["d3"], (0.0, 2.0), atol=0.1)
    assert corr["s1"]["d3"] == (0.0, 0.0)


def test_subpixel_and_implausible_offsets_are_not_corrected() -> None:
    base = _texture(6)
    sub = ndimage.shift(base, (0.6, 0.0), order=3)
    s2 = {
        "d1": {"B04": _crop(base)},
        "d2": {"B04": _crop(sub)},  # 0.6 px: below the 1 px threshold
        "d3": {"B04": _crop(base, 0, 15)},  # 15 px: beyond max_offset_px (a false peak on real chips)
    }
    doc = compute_offsets({}, s2, threshold_px=1.0, max_offset_px=10.0)
    by = {e["date"]: e for e in doc["entries"] if e["kind"] == "s2"}
    assert abs(by["d2"]["dy"] - 0.6) < 0.1 and not by["d2"]["corrected"] and not by["d2"]["significant"]
    assert by["d3"]["implausible"] and not by["d3"]["corrected"]
    assert doc["corrections"]["s2"] == {"d1": [0.0, 0.0], "d2": [0.0, 0.0], "d3": [0.0, 0.0]}
    # with a wider plausibility bound the 15 px offset is measured and applied
    wide = compute_offsets({}, s2, threshold_px=1.0, max_offset_px=20.0)
    np.testing.assert_allclose(wide["corrections"]["s2"]["d3"], (0.0, 15.0), atol=0.1)
    _check_applied(wide)


def test_sigma0_ranges_fit_real_vh_and_clipping_is_counted(tmp_path: Path) -> None:
    assert PHYSICAL_RANGES["VH"][0] <= -30 and PHYSICAL_RANGES["VV"][0] <= -25
    grid = make_centered_grid((12.5, 42.0), (32, 32))
    dates = ["2021-01-01", "2021-01-13", "2021-01-25"]
    s1, s2 = {}, {}
    for k, d in enumerate(dates):
        vv = np.full((32, 32), -12.0, np.float32)
        vh = np.full((32, 32), -28.0, np.float32)  # fits the range (the paper's −25 dB would clip it)
        vh[:2] = -40.0  # 64 values below −35 dB per date
        vv[0, :5] = 7.0  # 5 values above +5 dB per date
        refl = np.full((5, 32, 32), 0.1 + 0.01 * k, np.float32)
        refl[4, 0, 0] = 1.2  # B12 above its range on every date
        s1[d], s2[d] = tmp_path / f"s1_{d}.tif", tmp_path / f"s2_{d}.tif"
        write_cog(np.stack([vv, vh]), s1[d], crs=grid.crs, transform=grid.transform, descriptions=["VV", "VH"])
        write_cog(
            np.concatenate([refl, np.ones((1, 32, 32), np.float32)]),
            s2[d],
            crs=grid.crs,
            transform=grid.transform,
            descriptions=["B04", "B03", "B02", "B11", "B12", "valid"],
        )
    exp = {"name": "e", "task": "sar_to_visible", "target": dates[1], "guides": [dates[0], dates[2]]}
    run_stack(exp, s1, s2, None, tmp_path / "e.nc", tmp_path / "e.tif")
    clipped = json.loads(open_stack(tmp_path / "e.nc").attrs["clipped"])
    assert clipped["VH"] == {"below": 3 * 64, "above": 0, "of": 3 * 1024}  # S_i and two S_g
    assert clipped["VV"] == {"below": 0, "above": 3 * 5, "of": 3 * 1024}
    assert clipped["B04"] == {"below": 0, "above": 0, "of": 2 * 1024}  # T_g only: T_i is not in the stack
    exp2 = {**exp, "name": "f", "task": "visible_to_swir"}
    run_stack(exp2, s1, s2, None, tmp_path / "f.nc", tmp_path / "f.tif")
    assert json.loads(open_stack(tmp_path / "f.nc").attrs["clipped"])["B12"]["above"] == 2


def test_clip_reflectance_counts() -> None:
    pred = np.array([[[-0.05, 0.2], [1.3, np.nan]]], np.float32)
    out, counts = clip_reflectance(pred)
    assert counts == {"below": 1, "above": 1}
    np.testing.assert_array_equal(out, np.array([[[0.0, 0.2], [1.0, np.nan]]], np.float32))
