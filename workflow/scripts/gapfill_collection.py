"""Rule gapfill_collection: the STAC collection of the region's gap-filled dates."""

from pathlib import Path

from pipeline_lib.gapfill.run import run_gapfill_collection
from pipeline_lib.jobs import job

with job(snakemake) as log:
    run_gapfill_collection(list(snakemake.input), Path(snakemake.output[0]), snakemake.wildcards.region)
