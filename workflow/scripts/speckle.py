"""Rule speckle: Lee sigma filter (Lee et al. 2009, as SNAP)."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.sar import run_speckle
from pipeline_lib.sar.params import SpeckleParams

with job(snakemake) as log:
    run_speckle(
        Path(snakemake.input[0]),
        Path(snakemake.output[0]),
        SpeckleParams.from_config(snakemake.params.speckle),
        threads=snakemake.threads,
    )
