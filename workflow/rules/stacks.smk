# Difference stacks per experiment (S_i, S_g, T_g, differences, masks) and the separate truth file.


rule stack:
    input:
        s1=lambda wc: expand(
            "results/{{region}}/s1/{date}.tif",
            date=s1_dates(wc.region, experiment_dates(wc.region, wc.experiment)),
        ),
        s2=lambda wc: expand(
            "results/{{region}}/s2/{date}.tif",
            date=experiment_dates(wc.region, wc.experiment),
        ),
        offsets="results/{region}/offsets.json",
    output:
        stack="results/{region}/stacks/{experiment}.nc",
        truth="results/{region}/truth/{experiment}.tif",
    log:
        "logs/{region}/stack/{experiment}.log",
    benchmark:
        "benchmarks/runs/{region}/stack/{experiment}.tsv"
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=mem_from_inputs(800, 6),
        runtime=runtime_from_inputs(5, 0.05),
    params:
        experiment=lambda wc: experiment_cfg(wc.region, wc.experiment),
        dates=lambda wc: experiment_dates(wc.region, wc.experiment),
        s1_dates=lambda wc: s1_dates(
            wc.region, experiment_dates(wc.region, wc.experiment)
        ),
    script:
        "../scripts/stack.py"
