"""Rule train: one network variant of one experiment (CUDA when present, CPU otherwise)."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.model import run_train

with job(snakemake) as log:
    run_train(
        Path(snakemake.input.stack),
        snakemake.wildcards.variant,
        Path(snakemake.output[0]),
        dict(snakemake.params.train),
        threads=snakemake.threads,
        device=snakemake.params.device,
        log=log,
    )
