"""Training loop: batching, valid-only patches, schedule cap, determinism, resume, checkpoint content."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import stack_generator

from pipeline_lib.errors import ModelError
from pipeline_lib.model.data import epoch_patches, load_stack, patch_origins
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.train import load_checkpoint, make_batch, run_train, select_device

TINY = {"max_steps": 6, "batch_size": 4, "patch_px": 32, "filters": 8, "checkpoint_every": 2, "log_every": 1}


def _p(**changes: object) -> TrainParams:
    """The synthetic stack's (sar_to_visible) schema defaults with TINY and ``changes``."""
    return TrainParams.for_task("sar_to_visible", **{**TINY, **changes})


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    s, _ = stack_generator().make_stack(tmp_path_factory.mktemp("stack"), size=96)
    return s


def _weights(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["generator"]


def test_patch_origins_only_fully_valid() -> None:
    valid = np.ones((10, 10), bool)
    valid[7, 2] = False
    got = patch_origins(valid, 4)
    assert sorted(map(tuple, got.tolist())) == [(0, 0), (0, 4), (4, 4)]  # (4, 0) holds the invalid pixel


def test_epoch_patches_valid_pairs_and_seeded(stack: Path) -> None:
    data = load_stack(stack)
    rows = epoch_patches(data.valid_i, data.valid_g, 32, seed=3, epoch=0, pairs=True)
    assert len(rows) > 0
    for y, x, j, k, code in rows.tolist():
        assert j != k and 0 <= code < 8
        ok = data.valid_i & data.valid_g[j] & data.valid_g[k]
        assert ok[y : y + 32, x : x + 32].all()
    np.testing.assert_array_equal(rows, epoch_patches(data.valid_i, data.valid_g, 32, seed=3, epoch=0, pairs=True))
    assert not np.array_equal(rows, epoch_patches(data.valid_i, data.valid_g, 32, seed=3, epoch=1, pairs=True))


def test_make_batch_is_the_batched_jk_ij_ik_pass(stack: Path) -> None:
    data = load_stack(stack)
    rows = np.array([[40, 40, 0, 1, 0], [40, 8, 1, 0, 0]])
    b = make_batch(data, rows, 32, pix2pix=False)
    n = len(rows)
    assert b["x"].shape == (3 * n, 2, 32, 32) and b["guide"].shape == (2 * n, 3, 32, 32)
    assert b["guide_index"].tolist() == [0, 1, 2, 3, 0, 1]
    b["guide"] = b["guide"][b["guide_index"]]  # the guide of every pass
    sl = (slice(40, 72), slice(40, 72))
    s_i, s_j, s_k = data.s_i[:, sl[0], sl[1]], data.s_g[0][:, sl[0], sl[1]], data.s_g[1][:, sl[0], sl[1]]
    t_j, t_k = data.t_g[0][:, sl[0], sl[1]], data.t_g[1][:, sl[0], sl[1]]
    np.testing.assert_allclose(b["x"][0], s_j - s_k)  # jk block first
    np.testing.assert_allclose(b["x"][n], s_i - s_j)  # then ij
    np.testing.assert_allclose(b["x"][2 * n], s_i - s_k)  # then ik
    np.testing.assert_allclose(b["guide"][0], t_k)  # T_j = T_jk + T_k: guide of jk is T_k
    np.testing.assert_allclose(b["guide"][n], t_j)
    np.testing.assert_allclose(b["guide"][2 * n], t_k)
    np.testing.assert_allclose(b["t_jk"][0], t_j - t_k)
    # the second row swaps the guides: the reverse pair kj
    np.testing.assert_allclose(b["t_jk"][1], data.t_g[1][:, 40:72, 8:40] - data.t_g[0][:, 40:72, 8:40])


def test_device_cuda_absent_is_an_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    with pytest.raises(ModelError, match="cuda"):
        select_device("cuda")
    assert select_device("auto").type == "cpu"


def test_deterministic_capped_and_checkpoint_content(stack: Path, tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    run_train(stack, "tirsit", a, _p(), threads=1, device="cpu")
    run_train(stack, "tirsit", b, _p(), threads=1, device="cpu")
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    ck = load_checkpoint(a)
    assert ck["step"] == 6 and len(ck["history"]) == 6 and ck["complete"]
    assert ck["band_s"] == ["VV", "VH"] and ck["band_t"] == ["B04", "B03", "B02"]
    assert ck["source_range"] == [[-25.0, 0.0], [-25.0, 0.0]] and ck["target_range"][0] == [0.0, 0.5]
    assert ck["params"]["lambda_con"] == 2.0 and ck["params"]["max_steps"] == 6
    assert ck["discriminator"] is not None and "torch_rng" in ck
    # capped schedule: lr2 from 60/80 of the run on, D trains for the first 60/80 of it
    lrs = [h["lr"] for h in ck["history"]]
    assert lrs == [5e-4] * 4 + [2.5e-4] * 2  # round(6·60/80) = 4 (banker's rounding of 4.5)
    assert [np.isfinite(h["d"]) for h in ck["history"]] == [True] * 4 + [False] * 2
    assert all(np.isfinite(h["rec"]) and np.isfinite(h["con"]) for h in ck["history"])
    assert not (tmp_path / "a.pt.partial").exists()


class _Kill(logging.Handler):
    """Raises (like a SIGTERM'd job) right after the first periodic checkpoint was written."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("checkpoint:"):
            raise KeyboardInterrupt


def test_killed_training_resumes_to_identical_weights(stack: Path, tmp_path: Path) -> None:
    ref, out = tmp_path / "ref.pt", tmp_path / "out.pt"
    params = _p(checkpoint_every=1)
    run_train(stack, "tirsit_noadv", ref, params, threads=1, device="cpu")
    log = logging.getLogger("test_60_kill")
    log.setLevel(logging.INFO)
    log.addHandler(_Kill())
    with pytest.raises(KeyboardInterrupt):
        run_train(stack, "tirsit_noadv", out, params, threads=1, device="cpu", log=log)
    partial = tmp_path / "out.pt.partial"
    assert partial.is_file() and not out.exists()
    assert 0 < load_checkpoint(partial)["step"] < 6
    shutil.copy(partial, tmp_path / "kept.partial")
    messages: list[str] = []
    log2 = logging.getLogger("test_60_resume")
    log2.setLevel(logging.INFO)
    log2.addHandler(type("H", (logging.Handler,), {"emit": lambda self, r: messages.append(r.getMessage())})())
    run_train(stack, "tirsit_noadv", out, params, threads=1, device="cpu", log=log2)
    assert any(m.startswith("resuming") for m in messages)
    assert not partial.exists()
    wr, wo = _weights(ref), _weights(out)
    assert all(torch.equal(wr[k], wo[k]) for k in wr)
    assert len(load_checkpoint(out)["history"]) == 6
    # a partial checkpoint written with other parameters is refused: training starts afresh
    shutil.copy(tmp_path / "kept.partial", tmp_path / "other.pt.partial")
    messages.clear()
    run_train(stack, "tirsit_noadv", tmp_path / "other.pt", params.replace(seed=1), threads=1, device="cpu", log=log2)
    assert any("other variant/params: starting afresh" in m for m in messages)
    assert not any(m.startswith("resuming") for m in messages)


def test_pix2pix_and_no_sg_train(stack: Path, tmp_path: Path) -> None:
    run_train(stack, "pix2pix", tmp_path / "p.pt", _p(max_steps=3), threads=1, device="cpu")
    ck = load_checkpoint(tmp_path / "p.pt")
    assert ck["variant"] == "pix2pix" and all(np.isfinite(h["adv"]) for h in ck["history"])
    run_train(stack, "no_sg", tmp_path / "n.pt", _p(max_steps=3), threads=1, device="cpu")
    ck = load_checkpoint(tmp_path / "n.pt")
    assert ck["discriminator"] is None and not any(k.startswith("enc_guide") for k in ck["generator"])


def test_three_guides_train_and_predict(tmp_path: Path) -> None:
    from pipeline_lib.model.predict import run_predict

    stack, _ = stack_generator().make_stack(tmp_path / "s3", size=96, n_guides=3)
    data = load_stack(stack)
    assert data.n_guides == 3
    rows = epoch_patches(data.valid_i, data.valid_g, 32, seed=0, epoch=0, pairs=True)
    assert {(j, k) for _, _, j, k, _ in rows.tolist()} <= {(a, b) for a in range(3) for b in range(3) if a != b}
    run_train(stack, "tirsit", tmp_path / "t.pt", _p(max_steps=3), threads=1, device="cpu")
    run_predict(
        stack,
        "tirsit",
        tmp_path / "t.pt",
        tmp_path / "p.tif",
        tmp_path / "u.tif",
        _p(tile_px=64, overlap_px=16),
        1,
        "cpu",
    )
    import rasterio

    with rasterio.open(tmp_path / "p.tif") as src, rasterio.open(tmp_path / "u.tif") as usrc:
        pred, unc = src.read(), usrc.read()
    ok = data.valid_i
    assert np.isfinite(pred[:, ok]).all() and np.isnan(pred[:, ~ok]).all()
    assert (unc[:, ok] >= 0).all()
