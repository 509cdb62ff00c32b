# Per-region report (self-contained HTML) and the index of all configured regions.


def region_report_inputs(wildcards):
    cfg = region_cfg(wildcards.region)
    dates = cfg["dates"]
    exps = [e["name"] for e in cfg["experiments"]]
    return {
        "grid": f"results/{wildcards.region}/grid.json",
        "scenes": f"results/{wildcards.region}/scenes.csv",
        "offsets": f"results/{wildcards.region}/offsets.json",
        "s1": expand("results/{region}/s1/{date}.tif", region=wildcards.region, date=dates),
        "s2": expand("results/{region}/s2/{date}.tif", region=wildcards.region, date=dates),
        "stacks": expand("results/{region}/stacks/{e}.nc", region=wildcards.region, e=exps),
    }


rule region_report:
    input:
        unpack(region_report_inputs),
    output:
        "results/{region}/report.html",
    params:
        config=lambda wc: region_cfg(wc.region),
        dates=rcfg("dates"),
    log:
        "logs/{region}/report.log",
    localrule: True
    script:
        "../scripts/region_report.py"


rule index_report:
    input:
        expand("results/{region}/report.html", region=config["regions"]),
    output:
        "results/report.html",
    params:
        regions=config["regions"],
    log:
        "logs/index_report.log",
    localrule: True
    script:
        "../scripts/index_report.py"
