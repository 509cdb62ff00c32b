"""The Sentinel-1 chain against its peers on one full-size GRD: this project, OTB's CLI chain, sarsen (DESIGN §8).

Input: the full-size ESA-layout GRD of :mod:`fullscene_grd` (26102 × 16705 px, VV + VH, with the TIFF tags
ESA writes, which OTB needs). Grids (10 m, UTM 33N, WGS84 ellipsoid, no DEM):

- ``30km``: 3000 × 3000 px centred on the scene centre;
- ``scene``: the whole scene footprint (≈ 21600 × 29100 px; heavy: minutes per tool and ≈ 15 GB of disk).

Tools, every step a fresh process (process wall time from spawn to exit, the step's own timed span where
it reports one, peak RSS from ``os.wait4``), ``--threads`` threads each:

- ``ours``: calibrate (thermal noise removed) → Lee sigma 7×7 → terrain correction, VV only, as the
  workflow's three jobs (each process imports what the rule's script imports, then times its call);
- ``otb``: OTB 8 (Debian ``otb-bin``, the engine of CNES's S1Tiling): ``SARCalibration`` (``-removenoise true``, σ0)
  → ``Despeckle`` (Lee, radius 3 = 7×7, 4.4 looks) → ``OrthoRectification`` (linear, grid spacing 40,
  default elevation 0 = ellipsoid), files in between. On ``30km`` OTB reads the same GRD window as ours:
  the calibration output is cropped by its writer's ``?&box=`` (``ExtractROI`` before calibration would
  garble the noise removal). ITK and GDAL threads = ``--threads``;
- ``sarsen``: ``sarsen.apps.terrain_correction`` (β0, linear, a DEM of zeros on the grid), ``30km`` only.

Rounds are interleaved (all tools of a grid, then again; the order rotates each round) so that changing
machine load hits every tool alike: compare ratios within a run. Agreement: our VV σ0 dB vs OTB's σ0
(linear → dB) and vs sarsen's β0 as σ0 (:mod:`tools.sar_compare`): median Δ, median and p95 |Δ|,
offset by phase correlation (on ``scene``: over the central 4096² px, in bounded memory).

``otb-bin`` is installed with apt when it is missing, the user is root and ``CI`` is not set; otherwise
the OTB runs are skipped (stated in the output).

Usage (repository root)::

    PYTHONPATH=. python benchmarks/bench_sar_peers.py --dest /tmp/fullscene [--grids 30km,scene] [--rounds 2]
        [--tools ours,otb,sarsen] [--threads 2] [--work DIR]

Prints one line per run and a summary; writes ``peers.json`` in the work folder.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.fullscene_grd import build_fullscene_grd  # noqa: E402
from pipeline_lib.grid import Grid, make_centered_grid, write_grid  # noqa: E402

TOOLS = ("ours", "otb", "sarsen")
GRIDS = ("30km", "scene")
UTM33N = "EPSG:32633"
OTB_APPS = ("otbcli_SARCalibration", "otbcli_Despeckle", "otbcli_OrthoRectification")
LEE_LOOKS = 4.4  # IW GRDH equivalent number of looks

#: what each of our steps' processes runs: the rule script's imports, then the timed call
OURS_STEP = {
    "calibrate": (
        "from pipeline_lib.grid import read_grid\nfrom pipeline_lib.jobs import job\nfrom pipeline_lib.sar import run_calibrate\n",
        "run_calibrate(Path(a['safe']), read_grid(a['grid']), Path(a['cal']), ('VV',), 64, threads=a['threads'])",
    ),
    "speckle": (
        "from pipeline_lib.jobs import job\nfrom pipeline_lib.sar import run_speckle\n"
        "from pipeline_lib.sar.params import SpeckleParams\n",
        # the schema's defaults (sar.speckle: 7, 3, 0.9, looks from the product), as the rule passes them
        "run_speckle(Path(a['cal']), Path(a['fil']), SpeckleParams(7, 3, 0.9, None), threads=a['threads'])",
    ),
    "terrain_correct": (
        "from pipeline_lib.grid import read_grid\nfrom pipeline_lib.jobs import job\nfrom pipeline_lib.sar import run_terrain\n",
        "run_terrain(Path(a['fil']), Path(a['safe']), read_grid(a['grid']), Path(a['tif']), threads=a['threads'])",
    ),
}


def ensure_otb() -> str | None:
    """Path of OTB's bin folder, installing Debian's ``otb-bin`` when missing and allowed; None if unavailable."""
    found = shutil.which(OTB_APPS[0])
    if found:
        return str(Path(found).parent)
    if os.environ.get("CI") or os.geteuid() != 0 or not shutil.which("apt-get"):
        return None
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "otb-bin"], env=env, check=False)
    found = shutil.which(OTB_APPS[0])
    return str(Path(found).parent) if found else None


#: runs one command and prints its wall time and peak RSS: a small process between this one and the tool, because
#: Linux hands a child spawned with vfork (Python's subprocess) the spawning process's peak RSS as its own
#: starting ru_maxrss — measured directly, every step after this parent had read a full-scene raster reported
#: the parent's 1.6 GB
_LAUNCHER = (
    "import os, subprocess, sys, time\n"
    "t0 = time.perf_counter()\n"
    "p = subprocess.Popen(sys.argv[1:])\n"
    "_, status, usage = os.wait4(p.pid, 0)\n"
    "wall = time.perf_counter() - t0\n"
    "sys.stderr.write(f'@@timed {os.waitstatus_to_exitcode(status)} {wall} {usage.ru_maxrss}\\n')\n"
)


def timed(cmd: list[str], log: Path, env: dict[str, str]) -> dict[str, float]:
    """Run ``cmd``: process wall time (s) and its peak RSS (MB, ``os.wait4`` in a small launcher process)."""
    with open(log, "a") as fh:
        fh.write("$ " + " ".join(cmd) + "\n")
        fh.flush()
        proc = subprocess.run(
            [sys.executable, "-c", _LAUNCHER, *cmd], stdout=fh, stderr=subprocess.PIPE, env=env, cwd=REPO, text=True
        )
        fh.write(proc.stderr)
    line = [ln for ln in proc.stderr.splitlines() if ln.startswith("@@timed ")]
    if proc.returncode != 0 or not line or line[-1].split()[1] != "0":
        sys.exit(f"{cmd[0]} failed; see {log}")
    _, _, wall, maxrss = line[-1].split()
    return {"wall_s": float(wall), "peak_rss_mb": float(maxrss) / 1024.0}


def run_ours(safe: Path, grid_json: Path, out: Path, work: Path, threads: int, env: dict[str, str]) -> dict[str, Any]:
    args = {
        "safe": str(safe),
        "grid": str(grid_json),
        "cal": str(work / "ours_cal.nc"),
        "fil": str(work / "ours_fil.nc"),
        "tif": str(out),
        "threads": threads,
    }
    steps = {}
    for step, (imports, call) in OURS_STEP.items():
        span_file = work / f"ours_{step}.span"
        code = (
            "import json, sys, time\nfrom pathlib import Path\n" + imports + f"a = json.loads({json.dumps(args)!r})\n"
            "t0 = time.perf_counter()\n" + call + "\n"
            f"Path({str(span_file)!r}).write_text(str(time.perf_counter() - t0))\n"
        )
        res = timed([sys.executable, "-c", code], work / "ours.log", env)
        res["span_s"] = float(span_file.read_text())
        steps[step] = res
    for f in ("cal", "fil"):
        Path(args[f]).unlink(missing_ok=True)
    return steps


def grd_window(safe: Path, grid: Grid) -> tuple[slice, slice]:
    """The GRD window our calibration reads for ``grid`` (ellipsoid, 64 px margin)."""
    from pipeline_lib.safe import open_product
    from pipeline_lib.sar.product import find_pol_files, read_image_info
    from pipeline_lib.sar.window import RangeDoppler, grid_window

    with open_product(safe) as reader:
        files = find_pol_files(reader, "VV", need_measurement=False)
        ann = reader.parse_xml(files.annotation)
    info = read_image_info(ann)
    rd = RangeDoppler.from_annotation(ann, info)
    return grid_window(rd, grid, (info.number_of_lines, info.number_of_samples), 64)


def run_otb(
    otb_bin: str, safe: Path, grid: Grid, out: Path, work: Path, threads: int, crop: bool, env: dict[str, str]
) -> dict[str, Any]:
    tiff = next((safe / "measurement").glob("*-vv-*.tiff"))
    cal, fil = work / "otb_cal.tif", work / "otb_fil.tif"
    box = ""
    if crop:
        rows, cols = grd_window(safe, grid)
        box = f"?&box={cols.start}:{rows.start}:{cols.stop - cols.start}:{rows.stop - rows.start}"
    x0, y0 = grid.transform.c, grid.transform.f
    res = grid.transform.a
    otb_env = {
        **env,
        "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": str(threads),
        "OTB_MAX_RAM_HINT": "256",
        "GDAL_NUM_THREADS": str(threads),
    }
    cmds = {
        "calibration": [
            *(f"{otb_bin}/{OTB_APPS[0]}", "-in", str(tiff), "-out", f"{cal}{box}", "float"),
            *("-removenoise", "true", "-lut", "sigma"),
        ],
        "despeckle": [
            f"{otb_bin}/{OTB_APPS[1]}",
            *("-in", str(cal), "-out", str(fil), "float"),
            *("-filter", "lee", "-filter.lee.rad", "3", "-filter.lee.nblooks", str(LEE_LOOKS)),
        ],
        "ortho": [
            f"{otb_bin}/{OTB_APPS[2]}",
            *("-io.in", str(fil), "-io.out", str(out), "float"),
            *("-map", "utm", "-map.utm.zone", "33", "-map.utm.northhem", "true"),
            *("-outputs.mode", "auto", "-outputs.ulx", str(x0 + res / 2), "-outputs.uly", str(y0 - res / 2)),
            *("-outputs.sizex", str(grid.width), "-outputs.sizey", str(grid.height)),
            *("-outputs.spacingx", str(res), "-outputs.spacingy", str(-res)),
            *("-interpolator", "linear", "-opt.gridspacing", "40", "-elev.default", "0"),
        ],
    }
    steps = {name: timed(cmd, work / "otb.log", otb_env) for name, cmd in cmds.items()}
    for f in (cal, fil):
        f.unlink(missing_ok=True)
        Path(str(f) + ".geom").unlink(missing_ok=True)
    return steps


def run_sarsen(safe: Path, grid: Grid, out: Path, work: Path, threads: int, env: dict[str, str]) -> dict[str, Any]:
    from tools.sar_compare import ellipsoid_dem

    dem = ellipsoid_dem(grid, work / "sarsen_dem.tif")
    span_file = work / "sarsen.span"
    code = (
        "import time\nfrom pathlib import Path\nfrom sarsen import apps, sentinel1\n"
        "t0 = time.perf_counter()\n"
        f"p = sentinel1.Sentinel1SarProduct({str(safe)!r}, measurement_group='IW/VV')\n"
        f"apps.terrain_correction(p, {str(dem)!r}, {str(out)!r}, interp_method='linear')\n"
        f"Path({str(span_file)!r}).write_text(str(time.perf_counter() - t0))\n"
    )
    res = timed([sys.executable, "-c", code], work / "sarsen.log", {**env, "OMP_NUM_THREADS": str(threads)})
    res["span_s"] = float(span_file.read_text())
    return {"terrain_correction": res}


def central_crop(path: Path, dest: Path, size: int) -> Path:
    """The central ``size``² window of a raster as its own GeoTIFF (agreement on a whole scene in bounded memory)."""
    import rasterio
    from rasterio.windows import Window
    from rasterio.windows import transform as window_transform

    with rasterio.open(path) as src:
        win = Window(max((src.width - size) // 2, 0), max((src.height - size) // 2, 0), size, size)
        data = src.read(window=win)
        profile = {**src.profile, "driver": "GTiff", "width": data.shape[2], "height": data.shape[1]}
        profile.update(transform=window_transform(win, src.transform), tiled=False, compress=None)
        profile.pop("blockxsize", None), profile.pop("blockysize", None)
        with rasterio.open(dest, "w", **profile) as dst:
            dst.write(data)
            dst.descriptions = src.descriptions
    return dest


def agreement(ours: Path, other: Path, tool: str, safe: Path, crop: int = 0) -> dict[str, float]:
    from tools import sar_compare as compare

    if crop:
        ours = central_crop(ours, ours.with_name(f"crop-{ours.name}"), crop)
        other = central_crop(other, other.with_name(f"crop-{other.name}"), crop)

    if tool == "sarsen":
        stats = compare.compare_with_sarsen(ours, other, safe, polarisation="VV")["bands"]["VV"]
    else:
        bands = compare.compare_rasters(ours, other, b_linear=True)["bands"]
        stats = next(iter(bands.values()))
    keys = ("n_valid", "median_db", "median_abs_db", "p95_abs_db", "dx_px", "dy_px")
    return {k: round(float(stats[k]), 3) for k in keys if k in stats}


def coverage(path: Path) -> float:
    """Fraction of pixels of band 1 with data (finite and not 0: OTB fills outside the swath with 0)."""
    import numpy as np
    import rasterio
    from rasterio.windows import Window

    filled = 0
    with rasterio.open(path) as src:
        for r0 in range(0, src.height, 1024):  # row bands: bounded memory on a whole scene
            a = src.read(1, window=Window(0, r0, src.width, min(1024, src.height - r0)))
            filled += int((np.isfinite(a) & (a != 0)).sum())
        return filled / (src.width * src.height)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, required=True, help="folder of the full-size GRD (built if absent)")
    ap.add_argument("--grids", default="30km")
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None)
    a = ap.parse_args(argv)
    from benchmarks.bench_sar_chain import scene_grid
    from benchmarks.bench_sar_vs_sarsen import scene_centre_lonlat

    safe = build_fullscene_grd(a.dest / "esa", layout="esa")
    work = a.work or a.dest / "peers"
    work.mkdir(parents=True, exist_ok=True)
    tools = [t for t in a.tools.split(",") if t]
    otb_bin = ensure_otb() if "otb" in tools else None
    if "otb" in tools and otb_bin is None:
        print("OTB not available (otb-bin missing and not installable here): OTB runs skipped")
        tools.remove("otb")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.setdefault("NUMBA_CACHE_DIR", str(work / "numba-cache"))
    results: list[dict[str, Any]] = []
    for gname in a.grids.split(","):
        if gname == "30km":
            grid = make_centered_grid(scene_centre_lonlat(safe), (3000, 3000), 10.0, UTM33N)
        elif gname == "scene":
            grid = scene_grid(safe)
        else:
            sys.exit(f"--grids: {gname!r}; use {GRIDS}")
        grid_json = work / f"grid-{gname}.json"
        write_grid(grid, grid_json)
        gtools = [t for t in tools if not (t == "sarsen" and gname == "scene")]
        # warm-up (untimed): page cache of the measurement, numba cache
        run_ours(safe, grid_json, work / "warm.tif", work, a.threads, env) if gname == "30km" else None
        for r in range(a.rounds):
            order = gtools[r % len(gtools) :] + gtools[: r % len(gtools)]
            for tool in order:
                out = work / f"{tool}-{gname}.tif"
                load0 = os.getloadavg()[0]
                if tool == "ours":
                    steps = run_ours(safe, grid_json, out, work, a.threads, env)
                elif tool == "otb":
                    steps = run_otb(str(otb_bin), safe, grid, out, work, a.threads, gname == "30km", env)
                else:
                    steps = run_sarsen(safe, grid, out, work, a.threads, env)
                res = {
                    "grid": gname,
                    "grid_px": [grid.height, grid.width],
                    "tool": tool,
                    "round": r,
                    "wall_s": round(sum(s["wall_s"] for s in steps.values()), 2),
                    "span_s": round(sum(s.get("span_s", s["wall_s"]) for s in steps.values()), 2),
                    "peak_rss_mb": round(max(s["peak_rss_mb"] for s in steps.values()), 1),
                    "steps": {k: {kk: round(v, 2) for kk, v in s.items()} for k, s in steps.items()},
                    "coverage": round(coverage(out), 4),
                    "load_1m": [round(load0, 1), round(os.getloadavg()[0], 1)],
                }
                results.append(res)
                print(
                    f"{gname:6s} r{r} {tool:7s} wall {res['wall_s']:8.1f} s  span {res['span_s']:8.1f} s  "
                    f"peak {res['peak_rss_mb']:7.0f} MB  finite {res['coverage']:.4f}  "
                    f"load {res['load_1m'][0]}→{res['load_1m'][1]}",
                    flush=True,
                )
        ours_tif = work / f"ours-{gname}.tif"
        for tool in gtools:
            if tool != "ours" and ours_tif.exists():
                # the whole scene is compared on its central 4096² px (memory)
                agr = agreement(ours_tif, work / f"{tool}-{gname}.tif", tool, safe, 4096 if gname == "scene" else 0)
                results.append({"grid": gname, "agreement": f"ours vs {tool}", **agr})
                print(f"{gname:6s} agreement ours vs {tool}: {agr}", flush=True)
        for tool in gtools:
            walls = [r["wall_s"] for r in results if r.get("tool") == tool and r["grid"] == gname]
            spans = [r["span_s"] for r in results if r.get("tool") == tool and r["grid"] == gname]
            if walls:
                print(
                    f"{gname:6s} {tool:7s} median wall {statistics.median(walls):.1f} s, span {statistics.median(spans):.1f} s"
                )
    (work / "peers.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
