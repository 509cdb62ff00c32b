"""Gap-fill rules on a ci-tiny-sized region with the demo's cloudy date (DESIGN §8): products, STAC, metrics, report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import yaml
from workflow_utils import make_workdir, planned_jobs, snakemake

from pipeline_lib.gapfill.product import SOURCE_NONE, SOURCE_OBSERVED, SOURCE_PREDICTED
from pipeline_lib.stacks import read_image

REGION = "gapfill-tiny"
DATES = ["2021-12-23", "2022-01-04", "2022-01-16", "2022-01-28"]
CLOUDY = "2022-01-16"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = make_workdir(tmp_path_factory.mktemp("gapfill") / "wf")
    regions = work / "config" / "regions"
    region = yaml.safe_load((regions / "ci-tiny.yaml").read_text(encoding="utf-8"))
    region.update(
        region=REGION,
        dates=DATES,
        gapfill={"dates": "all", "max_steps": 3, "threads": 1},
    )
    region["train"].update(max_steps=2)
    (regions / f"{REGION}.yaml").write_text(yaml.safe_dump(region, sort_keys=False), encoding="utf-8")
    snakemake(
        work,
        "--cores",
        "2",
        f"results/{REGION}/report.html",
        "--config",
        f"regions=[{REGION}]",
        timeout=2400,
    )
    return work


def test_cloudy_date_is_filled_and_observed_pixels_are_exact(run: Path) -> None:
    res = run / "results" / REGION
    for date in DATES:
        s2, clear, _ = read_image(res / "s2" / f"{date}.tif", ["B04", "B03", "B02", "B11", "B12"])
        with rasterio.open(res / "gapfill" / f"{date}.tif") as ds:
            assert list(ds.descriptions) == ["B04", "B03", "B02", "B11", "B12", "source", "uncertainty"]
            out = ds.read()
        source = out[5]
        assert np.array_equal(out[:5][:, clear].view(np.uint32), s2[:, clear].view(np.uint32)), date
        assert (source[clear] == SOURCE_OBSERVED).all()
        assert set(np.unique(source).tolist()) <= {SOURCE_NONE, SOURCE_OBSERVED, SOURCE_PREDICTED}
        pred = source == SOURCE_PREDICTED
        assert np.isfinite(out[:5][:, pred]).all() and (pred == ~clear & (source != SOURCE_NONE)).all()
        if date == CLOUDY:
            assert (~clear).mean() > 0.05 and pred.sum() > 0.9 * (~clear).sum()
            assert np.nanmean(out[6][pred]) > 0
        assert (res / "gapfill" / f"{date}.stac.json").is_file()


def test_stac_collection_opens_the_series(run: Path) -> None:
    path = run / "results" / REGION / "gapfill" / "collection.json"
    coll = pystac.Collection.from_file(str(path))
    items = list(coll.get_items())
    assert sorted(str(i.datetime)[:10] for i in items) == DATES


def test_gapfill_block_in_metrics(run: Path) -> None:
    metrics = json.loads((run / "results" / REGION / "metrics.json").read_text())
    block = metrics["gapfill"]
    assert block["evaluation_dates"] == {"2022-01-04": block["evaluation_dates"]["2022-01-04"]}
    assert block["evaluation_dates"]["2022-01-04"]["donor"] == CLOUDY
    for group in ("visible", "swir"):
        for scope in ("all", "changed"):
            sub = block["evaluation"][group][scope]
            assert sub["pixels"] > 0
            for m in ("gapfill", "blend", "linear", "nearest"):
                assert np.isfinite(sub[m]["rmse"]["mean"]), (group, scope, m)
    assert block["products"][CLOUDY]["share_predicted"] > 0.05
    assert block["products"]["2021-12-23"]["share_predicted"] == 0.0


def test_report_has_the_gapfill_section(run: Path) -> None:
    html = (run / "results" / REGION / "report.html").read_text(encoding="utf-8")
    assert 'id="gapfill"' in html and "linear interpolation in time" in html and f"{CLOUDY} after (RGB)" in html


def test_changing_gapfill_steps_reruns_only_gapfill(run: Path) -> None:
    region_file = run / "config" / "regions" / f"{REGION}.yaml"
    text = region_file.read_text(encoding="utf-8")
    region = yaml.safe_load(text)
    region["gapfill"]["max_steps"] = 4
    region_file.write_text(yaml.safe_dump(region, sort_keys=False), encoding="utf-8")
    try:
        r = snakemake(run, "-n", f"results/{REGION}/report.html", "--config", f"regions=[{REGION}]")
    finally:
        region_file.write_text(text, encoding="utf-8")
    jobs = planned_jobs(r.stdout)
    assert jobs.get("gapfill_train") == 2, jobs
    assert set(jobs) <= {
        "gapfill_train",
        "gapfill_fill",
        "gapfill_evaluate",
        "gapfill_collection",
        "metrics",
        "region_report",
    }, jobs
