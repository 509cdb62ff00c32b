"""Rule optical: S2 L2A reflectance and SCL mask onto the grid."""
from pathlib import Path

from pipeline_lib.grid import read_grid
from pipeline_lib.jobs import job
from pipeline_lib.optical import run_l2a

with job(snakemake) as log:  # noqa: F821
    run_l2a(
        Path(snakemake.input.product),  # noqa: F821
        read_grid(snakemake.input.grid),  # noqa: F821
        Path(snakemake.output[0]),  # noqa: F821
        resampling=snakemake.params.resampling,  # noqa: F821
    )
