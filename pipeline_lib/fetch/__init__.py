"""Product sources (demo, local, cdse, dhus, files) behind one interface, and the scene table.

:func:`make_source` builds the configured source; :func:`run_search` and :func:`run_download`
are the entry points of the ``search`` checkpoint and the ``download`` rule.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from datetime import date
from pathlib import Path
from typing import Any

from pipeline_lib.errors import ConfigError, FetchError, SceneNotFoundError
from pipeline_lib.fetch.base import Scene, SearchRequest, Source, read_scene_table, select_scenes, write_scene_table

__all__ = ["make_source", "run_search", "run_download"]

log = logging.getLogger(__name__)


def make_source(name: str, settings: dict[str, Any]) -> Source:
    """The source named by ``fetch.source`` with its settings (credentials are read by the source itself)."""
    if name == "demo":
        from pipeline_lib.fetch.demo import DemoSource

        return DemoSource(seed=int(settings.get("seed", 0)))
    if name == "local":
        from pipeline_lib.fetch.local import LocalSource

        folder = settings.get("local_dir")
        if not folder:
            raise ConfigError(
                "fetch.local_dir: required when fetch.source is local; set it to your folder of SAFE products"
            )
        return LocalSource(Path(folder))
    if name == "cdse":
        from pipeline_lib.fetch.cdse import source_from_settings as cdse_source

        return cdse_source(settings.get("cdse", {}))
    if name == "dhus":
        from pipeline_lib.fetch.dhus import source_from_settings as dhus_source

        return dhus_source(settings.get("dhus", {}))
    if name == "files":
        from pipeline_lib.fetch.files import FilesSource, modality_specs

        return FilesSource(modality_specs(settings.get("files")))
    if name == "stac":
        from pipeline_lib.fetch.stac import StacSource, stac_settings

        return StacSource(stac_settings(settings.get("stac") or {}))
    raise ConfigError(f"fetch.source: unknown source {name!r}; use demo, cdse, dhus, local, files or stac")


def run_search(
    fetch: dict[str, Any],
    aoi_lonlat: tuple[float, float, float, float],
    dates: list[str],
    pair_tolerance_days: float,
    max_cloud_cover: float,
    out_csv: Path,
    polarisations: Sequence[str] = ("VV", "VH"),
) -> list[Scene]:
    """Search the source, select one S1 and one S2 scene per date, write the scene table.

    A source that records rejected entries (``local``: wrong product type, incomplete, outside the
    AOI or the dates) has them summarised in the error when no scene is found.
    """
    source = make_source(fetch["source"], fetch)
    request = SearchRequest(
        aoi_lonlat=aoi_lonlat,
        dates=[date.fromisoformat(d) for d in dates],
        pair_tolerance_days=pair_tolerance_days,
        max_cloud_cover=max_cloud_cover,
        polarisations=tuple(p.upper() for p in polarisations),
        check_complete=True,
    )
    candidates = source.search(request)
    summary_fn = getattr(source, "summary", None)
    rejected = summary_fn() if callable(summary_fn) else ""
    if not candidates:
        box = "(" + ", ".join(f"{v:.4f}" for v in aoi_lonlat) + ")"
        if rejected:
            raise FetchError(
                f"fetch.source {fetch['source']}: no usable Sentinel-1 GRD / Sentinel-2 L2A product for the AOI {box} "
                f"near {dates[0]}..{dates[-1]}; {rejected}. Fix or replace those products (details in the search log)"
            )
        raise FetchError(
            f"fetch.source {fetch['source']}: no Sentinel-1/2 products intersect the AOI {box} near {dates[0]}..{dates[-1]}; check aoi and dates"
        )
    if fetch["source"] == "files":
        from pipeline_lib.fetch.files import FilesSource, select_files

        assert isinstance(source, FilesSource)
        chosen = select_files(candidates, request, list(source.specs))
    elif fetch["source"] == "stac":
        from pipeline_lib.fetch.stac import StacSource, select_stac

        assert isinstance(source, StacSource)
        chosen = select_stac(candidates, request, list(source.settings.collections))
    else:
        try:
            chosen = select_scenes(candidates, request)
        except SceneNotFoundError as exc:
            if rejected:
                raise SceneNotFoundError(f"{exc}; also, {rejected}") from None
            raise
    if rejected:
        log.warning("%s (each with its reason above)", rejected)
    chosen = [dataclasses.replace(s, source=s.source or fetch["source"]) for s in chosen]
    write_scene_table(chosen, out_csv)
    return chosen


def run_download(fetch: dict[str, Any], scenes_csv: Path, product_id: str, dest: Path) -> Path:
    """Materialise one product of the scene table at ``dest`` (verified, atomic)."""
    rows = [s for s in read_scene_table(scenes_csv) if s.product_id == product_id]
    if not rows:
        raise FetchError(f"{scenes_csv}: product {product_id} is not in the scene table; rerun the search")
    source = make_source(fetch["source"], fetch)
    return source.download(rows[0], dest)
