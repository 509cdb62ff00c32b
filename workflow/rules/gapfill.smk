# Gap-filled S2 series (DESIGN §8): one model per region and task on the whole series, a filled
# COG + STAC item per date, the series' STAC collection and the masked-pixel evaluation.


rule gapfill_train:
    input:
        unpack(gapfill_series),
    output:
        "results/{region}/gapfill/models/{task}.pt",
    log:
        "logs/{region}/gapfill_train/{task}.log",
    benchmark:
        "benchmarks/runs/{region}/gapfill_train/{task}.tsv"
    wildcard_constraints:
        task="sar_to_visible|sar_to_swir|visible_to_swir",
    conda:
        "../../envs/torch.yaml"
    threads: lambda wc: gapfill_cfg(wc.region)["threads"]
    resources:
        mem_mb=mem_from_inputs(1500, 8),
        runtime=runtime_from_inputs(30, 1),
        gpu=1,
    params:
        dates=rcfg("dates"),
        gapfill=rcfg("gapfill"),
        train=lambda wc: train_params(wc.region, None),
        device=rcfg("train", "device"),
    script:
        "../scripts/gapfill_train.py"


rule gapfill_fill:
    input:
        unpack(gapfill_series),
        models=gapfill_models,
    output:
        "results/{region}/gapfill/{date}.tif",
    log:
        "logs/{region}/gapfill_fill/{date}.log",
    benchmark:
        "benchmarks/runs/{region}/gapfill_fill/{date}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: lambda wc: gapfill_cfg(wc.region)["threads"]
    resources:
        mem_mb=mem_from_inputs(1500, 8),
        runtime=runtime_from_inputs(10, 0.2),
    params:
        dates=rcfg("dates"),
        gapfill=rcfg("gapfill"),
        predict=rcfg("predict"),
        tasks=lambda wc: gapfill_tasks(wc.region),
    script:
        "../scripts/gapfill_fill.py"


rule gapfill_collection:
    input:
        gapfill_products,
    output:
        "results/{region}/gapfill/collection.json",
    log:
        "logs/{region}/gapfill_collection.log",
    localrule: True
    conda:
        "../../envs/geo.yaml"
    script:
        "../scripts/gapfill_collection.py"


rule gapfill_evaluate:
    input:
        unpack(gapfill_series),
        models=gapfill_models,
        fills=gapfill_products,
    output:
        "results/{region}/gapfill/metrics.json",
    log:
        "logs/{region}/gapfill_evaluate.log",
    benchmark:
        "benchmarks/runs/{region}/gapfill_evaluate.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: lambda wc: gapfill_cfg(wc.region)["threads"]
    resources:
        mem_mb=mem_from_inputs(1500, 8),
        runtime=runtime_from_inputs(10, 0.2),
    params:
        dates=rcfg("dates"),
        gapfill=rcfg("gapfill"),
        predict=rcfg("predict"),
        tasks=lambda wc: gapfill_tasks(wc.region),
    script:
        "../scripts/gapfill_evaluate.py"
