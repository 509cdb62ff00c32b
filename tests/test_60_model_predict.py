"""Prediction: tiling window, guide weights (eq. 11 and its N-guide softmax), baselines, seams, no leakage,
and the quality bar: TIRSIT beats the no-network blend on the synthetic stack."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from conftest import stack_generator

from pipeline_lib.errors import ModelError
from pipeline_lib.model.baselines import guide_weights, weighted_spread
from pipeline_lib.model.data import load_stack
from pipeline_lib.model.evaluate import run_evaluate
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.predict import blend_window, predict_arrays, predict_tiled, run_predict, tile_starts
from pipeline_lib.model.train import build_generator, load_checkpoint, run_train


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """128 px stack, its truth (deleted while training and predicting: no leakage) and a trained TIRSIT."""
    d = tmp_path_factory.mktemp("pred")
    stack, truth = stack_generator().make_stack(d, size=128)
    kept = d / "kept_truth.tif"
    truth.rename(kept)  # the truth file is absent while training and prediction run
    ckpt = d / "tirsit.pt"
    params = TrainParams.for_task("sar_to_visible", max_steps=60, batch_size=16, patch_px=32, filters=16)
    run_train(stack, "tirsit", ckpt, params, threads=2, device="cpu")
    return stack, kept, ckpt


def test_tile_starts_cover_and_window() -> None:
    assert tile_starts(100, 64, 16) == [0, 36]
    assert tile_starts(64, 64, 16) == [0]
    assert tile_starts(200, 64, 16) == [0, 48, 96, 136]
    w = blend_window(64, 16)
    assert w.shape == (64, 64) and w.min() > 0 and w[32, 32] == 1.0
    assert np.allclose(w, w.T) and np.allclose(w, w[::-1, ::-1])


def test_predict_tiled_is_exact_for_pointwise_functions() -> None:
    rng = np.random.default_rng(0)
    img = rng.random((2, 150, 97)).astype(np.float32)
    out = predict_tiled(lambda t: 3 * t[:, :1] - t[:, 1:], img, 1, tile=64, overlap=16)
    np.testing.assert_allclose(out[0], 3 * img[0] - img[1], atol=1e-5)


def test_guide_weights_match_eq11_and_generalise() -> None:
    rng = np.random.default_rng(1)
    s_i = rng.random((2, 20, 20)).astype(np.float32)
    s_g = rng.random((2, 2, 20, 20)).astype(np.float32)
    valid = np.ones((20, 20), bool)
    vg = np.ones((2, 20, 20), bool)
    w = guide_weights(s_i, s_g, valid, vg, size=5, k=10.0)
    from scipy import ndimage

    a = [
        np.mean(
            [np.abs(ndimage.uniform_filter((s_i - s_g[g])[c].astype(np.float64), 5, mode="reflect")) for c in range(2)],
            axis=0,
        )
        for g in range(2)
    ]
    p_j = 1 / (1 + np.exp(-10.0 * (a[1] - a[0])))  # eq. 11: |f_s*S_ik| − |f_s*S_ij|
    np.testing.assert_allclose(w[0], p_j, atol=1e-5)
    np.testing.assert_allclose(w.sum(axis=0), 1.0, atol=1e-6)
    # an invalid guide gets weight 0; no valid guide → NaN
    vg[1, :5] = False
    vg[0, :2] = False
    w2 = guide_weights(s_i, s_g, valid, vg, size=5, k=10.0)
    assert np.all(w2[0, 2:5] == 1.0) and np.isnan(w2[:, :2]).all()
    # three guides: softmax weights, and the spread reduces to |R_j − R_k| for two
    w3 = guide_weights(s_i, np.concatenate([s_g, s_g[:1]]), valid, np.ones((3, 20, 20), bool), 5, 10.0)
    np.testing.assert_allclose(w3.sum(axis=0), 1.0, atol=1e-6)
    np.testing.assert_allclose(w3[0], w3[2], atol=1e-6)
    r = rng.random((2, 3, 20, 20)).astype(np.float32)
    np.testing.assert_allclose(weighted_spread(r, w), np.abs(r[0] - r[1]), atol=1e-6)


def test_baselines_and_uncertainty_rasters(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    stack, _, _ = trained
    data = load_stack(stack)
    p = TrainParams.for_task(data.task)
    run_predict(stack, "neighbour_j", None, tmp_path / "nj.tif", None, p, 1, "cpu")
    run_predict(stack, "blend", None, tmp_path / "b.tif", tmp_path / "bu.tif", p, 1, "cpu")
    with rasterio.open(tmp_path / "nj.tif") as src:
        nj = src.read()
        assert list(src.descriptions) == ["B04", "B03", "B02"]
        assert src.crs.to_epsg() == 32633 and src.transform.a == 10.0
    ok = data.valid_i
    np.testing.assert_allclose(nj[:, ok], data.t_g_phys[0][:, ok])
    assert np.isnan(nj[:, ~ok]).all()
    with rasterio.open(tmp_path / "b.tif") as src:
        blend = src.read()
    # the blend lies between the two neighbours wherever both are valid
    both = ok & data.valid_g.all(axis=0)
    lo = np.minimum(data.t_g_phys[0], data.t_g_phys[1])[:, both]
    hi = np.maximum(data.t_g_phys[0], data.t_g_phys[1])[:, both]
    assert np.all(blend[:, both] >= lo - 1e-6) and np.all(blend[:, both] <= hi + 1e-6)
    with pytest.raises(ModelError, match="uncertainty"):
        run_predict(stack, "neighbour_k", None, tmp_path / "nk.tif", tmp_path / "x.tif", p, 1, "cpu")
    with pytest.raises(ModelError, match="checkpoint"):
        run_predict(stack, "tirsit", None, tmp_path / "t.tif", None, p, 1, "cpu")
    with pytest.raises(ModelError, match="parameters are for 'visible_to_swir'"):
        run_predict(stack, "blend", None, tmp_path / "b2.tif", None, TrainParams.for_task("visible_to_swir"), 1, "cpu")


def test_stack_never_holds_the_truth(trained: tuple[Path, Path, Path]) -> None:
    stack, truth, _ = trained
    with xr.open_dataset(stack) as ds:
        names = set(ds.variables)
    assert not any(n.startswith("T_i") for n in names)
    assert (truth.parent / "truth.tif").exists() is False  # training and prediction ran without it


def test_tiling_seams_no_worse_than_elsewhere(trained: tuple[Path, Path, Path]) -> None:
    stack, truth, ckpt = trained
    data = load_stack(stack)
    ck = load_checkpoint(ckpt)
    p = TrainParams.from_checkpoint(ck["params"], str(ckpt)).replace(tile_px=64, overlap_px=16)
    g = build_generator("tirsit", 2, 3, p)
    g.load_state_dict(ck["generator"])
    tiled, _ = predict_arrays(data, "tirsit", p, g)
    whole, _ = predict_arrays(data, "tirsit", p.replace(tile_px=128, overlap_px=0), g)
    with rasterio.open(truth) as src:
        t = src.read()[:3]
    err = np.abs(tiled - t).mean(axis=0)  # NaN where S_i is invalid
    # seams: the interior tile edges (starts 0, 48, 64 → edges at 48, 64, 112)
    edges = sorted({s for s in tile_starts(128, 64, 16) if s > 0} | {s + 64 for s in tile_starts(128, 64, 16)} - {128})
    seam = np.zeros((128, 128), bool)
    for e in edges:
        seam[max(e - 1, 0) : e + 1, :] = True
        seam[:, max(e - 1, 0) : e + 1] = True
    ok = np.isfinite(err)
    seam_err, other_err = err[seam & ok].mean(), err[~seam & ok].mean()
    print("seam", seam_err, other_err, "tiled-untiled", np.nanmean(np.abs(tiled - whole)))
    assert seam_err <= 1.15 * other_err, (seam_err, other_err)
    # tiled and untiled differ (eq. 1 normalises per tile) but by less than the error itself
    d = np.nanmean(np.abs(tiled - whole))
    assert 0 < d < 0.5 * np.nanmean(np.abs(whole - t)), d


def test_tirsit_beats_blend_and_neighbours(trained: tuple[Path, Path, Path], tmp_path: Path) -> None:
    stack, truth, ckpt = trained
    preds = {}
    pp = TrainParams.for_task("sar_to_visible", tile_px=64, overlap_px=16)
    for v in ("neighbour_j", "neighbour_k", "blend"):
        run_predict(stack, v, None, tmp_path / f"{v}.tif", None, pp, 2, "cpu")
        preds[v] = tmp_path / f"{v}.tif"
    run_predict(stack, "tirsit", ckpt, tmp_path / "tirsit.tif", tmp_path / "tirsit_u.tif", pp, 2, "cpu")
    preds["tirsit"] = tmp_path / "tirsit.tif"
    run_evaluate(truth, preds, stack, tmp_path / "m.json", tmp_path / "m.csv", {"tirsit": tmp_path / "tirsit_u.tif"})
    m = json.loads((tmp_path / "m.json").read_text())["synthetic"]
    rm = {v: m[v]["rmse"]["mean"] for v in preds}
    rc = {v: m["changed"][v]["rmse"]["mean"] for v in preds}
    assert rm["blend"] < min(rm["neighbour_j"], rm["neighbour_k"])
    print("rmse", rm, "changed", rc, m["info"])
    assert rm["tirsit"] < rm["blend"], rm
    assert rc["tirsit"] < rc["blend"], rc
    assert m["info"]["spearman_uncertainty_abs_error"]["tirsit"] > 0.1
