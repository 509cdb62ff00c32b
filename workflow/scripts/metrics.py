"""Rule metrics: merge the experiments' metrics into results/{region}/metrics.json and .csv."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.metrics import merge_metrics

with job(snakemake) as log:
    merge_metrics([Path(p) for p in snakemake.input], Path(snakemake.output.json), Path(snakemake.output.csv))
