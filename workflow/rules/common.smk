# Configuration loading and input functions shared by every stage.
# The whole config (config.yaml + each listed region file) is validated here, before any job runs;
# region files built directly (results/<slug>/...) are loaded and validated on first use.
import os
import sys
from argparse import Namespace
from pathlib import Path

from pipeline_lib.config import load_region, validate_top
from pipeline_lib.errors import ConfigError, PipelineError
from pipeline_lib.model import variants as model_variants


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


def _warn_credentials(slug, region):
    """Say at DAG time (also under -n) when a region's source needs credentials that are not set."""
    from pipeline_lib.fetch.credentials import missing_credentials_warning

    line = missing_credentials_warning(
        region["fetch"],
        os.environ,
        Path.home() / ".netrc",
        f"{config['regions_dir']}/{slug}.yaml",
    )
    if line:
        sys.stderr.write(f"WARNING: {line}\n")


def _check_train(slug, region):
    """Build the training parameters of both tasks at DAG time: a bad combination (patch_px not a multiple
    of 2^levels, overlap over half a tile) is one ConfigError line naming the region file, before any job.
    """
    from pipeline_lib.model.params import TASKS, TrainParams

    for task in TASKS:
        try:
            TrainParams.from_config(task, region["train"], region["predict"])
        except ConfigError as exc:
            _fail(ConfigError(f"{config['regions_dir']}/{slug}.yaml: {exc}"))


for _slug, _region in REGIONS.items():
    _warn_credentials(_slug, _region)
    _check_train(_slug, _region)


def _ard_regions():
    """Slugs of the region files whose fetch.source is `files` or `stac` (read at parse time, unvalidated:
    the rules making s1/{date}.tif and s2/{date}.tif differ by source, so their region constraints do).
    """
    import yaml

    fallback = ((config.get("defaults") or {}).get("fetch") or {}).get("source", "demo")
    slugs = []
    for path in sorted(Path(config["regions_dir"]).glob("*.yaml")):
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError):
            continue  # load_region reports it when the region is used
        fetch = raw.get("fetch") if isinstance(raw, dict) else None
        source = fetch.get("source", fallback) if isinstance(fetch, dict) else fallback
        if source in ("files", "stac"):
            slugs.append(path.stem)
    return slugs


_ARD_ALT = "|".join(_ard_regions()) or "(?!)"
# region wildcards of the ingest rules (files and stac sources) and of the SAFE chains (download, SAR, optical)
ARD_REGION = rf"(?:{_ARD_ALT})"
SAFE_REGION = rf"(?!(?:{_ARD_ALT})(?![a-z0-9-]))[a-z0-9][a-z0-9-]*"


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
        _warn_credentials(region, REGIONS[region])
        _check_train(region, REGIONS[region])
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
    names = ", ".join(e["name"] for e in region_cfg(region)["experiments"])
    _fail(
        ConfigError(
            f"{config['regions_dir']}/{region}.yaml: experiments: {name!r} is not configured; "
            f"add it or use one of: {names}"
        )
    )


def experiment_dates(region, name):
    """The dates an experiment's stack reads: target and guides; with guides auto every region date
    (the stack rule picks the guides among them, pipeline_lib.guides)."""
    exp = experiment_cfg(region, name)
    if exp["guides"] == "auto":
        return sorted(region_cfg(region)["dates"])
    return sorted({exp["target"], *exp["guides"]})


def scenes_for(wildcards):
    """Scene rows for the region, once the search checkpoint has run."""
    from pipeline_lib.fetch.base import read_scene_table

    table = checkpoints.search.get(region=wildcards.region).output.table
    return read_scene_table(table)


def local_product_state(wildcards):
    """Fingerprint of the user's own product behind a `local` scene ("" for other sources): a params
    value, so replacing or editing the product in fetch.local_dir reruns its download (DESIGN §9).
    """
    from pipeline_lib.fetch.local import product_state

    for scene in scenes_for(wildcards):
        if scene.product_id == wildcards.product and scene.source == "local":
            return product_state(Path(scene.uri))
    return ""


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
        dates = region_cfg(wildcards.region)["dates"]
        if wildcards.date not in dates:
            _fail(
                ConfigError(
                    f"{config['regions_dir']}/{wildcards.region}.yaml: dates: {wildcards.date} is not a "
                    f"configured date; add it to dates or use one of {', '.join(dates)}"
                )
            )
        for scene in scenes_for(wildcards):
            if scene.date == wildcards.date and scene.mission.startswith(
                mission_prefix
            ):
                return product_path(wildcards.region, scene)
        raise ValueError(
            f"results/{wildcards.region}/scenes.csv has no {mission_prefix} scene for {wildcards.date}"
        )

    return get


def has_s1(region):
    """False for a files/stac region without Sentinel-1 (s1 null): it has no s1/{date}.tif."""
    fetch = region_cfg(region)["fetch"]
    if fetch["source"] == "files":
        return bool(fetch["files"].get("s1"))
    if fetch["source"] == "stac":
        from pipeline_lib.fetch.stac import stac_settings

        try:
            return "s1" in stac_settings(fetch["stac"]).collections
        except PipelineError as exc:
            _fail(exc)
    return True


def s1_dates(region, dates):
    """The dates that have an s1/{date}.tif (all of them, or none for an S2-only region)."""
    return list(dates) if has_s1(region) else []


def grid_inputs(wildcards):
    """A files-source region without an aoi takes the grid of its first Sentinel-2 file."""
    cfg = region_cfg(wildcards.region)
    if cfg.get("aoi") is not None or cfg["fetch"]["source"] != "files":
        return {}
    from pipeline_lib.fetch.files import list_files, modality_specs

    try:
        spec = modality_specs(cfg["fetch"]["files"])["s2"]
        return {"reference": str(list_files(spec)[0].path)}
    except PipelineError as exc:
        _fail(exc)


def ard_file(modality):
    """Input function: the file scenes.csv selected for {date} of a files-source region (none for stac:
    its assets are read over HTTP, but the scene table is still needed)."""

    def get(wildcards):
        if region_cfg(wildcards.region)["fetch"]["source"] == "stac":
            scenes_for(wildcards)  # waits for the search checkpoint
            return []
        for scene in scenes_for(wildcards):
            if scene.date == wildcards.date and scene.mission == modality.upper():
                return scene.uri
        raise ValueError(
            f"results/{wildcards.region}/scenes.csv has no {modality.upper()} file for {wildcards.date}"
        )

    return get


def region_report_inputs(wildcards):
    region = wildcards.region
    cfg = region_cfg(region)
    dates = cfg["dates"]
    exps = [e["name"] for e in cfg["experiments"]]
    inputs = {
        "grid": f"results/{region}/grid.json",
        "scenes": f"results/{region}/scenes.csv",
        "offsets": f"results/{region}/offsets.json",
        "s1": expand(
            "results/{region}/s1/{date}.tif",
            region=region,
            date=s1_dates(region, dates),
        ),
        "s2": expand("results/{region}/s2/{date}.tif", region=region, date=dates),
        "metrics": f"results/{region}/metrics.json",
    }
    for exp in exps:
        ev = evaluate_inputs(Namespace(region=region, experiment=exp))
        for key in ("truth", "stack", "preds", "uncertainty", "models"):
            inputs[f"{exp}__{key}"] = ev[key]
    if cfg.get("gapfill"):
        inputs["gapfill_fills"] = gapfill_products(wildcards)
        inputs["gapfill_collection"] = f"results/{region}/gapfill/collection.json"
    return inputs


def dem_input(wildcards):
    """The DEM file as an input (so replacing it reruns terrain correction); none for the ellipsoid."""
    dem = region_cfg(wildcards.region)["sar"]["dem"]
    return [] if dem == "ellipsoid" else [dem]


# Variant names come from the one registry (pipeline_lib/model/variants.py).
BASELINES = list(model_variants.baselines())
UNCERTAINTY_BASELINES = [
    v for v in model_variants.uncertainty_variants() if v in BASELINES
]
TRAIN_VARIANTS = model_variants.wildcard_pattern(model_variants.listed_networks())
UNCERTAINTY_VARIANTS = model_variants.wildcard_pattern(
    model_variants.uncertainty_variants(listed_only=True)
)
PLAIN_VARIANTS = model_variants.wildcard_pattern(
    [
        v
        for v in [*model_variants.listed_networks(), *BASELINES]
        if not model_variants.get_variant(v).uncertainty
    ]
)


def train_params(region, experiment):
    """The region's train section without device, threads and ensemble (per-task blocks included): the
    script builds pipeline_lib.model.params.TrainParams from it for the experiment's task (experiment_task).
    """
    train = dict(region_cfg(region)["train"])
    for key in ("device", "threads", "ensemble"):
        train.pop(key, None)
    return train


def ensemble_size(region):
    """train.ensemble: members per network variant (1 = one model; pipeline_lib.model.ensemble)."""
    from pipeline_lib.model.ensemble import check_ensemble

    try:
        return check_ensemble(region_cfg(region)["train"]["ensemble"])
    except ConfigError as exc:
        _fail(exc)


def member_train_params(region, experiment, member):
    """train_params of ensemble member m >= 1: seed train.seed + m."""
    from pipeline_lib.model.ensemble import member_seeds

    train = train_params(region, experiment)
    train["seed"] = member_seeds(train["seed"], int(member) + 1)[-1]
    return train


def model_checkpoints(region, experiment, variant):
    """The checkpoints of a network variant: {variant}.pt, then {variant}.member{m}.pt per extra member."""
    from pipeline_lib.model.ensemble import member_checkpoints

    return member_checkpoints(
        f"results/{region}/models/{experiment}", variant, ensemble_size(region)
    )


def experiment_task(region, experiment):
    return experiment_cfg(region, experiment)["task"]


def network_variants(region, experiment):
    return list(experiment_cfg(region, experiment)["variants"])


def predict_inputs(wildcards):
    inputs = {"stack": f"results/{wildcards.region}/stacks/{wildcards.experiment}.nc"}
    if wildcards.variant not in BASELINES:
        ckpts = model_checkpoints(
            wildcards.region, wildcards.experiment, wildcards.variant
        )
        inputs["ckpt"] = ckpts[0] if len(ckpts) == 1 else ckpts
    return inputs


def test_outputs(region, exp):
    """The test experiment's predictions and uncertainty rasters (every method)."""
    variants = network_variants(region, exp) + BASELINES
    unc = [v for v in variants if model_variants.get_variant(v).uncertainty]
    return (
        [f"results/{region}/pred/{exp}/{v}.tif" for v in variants],
        [f"results/{region}/pred/{exp}/{v}_uncertainty.tif" for v in unc],
    )


def evaluate_inputs(wildcards):
    region, exp = wildcards.region, wildcards.experiment
    preds, unc = test_outputs(region, exp)
    return {
        "truth": f"results/{region}/truth/{exp}.tif",
        "stack": f"results/{region}/stacks/{exp}.nc",
        "preds": preds,
        "uncertainty": unc,
        "models": [
            f"results/{region}/models/{exp}/{v}.pt"
            for v in network_variants(region, exp)
        ],
        "selected": f"results/{region}/pred/{exp}/selected.tif",
        "selected_uncertainty": f"results/{region}/pred/{exp}/selected_uncertainty.tif",
        "selected_json": f"results/{region}/pred/{exp}/selected.json",
    }


# Method choice without the truth (DESIGN §6, method choice; pipeline_lib.model.select).
def select_params(region):
    from pipeline_lib.model.select import SelectParams

    try:
        return SelectParams.from_config(region_cfg(region)["select"])
    except ConfigError as exc:
        _fail(exc)


def validation_plan(region, experiment):
    """{name: ValidationExperiment}: gap-matched validation experiments (never the target date)."""
    from pipeline_lib.model.select import plan_auto_validation, plan_validation

    exp = experiment_cfg(region, experiment)
    sp = select_params(region)
    if exp["guides"] == "auto":
        plan = plan_auto_validation(
            exp["target"], region_cfg(region)["dates"], sp.validations
        )
        return {v.name: v for v in plan}
    plan = plan_validation(
        exp["target"],
        exp["guides"],
        region_cfg(region)["dates"],
        sp.validations,
        sp.max_gap_mismatch_days,
    )
    return {v.name: v for v in plan}


def validation_cfg(region, experiment, val):
    plan = validation_plan(region, experiment)
    if val not in plan:
        raise ValueError(
            f"{val!r} is not a validation experiment of {experiment!r} in region {region!r}"
        )
    return plan[val].as_experiment(experiment_cfg(region, experiment))


def validation_dates(region, experiment, val):
    """Dates a validation stack reads: never the test's target (with guides auto: every other date)."""
    v = validation_cfg(region, experiment, val)
    if v["guides"] == "auto":
        return sorted(set(region_cfg(region)["dates"]) - set(v["exclude"]))
    return sorted({v["target"], *v["guides"]})


def validation_train_params(region, experiment, seed):
    train = train_params(region, experiment)
    train["seed"] = int(seed)
    steps = select_params(region).max_steps
    if steps is not None:
        train["max_steps"] = steps
    return train


def validation_meta(region, experiment, val, seed):
    v = validation_plan(region, experiment)[val]
    return {
        "validation": val,
        "seed": int(seed),
        "gap_mismatch_days": v.gap_mismatch_days,
    }


def select_inputs(wildcards):
    """Validation scores of every validation experiment and seed, the test rasters and stack (no truth)."""
    region, exp = wildcards.region, wildcards.experiment
    preds, unc = test_outputs(region, exp)
    vals = list(validation_plan(region, exp))
    return {
        "validation": expand(
            "results/{region}/validation/{exp}/{val}/seed{seed}/scores.json",
            region=region,
            exp=exp,
            val=vals,
            seed=select_params(region).seeds,
        ),
        "preds": preds,
        "uncertainty": unc,
        "stack": f"results/{region}/stacks/{exp}.nc",
    }


def sar_backend(region):
    """native or snap: `auto` picks SNAP when gpt is configured or on PATH (DESIGN §5)."""
    from pipeline_lib.sar.snap import find_gpt

    sar = region_cfg(region)["sar"]
    if sar["backend"] != "auto":
        return sar["backend"]
    return "snap" if find_gpt(sar["gpt"]) else "native"


def terrain_inputs(wildcards):
    """Native: the Lee-filtered sigma0 window; SNAP: the product itself (gpt does every step)."""
    inputs = {
        "product": product_for("S1")(wildcards),
        "grid": f"results/{wildcards.region}/grid.json",
        "dem": dem_input(wildcards),
    }
    if sar_backend(wildcards.region) == "native":
        inputs["filtered"] = (
            f"results/{wildcards.region}/s1/filtered/{wildcards.date}.nc"
        )
    return inputs


# Resources scale with the job's inputs (DESIGN §8): grid size for raster stages, file size for
# stacks and models. Figures are generous upper bounds measured on the demo (512² px) and ci-tiny.
def _grid_mpix(input):
    """Grid size in Mpix from the job's grid.json input (1 Mpix while a checkpoint is pending)."""
    import json

    path = getattr(input, "grid", None)
    if not path or not os.path.exists(path):
        return 1.0
    with open(path) as fh:
        h, w = json.load(fh)["shape"]
    return h * w / 1e6


def mem_raster(base_mb, per_mpix_mb):
    """mem_mb = base + per-Mpix x grid size (the grid.json input)."""
    return lambda wildcards, input: int(base_mb + per_mpix_mb * _grid_mpix(input))


def runtime_raster(base_min, per_mpix_min):
    return lambda wildcards, input: int(base_min + per_mpix_min * _grid_mpix(input))


def mem_from_inputs(base_mb, factor):
    """mem_mb = base + factor x total input size (MB)."""
    return lambda wildcards, input: int(base_mb + factor * input.size_mb)


def runtime_from_inputs(base_min, per_mb_min):
    return lambda wildcards, input: int(base_min + per_mb_min * input.size_mb)


# Gap-filled series (workflow/rules/gapfill.smk).
def gapfill_cfg(region):
    return region_cfg(region).get("gapfill")


def gapfill_fill_dates(region):
    from pipeline_lib.gapfill.plan import gapfill_dates

    cfg = gapfill_cfg(region)
    if not cfg:
        return []
    try:
        return gapfill_dates(region_cfg(region)["dates"], cfg)
    except ConfigError as exc:
        _fail(exc)


def gapfill_tasks(region):
    from pipeline_lib.gapfill.plan import swir_task

    return ["sar_to_visible", swir_task(gapfill_cfg(region)["swir"])]


def gapfill_series(wildcards):
    dates = region_cfg(wildcards.region)["dates"]
    return {
        "s1": expand(
            "results/{region}/s1/{date}.tif", region=wildcards.region, date=dates
        ),
        "s2": expand(
            "results/{region}/s2/{date}.tif", region=wildcards.region, date=dates
        ),
    }


def gapfill_models(wildcards):
    """The region's gap-fill models, in the order of gapfill_tasks (visible, then SWIR)."""
    return [
        f"results/{wildcards.region}/gapfill/models/{t}.pt"
        for t in gapfill_tasks(wildcards.region)
    ]


def gapfill_products(wildcards):
    return expand(
        "results/{region}/gapfill/{date}.tif",
        region=wildcards.region,
        date=gapfill_fill_dates(wildcards.region),
    )
