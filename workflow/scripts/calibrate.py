"""Rule calibrate: sigma0 with thermal-noise removal over the GRD window covering the grid (at the DEM's heights)."""

from pathlib import Path

from pipeline_lib.grid import read_grid
from pipeline_lib.jobs import job
from pipeline_lib.sar import run_calibrate

with job(snakemake) as log:
    p = snakemake.params
    run_calibrate(
        Path(snakemake.input.product),
        read_grid(snakemake.input.grid),
        Path(snakemake.output[0]),
        polarisations=tuple(p.polarisations),
        margin_px=int(p.margin_px),
        dem=None if p.dem == "ellipsoid" else Path(p.dem),
        threads=snakemake.threads,
    )
