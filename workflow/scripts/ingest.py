"""Rules ingest_s1/ingest_s2: one analysis-ready file of the files source onto the grid as a COG."""

from pathlib import Path

from pipeline_lib.fetch.base import read_scene_table
from pipeline_lib.fetch.files import modality_spec
from pipeline_lib.grid import read_grid
from pipeline_lib.ingest import ingest_raster
from pipeline_lib.jobs import job

with job(snakemake) as log:
    modality = snakemake.rule.removeprefix("ingest_")
    date = snakemake.wildcards.date
    scene = next(
        s for s in read_scene_table(snakemake.params.scenes) if s.date == date and s.mission == modality.upper()
    )
    ingest_raster(
        Path(snakemake.input.raster),
        modality_spec(modality, snakemake.params.files),
        read_grid(snakemake.input.grid),
        Path(snakemake.output[0]),
        date=date,
        acquired=scene.sensing_time.isoformat(),
    )
    log.info("%s %s <- %s (%s)", modality, date, snakemake.input.raster, scene.reason)
