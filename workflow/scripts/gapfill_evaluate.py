"""Rule gapfill_evaluate: masked-pixel evaluation vs baselines, share predicted and uncertainty per date."""

from pathlib import Path

from pipeline_lib.gapfill.run import run_gapfill_evaluate
from pipeline_lib.jobs import job

with job(snakemake) as log:
    dates = list(snakemake.params.dates)
    run_gapfill_evaluate(
        dict(zip(dates, snakemake.input.s1, strict=True)),
        dict(zip(dates, snakemake.input.s2, strict=True)),
        dict(zip(snakemake.params.tasks, snakemake.input.models, strict=True)),
        list(snakemake.input.fills),
        Path(snakemake.output[0]),
        dict(snakemake.params.gapfill),
        dict(snakemake.params.predict),
        threads=snakemake.threads,
    )
