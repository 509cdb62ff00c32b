"""Rule train: one network variant of one experiment (CUDA when present, CPU otherwise)."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.model import run_train
from pipeline_lib.model.params import TrainParams

with job(snakemake) as log:
    run_train(
        Path(snakemake.input.stack),
        snakemake.wildcards.variant,
        Path(snakemake.output[0]),
        TrainParams.from_config(snakemake.params.task, snakemake.params.train),
        threads=snakemake.threads,
        device=snakemake.params.device,
        log=log,
    )
