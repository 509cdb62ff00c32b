"""Rule region_report: the self-contained HTML report of one region."""
from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.report import run_region_report

with job(snakemake) as log:  # noqa: F821
    region = snakemake.wildcards.region  # noqa: F821
    dates = list(snakemake.params.dates)  # noqa: F821
    run_region_report(
        region,
        Path(snakemake.input.grid),  # noqa: F821
        Path(snakemake.input.scenes),  # noqa: F821
        dict(zip(dates, map(Path, snakemake.input.s1), strict=True)),  # noqa: F821
        dict(zip(dates, map(Path, snakemake.input.s2), strict=True)),  # noqa: F821
        Path(snakemake.input.offsets),  # noqa: F821
        sorted(Path("benchmarks/runs", region).rglob("*.tsv")),
        dict(snakemake.params.config),  # noqa: F821
        Path(snakemake.output[0]),  # noqa: F821
    )
