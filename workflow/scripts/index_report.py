"""Rule index_report: results/report.html linking every configured region's report."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.report import run_index

with job(snakemake) as log:
    run_index(list(snakemake.params.regions), [Path(p) for p in snakemake.input], Path(snakemake.output[0]))
