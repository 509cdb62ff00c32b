"""Method choice without the truth (DESIGN §6, method choice): gap-matched validation plan, margin rule, and the
whole select path run with the test's date i unreadable (no leakage), then scored by evaluation."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pytest
import rasterio
from hypothesis import given, settings
from hypothesis import strategies as st
from workflow_utils import make_workdir, snakemake

from pipeline_lib.cog import write_cog
from pipeline_lib.config import schema_defaults
from pipeline_lib.errors import ConfigError
from pipeline_lib.grid import make_centered_grid
from pipeline_lib.model.evaluate import run_evaluate
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.predict import run_predict
from pipeline_lib.model.select import (
    SelectParams,
    aggregate_validation,
    choose_method,
    plan_validation,
    run_select,
    run_validation,
)
from pipeline_lib.model.train import run_train
from pipeline_lib.model.uncertainty import RankedFromStack
from pipeline_lib.stacks import run_stack

MONTHS = [f"2021-{m:02d}-15" for m in range(2, 11)]


def test_plan_is_gap_matched_and_never_touches_the_target() -> None:
    plan = plan_validation("2021-06-15", ["2021-05-15", "2021-07-15"], MONTHS, 3)
    assert [v.name for v in plan] == ["val1", "val2", "val3"]
    for v in plan:
        assert "2021-06-15" not in (v.target, *v.guides)
        # one month before and one after, as the test (month lengths differ by ≤ 3 days)
        assert v.gap_mismatch_days <= 3
        t = dt.date.fromisoformat(v.target)
        offs = sorted((dt.date.fromisoformat(g) - t).days for g in v.guides)
        assert offs[0] < 0 < offs[1]
    # the naive leave-one-out pair (predict a guide from the others) would need 2-month gaps: not chosen
    assert all(v.target not in ("2021-05-15", "2021-07-15") or v.gap_mismatch_days <= 3 for v in plan)
    assert len({v.target for v in plan}) == 3
    assert plan_validation("2021-06-15", ["2021-05-15", "2021-07-15"], MONTHS, 0) == []
    # too few dates other than the target: no validation experiment is possible
    assert plan_validation("2021-06-15", ["2021-05-15", "2021-07-15"], MONTHS[3:6], 2) == []


@settings(max_examples=60, deadline=None)
@given(
    days=st.lists(st.integers(0, 400), min_size=3, max_size=9, unique=True),
    n_guides=st.integers(2, 3),
    n=st.integers(1, 4),
    data=st.data(),
)
def test_plan_property_never_uses_the_target(days: list[int], n_guides: int, n: int, data: st.DataObject) -> None:
    dates = [(dt.date(2020, 1, 1) + dt.timedelta(days=d)).isoformat() for d in sorted(days)]
    if len(dates) < n_guides + 1:
        return
    target = data.draw(st.sampled_from(dates))
    guides = data.draw(st.lists(st.sampled_from([d for d in dates if d != target]), min_size=n_guides, unique=True))
    guides = guides[:n_guides]
    if len(guides) < n_guides:
        return
    plan = plan_validation(target, guides, dates, n)
    assert len(plan) <= n and len(plan) <= max(0, len(dates) - 1)
    costs = [v.gap_mismatch_days for v in plan]
    assert costs == sorted(costs)
    for v in plan:
        assert target not in (v.target, *v.guides) and v.target not in v.guides
        assert len(v.guides) == n_guides and set(v.guides) <= set(dates)


def test_margin_rule_keeps_the_blend_unless_clearly_beaten() -> None:
    table = {
        "blend": {"rmse": 0.0300},
        "neighbour_j": {"rmse": 0.0200},
        "no_uc": {"rmse": 0.0290},
        "tirsit": {"rmse": 0.0310},
    }
    assert choose_method(table, 0.05)[0] == "blend"  # no_uc leads by 3.3 % < 5 %
    assert choose_method(table, 0.02)[0] == "no_uc"
    # neighbours are not candidates unless allowed
    assert choose_method(table, 0.05, neighbours=True)[0] == "neighbour_j"
    assert choose_method({"no_uc": {"rmse": 0.01}}, 0.05)[0] == "blend"  # no blend score: blend by default
    agg = aggregate_validation(
        [
            {"valid_pixels": 10, "methods": {"blend": {"rmse": 1.0}, "no_uc": {"rmse": 0.5}}},
            {"valid_pixels": 10, "methods": {"blend": {"rmse": 3.0}, "no_uc": {"rmse": 1.5}}},
            {"valid_pixels": 0, "methods": {"blend": {"rmse": 99.0}}},
        ]
    )
    assert agg["blend"] == {"rmse": 2.0, "rmse_sd": 1.0, "n": 2} and agg["no_uc"]["rmse"] == 1.0


def test_select_params_checks() -> None:
    p = SelectParams.from_config({"validations": 1, "seeds": [3], "variants": ["no_uc"]})
    assert p.seeds == (3,) and p.validated_variants(["tirsit", "no_uc"]) == ["no_uc"]
    assert SelectParams.from_config({}).validated_variants(["tirsit"]) == ["tirsit"]
    with pytest.raises(ConfigError, match="margin"):
        SelectParams.from_config({"margin": 1.5})
    with pytest.raises(ConfigError, match="unknown"):
        SelectParams.from_config({"margins": 0.1})


def test_without_validation_the_tasks_fallback_is_selected(tmp_path: Path) -> None:
    """No validation score (select.validations 0, or too few dates): select.fallback of the task, if predicted."""
    grid = make_centered_grid((12.5, 42.0), (8, 8))
    preds, uncs = {}, {}
    for k, m in enumerate(("blend", "no_uc_sg")):
        preds[m], uncs[m] = tmp_path / f"{m}.tif", tmp_path / f"{m}_uncertainty.tif"
        for path, value in ((preds[m], 0.1 + k), (uncs[m], 0.01 + k)):
            write_cog(np.full((2, 8, 8), value, np.float32), path, crs=grid.crs, transform=grid.transform,
                      descriptions=["B11", "B12"])  # fmt: skip
    out = (tmp_path / "s.tif", tmp_path / "su.tif", tmp_path / "s.json")
    r = run_select([], preds, uncs, 0.05, *out, fallback="no_uc_sg")
    assert r["method"] == "no_uc_sg" and r["fallback"] == "no_uc_sg" and "select.fallback" in r["reason"]
    with rasterio.open(out[0]) as src:
        assert src.tags()["selected_method"] == "no_uc_sg" and float(src.read().max()) == pytest.approx(1.1)
    assert run_select([], preds, uncs, 0.05, *out, fallback="no_uc")["method"] == "blend"  # not trained
    assert run_select([], preds, uncs, 0.05, *out)["method"] == "blend"
    p = SelectParams.from_config(schema_defaults("select"))
    assert (p.fallback_for("sar_to_visible"), p.fallback_for("visible_to_swir")) == ("blend", "no_uc_sg")
    assert SelectParams.from_config({}).fallback_for("visible_to_swir") == "blend"
    with pytest.raises(ConfigError, match=r"^select\.fallback\.sar_to_swir: "):
        SelectParams.from_config({"fallback": {"sar_to_swir": "blend"}})


DATES = ["2021-12-11", "2021-12-23", "2022-01-04", "2022-01-16", "2022-01-28"]
N = 64


def _world(tmp: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """Seeded S1/S2 per date with a slow trend, so guides predict the target better than noise."""
    grid = make_centered_grid((12.5, 42.0), (N, N))
    rng = np.random.default_rng(7)
    base = rng.random((5, N, N)).astype(np.float32) * 0.2 + 0.05
    s1, s2 = {}, {}
    for k, d in enumerate(DATES):
        refl = np.clip(base + 0.01 * k + 0.005 * rng.standard_normal(base.shape), 0.0, 1.0).astype(np.float32)
        vv = (10 * np.log10(refl[0] + 0.02) - 5).astype(np.float32)
        vh = (vv - 7 - 0.1 * k).astype(np.float32)
        s1[d], s2[d] = tmp / "s1" / f"{d}.tif", tmp / "s2" / f"{d}.tif"
        write_cog(np.stack([vv, vh]), s1[d], crs=grid.crs, transform=grid.transform, descriptions=["VV", "VH"])
        write_cog(
            np.concatenate([refl, np.ones((1, N, N), np.float32)]),
            s2[d],
            crs=grid.crs,
            transform=grid.transform,
            descriptions=["B04", "B03", "B02", "B11", "B12", "valid"],
        )
    return s1, s2


def test_select_path_never_reads_date_i_and_evaluation_scores_it(tmp_path: Path) -> None:
    """The whole select path (validation stacks, trainings, scores, choice) runs with every file of
    date i moved away — S_i and T_i of the raw images and the test's truth — and no network is
    trained on the test stack for it; evaluation then scores ``selected`` like any method."""
    s1, s2 = _world(tmp_path / "world")
    target, guides = "2022-01-04", ["2021-12-23", "2022-01-16"]
    exp = {"name": "v2s", "task": "visible_to_swir", "target": target, "guides": guides}
    stack, truth = tmp_path / "stack.nc", tmp_path / "truth.tif"
    run_stack(exp, s1, s2, None, stack, truth)
    params = TrainParams.for_task(
        "visible_to_swir", max_steps=3, batch_size=2, patch_px=32, filters=8, tile_px=64, overlap_px=16
    )
    run_train(stack, "no_uc_sg", tmp_path / "test_no_uc_sg.pt", params, threads=1, device="cpu")
    preds, uncs = {}, {}
    for v in ("neighbour_j", "neighbour_k", "blend", "no_uc_sg"):
        preds[v] = tmp_path / "pred" / f"{v}.tif"
        unc = tmp_path / "pred" / f"{v}_uncertainty.tif" if v in ("blend", "no_uc_sg") else None
        ck = tmp_path / "test_no_uc_sg.pt" if v == "no_uc_sg" else None
        run_predict(stack, v, ck, preds[v], unc, params, threads=1, device="cpu")
        if unc is not None:
            uncs[v] = unc
    # from here on until evaluation, nothing of date i exists
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    moved = {p: hidden / f"{i}.tif" for i, p in enumerate([s1[target], s2[target], truth])}
    for src, dst in moved.items():
        src.rename(dst)
    plan = plan_validation(target, guides, DATES, 2)
    assert plan and all(target not in (v.target, *v.guides) for v in plan)
    scores = []
    for v in plan:
        vexp = v.as_experiment(exp)
        vdir = tmp_path / "validation" / v.name
        run_stack(vexp, s1, s2, None, vdir / "stack.nc", vdir / "truth.tif")
        for seed in (0, 1):
            ck = vdir / f"seed{seed}" / "no_uc_sg.pt"
            run_train(vdir / "stack.nc", "no_uc_sg", ck, params.replace(seed=seed), threads=1, device="cpu")
            out = vdir / f"seed{seed}" / "scores.json"
            run_validation(
                vdir / "stack.nc",
                vdir / "truth.tif",
                {"no_uc_sg": ck},
                params,
                out,
                {"validation": v.name, "seed": seed},
            )
            doc = json.loads(out.read_text())
            assert set(doc["methods"]) == {"neighbour_j", "neighbour_k", "blend", "no_uc_sg"}
            assert doc["target_date"] == v.target and doc["valid_pixels"] > 0
            scores.append(out)
    sel_tif, sel_unc, sel_json = tmp_path / "pred" / "selected.tif", tmp_path / "pred" / "u.tif", tmp_path / "s.json"
    ranked = RankedFromStack(stack, params.mean_filter, params.k, 5)  # the ranked uncertainty reads the stack only
    result = run_select(scores, preds, uncs, 0.0, sel_tif, sel_unc, sel_json, ranked=ranked)
    assert result["method"] in ("blend", "no_uc_sg") and result["validation"]["blend"]["n"] == 2 * len(plan)
    with rasterio.open(sel_tif) as src, rasterio.open(preds[result["method"]]) as ref:
        np.testing.assert_array_equal(src.read(), ref.read())
        assert src.tags()["selected_method"] == result["method"]
    with rasterio.open(sel_unc) as src, rasterio.open(uncs[result["uncertainty_from"]]) as ref:
        u, own = src.read(), ref.read()
        assert src.tags()["uncertainty_rule"] == "ranked" and u.shape == own.shape
        np.testing.assert_array_equal(np.isfinite(u), np.isfinite(own))  # same nodata, values of the same band
        assert np.nanmax(u) <= np.nanmax(own) + 1e-6 and np.nanmin(u) >= np.nanmin(own) - 1e-6
    for src, dst in moved.items():
        dst.rename(src)
    # evaluation (the only reader of T_i) scores selected exactly as the method it copied
    out = tmp_path / "m.json"
    run_evaluate(truth, preds, stack, out, tmp_path / "m.csv", uncs, selected=(sel_tif, sel_unc, sel_json))
    block = json.loads(out.read_text())["v2s"]
    sel = block["selected"]
    assert sel["method"] == result["method"]
    assert sel["rmse"]["mean"] == pytest.approx(block[result["method"]]["rmse"]["mean"])
    assert sel["changed"]["rmse"]["mean"] == pytest.approx(block["changed"][result["method"]]["rmse"]["mean"])
    assert sel["test_rank"] >= 1 and set(sel["test_ranking"]) == set(preds)
    assert np.isfinite(sel["spearman_uncertainty_abs_error"])
    assert "selected" in (tmp_path / "m.csv").read_text()
    # physical sanity counts reach info
    assert set(block["info"]["clipped_predictions"]) == set(preds)
    assert set(block["info"]["clipped_inputs"]) == {"B04", "B03", "B02", "B11", "B12"}


@pytest.mark.workflow
def test_only_evaluation_reads_the_truth_and_validation_skips_date_i(tmp_path: Path) -> None:
    """Dry run of the demo: the truth files are inputs of evaluate/region_report only, and no
    validation job of an experiment takes an S1/S2 image of its target date."""
    work = make_workdir(tmp_path / "wf")
    r = snakemake(work, "-n", "results/report.html")
    jobs = re.split(r"\n(?=(?:local)?(?:rule|checkpoint) )", r.stdout)
    targets = {"sar2vis": "2022-01-04", "vis2swir": "2022-01-04", "sar2vis_exchange": "2022-01-28"}
    seen = set()
    for job in jobs:
        m = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", job)
        if not m:
            continue
        rule = m.group(1)
        inp = re.search(r"input: (.*)", job)
        inputs = inp.group(1).split(", ") if inp else []
        if any("/truth/" in p for p in inputs):
            assert rule in ("evaluate", "region_report"), (rule, inputs)
        if rule in ("validation_stack", "validation_train", "validate", "select"):
            seen.add(rule)
            exp = re.search(r"experiment=([\w-]+)", job)
            assert exp, job
            day = targets.get(exp.group(1))
            assert day is None or not any(p.endswith(f"/{day}.tif") for p in inputs), (rule, inputs)
            assert not any("/truth/" in p for p in inputs), (rule, inputs)
    assert seen == {"validation_stack", "validation_train", "validate", "select"}, seen


def test_report_shows_validation_and_test_rankings_side_by_side() -> None:
    from pipeline_lib.report.model_part import model_sections

    metric = {"rmse": {"B11": 0.02, "mean": 0.02}, "ssim": {"B11": 0.9, "mean": 0.9}, "cc": {"B11": 0.8, "mean": 0.8}}
    block = {
        "blend": metric,
        "no_uc": metric,
        "changed": {"blend": metric, "no_uc": metric},
        "info": {"bands": ["B11"], "clipped_inputs": {"B11": {"below": 0, "above": 3, "of": 100}}},
        "selected": {
            "method": "no_uc",
            "reason": "no_uc beats the blend on validation by 9.0% (margin 5%)",
            "validation": {
                "blend": {"rmse": 0.03, "rmse_sd": 0.0, "n": 2},
                "no_uc": {"rmse": 0.0273, "rmse_sd": 0.001, "n": 6},
            },
            "validation_runs": [{"validation": "val1", "target_date": "2021-04-15", "guide_dates": ["a", "b"]}],
            "test_rmse": {"blend": 0.031, "no_uc": 0.025},
            "test_ranking": ["no_uc", "blend"],
            "test_rank": 1,
            "test_winner": "no_uc",
            "vs_blend": -0.19,
            "spearman_validation_test": None,
            "spearman_uncertainty_abs_error": 0.6,
        },
    }
    html = "".join(model_sections({"v2s": block}, {}))
    assert "validation and test rankings side by side" in html and "<b>no_uc (selected)</b>" in html
    assert "2021-04-15 from a, b" in html and "−19.0%" in html.replace("-19.0%", "−19.0%")
    assert "B11 0 below / 3 above of 100" in html
