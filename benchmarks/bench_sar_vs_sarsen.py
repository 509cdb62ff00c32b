"""Native Sentinel-1 chain vs sarsen on one full-size GRD and one output grid: speed, peak memory, agreement.

DESIGN §5 and §8. Input: the full-size (16705 × 26102 px) GRD SAFE of ``benchmarks/fullscene_grd.py`` (the
real sarsen fixture metadata, synthetic speckled measurement), in ESA's layout (uncompressed, one strip per
line) and/or tiled ZSTD. Output grid: a ``--size``² window at 10 m in UTM 33N (EPSG:32633) centred on the
scene centre, heights on the WGS84 ellipsoid. sarsen geocodes onto its DEM's grid, so its DEM is a GeoTIFF of
zeros on exactly that grid and its output grid is ours.

Runs, each in its own subprocess (wall time, CPU time, output Mpix/s of the grid, peak RSS — CPU and RSS from
``os.wait4``'s rusage of that child), with the input files read once beforehand so every run starts from the page cache, and our numba
kernels compiled (and cached on disk) by an untimed warm-up run on a 128² grid:

- ``sarsen``: ``sarsen.apps.terrain_correction`` on ``IW/VV`` — β0, no radiometric correction, its defaults
  (``interp_method="nearest"``, ``chunks=1024``, measurement chunks 2048), ``enable_dask_distributed=False``:
  one process, dask's threaded scheduler with its default pool (one thread per core);
- ``sarsen-linear``: the same with ``interp_method="linear"`` (the interpolation our chain uses);
- ``ours``: ``run_calibrate(thermal_noise=False)`` on VV + ``run_terrain`` (like with like: sarsen neither
  denoises nor filters); our steps that take ``threads=`` get ``--threads`` (default: all cores, as sarsen's
  dask pool and as the workflow passes its job's threads);
- ``chain``: our whole chain on VV and VH: ``run_calibrate`` (noise removed) → ``run_speckle`` → ``run_terrain``.

Correctness (DESIGN §5): sarsen's β0 converted to σ0 with the product's calibration LUTs
(σ0 = β0 · A_β²/A_σ², interpolated onto the grid through our range-Doppler lookup:
:func:`tools.sar_compare.sarsen_sigma0_db`) against our σ0 of ``ours`` in dB — median Δ, median and
p95 of |Δ|, and the geolocation offset by phase correlation (:mod:`tools.sar_compare`). Goal: median
|Δ| < 0.2 dB, offset ≤ 1 px, checked against ``sarsen-linear`` (bilinear on both sides); the figures against
``sarsen`` (nearest) are printed too — nearest and bilinear sample the speckle differently, so its |Δ| is
larger by construction while its bias and offset are not.

Usage (repository root, venv active)::

    PYTHONPATH=. python benchmarks/bench_sar_vs_sarsen.py --layout both [--size 3000] [--work DIR] [--out FILE]

Products are built once under ``--work`` (≈ 1 GB per polarisation and layout) and reused. Prints a markdown
table for BENCHMARKS.md and writes all figures as JSON to ``--out`` (default under ``--work``: the repository
does not ignore ``benchmarks/results/``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks.fullscene_grd import build_fullscene_grd  # noqa: E402
from pipeline_lib.grid import make_centered_grid, read_grid, write_grid  # noqa: E402
from pipeline_lib.io import write_json_atomic  # noqa: E402
from tools.sar_compare import ellipsoid_dem  # noqa: E402

RUNS = ("sarsen", "sarsen-linear", "ours", "chain")
GOAL_MEDIAN_ABS_DB = 0.2
GOAL_OFFSET_PX = 1.0
UTM33N = "EPSG:32633"


# --------------------------------------------------------------------------------------------------- setup


def scene_centre_lonlat(safe: Path) -> tuple[float, float]:
    """(lon, lat) of the GRD's centre (mid line, mid pixel) from the annotation geolocation grid."""
    from scipy.interpolate import griddata

    from pipeline_lib.safe import open_product
    from pipeline_lib.sar.product import find_pol_files, read_geolocation_grid, read_image_info

    files = find_pol_files(open_product(safe), "VV", need_measurement=False)
    ann = files.reader.parse_xml(files.annotation)
    info = read_image_info(ann)
    gcp = read_geolocation_grid(ann)
    pts = np.column_stack([gcp["line"], gcp["pixel"]])
    mid = np.array([[info.number_of_lines / 2.0, info.number_of_samples / 2.0]])
    lon = float(griddata(pts, gcp["longitude"], mid)[0])
    lat = float(griddata(pts, gcp["latitude"], mid)[0])
    return lon, lat


def warm_page_cache(safe: Path) -> float:
    """Read every measurement file once (so all runs start from the page cache); returns GB read."""
    total = 0
    for f in sorted((safe / "measurement").glob("*.tif*")):
        with open(f, "rb") as fh:
            while chunk := fh.read(1 << 24):
                total += len(chunk)
    return total / 1e9


# --------------------------------------------------------------------------------------------------- workers


def _worker(task: str, params: dict[str, Any]) -> dict[str, Any]:
    """One timed run inside its own process (imports excluded from ``work_s``)."""
    safe, grid, out = Path(params["safe"]), read_grid(params["grid"]), Path(params["out_tif"])
    tmp = Path(params["tmp"])
    threads = int(params.get("threads", os.cpu_count() or 1))
    info: dict[str, Any] = {}

    def thr(fn: Any) -> dict[str, Any]:
        """``threads=`` for our steps that take it (speckle, terrain), as the workflow passes its job's threads."""
        return {"threads": threads} if "threads" in inspect.signature(fn).parameters else {}

    if task in ("sarsen", "sarsen-linear"):
        import dask
        from sarsen import apps, sentinel1

        method = "nearest" if task == "sarsen" else "linear"
        info = {
            "sarsen_interp_method": method,
            "dask_scheduler": str(dask.config.get("scheduler", None)),
            "enable_dask_distributed": False,
        }
        t0 = time.perf_counter()
        product = sentinel1.Sentinel1SarProduct(str(safe), measurement_group="IW/VV")
        kwargs: dict[str, Any] = {} if task == "sarsen" else {"interp_method": method}
        apps.terrain_correction(product, params["dem"], str(out), **kwargs)
        work = time.perf_counter() - t0
    elif task == "ours":
        from pipeline_lib.sar import run_calibrate, run_terrain

        noise_flag = "thermal_noise" in inspect.signature(run_calibrate).parameters
        info = {"thermal_noise_removed": not noise_flag, "polarisations": ["VV"], "threads": thr(run_terrain)}
        t0 = time.perf_counter()
        cal = tmp / "ours_cal.nc"
        if noise_flag:
            run_calibrate(safe, grid, cal, ("VV",), 64, thermal_noise=False)  # type: ignore[call-arg]
        else:  # before the chunked chain: the only calibration there is removes noise (stated in the JSON)
            run_calibrate(safe, grid, cal, ("VV",), 64)
        run_terrain(cal, safe, grid, out, **thr(run_terrain))
        work = time.perf_counter() - t0
        cal.unlink(missing_ok=True)
    elif task == "chain":
        from pipeline_lib.config import schema_defaults
        from pipeline_lib.sar import run_calibrate, run_speckle, run_terrain
        from pipeline_lib.sar.params import SpeckleParams

        info = {
            "thermal_noise_removed": True,
            "speckle": "Lee sigma 7x7/3x3 sigma 0.9",
            "polarisations": ["VV", "VH"],
            "threads": {"speckle": thr(run_speckle), "terrain": thr(run_terrain)},
        }
        t0 = time.perf_counter()
        cal, fil = tmp / "chain_cal.nc", tmp / "chain_fil.nc"
        run_calibrate(safe, grid, cal, ("VV", "VH"), 64)
        run_speckle(cal, fil, SpeckleParams.from_config(schema_defaults("sar", "speckle")), **thr(run_speckle))
        run_terrain(fil, safe, grid, out, **thr(run_terrain))
        work = time.perf_counter() - t0
        cal.unlink(missing_ok=True)
        fil.unlink(missing_ok=True)
    else:
        raise SystemExit(f"unknown task {task!r}; use one of {RUNS}")
    return {"work_s": work, **info}


def run_timed(task: str, params: dict[str, Any], log: Path) -> dict[str, Any]:
    """Run ``task`` in a child process: process wall time and the child's own peak RSS (``os.wait4``)."""
    pfile = Path(params["tmp"]) / f"{task}.params.json"
    rfile = Path(params["tmp"]) / f"{task}.result.json"
    write_json_atomic(pfile, params)
    rfile.unlink(missing_ok=True)
    cmd = [sys.executable, str(Path(__file__).resolve()), "_worker", task, str(pfile), str(rfile)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    with open(log, "w") as fh:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{task} failed (exit {proc.returncode}); see {log}")
    result = json.loads(rfile.read_text())
    cpu = usage.ru_utime + usage.ru_stime
    return {"wall_s": wall, "cpu_s": cpu, "peak_rss_mb": usage.ru_maxrss / 1024.0, **result}


# --------------------------------------------------------------------------------------------------- compare


def agreement(ours_tif: Path, gtc_tif: Path, safe: Path) -> dict[str, Any]:
    """Our VV σ0 dB vs sarsen's β0 GTC as σ0 dB: Δ statistics and offset; ``goal_met`` per DESIGN §5."""
    from tools.sar_compare import compare_with_sarsen

    stats: dict[str, Any] = compare_with_sarsen(ours_tif, gtc_tif, safe, polarisation="VV")["bands"]["VV"]
    stats["goal_met"] = bool(
        stats["median_abs_db"] < GOAL_MEDIAN_ABS_DB
        and abs(stats["dx_px"]) <= GOAL_OFFSET_PX
        and abs(stats["dy_px"]) <= GOAL_OFFSET_PX
    )
    return stats


def bench_layout(
    layout: str,
    size: int,
    work: Path,
    skip: Sequence[str],
    safe: Path | None = None,
    centre: tuple[float, float] | None = None,
    repeat: int = 1,
    threads: int = 2,
) -> dict[str, Any]:
    """Build (or reuse) the product in ``layout`` (or take ``safe``) and run every run on one grid."""
    wdir = work / layout
    wdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    if safe is None:
        safe = build_fullscene_grd(wdir, layout=layout, pols=("VV", "VH"))
    build_s = time.perf_counter() - t0
    lon, lat = centre or scene_centre_lonlat(safe)
    grid = make_centered_grid((lon, lat), (size, size), 10.0, crs=UTM33N)
    gfile = wdir / f"grid_{size}.json"
    write_grid(grid, gfile)
    dem = wdir / f"dem0_{size}.tif"
    if not dem.exists():
        ellipsoid_dem(grid, dem)
    tmp = wdir / f"runs_{size}"
    tmp.mkdir(exist_ok=True)
    cached_gb = warm_page_cache(safe)
    # numba kernels are compiled once and cached on disk (cache=True): compile them before timing
    small = make_centered_grid((lon, lat), (128, 128), 10.0, crs=UTM33N)
    write_grid(small, wdir / "grid_warmup.json")
    for task in ("ours", "chain"):
        if task not in skip:
            wparams = {
                "safe": str(safe),
                "grid": str(wdir / "grid_warmup.json"),
                "dem": "",
                "tmp": str(tmp),
                "out_tif": str(tmp / f"warmup_{task}.tif"),
                "threads": threads,
            }
            run_timed(task, wparams, tmp / f"warmup_{task}.log")
    print(
        f"[{layout}] product {safe} ({build_s:.0f} s to build/reuse), grid {size}² at 10 m centred on "
        f"({lon:.4f}, {lat:.4f}), {cached_gb:.2f} GB of measurement read into the page cache",
        flush=True,
    )
    runs: dict[str, Any] = {}
    for task in RUNS:
        if task in skip:
            continue
        params = {
            "safe": str(safe),
            "grid": str(gfile),
            "dem": str(dem),
            "tmp": str(tmp),
            "out_tif": str(tmp / f"{task}.tif"),
            "threads": threads,
        }
        tries = []
        for _ in range(max(1, repeat)):
            os.sync()
            load = os.getloadavg()[0]
            tries.append({**run_timed(task, params, tmp / f"{task}.log"), "load_before": load})
        best = min(tries, key=lambda t: t["wall_s"])
        runs[task] = {**best, "out_tif": params["out_tif"], "all_wall_s": [t["wall_s"] for t in tries]}
        r = runs[task]
        print(
            f"[{layout}] {task}: {r['wall_s']:.1f} s wall ({r['work_s']:.1f} s work, {r['cpu_s']:.1f} s CPU), "
            f"{grid.height * grid.width / 1e6 / r['wall_s']:.2f} Mpix/s, peak RSS {r['peak_rss_mb']:.0f} MB",
            flush=True,
        )
    checks: dict[str, Any] = {}
    if "ours" in runs:
        for ref in ("sarsen-linear", "sarsen"):
            if ref in runs:
                checks[f"ours_vs_{ref}"] = agreement(Path(runs["ours"]["out_tif"]), Path(runs[ref]["out_tif"]), safe)
    return {
        "layout": layout,
        "product": str(safe),
        "grid": grid.to_dict(),
        "grid_mpix": grid.height * grid.width / 1e6,
        "centre_lonlat": [lon, lat],
        "build_or_reuse_s": build_s,
        "runs": runs,
        "agreement": checks,
    }


# --------------------------------------------------------------------------------------------------- report


def markdown(results: list[dict[str, Any]], machine: str) -> str:
    """The BENCHMARKS.md tables: speed/memory per run, then agreement with sarsen."""
    today = dt.date.today().isoformat()
    lines = [
        "| date | machine (1-min load before) | input layout | run | wall s | CPU s | output Mpix/s | peak RSS MB "
        "| vs sarsen: wall / CPU |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        runs, mpix = res["runs"], res["grid_mpix"]
        base = runs.get("sarsen")
        for task in [t for t in RUNS if t in runs]:
            r = runs[task]
            rate = mpix / r["wall_s"]
            ratio = f"{base['wall_s'] / r['wall_s']:.2f}× / {base['cpu_s'] / r['cpu_s']:.2f}×" if base else "n/a"
            what = {
                "sarsen": "sarsen terrain_correction, β0, nearest (default)",
                "sarsen-linear": "sarsen terrain_correction, β0, linear",
                "ours": "ours: calibrate (no noise removal) + terrain, VV",
                "chain": "ours: whole chain (noise, Lee sigma, terrain), VV+VH",
            }[task]
            lines.append(
                f"| {today} | {machine} ({r['load_before']:.1f}) | {res['layout']} | {what} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {rate:.3f} | "
                f"{r['peak_rss_mb']:.0f} | {ratio} |"
            )
    lines += [
        "",
        "| input layout | ours (σ0 dB) vs | px valid | median Δ dB | median abs Δ dB | p95 abs Δ dB | dx px | dy px | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for res in results:
        for name in [f"ours_vs_{ref}" for ref in ("sarsen-linear", "sarsen") if f"ours_vs_{ref}" in res["agreement"]]:
            s = res["agreement"][name]
            goal = ("met" if s["goal_met"] else "missed") if name.endswith("linear") else "n/a (nearest)"
            lines.append(
                f"| {res['layout']} | {name.removeprefix('ours_vs_')} (β0→σ0) | {s['n_valid']} | {s['median_db']:+.3f} | "
                f"{s['median_abs_db']:.3f} | {s['p95_abs_db']:.3f} | {s['dx_px']:+.2f} | {s['dy_px']:+.2f} | "
                f"{goal} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["_worker"]:
        task, pfile, rfile = argv[1], Path(argv[2]), Path(argv[3])
        write_json_atomic(rfile, _worker(task, json.loads(pfile.read_text())))
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layout", choices=("esa", "tiled", "both"), default="esa")
    ap.add_argument("--size", type=int, default=3000, help="output grid side in 10 m pixels (default 3000 = 30 km)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/bench-sar-vs-sarsen"), help="products and run outputs")
    ap.add_argument("--out", type=Path, default=None, help="JSON results (default WORK/results-<date>.json)")
    ap.add_argument("--skip", default="", help="comma-separated runs to skip, of " + ",".join(RUNS))
    ap.add_argument("--safe", type=Path, default=None, help="use this GRD SAFE instead of building one (label: given)")
    ap.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="threads= for our speckle/terrain (default: all cores)"
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs per task; the fastest (wall) is reported")
    ap.add_argument("--centre", default=None, help="grid centre 'lon,lat' (default: the scene centre)")
    args = ap.parse_args(argv)
    layouts = ("given",) if args.safe else ("esa", "tiled") if args.layout == "both" else (args.layout,)
    skip = [s for s in args.skip.split(",") if s]
    centre = tuple(float(v) for v in args.centre.split(",")) if args.centre else None
    machine = f"{platform.machine()} {os.cpu_count()} cpus, Python {platform.python_version()}"
    results = [
        bench_layout(layout, args.size, args.work, skip, args.safe, centre, args.repeat, args.threads)  # type: ignore[arg-type]
        for layout in layouts
    ]
    out = args.out or args.work / f"results-{dt.datetime.now():%Y%m%dT%H%M%S}.json"
    env = {k: os.environ.get(k) for k in ("GDAL_CACHEMAX", "NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "DASK_NUM_WORKERS")}
    write_json_atomic(out, {"machine": machine, "size_px": args.size, "env": env, "results": results})
    print()
    print(markdown(results, machine))
    print(f"\nJSON: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
