"""Rule metrics: merge the experiments' metrics (and the gap fill's, as block "gapfill") into metrics.json and .csv."""

import json
from pathlib import Path

from pipeline_lib.io import write_json_atomic
from pipeline_lib.jobs import job
from pipeline_lib.metrics import merge_metrics

with job(snakemake) as log:
    paths = [Path(p) for p in snakemake.input]
    gapfill = [p for p in paths if p.parent.name == "gapfill"]
    out = Path(snakemake.output.json)
    merged = merge_metrics([p for p in paths if p not in gapfill], out, Path(snakemake.output.csv))
    if gapfill:
        merged["gapfill"] = json.loads(gapfill[0].read_text())
        write_json_atomic(out, merged)
