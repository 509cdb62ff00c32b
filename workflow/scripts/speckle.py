"""Rule speckle: Lee sigma filter (Lee et al. 2009, as SNAP)."""
from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.sar import run_speckle

with job(snakemake) as log:  # noqa: F821
    s = snakemake.params.speckle  # noqa: F821
    run_speckle(
        Path(snakemake.input[0]),  # noqa: F821
        Path(snakemake.output[0]),  # noqa: F821
        window=int(s["window"]),
        target=int(s["target_window"]),
        sigma=float(s["sigma"]),
        looks=s["looks"],
    )
