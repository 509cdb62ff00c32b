"""Rule offsets: residual offsets between dates and between S1 and S2 (phase correlation)."""
from pathlib import Path

from pipeline_lib.grid.coreg import run_offsets
from pipeline_lib.jobs import job

with job(snakemake) as log:  # noqa: F821
    dates = list(snakemake.params.dates)  # noqa: F821
    run_offsets(
        dict(zip(dates, map(Path, snakemake.input.s1), strict=True)),  # noqa: F821
        dict(zip(dates, map(Path, snakemake.input.s2), strict=True)),  # noqa: F821
        Path(snakemake.output[0]),  # noqa: F821
        threshold_px=float(snakemake.params.threshold_px),  # noqa: F821
    )
