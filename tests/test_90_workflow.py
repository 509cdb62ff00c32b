"""End-to-end workflow tests.

One full demo run (the CI budget allows one, DESIGN §10) checked against the demo generator's
simulated surface; everything else on the ci-tiny region or as dry runs.
"""

from __future__ import annotations

import json
import re
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import rasterio
import xarray as xr
import yaml
from conftest import require_tool
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


#: The demo's experiments: (target date, guide dates, configured network variants).
DEMO_EXPERIMENTS = {
    "sar2vis": (
        "2022-01-04",
        ["2021-12-23", "2022-01-16"],
        ["tirsit", "tirsit_noadv", "no_uc", "no_sg", "no_uc_sg", "pix2pix"],
    ),
    "vis2swir": (
        "2022-01-04",
        ["2021-12-23", "2022-01-16"],
        ["tirsit", "tirsit_noadv", "no_uc", "no_sg", "no_uc_sg", "pix2pix"],
    ),
    # the paper's "exchanging data of different times": the target is the last date
    "sar2vis_exchange": ("2022-01-28", ["2021-12-23", "2022-01-04"], ["tirsit", "pix2pix"]),
    # three guides, one of them (2022-01-16) with a cloud on its S2 image
    "sar2vis_3guides": ("2022-01-04", ["2021-12-23", "2022-01-16", "2022-01-28"], ["tirsit"]),
}
MAIN_EXPERIMENTS = ("sar2vis", "vis2swir")  # the paper's two tasks with every variant and ablation
BASELINE_VARIANTS = {"neighbour_j", "neighbour_k", "blend"}


def test_demo_stacks_hold_no_truth(demo_run: Path) -> None:
    res = demo_run / "results" / "demo"
    for exp, (target, guides, _) in DEMO_EXPERIMENTS.items():
        with xr.open_dataset(res / "stacks" / f"{exp}.nc") as ds:
            assert "T_i" not in ds
            assert ds.attrs["target_date"] == target
            assert list(ds["guide_date"].values) == guides
            if "2022-01-16" in guides:  # the cloudy S2 guide is masked under its cloud, valid elsewhere
                frac = ds["valid_g"].isel(guide=guides.index("2022-01-16")).values.mean()
                assert 0.1 < frac < 0.98, frac
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
    assert len(p.srcs) >= 8 and all(s.startswith(("data:image/png;base64,", "data:image/jpeg;base64,")) for s in p.srcs)
    # thumbnails + JPEG composites keep the report small (DESIGN §7: ≤ 3 MB; it was 15 MB with full-size PNGs)
    assert (demo_run / "results" / "demo" / "report.html").stat().st_size <= 3_000_000
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
    region_file = tiny_run / "config/regions/ci-tiny.yaml"
    region = yaml.safe_load(region_file.read_text())
    region["sar"]["speckle"] = {"window": 5}  # the user edits the region file
    region_file.write_text(yaml.safe_dump(region))
    r = snakemake(tiny_run, "-n", "results/ci-tiny/report.html")
    jobs = planned_jobs(r.stdout)
    assert jobs.get("speckle") == 3 and jobs.get("terrain_correct") == 3, jobs
    assert not {"grid", "search", "download_safe", "calibrate", "optical"} & set(jobs), jobs
    assert {"offsets", "stack", "region_report"} <= set(jobs), jobs


def test_demo_metrics_and_tables(demo_run: Path) -> None:
    res = demo_run / "results" / "demo"
    metrics = json.loads((res / "metrics.json").read_text())
    assert set(metrics) == set(DEMO_EXPERIMENTS) | {"gapfill"}
    html = (res / "report.html").read_text()
    for exp, block in metrics.items():
        if exp == "gapfill":
            continue
        target, guides, variants = DEMO_EXPERIMENTS[exp]
        assert block["info"]["target_date"] == target and block["info"]["guide_dates"] == guides
        names = BASELINE_VARIANTS | set(variants)
        assert names == set(block) - {"changed", "info", "selected"}, (exp, sorted(block))
        assert names == set(block["changed"]), exp
        for variant in names:
            for m in ("rmse", "ssim", "cc"):
                vals = block[variant][m]
                assert "mean" in vals and all(np.isfinite(v) for v in vals.values()), (exp, variant, m)
        # the report has the experiment's section with its comparison table
        assert f'id="exp-{exp}"' in html and f"{exp}: comparison (all valid pixels)" in html, exp
    for exp in MAIN_EXPERIMENTS:
        block = metrics[exp]
        # the blend (no network) beats each neighbour: the baseline TIRSIT has to beat
        assert block["blend"]["rmse"]["mean"] < min(
            block["neighbour_j"]["rmse"]["mean"], block["neighbour_k"]["rmse"]["mean"]
        )
    # three guides: the softmax blend of three dates beats the first and the last guide alone
    b3 = metrics["sar2vis_3guides"]
    assert b3["blend"]["rmse"]["mean"] < min(b3["neighbour_j"]["rmse"]["mean"], b3["neighbour_k"]["rmse"]["mean"])
    assert (res / "metrics.csv").read_text().count("\n") > 10
    assert "paper Table I/III layout" in html and "Spearman" in html


def _chromium(*args: str) -> subprocess.CompletedProcess[str]:
    exe = require_tool("chromium", "the report is checked in a real browser")
    base = [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-quic",
        "--no-first-run",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ]
    return subprocess.run([*base, *args], capture_output=True, text=True, timeout=180)


def test_demo_report_opens_in_chromium(demo_run: Path, tmp_path: Path) -> None:
    """Every image decodes in a real browser, no console error appears; a screenshot is kept."""
    report = demo_run / "results" / "demo" / "report.html"
    profile = tmp_path / "profile"
    r = _chromium(f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", report.as_uri())
    console = [ln for ln in r.stderr.splitlines() if "CONSOLE" in ln]
    assert not console, console
    # Check image decoding with a copy that reports naturalWidth of every image into the DOM.
    probe = report.with_name("report-probe.html")
    probe.write_text(
        report.read_text().replace(
            "</body>",
            "<script>window.addEventListener('load',()=>{const b=[...document.images].filter("
            "i=>!(i.complete&&i.naturalWidth>0)).length;document.body.insertAdjacentHTML('beforeend',"
            "`<p id=probe>images=${document.images.length} broken=${b}</p>`)});</script></body>",
        )
    )
    r = _chromium(f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom", probe.as_uri())
    m = re.search(r"images=(\d+) broken=(\d+)", r.stdout)
    assert m, r.stdout[-2000:] + r.stderr[-2000:]
    assert int(m.group(1)) >= 16 and int(m.group(2)) == 0, m.group(0)
    artefacts = Path(__file__).resolve().parents[1] / "test-artifacts"
    artefacts.mkdir(exist_ok=True)
    shot = artefacts / "demo-report.png"
    _chromium(f"--user-data-dir={profile}", "--window-size=1400,4000", f"--screenshot={shot}", report.as_uri())
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_demo_chain_recovers_the_simulated_surface(demo_run: Path) -> None:
    """End to end: the terrain-corrected, filtered sigma0 and the L2A reflectance on the grid agree with
    the surface the generator rendered (geometry, calibration and noise removal all have to be right)."""
    from datetime import date

    from pipeline_lib.demo.surface import simulate_surface

    res = demo_run / "results" / "demo"
    grid = read_grid(res / "grid.json")
    xx, yy = np.meshgrid(grid.x_coords(), grid.y_coords())
    truth = simulate_surface(xx, yy, date(2022, 1, 4), seed=0)
    with rasterio.open(res / "s1" / "2022-01-04.tif") as ds:
        vv = ds.read(1)
    ref = 10 * np.log10(truth["VV"])
    ok = np.isfinite(vv)
    assert np.corrcoef(vv[ok], ref[ok])[0, 1] > 0.9
    assert abs(np.median(vv[ok] - ref[ok])) < 0.5
    with rasterio.open(res / "s2" / "2022-01-04.tif") as ds:
        b04 = ds.read(1)
    ok = np.isfinite(b04)
    assert np.median(np.abs(b04[ok] - truth["B04"][ok])) < 0.002


NETWORK_WITHOUT_SHORTCUT = ("no_uc", "no_sg", "no_uc_sg")


def _rmse(block: dict, variant: str, scope: str) -> float:
    return float((block["changed"] if scope == "changed" else block)[variant]["rmse"]["mean"])


def test_demo_cloudy_date_is_filled_and_beats_linear_interpolation(demo_run: Path) -> None:
    """Gap fill (DESIGN §8): 2022-01-16 comes out filled; with its real cloud mask laid over the clear 2022-01-04,
    the filled pixels beat per-pixel linear interpolation in time (mean RMSE, visible and SWIR)."""
    res = demo_run / "results" / "demo"
    with rasterio.open(res / "gapfill" / "2022-01-16.tif") as ds:
        source = ds.read(list(ds.descriptions).index("source") + 1)
    with rasterio.open(res / "s2" / "2022-01-16.tif") as ds:
        clear = ds.read(list(ds.descriptions).index("valid") + 1) > 0.5
    # predicted exactly where the date is cloudy (≈ 3 % of the demo grid), observed elsewhere, nothing left out
    assert (~clear).any() and np.array_equal(source == 2, ~clear) and not (source == 0).any()
    block = json.loads((res / "metrics.json").read_text())["gapfill"]
    assert block["evaluation_dates"]["2022-01-04"]["donor"] == "2022-01-16"
    for group in ("visible", "swir"):
        ev = block["evaluation"][group]["all"]
        assert ev["gapfill"]["rmse"]["mean"] < ev["linear"]["rmse"]["mean"], (group, ev)
    assert (res / "gapfill" / "collection.json").is_file()
    assert 'id="gapfill"' in (res / "report.html").read_text()


def test_demo_networks_add_value_over_the_blend(demo_run: Path) -> None:
    """A trained network beats the no-network blend on both tasks (the ablations without the
    guide shortcut do; see the README's note on L_con) and pix2pix does not beat TIRSIT's ablations."""
    metrics = json.loads((demo_run / "results" / "demo" / "metrics.json").read_text())
    for exp in MAIN_EXPERIMENTS:
        block = metrics[exp]
        best = min(_rmse(block, v, "all") for v in NETWORK_WITHOUT_SHORTCUT)
        assert best < _rmse(block, "blend", "all"), exp
        assert best < _rmse(block, "pix2pix", "all"), exp


def test_demo_selected_is_safe_and_useful(demo_run: Path) -> None:
    """The bar for the recommended prediction (replaces the earlier strict xfail on TIRSIT beating
    every baseline, which the L_con shortcut explains): ``selected`` — chosen on gap-matched validation
    experiments without the truth — is never more than 5 % worse than the blend, beats the blend on
    visible→SWIR, and its uncertainty ranks its absolute error (Spearman ≥ 0.5) in most experiments."""
    res = demo_run / "results" / "demo"
    metrics = json.loads((res / "metrics.json").read_text())
    rhos = []
    for exp, block in metrics.items():
        if exp == "gapfill":  # the gap-filled series' own block (DESIGN §8), not an experiment
            continue
        sel = block["selected"]
        assert sel["method"] in set(block) - {"changed", "info", "selected"}, (exp, sel["method"])
        assert _rmse(block, "blend", "all") > 0
        assert sel["rmse"]["mean"] <= 1.05 * _rmse(block, "blend", "all"), (exp, sel["method"], sel["reason"])
        assert sel["rmse"]["mean"] == pytest.approx(_rmse(block, sel["method"], "all"), rel=1e-6), exp
        if block["info"]["task"] == "visible_to_swir":
            assert sel["rmse"]["mean"] < _rmse(block, "blend", "all"), (exp, sel["method"], sel["reason"])
        rhos.append(sel["spearman_uncertainty_abs_error"])
        with rasterio.open(res / "pred" / exp / "selected.tif") as src:
            assert src.tags()["selected_method"] == sel["method"]
        assert (res / "pred" / exp / "selected_uncertainty.tif").is_file()
    assert sum(r >= 0.5 for r in rhos) > len(rhos) / 2, rhos
    html = (res / "report.html").read_text()
    assert "validation and test rankings side by side" in html and "Recommended prediction" in html


def test_two_regions_share_one_dag(tmp_path: Path) -> None:
    """`regions: [demo, ci-tiny]` schedules both regions' reports in one DAG (dry run)."""
    work = make_workdir(tmp_path / "wf")
    r = snakemake(work, "-n", "results/report.html", "--config", "regions=[demo,ci-tiny]")
    out = r.stdout
    assert "results/demo/report.html" in out and "results/ci-tiny/report.html" in out
    assert planned_jobs(out).get("grid") == 2, planned_jobs(out)
