"""The region report ``results/{region}/report.html`` and the index ``results/report.html`` (DESIGN §7).

A region report is one self-contained HTML5 file (images as data URIs, CSS inline, no scripts or
external requests) with: quicklooks per date and modality, the scene table, the grid, the residual
offsets, per-rule runtimes from Snakemake ``benchmark:`` files, software versions and the
(redacted) configuration. ``model`` adds the model part (metrics tables and figures) when given.
Sections are built by the functions in :mod:`pipeline_lib.report.html`, images by
:mod:`pipeline_lib.report.figures`.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import platform
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import rasterio

from pipeline_lib.errors import ProductError
from pipeline_lib.fetch.base import read_scene_table
from pipeline_lib.grid import read_grid
from pipeline_lib.io import write_text_atomic
from pipeline_lib.report import figures as fig
from pipeline_lib.report import html as h

__all__ = ["run_region_report", "run_index", "quicklooks", "software_versions", "region_report_html", "index_html"]

PACKAGES = (
    "snakemake",
    "numpy",
    "scipy",
    "xarray",
    "dask",
    "rasterio",
    "rioxarray",
    "pyproj",
    "xarray-sentinel",
    "sarsen",
    "numba",
    "scikit-image",
    "torch",
    "pandas",
    "netCDF4",
    "matplotlib",
    "pillow",
)


def software_versions(packages: Sequence[str] = PACKAGES) -> dict[str, str]:
    """Installed versions of the pipeline's main libraries, Python and GDAL."""
    out = {"python": platform.python_version(), "GDAL": str(rasterio.__gdal_version__)}
    for name in packages:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _read(path: Path) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    try:
        with rasterio.open(path) as src:
            bands = {d: src.read(i + 1, masked=False).astype(np.float32) for i, d in enumerate(src.descriptions) if d}
    except rasterio.errors.RasterioIOError as exc:
        raise ProductError(f"{path}: unreadable GeoTIFF ({exc}); rerun the rule that writes it") from exc
    valid = bands.pop("valid") > 0.5 if "valid" in bands else None
    return bands, valid


def quicklooks(s1: Mapping[str, Path], s2: Mapping[str, Path]) -> list[tuple[str, str, str, str]]:
    """(date, modality, title, JPEG thumbnail data URI) for S1 VV grey + VV/VH false colour, S2 true colour + SWIR."""
    items: list[tuple[str, str, str, str]] = []
    for date, path in sorted(s1.items()):
        b, _ = _read(Path(path))
        if "VV" in b:
            items.append((date, "S1", "VV dB", fig.data_uri(fig.jpeg_bytes(fig.s1_grey(b["VV"])))))
        if "VV" in b and "VH" in b:
            items.append(
                (date, "S1", "VV/VH false colour", fig.data_uri(fig.jpeg_bytes(fig.s1_false_colour(b["VV"], b["VH"]))))
            )
    for date, path in sorted(s2.items()):
        b, valid = _read(Path(path))
        if all(k in b for k in ("B04", "B03", "B02")):
            items.append(
                (
                    date,
                    "S2",
                    "true colour B04/B03/B02",
                    fig.data_uri(fig.jpeg_bytes(fig.s2_true_colour(b["B04"], b["B03"], b["B02"], valid))),
                )
            )
        if all(k in b for k in ("B12", "B11", "B04")):
            items.append(
                (
                    date,
                    "S2",
                    "SWIR B12/B11/B04",
                    fig.data_uri(fig.jpeg_bytes(fig.s2_swir(b["B12"], b["B11"], b["B04"], valid))),
                )
            )
    return items


def region_report_html(
    region: str,
    grid_json: Path,
    scenes_csv: Path,
    s1: Mapping[str, Path],
    s2: Mapping[str, Path],
    offsets_json: Path,
    benchmark_tsvs: Sequence[Path],
    config: Mapping[str, Any],
    model_sections: Sequence[str] = (),
) -> str:
    """The region report as an HTML string (see :func:`run_region_report`).

    ``model_sections`` are the model part's HTML sections (:func:`pipeline_lib.report.model_part.model_sections`).
    """
    grid = read_grid(grid_json)
    try:
        offsets = json.loads(Path(offsets_json).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ProductError(f"{offsets_json}: unreadable offsets ({exc}); rerun the offsets rule") from exc
    try:
        lonlat = grid.lonlat_bounds()
    except Exception:  # a CRS pyproj cannot invert should not kill the report
        lonlat = None
    sections = [
        h.section("Quicklooks", h.render_quicklooks(quicklooks(s1, s2)), "quicklooks"),
        h.section("Scenes", h.render_scenes(read_scene_table(scenes_csv)), "scenes"),
        h.section("Grid", h.render_grid(grid.to_dict(), lonlat), "grid"),
        h.section("Residual offsets", h.render_offsets(offsets), "offsets"),
        *model_sections,
        h.section("Runtimes", h.render_runtimes([h.parse_benchmark(p) for p in benchmark_tsvs]), "runtimes"),
        h.section("Software versions", h.render_versions(software_versions()), "versions"),
        h.section("Configuration", h.render_config(config), "config"),
    ]
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return h.page(f"TIRSIT pipeline — region {region}", sections, subtitle=f"generated {stamp}")


def run_region_report(
    region: str,
    grid_json: Path,
    scenes_csv: Path,
    s1: dict[str, Path],
    s2: dict[str, Path],
    offsets_json: Path,
    benchmark_tsvs: list[Path],
    config: dict[str, Any],
    out_html: Path,
    model_sections: Sequence[str] = (),
) -> None:
    """Write ``results/{region}/report.html`` (self-contained) atomically."""
    write_text_atomic(
        out_html,
        region_report_html(region, grid_json, scenes_csv, s1, s2, offsets_json, benchmark_tsvs, config, model_sections),
    )


def index_html(regions: Sequence[str], reports: Sequence[Path], out_html: Path) -> str:
    """Index page with a relative link to each region report."""
    if len(regions) != len(reports):
        raise ValueError(f"run_index: {len(regions)} regions but {len(reports)} reports")
    base = Path(out_html).resolve().parent
    items = []
    for region, rep in zip(regions, reports, strict=True):
        rel = Path(os.path.relpath(Path(rep).resolve(), base)).as_posix()
        items.append(f'<li><a href="{h.esc(rel)}">{h.esc(region)}</a></li>')
    body = "<ul>\n" + "\n".join(items) + "\n</ul>"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return h.page("TIRSIT pipeline — regions", [h.section("Regions", body, "regions")], subtitle=f"generated {stamp}")


def run_index(regions: list[str], reports: list[Path], out_html: Path) -> None:
    """Write ``results/report.html`` linking every region report (relative links)."""
    write_text_atomic(out_html, index_html(regions, reports, out_html))
