"""Gap-filled series (DESIGN §8): guide choice, baselines, training, the product and its exactness, STAC, evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine

from pipeline_lib.cog import write_cog
from pipeline_lib.errors import ModelError
from pipeline_lib.gapfill.evaluate import apply_masks, borrow_masks, evaluate_fill, score_date
from pipeline_lib.gapfill.model import FillParams, load_series_model, save_model, series_task, train_series
from pipeline_lib.gapfill.product import (
    PRODUCT_BANDS,
    SOURCE_NONE,
    SOURCE_OBSERVED,
    SOURCE_PREDICTED,
    fill_date,
    stac_collection,
    write_product,
)
from pipeline_lib.gapfill.series import (
    S2_BANDS,
    Series,
    bracketing_dates,
    choose_guides,
    day_numbers,
    linear_interpolation,
    nearest_clear,
    read_series,
)
from pipeline_lib.model.params import TrainParams

DATES = ("2021-01-01", "2021-01-13", "2021-01-25", "2021-02-06", "2021-02-18", "2021-03-02")
TRAIN = {"batch_size": 2, "patch_px": 32, "log_every": 1}


def _train(task: str) -> TrainParams:
    """The schema's settings of the task's base task with TRAIN."""
    return TrainParams.for_task(series_task(task).base, **TRAIN)


def make_series(
    h: int = 64, w: int = 64, seed: int = 0, cloudy: dict[int, tuple[slice, slice]] | None = None
) -> Series:
    """A smooth synthetic series: reflectance linear in time per pixel, S1 a function of the same surface."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = 0.08 + 0.1 * np.sin(3 * yy + 2 * xx) ** 2
    trend = 0.002 * np.cos(4 * xx)
    days = day_numbers(DATES) - day_numbers(DATES)[0]
    s2 = np.empty((len(DATES), 5, h, w), np.float32)
    s1 = np.empty((len(DATES), 2, h, w), np.float32)
    for i, t in enumerate(days):
        r = base + trend * t
        s2[i] = np.stack([r, 0.9 * r, 0.8 * r, 1.8 * r, 1.3 * r])
        s1[i] = np.stack([-15 + 20 * r, -22 + 20 * r]) + rng.normal(0, 0.1, (2, h, w))
    valid = np.ones((len(DATES), h, w), bool)
    for i, (sy, sx) in ({2: (slice(10, 40), slice(20, 50))} if cloudy is None else cloudy).items():
        valid[i, sy, sx] = False
    s2 = np.where(valid[:, None], s2, np.nan).astype(np.float32)
    return Series(DATES, s1, s2, np.ones_like(valid), valid, "EPSG:32633", (10.0, 0.0, 500000.0, 0.0, -10.0, 4650000.0))


# --- guide choice and baselines ---------------------------------------------------------------


def _brute_guides(usable: np.ndarray, days: np.ndarray, target: int, n: int, both: bool) -> np.ndarray:
    out = np.full((n, *usable.shape[1:]), -1)
    for y in range(usable.shape[1]):
        for x in range(usable.shape[2]):
            cand = [g for g in range(len(days)) if g != target and usable[g, y, x]]
            chosen: list[int] = []
            if both and n >= 2:
                before = [g for g in cand if days[g] < days[target]]
                after = [g for g in cand if days[g] > days[target]]
                b = max(before, key=lambda g: days[g]) if before else -1
                a = min(after, key=lambda g: days[g]) if after else -1
                out[0, y, x], out[1, y, x] = b, a
                chosen = [g for g in (b, a) if g >= 0]
            rest = sorted((g for g in cand if g not in chosen), key=lambda g: (abs(days[g] - days[target]), days[g]))
            for g in rest:
                empty = [s for s in range(n) if out[s, y, x] < 0]
                if not empty:
                    break
                out[empty[0], y, x] = g
    return out


@pytest.mark.parametrize("case", range(12))
def test_choose_guides_matches_brute_force(case: int) -> None:
    rng = np.random.default_rng(case)
    d = int(rng.integers(2, 8))
    days = np.sort(rng.choice(200, size=d, replace=False)).astype(float)
    usable = rng.random((d, 5, 6)) < 0.5
    target = int(rng.integers(d))
    n = int(rng.integers(1, 4))
    both = bool(rng.integers(2))
    got = choose_guides(usable, days, target, n, both)
    np.testing.assert_array_equal(got, _brute_guides(usable, days, target, n, both))
    chosen = got >= 0
    assert not (got == target).any()
    ys, xs = np.nonzero(chosen.any(axis=0))
    for y, x in zip(ys, xs, strict=True):
        gs = got[:, y, x][got[:, y, x] >= 0]
        assert usable[gs, y, x].all() and len(set(gs.tolist())) == len(gs)


def test_linear_interpolation_is_exact_on_linear_series_and_nearest_picks_nearest() -> None:
    s = make_series()
    days = day_numbers(s.dates)
    truth = make_series(cloudy={}).s2[2]
    lin = linear_interpolation(s.s2, s.s2_valid, days, 2)
    np.testing.assert_allclose(lin, truth, atol=1e-6)
    near = nearest_clear(s.s2, s.s2_valid, days, 2)
    np.testing.assert_array_equal(near, s.s2[1])  # equal gaps: the earlier date
    before, after = bracketing_dates(s.s2_valid, days, 0)
    assert (before == -1).all() and (after == 1).all()
    np.testing.assert_array_equal(linear_interpolation(s.s2, s.s2_valid, days, 0), s.s2[1])


# --- training and the product -----------------------------------------------------------------


@pytest.fixture(scope="module")
def models() -> dict[str, dict]:
    s = make_series()
    fill = FillParams.defaults(max_steps=2, seed=3)
    return {t: train_series(s, t, fill, _train(t)) for t in ("sar_to_visible", "sar_to_swir", "visible_to_swir")}


def test_training_is_reproducible_and_saved(models: dict[str, dict], tmp_path: Path) -> None:
    again = train_series(
        make_series(), "sar_to_visible", FillParams.defaults(max_steps=2, seed=3), _train("sar_to_visible")
    )
    for k, v in models["sar_to_visible"]["generator"].items():
        assert np.array_equal(v.numpy(), again["generator"][k].numpy()), k
    save_model(models["sar_to_visible"], tmp_path / "m.pt")
    back = load_series_model(tmp_path / "m.pt")
    assert back["band_t"] == ["B04", "B03", "B02"] and back["task"] == "sar_to_visible"
    with pytest.raises(ModelError, match="not found"):
        load_series_model(tmp_path / "missing.pt")


def test_training_needs_clear_guides() -> None:
    s = make_series()
    s = s.with_s2_valid(np.zeros_like(s.s2_valid))
    with pytest.raises(ModelError, match="two clear guides"):
        train_series(s, "sar_to_visible", FillParams.defaults(max_steps=1), _train("sar_to_visible"))


@pytest.mark.parametrize("route", ["direct", "chained"])
def test_observed_pixels_are_never_changed(models: dict[str, dict], route: str) -> None:
    s = make_series()
    s1_valid = s.s1_valid.copy()
    s1_valid[2, 30:40, 0:64] = False  # no S1 over part of the cloud: nothing can be predicted there
    s = Series(s.dates, np.where(s1_valid[:, None], s.s1, np.nan), s.s2, s1_valid, s.s2_valid, s.crs, s.transform)
    bands, source, unc = fill_date(s, 2, models, FillParams.defaults(), route, tile_px=64, overlap_px=0)
    clear = s.s2_valid[2]
    # bit for bit, NaN-free, on every clear pixel
    assert np.array_equal(bands[:, clear].view(np.uint32), s.s2[2][:, clear].view(np.uint32))
    assert (source[clear] == SOURCE_OBSERVED).all() and (unc[clear] == 0).all()
    cloud = ~clear
    none = cloud & ~s1_valid[2]
    assert (source[none] == SOURCE_NONE).all() and np.isnan(bands[:, none]).all()
    pred = cloud & s1_valid[2]
    assert (source[pred] == SOURCE_PREDICTED).all() and np.isfinite(bands[:, pred]).all()
    assert np.isfinite(unc[pred]).all() and (unc[pred] >= 0).all()
    # a date with no cloud comes back unchanged
    b0, src0, _ = fill_date(s, 0, models, FillParams.defaults(), route, tile_px=64, overlap_px=0)
    assert np.array_equal(b0.view(np.uint32), s.s2[0].view(np.uint32)) and (src0 == SOURCE_OBSERVED).all()


def test_blend_without_models_is_the_weighted_guides() -> None:
    s = make_series()
    none = dict.fromkeys(("sar_to_visible", "sar_to_swir", "visible_to_swir"))
    bands, source, _ = fill_date(s, 2, none, FillParams.defaults(), "direct", tile_px=64, overlap_px=0)
    cloud = ~s.s2_valid[2]
    lo = np.minimum(s.s2[1], s.s2[3])[:, cloud]
    hi = np.maximum(s.s2[1], s.s2[3])[:, cloud]
    assert ((bands[:, cloud] >= lo - 1e-6) & (bands[:, cloud] <= hi + 1e-6)).all()


def test_product_cog_stac_item_and_collection(models: dict[str, dict], tmp_path: Path) -> None:
    s = make_series()
    items = []
    for i in (1, 2):
        bands, source, unc = fill_date(s, i, models, FillParams.defaults(), "chained", tile_px=64, overlap_px=0)
        tif = tmp_path / "gapfill" / f"{s.dates[i]}.tif"
        write_product(tif, s.dates[i], bands, source, unc, s.crs, s.transform)
        with rasterio.open(tif) as ds:
            assert list(ds.descriptions) == list(PRODUCT_BANDS)
            back = ds.read()
        assert np.array_equal(back[:5], bands, equal_nan=True)
        assert np.array_equal(back[5], source.astype(np.float32))
        item = json.loads((tmp_path / "gapfill" / f"{s.dates[i]}.stac.json").read_text())
        assert item["properties"]["datetime"].startswith(s.dates[i])
        assert [b["name"] for b in item["assets"]["data"]["eo:bands"]] == list(PRODUCT_BANDS)
        items.append(tmp_path / "gapfill" / f"{s.dates[i]}.stac.json")
    out = tmp_path / "gapfill" / "collection.json"
    stac_collection(items, out, "demo")
    coll = json.loads(out.read_text())
    assert coll["type"] == "Collection" and coll["id"] == "demo-gapfill"
    assert [lk["href"] for lk in coll["links"] if lk["rel"] == "item"] == [f"./{s.dates[i]}.stac.json" for i in (1, 2)]
    t0, t1 = coll["extent"]["temporal"]["interval"][0]
    assert t0.startswith(s.dates[1]) and t1.startswith(s.dates[2])
    import pystac

    pystac.Collection.from_dict(coll)  # parses as STAC


def test_read_series_from_cogs(tmp_path: Path) -> None:
    s = make_series(h=32, w=32)
    s1p, s2p = {}, {}
    for i, d in enumerate(s.dates[:3]):
        s1p[d] = tmp_path / f"s1_{d}.tif"
        s2p[d] = tmp_path / f"s2_{d}.tif"
        tr = Affine(*s.transform)
        write_cog(s.s1[i], s1p[d], crs=s.crs, transform=tr, descriptions=["VV", "VH"], stac=False)
        data = np.concatenate([np.nan_to_num(s.s2[i]), s.s2_valid[i][None].astype(np.float32)])
        write_cog(data, s2p[d], crs=s.crs, transform=tr, descriptions=[*S2_BANDS, "valid"], stac=False)
    got = read_series(s1p, s2p)
    assert got.dates == s.dates[:3]
    np.testing.assert_array_equal(got.s2_valid, s.s2_valid[:3])
    np.testing.assert_array_equal(
        got.s2[got.s2_valid[:, None].repeat(5, 1)], s.s2[:3][s.s2_valid[:3, None].repeat(5, 1)]
    )


# --- evaluation ---------------------------------------------------------------------------------


def test_borrow_masks_uses_real_masks_of_other_dates_and_skips_neighbours() -> None:
    cloudy = {1: (slice(0, 20), slice(0, 64)), 4: (slice(40, 64), slice(0, 30))}
    s = make_series(cloudy=cloudy)
    masks = borrow_masks(s, seed=0, max_dates=8, min_clear=0.95, cloud_range=(0.01, 0.7))
    assert masks, "expected at least one evaluation date"
    clear_dates = [i for i in range(len(DATES)) if s.s2_valid[i].all()]
    picked = sorted(masks)
    for a, b in zip(picked, picked[1:], strict=False):
        assert clear_dates.index(b) - clear_dates.index(a) >= 2
    for e, (donor, mask) in masks.items():
        assert donor != e and donor in cloudy
        np.testing.assert_array_equal(mask, ~s.s2_valid[donor] & s.s2_valid[e])
    valid = apply_masks(s.s2_valid, masks)
    for e, (_, mask) in masks.items():
        assert not valid[e][mask].any() and valid[e][~mask].all()


def test_evaluation_scores_only_masked_pixels_and_linear_is_exact_on_linear_truth() -> None:
    s = make_series(cloudy={1: (slice(0, 20), slice(0, 64))})
    masks = borrow_masks(s, seed=0, max_dates=8, min_clear=0.95, cloud_range=(0.01, 0.7))
    res = evaluate_fill(s, masks, {}, FillParams.defaults(), "chained", tile_px=64, overlap_px=0)
    n_masked = sum(int(m.sum()) for _, m in masks.values())
    assert res["visible"]["all"]["pixels"] == n_masked
    assert res["visible"]["all"]["linear"]["rmse"]["mean"] < 1e-6
    assert res["visible"]["all"]["nearest"]["rmse"]["mean"] > 1e-3
    assert set(res["spearman_uncertainty_abs_error"]) == set()
    truth = s.s2[0, :3]
    mask = np.zeros(truth.shape[1:], bool)
    mask[:5, :5] = True
    out = score_date(truth, mask, {"blend": truth + 0.01}, ["B04", "B03", "B02"])
    assert out["n"] == 25 and abs(out["all"]["blend"]["rmse"]["mean"] - 0.01) < 1e-6


# --- configuration ------------------------------------------------------------------------------


def test_gapfill_config_defaults_and_errors(tmp_path: Path) -> None:
    import yaml

    from pipeline_lib.config import load_region
    from pipeline_lib.errors import ConfigError
    from pipeline_lib.gapfill.plan import gapfill_dates
    from pipeline_lib.gapfill.run import fill_params

    repo = Path(__file__).resolve().parents[1]
    demo = load_region("demo", repo / "config" / "regions")
    g = demo["gapfill"]
    assert g["swir"] == "chained" and g["variant"] == "no_uc_sg" and g["evaluate"]["max_dates"] == 8
    assert fill_params(g) == FillParams.defaults(max_steps=60)
    assert gapfill_dates(demo["dates"], g) == demo["dates"]
    assert gapfill_dates(demo["dates"], {**g, "range": ["2022-01-01", "2022-01-20"]}) == ["2022-01-04", "2022-01-16"]
    with pytest.raises(ConfigError, match="gapfill.dates"):
        gapfill_dates(demo["dates"], {**g, "dates": ["2020-01-01"]})
    raw = yaml.safe_load((repo / "config" / "regions" / "demo.yaml").read_text())
    raw["gapfill"]["swir"] = "sideways"
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match="gapfill.swir"):
        load_region("demo", tmp_path)


def test_report_section_and_workflow_metrics(models: dict[str, dict], tmp_path: Path) -> None:
    from pipeline_lib.gapfill.run import run_gapfill_evaluate
    from pipeline_lib.report.gapfill_part import gapfill_section

    s = make_series(cloudy={1: (slice(0, 20), slice(0, 64)), 4: (slice(30, 60), slice(10, 40))})
    tr = Affine(*s.transform)
    s1p, s2p, fills = {}, {}, []
    for i, d in enumerate(s.dates):
        s1p[d], s2p[d] = tmp_path / "s1" / f"{d}.tif", tmp_path / "s2" / f"{d}.tif"
        write_cog(s.s1[i], s1p[d], crs=s.crs, transform=tr, descriptions=["VV", "VH"], stac=False)
        data = np.concatenate([np.nan_to_num(s.s2[i]), s.s2_valid[i][None].astype(np.float32)])
        write_cog(data, s2p[d], crs=s.crs, transform=tr, descriptions=[*S2_BANDS, "valid"], stac=False)
        bands, source, unc = fill_date(s, i, models, FillParams.defaults(), "chained", tile_px=64, overlap_px=0)
        fills.append(tmp_path / "gapfill" / f"{d}.tif")
        write_product(fills[-1], d, bands, source, unc, s.crs, s.transform)
    ckpts = {}
    for task in ("sar_to_visible", "visible_to_swir"):
        ckpts[task] = tmp_path / f"{task}.pt"
        save_model(models[task], ckpts[task])
    from pipeline_lib.config import schema_defaults

    cfg = schema_defaults("gapfill")  # a validated block: the schema fills every key
    out = run_gapfill_evaluate(
        s1p, s2p, ckpts, fills, tmp_path / "gapfill" / "metrics.json", cfg, {"tile_px": 64, "overlap_px": 0}, 1
    )
    assert out["evaluation_dates"] and np.isfinite(out["spearman_uncertainty_abs_error"])
    assert out["products"][s.dates[1]]["share_predicted"] > 0 and out["products"][s.dates[0]]["share_predicted"] == 0
    html = gapfill_section(out, s2p, {d: f for d, f in zip(s.dates, fills, strict=True)})
    assert 'id="gapfill"' in html and "linear interpolation in time" in html and f"{s.dates[1]} after (SWIR)" in html
