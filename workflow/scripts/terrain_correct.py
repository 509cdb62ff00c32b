"""Rule terrain_correct: range-Doppler terrain correction onto the region grid, sigma0 in dB."""
from pathlib import Path

from pipeline_lib.grid import read_grid
from pipeline_lib.jobs import job
from pipeline_lib.sar import run_terrain

with job(snakemake) as log:  # noqa: F821
    dem = snakemake.params.dem  # noqa: F821
    run_terrain(
        Path(snakemake.input.filtered),  # noqa: F821
        Path(snakemake.input.product),  # noqa: F821
        read_grid(snakemake.input.grid),  # noqa: F821
        Path(snakemake.output[0]),  # noqa: F821
        dem=None if dem == "ellipsoid" else Path(dem),
    )
