"""Rule stack: difference stack of one experiment (no T_i) and its separate truth file."""
from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.stacks import run_stack

with job(snakemake) as log:  # noqa: F821
    dates = list(snakemake.params.dates)  # noqa: F821
    run_stack(
        dict(snakemake.params.experiment),  # noqa: F821
        dict(zip(dates, map(Path, snakemake.input.s1), strict=True)),  # noqa: F821
        dict(zip(dates, map(Path, snakemake.input.s2), strict=True)),  # noqa: F821
        Path(snakemake.input.offsets),  # noqa: F821
        Path(snakemake.output.stack),  # noqa: F821
        Path(snakemake.output.truth),  # noqa: F821
    )
