"""Rules ingest_s1/ingest_s2: the file (files source) or STAC item (stac source) selected for the date, onto the grid."""

from pathlib import Path

from pipeline_lib.fetch.base import read_scene_table
from pipeline_lib.fetch.files import modality_spec
from pipeline_lib.grid import read_grid
from pipeline_lib.ingest import ingest_raster
from pipeline_lib.jobs import job

with job(snakemake) as log:
    p = snakemake.params
    modality = snakemake.rule.removeprefix("ingest_")
    date = snakemake.wildcards.date
    scene = next(s for s in read_scene_table(p.scenes) if s.date == date and s.mission == modality.upper())
    grid = read_grid(snakemake.input.grid)
    out = Path(snakemake.output[0])
    if p.source == "stac":
        from pipeline_lib.fetch.stac import ingest_stac_scene, stac_settings

        settings = stac_settings(p.stac)
        ingest_stac_scene(
            scene,
            settings.specs[modality],
            grid,
            out,
            date=date,
            mask_keep=settings.mask_keep,
            sign=settings.sign,
            cache_dir=Path(p.cache),
        )
    else:
        spec = modality_spec(modality, p.files)
        ingest_raster(Path(snakemake.input.raster), spec, grid, out, date=date, acquired=scene.sensing_time.isoformat())
    log.info("%s %s <- %s (%s)", modality, date, scene.product_id, scene.reason)
