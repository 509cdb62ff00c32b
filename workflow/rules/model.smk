# TIRSIT, its ablations and pix2pix: training (GPU rule), prediction over the full grid, evaluation.
# Baselines (neighbour_j, neighbour_k, blend) need no training. train.ensemble: n > 1 adds members 1 .. n-1
# (train_member, seed train.seed + m); predict then averages the members (pipeline_lib.model.ensemble).


rule train:
    input:
        stack="results/{region}/stacks/{experiment}.nc",
    output:
        "results/{region}/models/{experiment}/{variant}.pt",
    log:
        "logs/{region}/train/{experiment}/{variant}.log",
    benchmark:
        "benchmarks/runs/{region}/train/{experiment}/{variant}.tsv"
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
        train=lambda wc: train_params(wc.region, wc.experiment),
        device=rcfg("train", "device"),
    script:
        "../scripts/train.py"


use rule train as train_member with:
    output:
        "results/{region}/models/{experiment}/{variant}.member{member}.pt",
    log:
        "logs/{region}/train/{experiment}/{variant}.member{member}.log",
    benchmark:
        "benchmarks/runs/{region}/train/{experiment}/{variant}.member{member}.tsv"
    wildcard_constraints:
        variant=TRAIN_VARIANTS,
        member=r"[1-9][0-9]*",
    params:
        task=lambda wc: experiment_task(wc.region, wc.experiment),
        train=lambda wc: member_train_params(wc.region, wc.experiment, wc.member),
        device=rcfg("train", "device"),


rule predict:
    input:
        unpack(predict_inputs),
    output:
        pred="results/{region}/pred/{experiment}/{variant}.tif",
        uncertainty="results/{region}/pred/{experiment}/{variant}_uncertainty.tif",
    log:
        "logs/{region}/predict/{experiment}/{variant}.log",
    benchmark:
        "benchmarks/runs/{region}/predict/{experiment}/{variant}.tsv"
    wildcard_constraints:
        variant=UNCERTAINTY_VARIANTS,
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
        device=rcfg("train", "device"),
    script:
        "../scripts/predict.py"


rule predict_plain:
    input:
        unpack(predict_inputs),
    output:
        pred="results/{region}/pred/{experiment}/{variant}.tif",
    log:
        "logs/{region}/predict/{experiment}/{variant}.log",
    benchmark:
        "benchmarks/runs/{region}/predict/{experiment}/{variant}.tsv"
    wildcard_constraints:
        variant=PLAIN_VARIANTS,
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
        device=rcfg("train", "device"),
    script:
        "../scripts/predict.py"


rule evaluate:
    input:
        unpack(evaluate_inputs),
    output:
        json="results/{region}/metrics/{experiment}.json",
        csv="results/{region}/metrics/{experiment}.csv",
    log:
        "logs/{region}/evaluate/{experiment}.log",
    benchmark:
        "benchmarks/runs/{region}/evaluate/{experiment}.tsv"
    conda:
        "../../envs/torch.yaml"
    resources:
        mem_mb=mem_from_inputs(1000, 6),
        runtime=runtime_from_inputs(5, 0.05),
    script:
        "../scripts/evaluate.py"
