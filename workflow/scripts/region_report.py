"""Rule region_report: the self-contained HTML report of one region."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.report import run_region_report

with job(snakemake) as log:
    region = snakemake.wildcards.region
    dates = list(snakemake.params.dates)
    run_region_report(
        region,
        Path(snakemake.input.grid),
        Path(snakemake.input.scenes),
        dict(zip(dates, map(Path, snakemake.input.s1), strict=True)),
        dict(zip(dates, map(Path, snakemake.input.s2), strict=True)),
        Path(snakemake.input.offsets),
        sorted(Path("benchmarks/runs", region).rglob("*.tsv")),
        dict(snakemake.params.config),
        Path(snakemake.output[0]),
    )
