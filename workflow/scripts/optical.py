"""Rule optical: S2 L2A reflectance and SCL mask onto the grid."""

from pathlib import Path

from pipeline_lib.grid import read_grid
from pipeline_lib.jobs import job
from pipeline_lib.optical import run_l2a

with job(snakemake) as log:
    run_l2a(
        Path(snakemake.input.product),
        read_grid(snakemake.input.grid),
        Path(snakemake.output[0]),
        resampling=snakemake.params.resampling,
    )
