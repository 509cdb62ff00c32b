"""Rule select: the margin rule over the validation scores; copies the chosen test prediction to selected.tif
and writes its uncertainty (select.uncertainty: the method's raster, or ranked from the test stack)."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.select import run_select
from pipeline_lib.model.uncertainty import RankedFromStack

with job(snakemake) as log:
    p = snakemake.params
    ranked = None
    if p.uncertainty == "ranked":
        tp = TrainParams.from_config(p.task, p.train, p.predict)
        ranked = RankedFromStack(Path(snakemake.input.stack), tp.mean_filter, tp.k, int(p.uncertainty_px))
    result = run_select(
        [Path(x) for x in snakemake.input.validation],
        {Path(x).stem: Path(x) for x in snakemake.input.preds},
        {Path(x).stem.removesuffix("_uncertainty"): Path(x) for x in snakemake.input.uncertainty},
        float(p.margin),
        Path(snakemake.output.pred),
        Path(snakemake.output.uncertainty),
        Path(snakemake.output.json),
        neighbours=bool(p.neighbours),
        fallback=str(p.fallback),
        ranked=ranked,
    )
    log.info("selected %s: %s (uncertainty %s)", result["method"], result["reason"], result["uncertainty_rule"])
