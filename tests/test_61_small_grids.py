"""Small and odd grids (DESIGN §6): every epoch has patches, the schedule counts real steps,
training and tiled prediction work on grids from 32 px (smaller patch when needed, reflection-padded tiles).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
from conftest import stack_generator
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline_lib.errors import ModelError
from pipeline_lib.model.data import epoch_patches, fit_patch_px, load_stack, valid_origins
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.predict import fit_tile_px, predict_arrays, run_predict
from pipeline_lib.model.train import load_checkpoint, run_train

TINY = {"max_steps": 3, "batch_size": 4, "filters": 8, "checkpoint_every": 50, "log_every": 1}


def _p(**changes: object) -> TrainParams:
    """The synthetic stack's (sar_to_visible) schema defaults with TINY and ``changes``."""
    return TrainParams.for_task("sar_to_visible", **{**TINY, **changes})


@pytest.mark.parametrize("shape", [(64, 64), (100, 100), (101, 100), (100, 101), (127, 70)])
def test_every_epoch_has_patches_on_a_clear_grid(shape: tuple[int, int]) -> None:
    valid_g = np.ones((2, *shape), bool)
    valid_i = np.ones(shape, bool)
    counts = {len(epoch_patches(valid_i, valid_g, 64, seed=0, epoch=e, pairs=True)) for e in range(60)}
    # as many whole 64 px patches as fit, in every epoch (the shift stays within the slack)
    assert counts == {(shape[0] // 64) * (shape[1] // 64)}


@settings(max_examples=40, deadline=None)
@given(
    h=st.integers(32, 130),
    w=st.integers(32, 130),
    seed=st.integers(0, 1000),
    holes=st.lists(st.tuples(st.integers(0, 129), st.integers(0, 129)), max_size=6),
)
def test_epochs_never_empty_while_a_valid_patch_exists(h: int, w: int, seed: int, holes: list[tuple[int, int]]) -> None:
    valid_i = np.ones((h, w), bool)
    for y, x in holes:
        valid_i[min(y, h - 1), min(x, w - 1)] = False
    valid_g = np.ones((2, h, w), bool)
    patch = fit_patch_px(valid_i, valid_g, 64, 32, pairs=True)
    exists = valid_origins(valid_i, 32).any()
    assert (patch > 0) == bool(exists)
    if not patch:
        return
    for epoch in range(5):
        rows = epoch_patches(valid_i, valid_g, patch, seed, epoch, pairs=True)
        assert len(rows) > 0
        for y, x, j, k, _ in rows.tolist():
            assert j != k and valid_i[y : y + patch, x : x + patch].all()


def test_fragmented_mask_falls_back_to_any_valid_origin() -> None:
    # a clear 64 px square at (20, 30) in an otherwise cloudy 128 px grid: the shifted grid never holds it
    valid_i = np.zeros((128, 128), bool)
    valid_i[20:84, 30:94] = True
    valid_g = np.ones((2, 128, 128), bool)
    for epoch in range(10):
        rows = epoch_patches(valid_i, valid_g, 64, seed=1, epoch=epoch, pairs=True)
        assert rows[:, :2].tolist() == [[20, 30]]


def test_fit_patch_px() -> None:
    valid = np.ones((64, 64), bool)
    valid_g = np.ones((2, 64, 64), bool)
    assert fit_patch_px(valid, valid_g, 64, 32, pairs=True) == 64
    valid[0, 0] = False  # a 64 px patch no longer fits anywhere
    assert fit_patch_px(valid, valid_g, 64, 32, pairs=True) == 32
    assert fit_patch_px(np.zeros((64, 64), bool), valid_g, 64, 32, pairs=True) == 0
    assert fit_patch_px(None, np.ones((2, 40, 33), bool), 64, 32, pairs=False) == 32


def test_fit_tile_px() -> None:
    assert fit_tile_px((64, 64), 256, 64, 32) == (64, 32)
    assert fit_tile_px((101, 100), 256, 64, 32) == (128, 64)
    assert fit_tile_px((512, 512), 256, 64, 32) == (256, 64)
    assert fit_tile_px((32, 40), 128, 16, 32) == (64, 16)


@pytest.mark.parametrize("size", [64, 40])
def test_train_and_predict_on_a_small_grid(tmp_path: Path, size: int, caplog: pytest.LogCaptureFixture) -> None:
    # at 40 px the generator's cloud leaves no clear 32 px square for the guide pair: no cloud there
    stack, _ = stack_generator().make_stack(tmp_path, size=size, cloud=size > 40)
    ckpt = tmp_path / "tirsit.pt"
    with caplog.at_level(logging.WARNING):
        run_train(stack, "tirsit", ckpt, _p(patch_px=64), threads=1, device="cpu")
    ck = load_checkpoint(ckpt)
    assert ck["params"]["patch_px"] == 32  # the stack's swath edge leaves no clear 64 px patch
    assert ck["step"] == TINY["max_steps"]
    assert "training tirsit on 32 px patches" in caplog.text
    out = tmp_path / "pred.tif"
    run_predict(stack, "tirsit", ckpt, out, tmp_path / "unc.tif", _p(tile_px=256, overlap_px=64), 1, "cpu")
    import rasterio

    with rasterio.open(out) as ds:
        pred = ds.read()
    assert pred.shape[1:] == (size, size)
    data = load_stack(stack)
    assert np.isfinite(pred[:, data.valid_i]).all() and np.isnan(pred[:, ~data.valid_i]).all()


def test_no_valid_patch_is_a_clear_error(tmp_path: Path) -> None:
    stack, _ = stack_generator().make_stack(tmp_path, size=32)  # 3 invalid rows: no clear 32 px patch
    with pytest.raises(ModelError, match=r"no fully valid 32×32 patch .*grid too small or too cloudy"):
        run_train(stack, "tirsit", tmp_path / "m.pt", _p(patch_px=32), threads=1, device="cpu")
    assert not (tmp_path / "m.pt").exists()


def test_full_schedule_counts_steps(tmp_path: Path) -> None:
    stack, _ = stack_generator().make_stack(tmp_path, size=96, cloud=False)
    ckpt = tmp_path / "m.pt"
    params = _p(max_steps=None, patch_px=32, batch_size=2, epochs1=2, epochs2=1, disc_epochs=1, lr=1e-3, lr2=1e-4)
    run_train(stack, "tirsit", ckpt, params, threads=1, device="cpu")
    hist = load_checkpoint(ckpt)["history"]
    data = load_stack(stack)
    spe = -(-len(epoch_patches(data.valid_i, data.valid_g, 32, 0, 0, True)) // 2)
    assert len(hist) == 3 * spe
    assert [h["lr"] for h in hist] == [1e-3] * (2 * spe) + [1e-4] * spe
    assert all(np.isfinite(h["d"]) for h in hist[:spe]) and all(np.isnan(h["d"]) for h in hist[spe:])


def test_predict_arrays_small_grid_baseline_unchanged(tmp_path: Path) -> None:
    stack, _ = stack_generator().make_stack(tmp_path, size=40)
    data = load_stack(stack)
    pred, unc = predict_arrays(data, "blend", _p(mean_filter=3, k=1.0, tile_px=256, overlap_px=64, levels=5))
    assert pred.shape[1:] == (40, 40) and unc is not None
