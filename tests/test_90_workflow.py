"""End-to-end workflow tests.

One full demo run (the CI budget allows one, DESIGN §10) checked against the demo generator's
simulated surface; everything else on the ci-tiny region or as dry runs.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
from workflow_utils import make_workdir, planned_jobs, snakemake

from pipeline_lib.fetch.base import read_scene_table
from pipeline_lib.grid import read_grid

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = make_workdir(tmp_path_factory.mktemp("demo"))
    snakemake(work, "--cores", "2", "results/report.html")
    return work


def test_demo_outputs_exist_on_the_grid(demo_run: Path) -> None:
    res = demo_run / "results" / "demo"
    grid = read_grid(res / "grid.json")
    assert grid.shape == (512, 512) and grid.crs == "EPSG:32633"
    scenes = read_scene_table(res / "scenes.csv")
    dates = ["2021-12-23", "2022-01-04", "2022-01-16", "2022-01-28"]
    assert sorted({s.date for s in scenes}) == dates
    assert sum(s.mission.startswith("S1") for s in scenes) == 4
    for d in dates:
        with rasterio.open(res / "s1" / f"{d}.tif") as ds:
            assert ds.descriptions == ("VV", "VH")
            assert ds.shape == grid.shape and ds.transform == grid.transform and ds.crs.to_string() == grid.crs
            vv = ds.read(1)
        assert np.isfinite(vv).mean() > 0.99
        assert -30 < np.nanmedian(vv) < 5
        with rasterio.open(res / "s2" / f"{d}.tif") as ds:
            assert ds.descriptions == ("B04", "B03", "B02", "B11", "B12", "valid")
            assert ds.shape == grid.shape and ds.transform == grid.transform
            valid = ds.read(6)
        if d == "2022-01-16":
            assert 0.02 < 1 - valid.mean() < 0.9, "the cloudy date must have masked pixels"
        else:
            assert valid.mean() > 0.95


def test_demo_stacks_hold_no_truth(demo_run: Path) -> None:
    res = demo_run / "results" / "demo"
    for exp in ("sar2vis", "vis2swir"):
        with xr.open_dataset(res / "stacks" / f"{exp}.nc") as ds:
            assert "T_i" not in ds
            assert ds.attrs["target_date"] == "2022-01-04"
            assert list(ds["guide_date"].values) == ["2021-12-23", "2022-01-16"]
        assert (res / "truth" / f"{exp}.tif").is_file()


class _Imgs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.hrefs: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "img" and a.get("src"):
            self.srcs.append(str(a["src"]))
        if tag == "a" and a.get("href"):
            self.hrefs.append(str(a["href"]))


def test_demo_report_is_self_contained(demo_run: Path) -> None:
    html = (demo_run / "results" / "demo" / "report.html").read_text()
    p = _Imgs()
    p.feed(html)
    assert len(p.srcs) >= 8 and all(s.startswith("data:image/png;base64,") for s in p.srcs)
    assert not re.search(r"""(src|href)=["']https?://""", html)
    index = _Imgs()
    index.feed((demo_run / "results" / "report.html").read_text())
    assert "demo/report.html" in index.hrefs


def test_second_run_does_nothing(demo_run: Path) -> None:
    r = snakemake(demo_run, "-n", "results/report.html")
    assert "Nothing to be done" in r.stdout + r.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = make_workdir(tmp_path_factory.mktemp("tiny"))
    snakemake(work, "--cores", "2", "results/ci-tiny/report.html")
    return work


def test_changing_speckle_window_reruns_exactly_speckle_and_downstream(tiny_run: Path) -> None:
    r = snakemake(tiny_run, "-n", "results/ci-tiny/report.html", "--config", "defaults={sar: {speckle: {window: 5}}}")
    jobs = planned_jobs(r.stdout)
    assert jobs.get("speckle") == 3 and jobs.get("terrain_correct") == 3, jobs
    assert not {"grid", "search", "download_safe", "calibrate", "optical"} & set(jobs), jobs
    assert {"offsets", "stack", "region_report"} <= set(jobs), jobs
