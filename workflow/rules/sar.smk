# Sentinel-1 GRD: calibration to sigma0 with thermal-noise removal -> Lee sigma -> terrain correction.
# Each step is its own job so changing the speckle filter reruns only speckle and what follows.
# All three steps are chunked (row bands / output tiles): memory is bounded by the chunk size, not
# by the scene; benchmarks/bench_sar_chain.py measures < 1 GB peak per step on a full GRD scene.
# mem_mb: base + a small per-Mpix term, capped (the cap is the chunked bound plus headroom).
# numba kernels are cached on disk (cache=True): beside the installed package is often read-only on a
# cluster, so unless NUMBA_CACHE_DIR is set every job (local or SLURM, both parse this file) caches under
# the workdir and compiles each kernel once per workdir, not once per job.
os.environ.setdefault("NUMBA_CACHE_DIR", os.path.abspath(".snakemake/numba-cache"))


rule calibrate:
    input:
        product=product_for("S1"),
        grid="results/{region}/grid.json",
        dem=dem_input,
    output:
        "results/{region}/s1/calibrated/{date}.nc",
    log:
        "logs/{region}/calibrate/{date}.log",
    benchmark:
        "benchmarks/runs/{region}/calibrate/{date}.tsv"
    wildcard_constraints:
        region=SAFE_REGION,
    conda:
        "../../envs/geo.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, input: min(1500, mem_raster(800, 2)(wc, input)),
        runtime=runtime_raster(5, 0.05),
    params:
        polarisations=rcfg("sar", "polarisations"),
        margin_px=rcfg("sar", "margin_px"),
        dem=rcfg("sar", "dem"),
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
    wildcard_constraints:
        region=SAFE_REGION,
    conda:
        "../../envs/geo.yaml"
    threads: 2
    resources:
        mem_mb=lambda wc, input: min(1500, mem_from_inputs(800, 0.1)(wc, input)),
        runtime=runtime_from_inputs(5, 0.005),
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
    wildcard_constraints:
        region=SAFE_REGION,
    conda:
        "../../envs/geo.yaml"
    threads: 2
    resources:
        # SNAP's gpt is not chunk-bounded (its tile cache is 60 % of mem_mb): it keeps the old scaling
        mem_mb=lambda wc, input: (
            mem_raster(1500, 3000)(wc, input)
            if sar_backend(wc.region) == "snap"
            else min(2000, mem_raster(1000, 2)(wc, input))
        ),
        runtime=runtime_raster(10, 0.1),
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
