# Method choice without the truth (DESIGN §6, method choice): gap-matched validation experiments on known
# dates (never the target date), every network retrained per validation experiment and seed, and the
# margin rule that writes pred/{experiment}/selected.tif, the pipeline's recommended prediction.


wildcard_constraints:
    val=r"val[0-9]+",
    seed=r"[0-9]+",


rule validation_stack:
    input:
        s1=lambda wc: expand(
            "results/{{region}}/s1/{date}.tif",
            date=s1_dates(
                wc.region, validation_dates(wc.region, wc.experiment, wc.val)
            ),
        ),
        s2=lambda wc: expand(
            "results/{{region}}/s2/{date}.tif",
            date=validation_dates(wc.region, wc.experiment, wc.val),
        ),
        offsets="results/{region}/offsets.json",
    output:
        stack="results/{region}/validation/{experiment}/{val}/stack.nc",
        truth="results/{region}/validation/{experiment}/{val}/truth.tif",
    log:
        "logs/{region}/validation_stack/{experiment}/{val}.log",
    benchmark:
        "benchmarks/runs/{region}/validation_stack/{experiment}/{val}.tsv"
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=mem_from_inputs(800, 6),
        runtime=runtime_from_inputs(5, 0.05),
    params:
        experiment=lambda wc: validation_cfg(wc.region, wc.experiment, wc.val),
        dates=lambda wc: validation_dates(wc.region, wc.experiment, wc.val),
        s1_dates=lambda wc: s1_dates(
            wc.region, validation_dates(wc.region, wc.experiment, wc.val)
        ),
    script:
        "../scripts/stack.py"


rule validation_train:
    input:
        stack="results/{region}/validation/{experiment}/{val}/stack.nc",
    output:
        "results/{region}/validation/{experiment}/{val}/seed{seed}/{variant}.pt",
    log:
        "logs/{region}/validation_train/{experiment}/{val}/seed{seed}/{variant}.log",
    benchmark:
        "benchmarks/runs/{region}/validation_train/{experiment}/{val}/seed{seed}/{variant}.tsv"
    wildcard_constraints:
        variant=TRAIN_VARIANTS,
    conda:
        "../../envs/torch.yaml"
    threads: lambda wc: region_cfg(wc.region)["train"]["threads"]
    resources:
        mem_mb=mem_from_inputs(2000, 8),
        runtime=runtime_from_inputs(30, 1),
        gpu=1,
    params:
        task=lambda wc: experiment_task(wc.region, wc.experiment),
        train=lambda wc: validation_train_params(wc.region, wc.experiment, wc.seed),
        device=rcfg("train", "device"),
    script:
        "../scripts/train.py"


rule validate:
    input:
        stack="results/{region}/validation/{experiment}/{val}/stack.nc",
        truth="results/{region}/validation/{experiment}/{val}/truth.tif",
        models=lambda wc: expand(
            "results/{{region}}/validation/{{experiment}}/{{val}}/seed{{seed}}/{v}.pt",
            v=select_params(wc.region).validated_variants(
                network_variants(wc.region, wc.experiment)
            ),
        ),
    output:
        "results/{region}/validation/{experiment}/{val}/seed{seed}/scores.json",
    log:
        "logs/{region}/validate/{experiment}/{val}/seed{seed}.log",
    benchmark:
        "benchmarks/runs/{region}/validate/{experiment}/{val}/seed{seed}.tsv"
    conda:
        "../../envs/torch.yaml"
    threads: lambda wc: region_cfg(wc.region)["train"]["threads"]
    resources:
        mem_mb=mem_from_inputs(1500, 8),
        runtime=runtime_from_inputs(10, 0.2),
    params:
        task=lambda wc: experiment_task(wc.region, wc.experiment),
        train=lambda wc: train_params(wc.region, wc.experiment),
        predict=rcfg("predict"),
        meta=lambda wc: validation_meta(wc.region, wc.experiment, wc.val, wc.seed),
    script:
        "../scripts/validate.py"


rule select:
    input:
        unpack(select_inputs),
    output:
        pred="results/{region}/pred/{experiment}/selected.tif",
        uncertainty="results/{region}/pred/{experiment}/selected_uncertainty.tif",
        json="results/{region}/pred/{experiment}/selected.json",
    log:
        "logs/{region}/select/{experiment}.log",
    benchmark:
        "benchmarks/runs/{region}/select/{experiment}.tsv"
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=mem_from_inputs(800, 4),
        runtime=runtime_from_inputs(5, 0.05),
    params:
        margin=rcfg("select", "margin"),
        neighbours=rcfg("select", "neighbours"),
        fallback=lambda wc: select_params(wc.region).fallback_for(
            experiment_task(wc.region, wc.experiment)
        ),
        uncertainty=rcfg("select", "uncertainty"),
        uncertainty_px=rcfg("select", "uncertainty_px"),
        task=lambda wc: experiment_task(wc.region, wc.experiment),
        train=lambda wc: train_params(wc.region, wc.experiment),
        predict=rcfg("predict"),
    script:
        "../scripts/select.py"
