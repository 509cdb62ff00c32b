# The region's 10 m grid and the residual offsets between dates and modalities.


rule grid:
    output:
        "results/{region}/grid.json",
    log:
        "logs/{region}/grid.log",
    localrule: True
    conda:
        "../../envs/geo.yaml"
    params:
        aoi=rcfg("aoi"),
        crs=rcfg("crs"),
        resolution_m=rcfg("resolution_m"),
    script:
        "../scripts/grid.py"


rule offsets:
    input:
        s1=lambda wc: expand(
            "results/{{region}}/s1/{date}.tif", date=region_cfg(wc.region)["dates"]
        ),
        s2=lambda wc: expand(
            "results/{{region}}/s2/{date}.tif", date=region_cfg(wc.region)["dates"]
        ),
    output:
        "results/{region}/offsets.json",
    log:
        "logs/{region}/offsets.log",
    benchmark:
        "benchmarks/runs/{region}/offsets.tsv"
    conda:
        "../../envs/geo.yaml"
    resources:
        mem_mb=mem_from_inputs(800, 4),
        runtime=runtime_from_inputs(5, 0.05),
    params:
        dates=rcfg("dates"),
        threshold_px=rcfg("coreg", "threshold_px"),
        max_offset_px=rcfg("coreg", "max_offset_px"),
    script:
        "../scripts/offsets.py"
