"""Rule grid: write results/{region}/grid.json from the region's AOI."""

from pipeline_lib.grid import make_centered_grid, make_grid, write_grid
from pipeline_lib.jobs import job

with job(snakemake) as log:
    p = snakemake.params
    if isinstance(p.aoi, dict):
        grid = make_centered_grid(tuple(p.aoi["center"]), tuple(p.aoi["size_px"]), p.resolution_m, p.crs)
    else:
        grid = make_grid(tuple(p.aoi), p.resolution_m, p.crs)
    write_grid(grid, snakemake.output[0])
    log.info("grid %s %dx%d px at %.1f m", grid.crs, grid.width, grid.height, grid.resolution_m)
