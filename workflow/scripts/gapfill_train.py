"""Rule gapfill_train: the region's one model for a task, trained on the whole series."""

from pathlib import Path

from pipeline_lib.gapfill.run import run_gapfill_train
from pipeline_lib.jobs import job

with job(snakemake) as log:
    dates = list(snakemake.params.dates)
    run_gapfill_train(
        dict(zip(dates, snakemake.input.s1, strict=True)),
        dict(zip(dates, snakemake.input.s2, strict=True)),
        snakemake.wildcards.task,
        Path(snakemake.output[0]),
        dict(snakemake.params.gapfill),
        dict(snakemake.params.train),
        threads=snakemake.threads,
        device=snakemake.params.device,
        log=log,
    )
