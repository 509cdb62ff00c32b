"""Rule gapfill_fill: gapfill/{date}.tif (observed where clear, predicted elsewhere) and its STAC item."""

from pathlib import Path

from pipeline_lib.gapfill.run import run_gapfill_fill
from pipeline_lib.jobs import job

with job(snakemake) as log:
    dates = list(snakemake.params.dates)
    run_gapfill_fill(
        dict(zip(dates, snakemake.input.s1, strict=True)),
        dict(zip(dates, snakemake.input.s2, strict=True)),
        snakemake.wildcards.date,
        dict(zip(snakemake.params.tasks, snakemake.input.models, strict=True)),
        Path(snakemake.output[0]),
        dict(snakemake.params.gapfill),
        dict(snakemake.params.predict),
        threads=snakemake.threads,
    )
