"""Metrics (DESIGN §7): hand-computed values on tiny arrays and scikit-image on random data."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import structural_similarity

from pipeline_lib import metrics


def test_rmse_hand_computed_with_mask() -> None:
    truth = np.zeros((2, 2))
    pred = np.array([[1.0, 2.0], [3.0, 100.0]])
    mask = np.array([[True, True], [True, False]])
    assert metrics.rmse(pred, truth, mask) == pytest.approx(np.sqrt((1 + 4 + 9) / 3))
    pred_nan = pred.copy()
    pred_nan[1, 1] = np.nan  # NaN pixels are excluded like masked ones
    assert metrics.rmse(pred_nan, truth) == pytest.approx(np.sqrt(14 / 3))
    assert np.isnan(metrics.rmse(pred, truth, np.zeros((2, 2), bool)))


def test_cc_hand_computed() -> None:
    truth = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert metrics.cc(2 * truth + 5, truth) == pytest.approx(1.0)
    assert metrics.cc(-truth, truth) == pytest.approx(-1.0)
    pred = np.array([[1.0, 3.0], [2.0, 4.0]])
    # means 2.5; deviations a=(-1.5,.5,-.5,1.5) b=(-1.5,-.5,.5,1.5): sum ab=2.25-.25-.25+2.25=4, |a|²=|b|²=5
    assert metrics.cc(pred, truth) == pytest.approx(4 / 5)
    assert np.isnan(metrics.cc(np.ones((2, 2)), truth))


def test_ssim_constant_images_known_answer() -> None:
    # Constant images: variances and covariance vanish, SSIM = (2ab + C1) / (a² + b² + C1).
    a, b, rng_ = 0.3, 0.5, 1.0
    x = np.full((16, 16), a)
    y = np.full((16, 16), b)
    c1 = (0.01 * rng_) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    assert metrics.ssim(x, y, rng_) == pytest.approx(expected, rel=1e-9)
    assert metrics.ssim(y, y, rng_) == pytest.approx(1.0)


def test_ssim_matches_skimage_on_random_data() -> None:
    rng = np.random.default_rng(3)
    truth = rng.random((40, 37))
    pred = np.clip(truth + 0.2 * rng.standard_normal(truth.shape), 0, 1)
    ref = structural_similarity(
        pred, truth, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert metrics.ssim(pred, truth, 1.0) == pytest.approx(ref, abs=1e-10)
    # the fixed data range matters: a larger range makes the stabilising constants larger
    ref2 = structural_similarity(
        pred, truth, data_range=2.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert metrics.ssim(pred, truth, 2.0) == pytest.approx(ref2, abs=1e-10)
    assert metrics.SSIM_WIN == 11


def test_ssim_mask_excludes_corrupted_region() -> None:
    rng = np.random.default_rng(4)
    truth = rng.random((48, 48))
    pred = truth + 0.05 * rng.standard_normal(truth.shape)
    corrupted = pred.copy()
    corrupted[:, 30:] = 10.0  # garbage in the right part
    mask = np.zeros_like(truth, bool)
    mask[:, :24] = True
    # with the mask, SSIM equals the clean image's over the same counted windows (they never see the garbage)
    assert metrics.ssim(corrupted, truth, 1.0, mask) == pytest.approx(metrics.ssim(pred, truth, 1.0, mask))
    assert metrics.ssim(corrupted, truth, 1.0) < metrics.ssim(pred, truth, 1.0, mask) - 0.2


def test_band_metrics_layout_and_mean() -> None:
    rng = np.random.default_rng(5)
    truth = rng.random((2, 20, 20))
    pred = truth + np.array([0.1, 0.3])[:, None, None]
    out = metrics.band_metrics(pred, truth, ["B11", "B12"], [1.0, 1.0])
    assert set(out) == {"rmse", "cc", "ssim"}
    assert out["rmse"]["B11"] == pytest.approx(0.1)
    assert out["rmse"]["B12"] == pytest.approx(0.3)
    assert out["rmse"]["mean"] == pytest.approx(0.2)
    assert out["cc"]["mean"] == pytest.approx(1.0)
