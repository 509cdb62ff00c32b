# The files source (fetch.source: files): the user's analysis-ready S1/S2 rasters, selected per date
# by the search checkpoint (scenes.csv), read in place and put on the grid. These rules replace
# download, calibrate, speckle, terrain_correct and optical for such regions (region constraints).


rule ingest_s1:
    input:
        raster=ard_file("s1"),
        grid="results/{region}/grid.json",
    output:
        "results/{region}/s1/{date}.tif",
    log:
        "logs/{region}/ingest_s1/{date}.log",
    benchmark:
        "benchmarks/runs/{region}/ingest_s1/{date}.tsv"
    wildcard_constraints:
        region=FILES_REGION,
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=mem_raster(500, 300),
        runtime=runtime_raster(5, 1),
    params:
        files=rcfg("fetch", "files", "s1"),
        scenes="results/{region}/scenes.csv",
    script:
        "../scripts/ingest.py"


rule ingest_s2:
    input:
        raster=ard_file("s2"),
        grid="results/{region}/grid.json",
    output:
        "results/{region}/s2/{date}.tif",
    log:
        "logs/{region}/ingest_s2/{date}.log",
    benchmark:
        "benchmarks/runs/{region}/ingest_s2/{date}.tsv"
    wildcard_constraints:
        region=FILES_REGION,
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=mem_raster(500, 300),
        runtime=runtime_raster(5, 1),
    params:
        files=rcfg("fetch", "files", "s2"),
        scenes="results/{region}/scenes.csv",
    script:
        "../scripts/ingest.py"
