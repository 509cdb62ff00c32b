"""Config schema: defaults, one-line errors naming file and key, semantic checks, Snakefile validation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import REPO

from pipeline_lib.config import load_region, load_regions, validate_top
from pipeline_lib.errors import ConfigError


def _tiny() -> dict[str, Any]:
    return yaml.safe_load((REPO / "config/regions/ci-tiny.yaml").read_text())


def _write(tmp_path: Path, region: dict[str, Any], slug: str = "ci-tiny") -> Path:
    (tmp_path / f"{slug}.yaml").write_text(yaml.safe_dump(region))
    return tmp_path


def test_shipped_config_and_regions_validate_with_defaults() -> None:
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["regions"] = sorted(p.stem for p in (REPO / "config/regions").glob("*.yaml"))
    cfg["regions_dir"] = str(REPO / "config/regions")
    regions = load_regions(cfg)
    real = {"wc-belgium-patch-2018", "wc-belgium-monthly-2021", "eolearn-slovenia-l1c-2015"}
    assert set(regions) == {"demo", "ci-tiny", "queensland-2017", *real}
    assert all(regions[r]["fetch"]["source"] == "files" for r in real)
    demo = regions["demo"]
    assert demo["sar"]["speckle"] == {"window": 7, "target_window": 3, "sigma": 0.9, "looks": None}
    assert demo["resolution_m"] == 10
    q = regions["queensland-2017"]
    assert q["dates"] == ["2017-04-08", "2017-04-28", "2017-08-31"]
    assert q["aoi"]["center"] == [150.4667, -23.5333]


@pytest.mark.parametrize(
    ("mutate", "key", "fragment"),
    [
        (lambda r: r.update(bogus=1), "bogus", "unknown key"),
        (lambda r: r["sar"].update(margin_px="wide"), "sar.margin_px", "type"),
        (lambda r: r.update(dates=["2021-12-23", "2022-01-04"]), "dates", "at least 3"),
        (lambda r: r.update(aoi={"center": [42.0, 112.5], "size_px": [128, 128]}), "aoi.center", "[lon, lat]"),
        (lambda r: r.update(aoi=[190.0, 10.0, 191.0, 11.0]), "aoi", "±180"),
        (lambda r: r["sar"].setdefault("speckle", {}).update(window=8), "sar.speckle.window", "one of"),
        (lambda r: r["fetch"].update(source="ftp"), "fetch.source", "demo, cdse, dhus, local"),
        (lambda r: r["experiments"][0].update(target="2022-01-28"), "experiments.0.guides", "also a guide"),
        (lambda r: r["experiments"][0].update(target="2022-02-01"), "experiments.0.target", "not one of dates"),
        (lambda r: r["experiments"][0].update(task="sar_to_swir"), "experiments.0.task", "one of"),
        (lambda r: r.update(dates=["2022-01-04", "2021-12-23", "2022-01-16"]), "dates", "ascending"),
        (lambda r: r["fetch"].update(password="hunter2"), "fetch.password", ""),
    ],
)
def test_bad_region_fails_with_one_line_naming_file_and_key(
    tmp_path: Path, mutate: Any, key: str, fragment: str
) -> None:
    region = _tiny()
    mutate(region)
    folder = _write(tmp_path, region)
    with pytest.raises(ConfigError) as info:
        load_region("ci-tiny", folder)
    msg = str(info.value)
    assert "\n" not in msg
    assert "ci-tiny.yaml" in msg
    assert key in msg, msg
    assert fragment in msg, msg
    assert "hunter2" not in msg


def test_lat_lon_swapped_bbox_is_named() -> None:
    region = _tiny()
    region["aoi"] = [41.9, 112.4, 42.1, 112.6]
    with pytest.raises(ConfigError, match="swapped"):
        load_region("x", _write(Path(__import__("tempfile").mkdtemp()), {**region, "region": "x"}, "x"))


def test_region_file_not_found_lists_known(tmp_path: Path) -> None:
    _write(tmp_path, _tiny())
    with pytest.raises(ConfigError, match=r"nope\.yaml not found.*ci-tiny"):
        load_region("nope", tmp_path)


def test_top_level_unknown_key() -> None:
    with pytest.raises(ConfigError, match=r"config/config.yaml: colour: unknown key"):
        validate_top({"regions": ["demo"], "colour": "red"})


def test_snakefile_rejects_bad_config_before_any_job(tmp_path: Path) -> None:
    """A bad key stops `snakemake -n` with one ConfigError line and no results written."""
    r = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", "regions=[nope]"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode != 0
    lines = [line for line in r.stderr.splitlines() if line.startswith("ConfigError")]
    assert len(lines) == 1 and "nope.yaml not found" in lines[0], r.stderr
