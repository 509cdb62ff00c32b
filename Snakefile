# TIRSIT pipeline: Sentinel-1/2 time series -> modality translation.
# `snakemake --cores 8 results/report.html` builds every region listed in config/config.yaml.
# Rules are thin: all logic lives in pipeline_lib/ (see docs/CONTRACTS.md for the file formats).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/fetch.smk"
include: "workflow/rules/sar.smk"
include: "workflow/rules/optical.smk"
include: "workflow/rules/files.smk"
include: "workflow/rules/grid.smk"
include: "workflow/rules/stacks.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/select.smk"
include: "workflow/rules/gapfill.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        "results/report.html",
