"""Checkpoint search: query the configured source and write the scene table."""

from pipeline_lib.fetch import run_search
from pipeline_lib.grid import read_grid
from pipeline_lib.jobs import job

with job(snakemake) as log:
    p = snakemake.params
    grid = read_grid(snakemake.input.grid)
    scenes = run_search(
        p.fetch,
        grid.lonlat_bounds(),
        list(p.dates),
        p.pair_tolerance_days,
        p.max_cloud_cover,
        snakemake.output.table,
        list(p.polarisations),
    )
    for s in scenes:
        log.info("%s %s %s (%s)", s.date, s.mission, s.product_id, s.reason)
