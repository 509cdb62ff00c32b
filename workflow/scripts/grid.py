"""Rule grid: write results/{region}/grid.json from the region's AOI (or, files source without one, its first S2 file)."""

from pipeline_lib.grid import make_centered_grid, make_grid, write_grid
from pipeline_lib.jobs import job

with job(snakemake) as log:
    p = snakemake.params
    if p.aoi is None:
        from pipeline_lib.ingest import grid_of_file

        grid = grid_of_file(snakemake.input.reference)
        log.info("grid of %s", snakemake.input.reference)
    elif isinstance(p.aoi, dict):
        grid = make_centered_grid(tuple(p.aoi["center"]), tuple(p.aoi["size_px"]), p.resolution_m, p.crs)
    else:
        grid = make_grid(tuple(p.aoi), p.resolution_m, p.crs)
    write_grid(grid, snakemake.output[0])
    log.info("grid %s %dx%d px at %.3f m", grid.crs, grid.width, grid.height, grid.resolution_m)
