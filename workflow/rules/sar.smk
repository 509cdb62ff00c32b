# Sentinel-1 GRD: calibration to sigma0 with thermal-noise removal -> Lee sigma -> terrain correction.
# Each step is its own job so changing the speckle filter reruns only speckle and what follows.


rule calibrate:
    input:
        product=product_for("S1"),
        grid="results/{region}/grid.json",
    output:
        "results/{region}/s1/calibrated/{date}.nc",
    log:
        "logs/{region}/calibrate/{date}.log",
    benchmark:
        "benchmarks/runs/{region}/calibrate/{date}.tsv"
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=mem_raster(1000, 2500),
        runtime=runtime_raster(5, 10),
    params:
        polarisations=rcfg("sar", "polarisations"),
        margin_px=rcfg("sar", "margin_px"),
    script:
        "../scripts/calibrate.py"


rule speckle:
    input:
        "results/{region}/s1/calibrated/{date}.nc",
    output:
        "results/{region}/s1/filtered/{date}.nc",
    log:
        "logs/{region}/speckle/{date}.log",
    benchmark:
        "benchmarks/runs/{region}/speckle/{date}.tsv"
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=mem_from_inputs(500, 6),
        runtime=runtime_from_inputs(5, 0.05),
    params:
        speckle=rcfg("sar", "speckle"),
    script:
        "../scripts/speckle.py"


rule terrain_correct:
    input:
        unpack(terrain_inputs),
    output:
        "results/{region}/s1/{date}.tif",
    log:
        "logs/{region}/terrain_correct/{date}.log",
    benchmark:
        "benchmarks/runs/{region}/terrain_correct/{date}.tsv"
    conda:
        "../../envs/geo.yaml"
    threads: 2
    resources:
        mem_mb=mem_raster(1500, 3000),
        runtime=runtime_raster(10, 20),
    params:
        backend=lambda wc: sar_backend(wc.region),
        dem=rcfg("sar", "dem"),
        gpt=rcfg("sar", "gpt"),
        speckle=lambda wc: (
            region_cfg(wc.region)["sar"]["speckle"]
            if sar_backend(wc.region) == "snap"
            else None
        ),
        polarisations=rcfg("sar", "polarisations"),
    script:
        "../scripts/terrain_correct.py"
