# Sentinel-2 L2A: reflectance from the product's own offsets, SCL mask, onto the grid.


rule optical:
    input:
        product=product_for("S2"),
        grid="results/{region}/grid.json",
    output:
        "results/{region}/s2/{date}.tif",
    log:
        "logs/{region}/optical/{date}.log",
    benchmark:
        "benchmarks/runs/{region}/optical/{date}.tsv"
    wildcard_constraints:
        region=SAFE_REGION,
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=mem_raster(800, 1500),
        runtime=runtime_raster(5, 5),
    params:
        resampling=rcfg("optical", "resampling"),
    script:
        "../scripts/optical.py"
