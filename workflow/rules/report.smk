# Per-region report (self-contained HTML) and the index of all configured regions.


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
