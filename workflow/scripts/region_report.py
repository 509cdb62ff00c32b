"""Rule region_report: the self-contained HTML report of one region (data and model parts)."""

import json
from pathlib import Path

from pipeline_lib.jobs import job
from pipeline_lib.report import run_region_report
from pipeline_lib.report.gapfill_part import gapfill_section
from pipeline_lib.report.model_part import experiment_figures, model_sections

with job(snakemake) as log:
    inp = snakemake.input
    region = snakemake.wildcards.region
    dates = list(snakemake.params.dates)
    metrics = json.loads(Path(inp.metrics).read_text())
    gapfill = metrics.pop("gapfill", None)
    figures = {}
    for exp in snakemake.params.experiments:
        preds = {Path(p).stem: Path(p) for p in inp[f"{exp}__preds"]}
        unc = {Path(p).stem.removesuffix("_uncertainty"): Path(p) for p in inp[f"{exp}__uncertainty"]}
        models = {Path(p).stem: Path(p) for p in inp[f"{exp}__models"]}
        figures[exp] = experiment_figures(
            exp, Path(inp[f"{exp}__stack"]), Path(inp[f"{exp}__truth"]), preds, unc, models
        )
    sections = model_sections(metrics, figures)
    s2 = dict(zip(dates, map(Path, inp.s2), strict=True))
    if gapfill is not None:
        filled = {Path(p).stem: Path(p) for p in inp.gapfill_fills}
        sections.append(gapfill_section(gapfill, s2, filled))
    run_region_report(
        region,
        Path(inp.grid),
        Path(inp.scenes),
        dict(zip(snakemake.params.s1_dates, map(Path, inp.s1), strict=True)),
        s2,
        Path(inp.offsets),
        sorted(Path("benchmarks/runs", region).rglob("*.tsv")),
        dict(snakemake.params.config),
        Path(snakemake.output[0]),
        model_sections=sections,
    )
