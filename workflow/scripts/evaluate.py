"""Rule evaluate: RMSE, SSIM, CC per band (all and changed pixels) of every variant of an experiment."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.model import run_evaluate

with job(snakemake) as log:
    preds = {Path(p).stem: Path(p) for p in snakemake.input.preds}
    unc = {Path(p).stem.removesuffix("_uncertainty"): Path(p) for p in snakemake.input.uncertainty}
    run_evaluate(
        Path(snakemake.input.truth),
        preds,
        Path(snakemake.input.stack),
        Path(snakemake.output.json),
        Path(snakemake.output.csv),
        uncertainty=unc,
        selected=(
            Path(snakemake.input.selected),
            Path(snakemake.input.selected_uncertainty),
            Path(snakemake.input.selected_json),
        ),
    )
