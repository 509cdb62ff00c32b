"""Rule validate: every baseline and network of one validation experiment and seed, scored on its known date."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.select import run_validation

with job(snakemake) as log:
    p = snakemake.params
    run_validation(
        Path(snakemake.input.stack),
        Path(snakemake.input.truth),
        {Path(m).stem: Path(m) for m in snakemake.input.models},
        TrainParams.from_config(p.task, p.train, p.predict),
        Path(snakemake.output[0]),
        meta=dict(p.meta),
        threads=snakemake.threads,
    )
