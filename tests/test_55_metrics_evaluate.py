"""run_evaluate: metrics.json layout (CONTRACTS.md), changed pixels, counts, SSIM ranges, Spearman, CSV."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from conftest import stack_generator

from pipeline_lib.cog import write_cog
from pipeline_lib.model import run_evaluate, run_predict
from pipeline_lib.model.evaluate import changed_mask
from pipeline_lib.model.params import TrainParams


def test_changed_mask_top_quartile() -> None:
    truth = np.zeros((1, 4, 4))
    blend = np.arange(16, dtype=float).reshape(1, 4, 4)
    valid = np.ones((4, 4), bool)
    m, thr = changed_mask(truth, blend, valid)
    assert m.sum() == 4 and thr == pytest.approx(11.25) and m[3].all()


def test_run_evaluate_layout_and_known_answers(tmp_path: Path) -> None:
    stack, truth = stack_generator().make_stack(tmp_path / "s", size=64)
    for v in ("neighbour_j", "neighbour_k", "blend"):
        run_predict(
            stack,
            v,
            None,
            tmp_path / f"{v}.tif",
            None,
            TrainParams.for_task("sar_to_visible", mean_filter=11),
            1,
            "cpu",
        )
    with rasterio.open(truth) as src:
        t = src.read()[:3]
        crs, transform = src.crs, src.transform
    # a perfect prediction and an "uncertainty" equal to the blend's absolute error
    write_cog(t, tmp_path / "perfect.tif", crs=crs, transform=transform, descriptions=["B04", "B03", "B02"])
    with rasterio.open(tmp_path / "blend.tif") as src:
        blend = src.read()
    write_cog(
        np.abs(blend - t),
        tmp_path / "u.tif",
        crs=crs,
        transform=Affine(*transform[:6]),
        descriptions=["B04", "B03", "B02"],
    )
    preds = {v: tmp_path / f"{v}.tif" for v in ("neighbour_j", "neighbour_k", "blend")}
    preds["perfect"] = tmp_path / "perfect.tif"
    run_evaluate(truth, preds, stack, tmp_path / "m.json", tmp_path / "m.csv", {"blend": tmp_path / "u.tif"})
    m = json.loads((tmp_path / "m.json").read_text())
    assert list(m) == ["synthetic"]
    e = m["synthetic"]
    assert set(e) == {*preds, "changed", "info"} and set(e["changed"]) == set(preds)
    for v in preds:
        assert set(e[v]) == {"rmse", "ssim", "cc"}
        assert set(e[v]["rmse"]) == {"B04", "B03", "B02", "mean"}
    assert e["perfect"]["rmse"]["mean"] == 0.0 and e["perfect"]["ssim"]["mean"] == pytest.approx(1.0)
    assert e["perfect"]["cc"]["mean"] == pytest.approx(1.0)
    assert e["blend"]["rmse"]["mean"] < min(e["neighbour_j"]["rmse"]["mean"], e["neighbour_k"]["rmse"]["mean"])
    # changed pixels are where the blend errs most: its RMSE there is larger than overall
    assert e["changed"]["blend"]["rmse"]["mean"] > e["blend"]["rmse"]["mean"]
    info = e["info"]
    assert info["valid_pixels"] + info["excluded_pixels"] == 64 * 64
    assert info["excluded_pixels"] >= 3 * 64  # the invalid swath edge rows of the target date
    assert info["changed_pixels"] == pytest.approx(info["valid_pixels"] / 4, rel=0.05)
    assert info["ssim_data_range"] == {"B04": 0.5, "B03": 0.5, "B02": 0.5}
    assert info["spearman_uncertainty_abs_error"]["blend"] == pytest.approx(1.0)
    rows = list(csv.DictReader((tmp_path / "m.csv").open()))
    assert len(rows) == 2 * len(preds) * 3 * 4
    row = next(r for r in rows if r["variant"] == "perfect" and r["metric"] == "rmse" and r["band"] == "mean")
    assert row["subset"] == "all" and float(row["value"]) == 0.0
