"""Rule select: the margin rule over the validation scores; copies the chosen test prediction to selected.tif."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.model.select import run_select

with job(snakemake) as log:
    result = run_select(
        [Path(p) for p in snakemake.input.validation],
        {Path(p).stem: Path(p) for p in snakemake.input.preds},
        {Path(p).stem.removesuffix("_uncertainty"): Path(p) for p in snakemake.input.uncertainty},
        float(snakemake.params.margin),
        Path(snakemake.output.pred),
        Path(snakemake.output.uncertainty),
        Path(snakemake.output.json),
        neighbours=bool(snakemake.params.neighbours),
        fallback=str(snakemake.params.fallback),
    )
    log.info("selected %s: %s", result["method"], result["reason"])
