# Configuration loading and input functions shared by every stage.
# The whole config (config.yaml + each listed region file) is validated here, before any job runs;
# region files built directly (results/<slug>/...) are loaded and validated on first use.
import sys
from pathlib import Path

from pipeline_lib.config import load_region, validate_top
from pipeline_lib.errors import ConfigError


def _fail(exc):
    sys.stderr.write(f"ConfigError: {exc}\n")
    sys.exit(1)


try:
    validate_top(config)
    REGIONS = {
        slug: load_region(slug, config["regions_dir"], config.get("defaults"))
        for slug in config["regions"]
    }
except ConfigError as exc:
    _fail(exc)


wildcard_constraints:
    region=r"[a-z0-9][a-z0-9-]*",
    date=r"\d{4}-\d{2}-\d{2}",
    experiment=r"[a-z0-9][a-z0-9_-]*",
    product=r"S[12][A-D]_[A-Za-z0-9_]+",


def region_cfg(region):
    """The validated settings of a region (loaded on demand for regions not in `regions`)."""
    if region not in REGIONS:
        try:
            REGIONS[region] = load_region(
                region, config["regions_dir"], config.get("defaults")
            )
        except ConfigError as exc:
            _fail(exc)
    return REGIONS[region]


def rcfg(key, *path):
    """A params function returning region_cfg(region)[key][path...] (so a change reruns dependants)."""

    def get(wildcards):
        value = region_cfg(wildcards.region)[key]
        for p in path:
            value = value[p]
        return value

    return get


def experiment_cfg(region, name):
    for exp in region_cfg(region)["experiments"]:
        if exp["name"] == name:
            return exp
    raise ValueError(f"experiment {name!r} is not configured for region {region!r}")


def experiment_dates(region, name):
    exp = experiment_cfg(region, name)
    return sorted({exp["target"], *exp["guides"]})


def scenes_for(wildcards):
    """Scene rows for the region, once the search checkpoint has run."""
    from pipeline_lib.fetch.base import read_scene_table

    table = checkpoints.search.get(region=wildcards.region).output.table
    return read_scene_table(table)


def product_path(region, scene):
    ext = (
        "zip"
        if scene.uri.endswith(".zip") or scene.source in ("cdse", "dhus")
        else "SAFE"
    )
    return f"results/{region}/raw/{scene.product_id}.{ext}"


def product_for(mission_prefix):
    """Input function: the product selected for {date} of the given mission family (S1 or S2)."""

    def get(wildcards):
        for scene in scenes_for(wildcards):
            if scene.date == wildcards.date and scene.mission.startswith(
                mission_prefix
            ):
                return product_path(wildcards.region, scene)
        raise ValueError(
            f"results/{wildcards.region}/scenes.csv has no {mission_prefix} scene for {wildcards.date}"
        )

    return get


def region_report_inputs(wildcards):
    cfg = region_cfg(wildcards.region)
    dates = cfg["dates"]
    exps = [e["name"] for e in cfg["experiments"]]
    return {
        "grid": f"results/{wildcards.region}/grid.json",
        "scenes": f"results/{wildcards.region}/scenes.csv",
        "offsets": f"results/{wildcards.region}/offsets.json",
        "s1": expand(
            "results/{region}/s1/{date}.tif", region=wildcards.region, date=dates
        ),
        "s2": expand(
            "results/{region}/s2/{date}.tif", region=wildcards.region, date=dates
        ),
        "stacks": expand(
            "results/{region}/stacks/{e}.nc", region=wildcards.region, e=exps
        ),
    }


def dem_input(wildcards):
    """The DEM file as an input (so replacing it reruns terrain correction); none for the ellipsoid."""
    dem = region_cfg(wildcards.region)["sar"]["dem"]
    return [] if dem == "ellipsoid" else [dem]
