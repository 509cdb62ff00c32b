"""Rule speckle: Lee sigma filter (Lee et al. 2009, as SNAP)."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.sar import run_speckle

with job(snakemake) as log:
    s = snakemake.params.speckle
    run_speckle(
        Path(snakemake.input[0]),
        Path(snakemake.output[0]),
        window=int(s["window"]),
        target=int(s["target_window"]),
        sigma=float(s["sigma"]),
        looks=s["looks"],
        threads=snakemake.threads,
    )
