"""A real region end to end (DESIGN §4): the shipped wc-belgium-patch-2018 region file, read through the
files source from data/real-ts, with a CI-sized training cap, down to a report that opens in Chromium.

The region file is used as shipped except for the training budget (max_steps 3, one network variant)
and its dates (the experiment's three), so the run fits the CI budget; the pipeline is the same.
"""

from __future__ import annotations

import json
import math
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import yaml
from conftest import REPO, require_tool
from workflow_utils import make_workdir, planned_jobs, snakemake

from pipeline_lib.fetch.base import read_scene_table
from pipeline_lib.grid import read_grid

pytestmark = pytest.mark.workflow
SLUG = "wc-belgium-patch-2018"
SAFE_RULES = {"download_safe", "download_zip", "calibrate", "speckle", "terrain_correct", "optical"}


def _workdir(dest: Path) -> Path:
    work = make_workdir(dest)
    (work / "data").symlink_to(REPO / "data", target_is_directory=True)
    region_file = work / "config" / "regions" / f"{SLUG}.yaml"
    region = yaml.safe_load(region_file.read_text(encoding="utf-8"))
    region["dates"] = ["2018-06-28", "2018-07-08", "2018-07-23"]
    region["train"].update({"max_steps": 3, "checkpoint_every": 50})
    # guides chosen by the stack rule among the region's dates (the two others here)
    region["experiments"].append({"name": "vis2swir_auto", "task": "visible_to_swir", "target": "2018-07-08",
                                  "guides": "auto"})  # fmt: skip
    for exp in region["experiments"]:
        exp["variants"] = ["tirsit"]
    region_file.write_text(yaml.safe_dump(region, sort_keys=False), encoding="utf-8")
    return work


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = _workdir(tmp_path_factory.mktemp("real"))
    dry = snakemake(work, "-n", "--cores", "2", f"results/{SLUG}/report.html")
    jobs = planned_jobs(dry.stdout)
    assert jobs.get("ingest_s2") == 3 and jobs.get("ingest_s1") == 3, jobs
    assert not SAFE_RULES & set(jobs), jobs
    snakemake(work, "--cores", "2", f"results/{SLUG}/report.html")
    return work


def test_real_region_outputs_and_provenance(real_run: Path) -> None:
    res = real_run / "results" / SLUG
    grid = read_grid(res / "grid.json")
    assert grid.shape == (64, 64) and grid.crs == "EPSG:32631" and grid.resolution_m == 10.0
    scenes = read_scene_table(res / "scenes.csv")
    s1 = {s.date: s for s in scenes if s.mission == "S1"}
    assert Path(s1["2018-07-23"].uri).name == "s1_20180721T173216.tif"  # the pairing of the data's README
    for date in ("2018-06-28", "2018-07-08", "2018-07-23"):
        with rasterio.open(res / "s1" / f"{date}.tif") as ds:
            assert ds.descriptions == ("VV", "VH") and ds.tags()["s1_quantity"] == "sigma0"
            assert ds.tags(1)["units"] == "dB"
        item = json.loads((res / "s1" / f"{date}.stac.json").read_text())
        assert item["properties"]["tirsit:tags"]["s1_quantity"] == "sigma0"
        assert item["properties"]["tirsit:tags"]["units"] == "dB"
        assert {b["unit"] for b in item["assets"]["data"]["raster:bands"]} == {"dB"}
        with rasterio.open(res / "s2" / f"{date}.tif") as ds:
            assert ds.tags()["processing_level"] == "L2A"
            refl = ds.read(1)
            assert 0.0 < float(np.nanmedian(refl)) < 0.5  # DN / 10000
    metrics = json.loads((res / "metrics.json").read_text())
    assert set(metrics) == {"sar2vis", "vis2swir", "vis2swir_auto"}
    with xr.open_dataset(res / "stacks" / "vis2swir_auto.nc") as st:  # guides: auto, chosen by the stack rule
        assert [str(d) for d in st["guide_date"].values] == ["2018-06-28", "2018-07-23"]
        assert "within 45 days of 2018-07-08" in st.attrs["guides_rule"]
    for exp in metrics.values():
        for variant in ("tirsit", "blend", "neighbour_j", "neighbour_k"):
            for name in ("rmse", "ssim", "cc"):
                assert math.isfinite(exp[variant][name]["mean"]), (variant, name)
    html = (res / "report.html").read_text()
    assert "paper Table I/III layout" in html


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    exe = require_tool("chromium", "the report is checked in a real browser")
    base = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
    base += ["--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync"]
    return subprocess.run(
        [*base, "--enable-logging=stderr", "--v=0", *args], capture_output=True, text=True, timeout=180
    )


def test_real_region_report_opens_in_chromium(real_run: Path, tmp_path: Path) -> None:
    report = real_run / "results" / SLUG / "report.html"
    probe = report.with_name("report-probe.html")
    probe.write_text(
        report.read_text().replace(
            "</body>",
            "<script>window.addEventListener('load',()=>{const b=[...document.images].filter("
            "i=>!(i.complete&&i.naturalWidth>0)).length;document.body.insertAdjacentHTML('beforeend',"
            "`<p id=probe>images=${document.images.length} broken=${b}</p>`)});</script></body>",
        )
    )
    r = _chromium(
        f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri()
    )
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln]
    assert not console, console
    m = re.search(r"images=(\d+) broken=(\d+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr[-2000:]
    assert int(m.group(1)) >= 8 and int(m.group(2)) == 0, m.group(0)


def test_a_declared_unit_the_files_contradict_fails_naming_the_file(tmp_path: Path) -> None:
    work = _workdir(tmp_path / "bad")
    region_file = work / "config" / "regions" / f"{SLUG}.yaml"
    region = yaml.safe_load(region_file.read_text(encoding="utf-8"))
    region["fetch"]["files"]["s1"]["unit"] = "linear"  # the files hold dB
    region_file.write_text(yaml.safe_dump(region, sort_keys=False), encoding="utf-8")
    target = f"results/{SLUG}/s1/2018-07-08.tif"
    r = snakemake(work, "--cores", "1", target, check=False)
    assert r.returncode != 0
    log = (work / "logs" / SLUG / "ingest_s1" / "2018-07-08.log").read_text()
    line = next(ln for ln in log.splitlines() if "ProductError" in ln)
    assert "s1_20180708T174047.tif: declared linear power but" in line and "unit: db" in line
    assert not (work / target).exists() and not list((work / "results" / SLUG / "s1").glob("*.tif"))
