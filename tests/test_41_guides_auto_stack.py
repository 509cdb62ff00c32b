"""guides: auto end to end: the stack rule picks the guides on the processed images (DESIGN §6)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from affine import Affine
from workflow_utils import make_workdir, snakemake

from pipeline_lib.cog import write_cog
from pipeline_lib.config import load_region
from pipeline_lib.errors import ConfigError
from pipeline_lib.model.select import plan_auto_validation
from pipeline_lib.stacks import resolve_experiment_guides

DATES = ["2021-03-15", "2021-04-15", "2021-05-15", "2021-06-15", "2021-07-15", "2021-08-15"]
CLEAR = [1.0, 0.95, 0.5, None, 1.0, 1.0]  # None: the target, whose file does not exist (never read)


def _s2(path: Path, clear: float) -> Path:
    valid = np.zeros((20, 20), np.float32)
    valid.flat[: int(round(clear * valid.size))] = 1.0
    bands = np.full((5, 20, 20), 0.1, np.float32)
    write_cog(
        np.concatenate([bands, valid[None]]),
        path,
        crs="EPSG:32631",
        transform=Affine(10, 0, 500000, 0, -10, 5600000),
        descriptions=["B04", "B03", "B02", "B11", "B12", "valid"],
    )
    return path


@pytest.fixture
def series(tmp_path: Path) -> dict[str, Path]:
    return {
        d: (_s2(tmp_path / f"{d}.tif", c) if c is not None else tmp_path / "missing.tif")
        for d, c in zip(DATES, CLEAR, strict=True)
    }


def _exp(**kw: object) -> dict[str, object]:
    base = {"name": "e", "task": "visible_to_swir", "target": "2021-06-15", "guides": "auto"}
    return {**base, "guides_window_days": 45, "guides_min_clear": 0.9, **kw}


def test_auto_picks_the_clear_dates_in_the_window_without_reading_the_target(series: dict[str, Path]) -> None:
    got = resolve_experiment_guides(_exp(), {}, series)
    # 2021-05-15 is half cloudy; 03-15 and 08-15 lie outside 45 days; the target file is never opened
    assert got["guides"] == ["2021-04-15", "2021-07-15"]
    assert "45 days" in got["guides_rule"] and "0.9" in got["guides_rule"]
    wide = resolve_experiment_guides(_exp(guides_window_days=92), {}, series)
    assert wide["guides"] == ["2021-03-15", "2021-04-15", "2021-07-15", "2021-08-15"]
    assert resolve_experiment_guides(_exp(guides=["2021-04-15", "2021-07-15"]), {}, series)["guides"] == [
        "2021-04-15",
        "2021-07-15",
    ]


def test_a_validation_experiment_never_takes_the_test_target(series: dict[str, Path]) -> None:
    plan = plan_auto_validation("2021-06-15", DATES, 2)
    assert [v.target for v in plan] == ["2021-07-15", "2021-05-15"]  # 30 and 31 days away
    exp = plan[0].as_experiment(_exp())
    assert exp["exclude"] == ["2021-06-15"] and exp["guides"] == "auto"
    # the validation target 2021-07-15 takes guides around it, never the test's 2021-06-15 (not even its file)
    got = resolve_experiment_guides(exp, {}, {d: p for d, p in series.items() if d != "2021-06-15"})
    # only 2021-08-15 is clear within 45 days: the two nearest clear dates instead, never 2021-06-15
    assert got["target"] == "2021-07-15" and got["guides"] == ["2021-04-15", "2021-08-15"]


def test_too_few_clear_dates_is_one_line(series: dict[str, Path]) -> None:
    with pytest.raises(ConfigError, match="fewer than 2 clear dates"):
        resolve_experiment_guides(
            _exp(guides_min_clear=1.0, guides_window_days=1), {}, {d: series[d] for d in DATES[2:5]}
        )


def test_region_config_accepts_auto_and_fills_the_window(tmp_path: Path) -> None:
    region = yaml.safe_load((Path("config/regions/demo.yaml")).read_text())
    region["experiments"] = [{"name": "a", "task": "sar_to_visible", "target": "2022-01-04", "guides": "auto"}]
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(region))
    exp = load_region("demo", tmp_path)["experiments"][0]
    assert exp["guides"] == "auto" and exp["guides_window_days"] == 45 and exp["guides_min_clear"] == 0.9
    region["experiments"][0]["guides"] = "nearest"
    (tmp_path / "demo.yaml").write_text(yaml.safe_dump(region))
    with pytest.raises(ConfigError, match="guides"):
        load_region("demo", tmp_path)


@pytest.mark.workflow
def test_workflow_plans_auto_stacks_on_every_date_and_validation_without_the_target(tmp_path: Path) -> None:
    work = make_workdir(tmp_path / "wf")
    path = work / "config" / "regions" / "demo.yaml"
    region = yaml.safe_load(path.read_text())
    region["experiments"] = [{"name": "auto", "task": "sar_to_visible", "target": "2022-01-04", "guides": "auto",
                              "variants": ["no_uc_sg"]}]  # fmt: skip
    region.pop("gapfill", None)
    path.write_text(yaml.safe_dump(region))
    r = snakemake(work, "-n", "results/demo/pred/auto/selected.tif")
    jobs = re.split(r"\n(?=(?:local)?(?:rule|checkpoint) )", r.stdout)
    inputs: dict[str, list[list[str]]] = {}
    for job in jobs:
        m = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", job)
        inp = re.search(r"input: (.*)", job)
        if m and inp:
            inputs.setdefault(m.group(1), []).append(inp.group(1).split(", "))
    (stack,) = inputs["stack"]
    assert sorted(p for p in stack if "/s2/" in p) == [f"results/demo/s2/{d}.tif" for d in region["dates"]]
    assert inputs["validation_stack"], r.stdout[-2000:]
    for val in inputs["validation_stack"]:
        assert not any(p.endswith("/2022-01-04.tif") for p in val), val
        assert sum("/s2/" in p for p in val) == len(region["dates"]) - 1
