"""Ranked uncertainty of ``selected`` (DESIGN §6, uncertainty): shape and nodata, units kept, monotone in its
signals, schema defaults; the select path that uses it never sees date i (tests/test_62_model_select.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline_lib.config import schema_defaults
from pipeline_lib.errors import ConfigError, ModelError
from pipeline_lib.model.baselines import guide_weights, weighted_spread
from pipeline_lib.model.data import StackData
from pipeline_lib.model.uncertainty import (
    RankedFromStack,
    predicted_change,
    rank01,
    ranked_uncertainty,
    stack_ranked_uncertainty,
)

H = W = 40


def _stack(change: np.ndarray, seed: int = 0) -> StackData:
    """Two guides; S_i = guide 0's source plus ``change`` (y, x) on every channel; T follows S."""
    rng = np.random.default_rng(seed)
    s_g = rng.uniform(0.2, 0.6, (2, 2, H, W)).astype(np.float32)
    s_i = (s_g[0] + change[None]).astype(np.float32)
    t_phys = (0.05 + 0.3 * s_g[:, :1] + rng.normal(0, 0.01, (2, 1, H, W))).astype(np.float32)
    t_phys = np.concatenate([t_phys, 0.8 * t_phys], axis=1)
    valid_i = np.ones((H, W), bool)
    valid_i[:3, :3] = False
    return StackData(
        s_i=s_i,
        s_g=s_g,
        t_g=t_phys,
        valid_i=valid_i,
        valid_g=np.ones((2, H, W), bool),
        band_s=["VV", "VH"],
        band_t=["B11", "B12"],
        source_range=np.array([[0.0, 1.0], [0.0, 1.0]]),
        target_range=np.array([[0.0, 1.0], [0.0, 1.0]]),
        task="visible_to_swir",
        experiment="t",
        guide_dates=["2021-05-15", "2021-07-15"],
        target_date="2021-06-15",
        crs="EPSG:32631",
        transform=(10.0, 0.0, 0.0, 0.0, -10.0, 0.0),
        t_g_phys=t_phys,
    )


def _ranked(data: StackData, spread: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    w = guide_weights(data.s_i, data.s_g, data.valid_i, data.valid_g, 11, 10.0)
    sp = weighted_spread(data.t_g_phys, w) if spread is None else spread
    return ranked_uncertainty(sp, data, w, 5), sp


def test_shape_nodata_and_units_of_the_spread() -> None:
    data = _stack(np.zeros((H, W)))
    u, sp = _ranked(data)
    assert u.shape == sp.shape and u.dtype == np.float32
    assert np.isnan(u[:, :3, :3]).all() and np.isfinite(u[:, data.valid_i]).all()
    for b in range(u.shape[0]):  # each band keeps the spread's range (its values are the spread's quantiles)
        ok = data.valid_i
        assert sp[b][ok].min() - 1e-7 <= u[b][ok].min() and u[b][ok].max() <= sp[b][ok].max() + 1e-7
    # scaling the spread scales the uncertainty: reflectance units are kept
    u2, _ = _ranked(data, 2.0 * sp)
    np.testing.assert_allclose(u2[:, data.valid_i], 2.0 * u[:, data.valid_i], rtol=1e-5)


def test_nan_spread_stays_nan_and_an_empty_grid_is_all_nan() -> None:
    data = _stack(np.zeros((H, W)))
    _, sp = _ranked(data)
    sp = sp.copy()
    sp[:, 10, 10] = np.nan
    u, _ = _ranked(data, sp)
    assert np.isnan(u[:, 10, 10]).all() and np.isfinite(u[:, 11, 11]).all()
    u_none, _ = _ranked(data, np.full_like(sp, np.nan))
    assert np.isnan(u_none).all()


def test_monotone_in_the_source_change() -> None:
    """A block whose source changed since the guide dates is ranked more uncertain than the rest,
    with the spread the same everywhere; and more change there never lowers it."""
    change = np.zeros((H, W))
    change[20:32, 20:32] = 0.2
    data = _stack(change)
    flat = np.full((2, H, W), 0.01, np.float32)
    u, _ = _ranked(data, flat + np.random.default_rng(1).uniform(0, 1e-4, flat.shape).astype(np.float32))
    inside, outside = u[:, 22:30, 22:30].mean(), u[:, 5:15, 5:15].mean()
    assert inside > outside
    pc = predicted_change(
        data, guide_weights(data.s_i, data.s_g, data.valid_i, data.valid_g, 11, 10.0), data.valid_i, 5
    )
    assert pc[22:30, 22:30].mean() > pc[5:15, 5:15].mean()


def test_rank01_is_a_scaled_rank_on_the_valid_pixels() -> None:
    x = np.array([[3.0, 1.0], [2.0, 9.0]])
    ok = np.array([[True, True], [True, False]])
    r = rank01(x, ok)
    np.testing.assert_allclose(r[ok], [5 / 6, 1 / 6, 3 / 6])
    assert np.isnan(r[1, 1])


def test_config_defaults_and_checks(tmp_path: Path) -> None:
    d = schema_defaults("select")
    assert d["uncertainty"] == "ranked" and d["uncertainty_px"] == 5
    with pytest.raises(ConfigError, match="uncertainty_px"):
        RankedFromStack(tmp_path / "s.nc", 11, 10.0, 0)
    data = _stack(np.zeros((H, W)))
    with pytest.raises(ModelError, match="grid"):
        stack_ranked_uncertainty(np.zeros((2, H - 1, W), np.float32), data, 11, 10.0, 5)


def test_beta_fitted_on_a_pixel_subset_predicts_the_same_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a large grid β is fitted on at most FIT_PIXELS pixels per guide pair (memory bounded on a tile)."""
    import pipeline_lib.model.uncertainty as unc

    data = _stack(np.random.default_rng(4).normal(0, 0.05, (H, W)), seed=4)
    w = guide_weights(data.s_i, data.s_g, data.valid_i, data.valid_g, 11, 10.0)
    full = predicted_change(data, w, data.valid_i, 5)
    monkeypatch.setattr(unc, "FIT_PIXELS", 400)  # of 1600
    sub = predicted_change(data, w, data.valid_i, 5)
    from scipy import stats

    # the rule uses the signal's ranks; on this small smooth chip a quarter of the pixels keeps most of them
    assert stats.spearmanr(full.ravel(), sub.ravel())[0] > 0.8
    assert np.isfinite(sub).all() and sub.shape == full.shape


def test_quantiles_equal_numpy_on_every_pixel() -> None:
    from pipeline_lib.model.uncertainty import _quantiles

    rng = np.random.default_rng(7)
    values, q = rng.gamma(2.0, 0.01, 999), rng.random(300)
    np.testing.assert_allclose(_quantiles(values, q), np.quantile(values, q), rtol=0, atol=1e-15)
    assert _quantiles(np.array([0.3]), np.array([0.0, 0.5, 1.0])).tolist() == [0.3, 0.3, 0.3]
