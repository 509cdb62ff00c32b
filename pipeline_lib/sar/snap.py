"""Sentinel-1 SNAP backend: write a gpt graph, run ESA SNAP's ``gpt``, map its failures, warp onto the grid.

Governing references:
- SNAP Graph Processing Framework, graph XML (``<graph><node><operator/><sources/><parameters/>``) and the
  ``gpt`` command line (``gpt <graph.xml> -q <parallelism> -c <cache size>``), SNAP help "GPT" / "Graph Builder";
  snap-engine ``snap-gpf/.../gpf/main/CommandLineTool.java``.
- Operator parameters: ``snap_operators.csv`` beside this module, one row per ``@Parameter`` of the operators we
  use, each citing the s1tbx / snap-engine source file (ReadOp, ApplyOrbitFileOp, Sentinel1RemoveThermalNoiseOp,
  CalibrationOp, SpeckleFilterOp, RangeDopplerGeocodingOp, WriteOp).
- The chain mirrors docs/DESIGN.md §5 (S1 SNAP backend) and the native backend's outputs (docs/CONTRACTS.md,
  ``s1/{date}.tif``: bands VV, VH, σ0 dB, float32, NaN nodata, COG on the grid).

SNAP writes terrain-corrected σ0 in linear power with 0 as no-data (Calibration ``outputImageScaleInDb=false``,
needed because Lee sigma works on intensities); the warp to the grid is bilinear in linear power, then dB.
A flat WGS84 ellipsoid (``sar.dem: ellipsoid``) is given to SNAP as an external all-zero DEM with EGM off, so
SNAP and the native backend geocode on the same surface.
"""

from __future__ import annotations

import csv
import math
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element, SubElement, indent, tostring

import numpy as np
import pyproj
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import Resampling

from pipeline_lib.cog import write_cog
from pipeline_lib.errors import ConfigError, FetchError, PipelineError, ProductError
from pipeline_lib.grid import Grid
from pipeline_lib.grid import warp_to_grid as warp_array_to_grid
from pipeline_lib.io import atomic_path, write_text_atomic
from pipeline_lib.sar.params import SpeckleParams

__all__ = [
    "OPERATORS_CSV",
    "DemSpec",
    "ParamSpec",
    "build_graph",
    "classify_gpt_failure",
    "find_gpt",
    "gpt_command",
    "graph_nodes",
    "graph_xml",
    "load_operator_table",
    "run_snap",
    "speckle_parameters",
    "validate_graph",
    "warp_to_grid",
]

#: The committed table of SNAP operators and parameters (names, types, allowed values, sources).
OPERATORS_CSV = Path(__file__).with_name("snap_operators.csv")

#: SNAP's Lee sigma accepts 1..4 looks only (SpeckleFilterOp.numLooksStr valueSet).
SNAP_LOOKS = (1, 2, 3, 4)

#: Terrain-Correction writes 0 where there is no data (RangeDopplerGeocodingOp, band no-data value 0).
SNAP_NODATA = 0.0

#: No-data value written into the flat ellipsoid DEM (never a real height).
FLAT_DEM_NODATA = -32768.0


@dataclass(frozen=True)
class ParamSpec:
    """One ``@Parameter`` of a SNAP operator as committed in ``snap_operators.csv``."""

    operator: str
    name: str
    type: str
    allowed: tuple[str, ...]
    interval: str
    default: str
    required: bool
    source: str


@dataclass(frozen=True)
class DemSpec:
    """How Terrain-Correction gets its heights: a SNAP DEM name, or an external GeoTIFF."""

    name: str
    file: Path | None = None
    apply_egm: bool = True
    nodata: float = 0.0


def load_operator_table(path: Path = OPERATORS_CSV) -> dict[str, dict[str, ParamSpec]]:
    """Read the operator table: ``{operator: {parameter: ParamSpec}}``."""
    table: dict[str, dict[str, ParamSpec]] = {}
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            spec = ParamSpec(
                operator=row["operator"],
                name=row["parameter"],
                type=row["type"],
                allowed=tuple(v for v in row["allowed"].split("|") if v),
                interval=row["interval"],
                default=row["default"],
                required=row["required"].strip().lower() == "true",
                source=row["source"],
            )
            table.setdefault(spec.operator, {})[spec.name] = spec
    return table


def _in_interval(value: float, interval: str) -> bool:
    """Whether ``value`` lies in a ceres interval such as ``(1, 100]`` or ``(0, *)``."""
    m = re.fullmatch(r"\s*([\[(])\s*([^,]+?)\s*,\s*([^,]+?)\s*([\])])\s*", interval)
    if not m:
        return True
    lo_open, lo, hi, hi_open = m.group(1) == "(", m.group(2), m.group(3), m.group(4) == ")"
    if lo != "*" and (value <= float(lo) if lo_open else value < float(lo)):
        return False
    return not (hi != "*" and (value >= float(hi) if hi_open else value > float(hi)))


def check_value(spec: ParamSpec, text: str) -> str | None:
    """Why ``text`` is not a valid value of ``spec`` (None when it is)."""
    label = f"{spec.operator}.{spec.name}"
    if spec.type in ("boolean", "Boolean"):
        return None if text in ("true", "false") else f"{label}: {text!r} is not a boolean (true/false)"
    if spec.type in ("int", "double"):
        try:
            number = int(text) if spec.type == "int" else float(text)
        except ValueError:
            return f"{label}: {text!r} is not of type {spec.type}"
        if spec.interval and not _in_interval(float(number), spec.interval):
            return f"{label}: {text} is outside {spec.interval}"
        return None
    if spec.type == "String[]":
        items = [v.strip() for v in text.split(",") if v.strip()]
        bad = [v for v in items if spec.allowed and v not in spec.allowed]
        return f"{label}: {bad} not in {list(spec.allowed)}" if bad else None
    if spec.type == "String" and spec.allowed and text not in spec.allowed:
        return f"{label}: {text!r} not in {list(spec.allowed)}"
    if spec.type in ("File", "Geometry", "Rectangle") and not text.strip():
        return f"{label}: empty value"
    return None


def graph_nodes(root: Element) -> list[tuple[str, str, list[str], dict[str, str]]]:
    """The nodes of a gpt graph: ``(id, operator, source ids, {parameter: text})`` in document order."""
    nodes = []
    for node in root.findall("node"):
        sources = [el.get("refid") or (el.text or "").strip() for el in node.findall("sources/*")]
        params = {el.tag: (el.text or "").strip() for el in node.findall("parameters/*")}
        nodes.append((node.get("id", ""), (node.findtext("operator") or "").strip(), sources, params))
    return nodes


def validate_graph(root: Element, table: Mapping[str, Mapping[str, ParamSpec]] | None = None) -> list[str]:
    """Every problem of a graph against the operator table (unknown operators/parameters, bad values, links)."""
    table = table if table is not None else load_operator_table()
    problems: list[str] = []
    ids = set()
    for node_id, operator, sources, params in graph_nodes(root):
        if operator not in table:
            problems.append(f"[NodeId: {node_id}] Operator '{operator}' not found")
            continue
        specs = table[operator]
        for name, text in params.items():
            if name not in specs:
                problems.append(f"[NodeId: {node_id}] Unknown parameter '{name}' of operator '{operator}'")
            elif (why := check_value(specs[name], text)) is not None:
                problems.append(f"[NodeId: {node_id}] {why}")
        problems += [
            f"[NodeId: {node_id}] missing required parameter '{s.name}'"
            for s in specs.values()
            if s.required and s.name not in params
        ]
        problems += [f"[NodeId: {node_id}] source '{s}' is not an earlier node" for s in sources if s not in ids]
        ids.add(node_id)
    return problems


def speckle_parameters(speckle: SpeckleParams, product_looks: float | None) -> dict[str, str]:
    """Speckle-Filter (Lee Sigma) parameters from the same :class:`SpeckleParams` the native filter takes."""
    looks = speckle.looks_for(product_looks, "sar.speckle.looks")
    window, target, sigma = speckle.window_px, speckle.target_px, speckle.sigma
    snap_looks = min(SNAP_LOOKS, key=lambda n: (abs(n - looks), n))
    return {
        "filter": "Lee Sigma",
        "windowSize": f"{window}x{window}",
        "targetWindowSizeStr": f"{target}x{target}",
        "sigmaStr": f"{sigma:.1f}",
        "numLooksStr": str(snap_looks),
    }


def map_projection(crs: str) -> str:
    """Terrain-Correction ``mapProjection``: an EPSG code where there is one, else WKT1 (GeoTools parses both)."""
    epsg = pyproj.CRS.from_user_input(crs).to_epsg()
    return f"EPSG:{epsg}" if epsg else str(pyproj.CRS.from_user_input(crs).to_wkt("WKT1_GDAL"))


def build_graph(
    product_file: Path,
    out_file: Path,
    grid: Grid,
    *,
    polarisations: Sequence[str],
    speckle: Mapping[str, str],
    dem: DemSpec,
    apply_orbit: bool = False,
) -> Element:
    """The gpt graph Read → [Apply-Orbit-File] → ThermalNoiseRemoval → Calibration → Speckle-Filter →
    Terrain-Correction → Write (GeoTIFF), parameters as SNAP names them (values as strings)."""
    pols = ",".join(p.upper() for p in polarisations)
    sigma_bands = ",".join(f"Sigma0_{p.upper()}" for p in polarisations)
    chain: list[tuple[str, dict[str, str]]] = [("Read", {"file": str(product_file), "formatName": "SENTINEL-1"})]
    if apply_orbit:
        chain.append(
            (
                "Apply-Orbit-File",
                {"orbitType": "Sentinel Precise (Auto Download)", "polyDegree": "3", "continueOnFail": "false"},
            )
        )
    chain += [
        (
            "ThermalNoiseRemoval",
            {"selectedPolarisations": pols, "removeThermalNoise": "true", "reIntroduceThermalNoise": "false"},
        ),
        (
            "Calibration",
            {
                "selectedPolarisations": pols,
                "outputSigmaBand": "true",
                "outputGammaBand": "false",
                "outputBetaBand": "false",
                "outputImageScaleInDb": "false",
                "outputImageInComplex": "false",
            },
        ),
        ("Speckle-Filter", {"sourceBands": sigma_bands, **speckle}),
        ("Terrain-Correction", _terrain_parameters(sigma_bands, grid, dem)),
        ("Write", {"file": str(out_file), "formatName": "GeoTIFF", "deleteOutputOnFailure": "true"}),
    ]
    return _graph_element(chain)


def _terrain_parameters(sigma_bands: str, grid: Grid, dem: DemSpec) -> dict[str, str]:
    """Terrain-Correction parameters: the DEM, bilinear resampling, and output pixels on the grid's lattice."""
    external = (
        {
            "externalDEMFile": str(dem.file),
            "externalDEMNoDataValue": repr(float(dem.nodata)),
            "externalDEMApplyEGM": "true" if dem.apply_egm else "false",
        }
        if dem.file is not None
        else {}
    )
    return {
        "sourceBands": sigma_bands,
        "demName": dem.name,
        **external,
        "demResamplingMethod": "BILINEAR_INTERPOLATION",
        "imgResamplingMethod": "BILINEAR_INTERPOLATION",
        "pixelSpacingInMeter": repr(float(grid.resolution_m)),
        "mapProjection": map_projection(grid.crs),
        # Pixel edges on the grid's own lattice: the warp onto the grid is then a pure crop.
        "alignToStandardGrid": "true",
        "standardGridOriginX": repr(float(grid.transform.c)),
        "standardGridOriginY": repr(float(grid.transform.f)),
        "nodataValueAtSea": "false",
        "saveSelectedSourceBand": "true",
        "applyRadiometricNormalization": "false",
    }


def _graph_element(chain: Sequence[tuple[str, Mapping[str, str]]]) -> Element:
    """A linear gpt graph: one node per (operator, parameters), node id = operator, each reading the previous."""
    root = Element("graph", id="Graph")
    SubElement(root, "version").text = "1.0"
    previous: str | None = None
    for operator, params in chain:
        node = SubElement(root, "node", id=operator)
        SubElement(node, "operator").text = operator
        sources = SubElement(node, "sources")
        if previous is not None:
            SubElement(sources, "sourceProduct", refid=previous)
        par = SubElement(node, "parameters", {"class": "com.bc.ceres.binding.dom.XppDomElement"})
        for name, value in params.items():
            SubElement(par, name).text = value
        previous = operator
    return root


def graph_xml(root: Element) -> str:
    """The graph as indented XML text."""
    indent(root, space="  ")
    return tostring(root, encoding="unicode") + "\n"


def gpt_command(gpt: str, graph: Path, threads: int, cache_mb: int) -> list[str]:
    """``gpt <graph> -q <threads> -c <cache>M -e`` (parallelism, tile cache, full error messages)."""
    if threads < 1 or cache_mb < 1:
        raise ConfigError(f"sar resources: threads={threads} and cache_mb={cache_mb} must be >= 1")
    return [gpt, str(graph), "-q", str(int(threads)), "-c", f"{int(cache_mb)}M", "-e"]


def find_gpt(configured: str | None, search_path: str | None = None) -> str | None:
    """The gpt executable: ``sar.gpt`` when set (must exist), else ``gpt`` on PATH, else None."""
    if configured:
        hit = shutil.which(configured, path=search_path) if os.sep not in configured else None
        candidate = Path(hit) if hit else Path(configured).expanduser()
        if not (candidate.is_file() and os.access(candidate, os.X_OK)):
            raise ConfigError(f"sar.gpt: {configured} is not an executable file; fix the path or set it to null")
        return str(candidate)
    return shutil.which("gpt", path=search_path)


#: Known gpt failure lines → (error class, what to do). First match wins; matched case-insensitively.
_GPT_ERRORS: tuple[tuple[str, type[PipelineError], str], ...] = (
    (
        r"OutOfMemoryError|Java heap space|GC overhead limit exceeded",
        ConfigError,
        "SNAP ran out of Java heap; raise -Xmx in gpt.vmoptions or the rule's mem_mb, or lower the cache (-c)",
    ),
    (
        r"No valid orbit file found|orbit file (is )?not found|Unable to (download|find) .*orbit",
        FetchError,
        "no precise orbit available; set sar.apply_orbit false or put the POEORB file in ~/.snap/auxdata/Orbits",
    ),
    (
        r"DEM not found|Cannot find DEM|DEM .* (is )?not installed|Unable to (read|open) .*DEM",
        ConfigError,
        "SNAP cannot read the DEM; check sar.dem points to a readable GeoTIFF covering the scene",
    ),
    (
        r"Operator '?[\w.-]+'? not found|Unknown operator|No (such )?operator",
        ConfigError,
        "this SNAP lacks an operator of the graph; install the Sentinel-1 (microwave) toolbox",
    ),
    (
        r"Unknown (parameter|element)",
        ConfigError,
        "this SNAP version rejects a graph parameter; use SNAP >= 8 or update snap_operators.csv",
    ),
    (
        r"Value for '.*' (is invalid|must be|is out of range)|not in \[",
        ConfigError,
        "a graph parameter value is not accepted; check sar.speckle / sar settings",
    ),
    (
        r"does not exist|No product reader found|Cannot read product|not a valid product",
        ProductError,
        "SNAP cannot read the product; download it again",
    ),
)


def classify_gpt_failure(returncode: int, log_text: str, log_hint: str) -> PipelineError:
    """A one-line error for a failed gpt run, from its exit code and the known error lines of its log."""
    lines = [ln.strip() for ln in log_text.splitlines() if ln.strip()]
    for pattern, cls, advice in _GPT_ERRORS:
        rx = re.compile(pattern, re.IGNORECASE)
        hit = next((ln for ln in lines if rx.search(ln)), None)
        if hit is not None:
            return cls(f"gpt failed (exit {returncode}): {hit[:200]}; {advice} (log: {log_hint})")
    if returncode in (137, -9):
        return ConfigError(
            f"gpt was killed (exit {returncode}), most likely out of memory; "
            f"raise the rule's mem_mb or lower threads/cache (log: {log_hint})"
        )
    if returncode in (143, -15):
        return PipelineError(f"gpt was terminated (exit {returncode}); rerun the job (log: {log_hint})")
    last = next((ln for ln in reversed(lines) if "error" in ln.lower()), lines[-1] if lines else "no output")
    return PipelineError(f"gpt failed (exit {returncode}): {last[:200]}; see the log {log_hint}")


def _product_file(safe_path: Path) -> Path:
    """What SNAP's Read takes: ``manifest.safe`` of a SAFE folder, or the zip itself."""
    if safe_path.is_dir():
        manifest = safe_path / "manifest.safe"
        if not manifest.is_file():
            raise ProductError(f"{safe_path}: no manifest.safe; the product is incomplete, download it again")
        return manifest
    if safe_path.suffix.lower() == ".zip" and safe_path.is_file():
        return safe_path
    raise ProductError(f"{safe_path}: not a SAFE folder or zip; download the product again")


def write_flat_dem(bounds: tuple[float, float, float, float], path: Path, step_deg: float = 0.01) -> None:
    """An all-zero WGS84 height GeoTIFF over ``bounds`` (+2 cells): the flat ellipsoid as a DEM for SNAP."""
    lon0, lat0, lon1, lat1 = bounds
    width = int(math.ceil((lon1 - lon0) / step_deg)) + 4
    height = int(math.ceil((lat1 - lat0) / step_deg)) + 4
    transform = from_origin(lon0 - 2 * step_deg, lat1 + 2 * step_deg, step_deg, step_deg)
    with atomic_path(path, suffix=".tif") as tmp:
        with rasterio.open(
            tmp,
            "w",
            driver="GTiff",
            width=width,
            height=height,
            count=1,
            dtype="float32",
            crs="EPSG:4326",
            transform=transform,
            nodata=FLAT_DEM_NODATA,
        ) as dst:
            dst.write(np.zeros((1, height, width), dtype=np.float32))


def dem_spec(dem: Path | None, grid: Grid, workdir: Path, margin_m: float = 2000.0) -> DemSpec:
    """External DEM for Terrain-Correction: the configured EGM96 GeoTIFF, or, for the ellipsoid, a flat zero DEM
    over the grid plus ``margin_m`` (outside it SNAP finds no height and writes no data: the grid is all we keep)."""
    if dem is None:
        flat = workdir / "ellipsoid-dem.tif"
        write_flat_dem(grid.lonlat_bounds(margin_m), flat)
        return DemSpec(name="External DEM", file=flat, apply_egm=False, nodata=FLAT_DEM_NODATA)
    if not dem.is_file():
        raise ConfigError(f"sar.dem: {dem} does not exist; give a DEM GeoTIFF or 'ellipsoid'")
    with rasterio.open(dem) as src:
        nodata = src.nodata
    return DemSpec(
        name="External DEM",
        file=dem.resolve(),
        apply_egm=True,
        nodata=float(nodata) if nodata is not None else FLAT_DEM_NODATA,
    )


def _band_order(src: rasterio.io.DatasetReader, polarisations: Sequence[str]) -> list[int]:
    """1-based band index per polarisation: by description (Sigma0_VV) when present, else graph order."""
    names = [d or "" for d in src.descriptions]
    by_name = {n.replace("Sigma0_", "").upper(): i + 1 for i, n in enumerate(names) if n}
    if all(p.upper() in by_name for p in polarisations):
        return [by_name[p.upper()] for p in polarisations]
    if src.count < len(polarisations):
        raise PipelineError(f"{src.name}: gpt wrote {src.count} bands for {list(polarisations)}; see the gpt log")
    return list(range(1, len(polarisations) + 1))


def warp_to_grid(src_path: Path, grid: Grid, polarisations: Sequence[str]) -> np.ndarray:
    """SNAP's terrain-corrected linear σ0 (0 = no data) warped bilinearly onto ``grid``, in dB (NaN no data)."""
    with rasterio.open(src_path) as src:
        if src.crs is None:
            raise PipelineError(f"{src_path}: gpt output has no CRS; check the Terrain-Correction mapProjection")
        out = np.full((len(polarisations), grid.height, grid.width), np.nan, dtype=np.float32)
        for k, band in enumerate(_band_order(src, polarisations)):
            data = src.read(band).astype(np.float32)
            data[~np.isfinite(data) | (data <= SNAP_NODATA)] = np.nan
            out[k] = warp_array_to_grid(data, src.transform, src.crs, grid, Resampling.bilinear)
    with np.errstate(divide="ignore", invalid="ignore"):
        db = 10.0 * np.log10(out)
    db[~np.isfinite(db)] = np.nan
    return db.astype(np.float32)


def _product_looks(safe_path: Path, polarisation: str) -> float | None:
    """Nominal looks from the annotation (range × azimuth), as the native backend uses."""
    from pipeline_lib.safe import open_product
    from pipeline_lib.sar.product import find_pol_files, read_image_info

    with open_product(safe_path) as reader:
        files = find_pol_files(reader, polarisation, need_measurement=False)
        return float(read_image_info(reader.parse_xml(files.annotation), files.annotation).number_of_looks)


def run_snap(
    safe_path: Path,
    grid: Grid,
    out_tif: Path,
    *,
    polarisations: Sequence[str] = ("VV", "VH"),
    speckle: SpeckleParams,
    dem: Path | None,
    gpt: str | None,
    threads: int,
    cache_mb: int,
    log_path: Path | None = None,
    apply_orbit: bool = False,
) -> None:
    """Run the SNAP chain on one GRD product and write σ0 dB bands (one per polarisation) as a COG on ``grid``."""
    safe_path, out_tif = Path(safe_path), Path(out_tif)
    exe = find_gpt(gpt)
    if exe is None:
        raise ConfigError("sar.gpt: SNAP's gpt is not on PATH; set sar.gpt or use sar.backend: native")
    product_file = _product_file(safe_path)
    looks = None if speckle.looks is not None else _product_looks(safe_path, polarisations[0])
    spk = speckle_parameters(speckle, looks)
    out_tif.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_tif.stem}.snap-", dir=out_tif.parent) as tmp:
        work = Path(tmp)
        snap_out = work / "terrain_corrected.tif"
        root = build_graph(
            product_file.resolve(),
            snap_out,
            grid,
            polarisations=polarisations,
            speckle=spk,
            dem=dem_spec(dem, grid, work),
            apply_orbit=apply_orbit,
        )
        problems = validate_graph(root)
        if problems:
            raise PipelineError(f"SNAP graph for {safe_path.name} is invalid: {problems[0]}; report this as a bug")
        graph_path = work / "graph.xml"
        text = graph_xml(root)
        write_text_atomic(graph_path, text)
        cmd = gpt_command(exe, graph_path, threads, cache_mb)
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
        log_hint = str(log_path) if log_path is not None else "rerun with a log path"
        if log_path is not None:
            write_text_atomic(
                log_path,
                f"$ {' '.join(cmd)}\n--- graph ---\n{text}--- gpt output ---\n{proc.stdout}"
                f"--- exit {proc.returncode} ---\n",
            )
        if proc.returncode != 0:
            raise classify_gpt_failure(proc.returncode, proc.stdout, log_hint)
        if not snap_out.is_file():
            raise PipelineError(f"gpt exited 0 but wrote no {snap_out.name}; see the log {log_hint}")
        sigma0_db = warp_to_grid(snap_out, grid, polarisations)
    if not np.isfinite(sigma0_db).any():
        raise ProductError(f"{safe_path.name}: SNAP output does not cover the grid; check the product footprint")
    write_cog(
        sigma0_db,
        out_tif,
        crs=grid.crs,
        transform=grid.transform,
        descriptions=[p.upper() for p in polarisations],
        tags={
            "backend": "snap",
            "product": safe_path.name,
            "units": "dB",
            "quantity": "sigma0",
            "speckle_filter": "Lee Sigma",
            **{f"snap_{k}": v for k, v in spk.items()},
        },
        band_tags=[{"long_name": f"sigma nought {p.upper()}", "units": "dB"} for p in polarisations],
    )
