"""Rules predict / predict_plain: the target date over the full grid by overlapping tiles."""

from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.model import run_predict
from pipeline_lib.model.params import TrainParams

with job(snakemake) as log:
    p = snakemake.params
    ckpt = snakemake.input.get("ckpt")  # one checkpoint, or the members of a seed ensemble
    unc = snakemake.output.get("uncertainty")
    run_predict(
        Path(snakemake.input.stack),
        snakemake.wildcards.variant,
        None if not ckpt else Path(ckpt) if isinstance(ckpt, str) else [Path(c) for c in ckpt],
        Path(snakemake.output.pred),
        Path(unc) if unc else None,
        TrainParams.from_config(p.task, p.train, p.predict),
        threads=snakemake.threads,
        device=p.device,
    )
