"""Rule calibrate: sigma0 with thermal-noise removal over the GRD window covering the grid."""
from pathlib import Path

from pipeline_lib.grid import read_grid
from pipeline_lib.jobs import job
from pipeline_lib.sar import run_calibrate

with job(snakemake) as log:  # noqa: F821
    p = snakemake.params  # noqa: F821
    run_calibrate(
        Path(snakemake.input.product),  # noqa: F821
        read_grid(snakemake.input.grid),  # noqa: F821
        Path(snakemake.output[0]),  # noqa: F821
        polarisations=tuple(p.polarisations),
        margin_px=int(p.margin_px),
    )
