# Per-region report (self-contained HTML) and the index of all configured regions.


rule metrics:
    input:
        lambda wc: expand(
            "results/{{region}}/metrics/{e}.json",
            e=[x["name"] for x in region_cfg(wc.region)["experiments"]],
        )
        + (
            [f"results/{wc.region}/gapfill/metrics.json"]
            if region_cfg(wc.region).get("gapfill")
            else []
        ),
    output:
        json="results/{region}/metrics.json",
        csv="results/{region}/metrics.csv",
    log:
        "logs/{region}/metrics.log",
    localrule: True
    conda:
        "../../envs/geo.yaml"
    script:
        "../scripts/metrics.py"


rule region_report:
    input:
        unpack(region_report_inputs),
    output:
        "results/{region}/report.html",
    log:
        "logs/{region}/report.log",
    localrule: True
    conda:
        "../../envs/geo.yaml"
    params:
        config=lambda wc: region_cfg(wc.region),
        dates=rcfg("dates"),
        s1_dates=lambda wc: s1_dates(wc.region, region_cfg(wc.region)["dates"]),
        experiments=lambda wc: [e["name"] for e in region_cfg(wc.region)["experiments"]],
    script:
        "../scripts/region_report.py"


rule index_report:
    input:
        expand("results/{region}/report.html", region=config["regions"]),
    output:
        "results/report.html",
    log:
        "logs/index_report.log",
    localrule: True
    conda:
        "../../envs/geo.yaml"
    params:
        regions=config["regions"],
    script:
        "../scripts/index_report.py"
