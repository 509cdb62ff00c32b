"""Rule terrain_correct: range-Doppler terrain correction onto the region grid, sigma0 in dB."""

from pathlib import Path

from pipeline_lib.grid import read_grid
from pipeline_lib.jobs import job
from pipeline_lib.sar import run_terrain

with job(snakemake) as log:
    dem = snakemake.params.dem
    run_terrain(
        Path(snakemake.input.filtered),
        Path(snakemake.input.product),
        read_grid(snakemake.input.grid),
        Path(snakemake.output[0]),
        dem=None if dem == "ellipsoid" else Path(dem),
    )
