"""Rule terrain_correct: sigma0 in dB on the region grid, by the native chain or by SNAP's gpt."""

from pathlib import Path

from pipeline_lib.grid import read_grid
from pipeline_lib.jobs import job

with job(snakemake) as log:
    p = snakemake.params
    dem = None if p.dem == "ellipsoid" else Path(p.dem)
    grid = read_grid(snakemake.input.grid)
    out = Path(snakemake.output[0])
    if p.backend == "snap":
        from pipeline_lib.sar.params import SpeckleParams
        from pipeline_lib.sar.snap import run_snap

        run_snap(
            Path(snakemake.input.product),
            grid,
            out,
            polarisations=tuple(p.polarisations),
            speckle=SpeckleParams.from_config(p.speckle),
            dem=dem,
            gpt=p.gpt,
            threads=snakemake.threads,
            cache_mb=max(512, int(snakemake.resources.mem_mb * 0.6)),
            log_path=Path(snakemake.log[0]).with_suffix(".gpt.log"),
        )
    else:
        from pipeline_lib.sar import run_terrain

        run_terrain(
            Path(snakemake.input.filtered),
            Path(snakemake.input.product),
            grid,
            out,
            dem=dem,
            threads=snakemake.threads,
        )
    log.info("%s backend wrote %s", p.backend, out)
