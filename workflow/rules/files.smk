# Analysis-ready sources: `files` (the user's per-date rasters, read in place) and `stac` (COG assets of
# STAC items, read by window over HTTP). The search checkpoint selects one per date (scenes.csv); these
# rules put it on the grid (STAC windows are cached under results/{region}/raw/stac, so reruns fetch
# nothing). They replace download, calibrate, speckle, terrain_correct and optical for such regions
# (region constraints).


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
        region=ARD_REGION,
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=mem_raster(500, 300),
        runtime=runtime_raster(5, 1),
    params:
        source=rcfg("fetch", "source"),
        files=rcfg("fetch", "files", "s1"),
        stac=rcfg("fetch", "stac"),
        scenes="results/{region}/scenes.csv",
        cache="results/{region}/raw/stac",
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
        region=ARD_REGION,
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=mem_raster(500, 300),
        runtime=runtime_raster(5, 1),
    params:
        source=rcfg("fetch", "source"),
        files=rcfg("fetch", "files", "s2"),
        stac=rcfg("fetch", "stac"),
        scenes="results/{region}/scenes.csv",
        cache="results/{region}/raw/stac",
    script:
        "../scripts/ingest.py"
