# Search (a checkpoint: the scene table decides which products exist) and download.
# Credentials are read by the source from the environment or ~/.netrc, never from config or params.


checkpoint search:
    input:
        grid="results/{region}/grid.json",
    output:
        table="results/{region}/scenes.csv",
    log:
        "logs/{region}/search.log",
    benchmark:
        "benchmarks/runs/{region}/search.tsv"
    localrule: True
    conda:
        "../../envs/geo.yaml"
    params:
        fetch=rcfg("fetch"),
        dates=rcfg("dates"),
        pair_tolerance_days=rcfg("pair_tolerance_days"),
        max_cloud_cover=rcfg("max_cloud_cover"),
        polarisations=rcfg("sar", "polarisations"),
    script:
        "../scripts/search.py"


rule download_safe:
    input:
        table="results/{region}/scenes.csv",
        local=local_product_input,
    output:
        directory("results/{region}/raw/{product}.SAFE"),
    log:
        "logs/{region}/download/{product}.log",
    benchmark:
        "benchmarks/runs/{region}/download/{product}.tsv"
    wildcard_constraints:
        region=SAFE_REGION,
    conda:
        "../../envs/geo.yaml"
    resources:
        downloads=1,
    params:
        fetch=rcfg("fetch"),
    script:
        "../scripts/download.py"


rule download_zip:
    input:
        table="results/{region}/scenes.csv",
        local=local_product_input,
    output:
        "results/{region}/raw/{product}.zip",
    log:
        "logs/{region}/download/{product}.log",
    benchmark:
        "benchmarks/runs/{region}/download/{product}.tsv"
    wildcard_constraints:
        region=SAFE_REGION,
    conda:
        "../../envs/geo.yaml"
    resources:
        downloads=1,
    params:
        fetch=rcfg("fetch"),
    script:
        "../scripts/download.py"
