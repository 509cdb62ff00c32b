"""Rule stack: difference stack of one experiment (no T_i) and its separate truth file."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.stacks import run_stack

with job(snakemake) as log:
    dates = list(snakemake.params.dates)
    run_stack(
        dict(snakemake.params.experiment),
        dict(zip(snakemake.params.s1_dates, map(Path, snakemake.input.s1), strict=True)),
        dict(zip(dates, map(Path, snakemake.input.s2), strict=True)),
        Path(snakemake.input.offsets),
        Path(snakemake.output.stack),
        Path(snakemake.output.truth),
    )
