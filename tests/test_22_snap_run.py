"""SNAP backend, invocation: run_snap with the gpt stand-in (tests/gpt_standin/gpt) on the real sarsen product."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

from pipeline_lib.config import schema_defaults
from pipeline_lib.errors import ConfigError, FetchError, PipelineError
from pipeline_lib.grid import make_centered_grid
from pipeline_lib.sar.params import SpeckleParams
from pipeline_lib.sar.snap import run_snap

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
SAFE = FIXTURES / "s1-grd-sarsen" / "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
DEM = FIXTURES / "s1-grd-sarsen" / "Rome-30m-DEM.tif"
STANDIN = Path(__file__).resolve().parent / "gpt_standin" / "gpt"
GRID = make_centered_grid((12.5, 42.0), (96, 80))


def _spk(settings: dict | None = None) -> SpeckleParams:
    """``sar.speckle`` as the schema fills it, with ``settings`` on top."""
    return SpeckleParams.from_config({**schema_defaults("sar", "speckle"), **(settings or {})})


@pytest.fixture
def gpt_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The stand-in on PATH (as `gpt`) with this interpreter first, recording its argv."""
    monkeypatch.setenv(
        "PATH", f"{STANDIN.parent}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    )
    record = tmp_path / "argv.json"
    monkeypatch.setenv("GPT_STANDIN_ARGS", str(record))
    monkeypatch.delenv("GPT_STANDIN_FAIL", raising=False)
    return record


@pytest.mark.parametrize("dem", [None, DEM])
def test_run_snap_writes_sigma0_db_cog_on_grid(tmp_path: Path, gpt_env: Path, dem: Path | None) -> None:
    out = tmp_path / "s1" / "2021-12-23.tif"
    log = tmp_path / "log.txt"
    run_snap(
        SAFE,
        GRID,
        out,
        polarisations=("VV",),
        speckle=_spk({"window": 7, "target_window": 3, "sigma": 0.9}),
        dem=dem,
        gpt=None,
        threads=2,
        cache_mb=768,
        log_path=log,
    )
    argv = json.loads(gpt_env.read_text())
    assert argv[1:] == ["-q", "2", "-c", "768M", "-e"] and argv[0].endswith("graph.xml")
    with rasterio.open(out) as src:
        assert src.crs.to_epsg() == 32633 and src.transform == GRID.transform
        assert (src.height, src.width) == (GRID.height, GRID.width)
        assert src.descriptions == ("VV",) and src.dtypes == ("float32",) and np.isnan(src.nodata)
        assert src.tags()["backend"] == "snap" and src.tags()["snap_numLooksStr"] == "4"  # ENL 5 -> SNAP max 4
        vv = src.read(1)
    # The stand-in's field is -10 + 3 sin(x/500) cos(y/700) dB: check it at the grid pixel centres.
    xx, yy = np.meshgrid(GRID.x_coords(), GRID.y_coords())
    expected = -10.0 + 3.0 * np.sin(xx / 500.0) * np.cos(yy / 700.0)
    assert np.isfinite(vv).all()
    np.testing.assert_allclose(vv, expected, atol=0.05)
    text = log.read_text()
    assert "Terrain-Correction" in text and "--- exit 0 ---" in text
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # work folder removed


def test_run_snap_with_orbit_node(tmp_path: Path, gpt_env: Path) -> None:
    out = tmp_path / "o.tif"
    log = tmp_path / "log.txt"
    run_snap(
        SAFE,
        GRID,
        out,
        polarisations=("VV",),
        speckle=_spk({"looks": 3}),
        dem=DEM,
        gpt=str(STANDIN),
        threads=1,
        cache_mb=256,
        log_path=log,
        apply_orbit=True,
    )
    assert "Apply-Orbit-File: Apply-Orbit-File" in log.read_text()
    with rasterio.open(out) as src:
        assert src.tags()["snap_numLooksStr"] == "3"


def test_standin_rejects_a_polarisation_the_product_lacks(tmp_path: Path, gpt_env: Path) -> None:
    # The sarsen fixture holds VV only: the stand-in follows the bands and fails like gpt does.
    with pytest.raises(PipelineError, match="Polarisation 'VH' not in the product"):
        run_snap(
            SAFE,
            GRID,
            tmp_path / "x.tif",
            polarisations=("VV", "VH"),
            speckle=_spk({"looks": 4}),
            dem=DEM,
            gpt=None,
            threads=1,
            cache_mb=256,
            log_path=tmp_path / "log.txt",
        )
    assert not (tmp_path / "x.tif").exists()


@pytest.mark.parametrize(
    ("line", "code", "cls", "needle"),
    [
        ("Error: [NodeId: Apply-Orbit-File] No valid orbit file found for 23-DEC-2021", "1", FetchError, "orbit"),
        ("Error: [NodeId: Terrain-Correction] Cannot find DEM 'SRTM 1Sec HGT'", "1", ConfigError, "sar.dem"),
        ('Exception in thread "main" java.lang.OutOfMemoryError: Java heap space', "1", ConfigError, "heap"),
        ("Error: [NodeId: Calibration] Unknown parameter 'outputSigma'", "1", ConfigError, "parameter"),
        ("", "137", ConfigError, "killed"),
    ],
)
def test_gpt_failures_through_the_standin(
    tmp_path: Path, gpt_env: Path, monkeypatch: pytest.MonkeyPatch, line: str, code: str, cls: type, needle: str
) -> None:
    monkeypatch.setenv("GPT_STANDIN_FAIL", line or " ")
    monkeypatch.setenv("GPT_STANDIN_EXIT", code)
    log = tmp_path / "log.txt"
    with pytest.raises(cls, match=needle) as info:
        run_snap(
            SAFE,
            GRID,
            tmp_path / "x.tif",
            polarisations=("VV",),
            speckle=_spk({"looks": 4}),
            dem=DEM,
            gpt=None,
            threads=1,
            cache_mb=256,
            log_path=log,
        )
    assert "\n" not in str(info.value) and str(log) in str(info.value)
    assert f"--- exit {code} ---" in log.read_text()


def test_missing_gpt_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="sar.gpt"):
        run_snap(SAFE, GRID, tmp_path / "x.tif", speckle=_spk(), dem=None, gpt=None, threads=1, cache_mb=256)


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("<windowSize>7x7</windowSize>", "<windowSize>8x8</windowSize>", "Value for 'windowSize' is invalid: '8x8'"),
        ("<operator>Calibration</operator>", "<operator>Calibrate</operator>", "Operator 'Calibrate' not found"),
        ("<sigmaStr>", "<sigma>0.9</sigma><sigmaStr>", "Unknown element 'sigma'"),
        ("<sourceBands>Sigma0_VV</sourceBands>", "<sourceBands>Sigma0_HH</sourceBands>", "'Sigma0_HH' not found"),
    ],
)
def test_standin_checks_graph_like_gpt(tmp_path: Path, gpt_env: Path, old: str, new: str, message: str) -> None:
    import subprocess

    from pipeline_lib.sar.snap import DemSpec, build_graph, graph_xml, speckle_parameters

    root = build_graph(
        SAFE / "manifest.safe",
        tmp_path / "tc.tif",
        GRID,
        polarisations=("VV",),
        speckle=speckle_parameters(_spk({"looks": 4}), None),
        dem=DemSpec("External DEM", DEM),
    )
    text = graph_xml(root)
    graph = tmp_path / "graph.xml"
    graph.write_text(text.replace(old, new, 1))
    proc = subprocess.run([str(STANDIN), str(graph), "-q", "1"], capture_output=True, text=True, check=False)
    assert proc.returncode == 1 and message in proc.stderr and proc.stderr.startswith("Error: ")
    assert not (tmp_path / "tc.tif").exists()
    graph.write_text(text)
    ok = subprocess.run([str(STANDIN), str(graph), "-q", "1", "-c", "64M"], capture_output=True, text=True, check=False)
    assert ok.returncode == 0, ok.stderr
    with rasterio.open(tmp_path / "tc.tif") as src:
        assert src.descriptions == ("Sigma0_VV",) and src.crs.to_epsg() == 32633 and src.nodata == 0
        assert (src.transform.c - GRID.transform.c) % 10 == 0 and (src.transform.f - GRID.transform.f) % 10 == 0
