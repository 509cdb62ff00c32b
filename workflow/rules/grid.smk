# The region's 10 m grid and the residual offsets between dates and modalities.


rule grid:
    input:
        unpack(grid_inputs),
    output:
        "results/{region}/grid.json",
    log:
        "logs/{region}/grid.log",
    localrule: True
    conda:
        "../../envs/geo.yaml"
    params:
        aoi=lambda wc: region_cfg(wc.region).get("aoi"),
        crs=rcfg("crs"),
        resolution_m=rcfg("resolution_m"),
    script:
        "../scripts/grid.py"


rule offsets:
    input:
        s1=lambda wc: expand(
            "results/{{region}}/s1/{date}.tif",
            date=s1_dates(wc.region, region_cfg(wc.region)["dates"]),
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
        s1_dates=lambda wc: s1_dates(wc.region, region_cfg(wc.region)["dates"]),
        threshold_px=rcfg("coreg", "threshold_px"),
    script:
        "../scripts/offsets.py"
