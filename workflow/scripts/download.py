"""Rule download_*: materialise one product of the scene table (verified, atomic)."""

from pathlib import Path

from pipeline_lib.fetch import run_download
from pipeline_lib.jobs import job

with job(snakemake) as log:
    dest = Path(snakemake.output[0])
    path = run_download(snakemake.params.fetch, Path(snakemake.input.table), snakemake.wildcards.product, dest)
    log.info("product ready: %s", path)
