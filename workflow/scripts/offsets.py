"""Rule offsets: residual offsets between dates and between S1 and S2 (phase correlation)."""

from pathlib import Path

from pipeline_lib.grid.coreg import run_offsets
from pipeline_lib.jobs import job

with job(snakemake) as log:
    dates = list(snakemake.params.dates)
    run_offsets(
        dict(zip(snakemake.params.s1_dates, map(Path, snakemake.input.s1), strict=True)),
        dict(zip(dates, map(Path, snakemake.input.s2), strict=True)),
        Path(snakemake.output[0]),
        threshold_px=float(snakemake.params.threshold_px),
    )
