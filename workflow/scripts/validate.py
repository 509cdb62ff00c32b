"""Rule validate: every baseline and network of one validation experiment and seed, scored on its known date."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.model.select import run_validation

with job(snakemake) as log:
    run_validation(
        Path(snakemake.input.stack),
        Path(snakemake.input.truth),
        {Path(p).stem: Path(p) for p in snakemake.input.models},
        dict(snakemake.params.predict),
        Path(snakemake.output[0]),
        meta=dict(snakemake.params.meta),
        threads=snakemake.threads,
    )
