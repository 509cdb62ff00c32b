"""The native Sentinel-1 chain (calibrate → speckle → terrain_correct) on a full-size GRD: time and peak memory.

Builds (or reuses) the full-size GRD of :mod:`fullscene_grd` (26102 × 16705 px, VV + VH, ESA layout by
default), makes a 10 m UTM 33N grid covering the whole scene footprint (≈ 29100 × 21600 px; ``--crop N``
takes the central N × N px instead, for development), and runs the three steps as separate processes, as
the workflow does, ellipsoid (no DEM). Each step reports wall time, its GRD-window and output Mpix/s and
its peak RSS (``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the step's own process) and the 1-minute
load average at its start and end (the machine is shared: figures taken under load are slower).
``--rss-trace`` also samples the step's RSS every 0.1 s from a thread and writes ``<step>.rss.tsv``
(seconds, MB) in the work folder, to see which phase of a step makes its peak.

Run from the repository root::

    PYTHONPATH=. python benchmarks/bench_sar_chain.py --dest /tmp/fullscene [--layout esa|tiled] [--crop 4096]
        [--threads 2] [--work DIR] [--steps calibrate,speckle,terrain_correct] [--rss-trace] [--settle]

Prints one line per step and writes ``results.json`` in the work folder (default ``DEST/chain-<layout>``).
Heavy: about 10 GB of disk for the intermediate NetCDFs of a full scene.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fullscene_grd import build_fullscene_grd

from pipeline_lib.grid import Grid, make_grid, read_grid, write_grid

STEPS = ("calibrate", "speckle", "terrain_correct")


def scene_grid(safe: Path, crop: int = 0) -> Grid:
    """10 m UTM 33N grid over the scene's geolocation-grid bounding box; the central ``crop`` × ``crop`` if > 0."""
    from pipeline_lib.safe import open_product
    from pipeline_lib.sar.product import find_pol_files, read_geolocation_grid

    files = find_pol_files(open_product(safe), "VV", need_measurement=False)
    g = read_geolocation_grid(files.reader.parse_xml(files.annotation))
    grid = make_grid(
        (
            float(g["longitude"].min()),
            float(g["latitude"].min()),
            float(g["longitude"].max()),
            float(g["latitude"].max()),
        ),
        10.0,
        "EPSG:32633",
    )
    if crop <= 0 or (crop >= grid.height and crop >= grid.width):
        return grid
    from pipeline_lib.sar.terrain import sub_grid

    r0, c0 = max((grid.height - crop) // 2, 0), max((grid.width - crop) // 2, 0)
    return sub_grid(grid, slice(r0, min(r0 + crop, grid.height)), slice(c0, min(c0 + crop, grid.width)))


def _rss_mb() -> float:
    """Resident set size of this process now (MB), from /proc/self/statm."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


@contextlib.contextmanager
def rss_trace(path: Path | None, interval_s: float = 0.1) -> Iterator[None]:
    """Sample this process's RSS every ``interval_s`` from a thread and write ``seconds\tMB`` lines to ``path``."""
    if path is None:
        yield
        return
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    t0 = time.perf_counter()

    def sample() -> None:
        while not stop.is_set():
            samples.append((time.perf_counter() - t0, _rss_mb()))
            stop.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        path.write_text("".join(f"{t:.2f}\t{r:.1f}\n" for t, r in samples))


def run_step(step: str, safe: Path, work: Path, threads: int, trace: bool = False) -> dict[str, Any]:
    """Run one step in this process (the child); returns its figures."""
    import numpy as np

    grid = read_grid(work / "grid.json")
    cal, fil, tif = work / "calibrated.nc", work / "filtered.nc", work / "s1.tif"
    import pipeline_lib.sar  # noqa: F401  (the imports, ≈ 1.5 s, outside the timed region)

    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    with rss_trace(work / f"{step}.rss.tsv" if trace else None):
        _run(step, safe, grid, cal, fil, tif, threads)
    wall = time.perf_counter() - t0
    import netCDF4

    with netCDF4.Dataset(cal) as ds:
        window_px = int(np.prod(ds["sigma0"].shape))  # all polarisations
    grid_px = grid.height * grid.width
    return {
        "step": step,
        "wall_s": round(wall, 2),
        "grd_window_mpix_per_s": round(window_px / wall / 1e6, 2),
        "output_mpix_per_s": round(grid_px / wall / 1e6, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "threads": threads,
        "load_1m": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }


def _run(step: str, safe: Path, grid: Grid, cal: Path, fil: Path, tif: Path, threads: int) -> None:
    if step == "calibrate":
        from pipeline_lib.sar import run_calibrate

        run_calibrate(safe, grid, cal, polarisations=("VV", "VH"), margin_px=64, threads=threads)
    elif step == "speckle":
        from pipeline_lib.config import schema_defaults
        from pipeline_lib.sar import run_speckle
        from pipeline_lib.sar.params import SpeckleParams

        run_speckle(cal, fil, SpeckleParams.from_config(schema_defaults("sar", "speckle")), threads=threads)
    else:
        from pipeline_lib.sar import run_terrain

        run_terrain(fil, safe, grid, tif, dem=None, threads=threads)


def _step_inputs(step: str, safe: Path, work: Path) -> list[Path]:
    """The files a step reads in bulk: the measurement TIFFs, or the σ0 NetCDF of the step before."""
    if step == "calibrate":
        return sorted((safe / "measurement").glob("*.tiff"))
    return [work / ("calibrated.nc" if step == "speckle" else "filtered.nc")]


def step_outputs(step: str, work: Path) -> list[Path]:
    """The files a step writes in the work folder."""
    if step == "terrain_correct":
        from pipeline_lib.stac import stac_sidecar_path

        return [work / "s1.tif", stac_sidecar_path(work / "s1.tif")]
    return [work / ("calibrated.nc" if step == "calibrate" else "filtered.nc")]


def remove_outputs(paths: list[Path]) -> None:
    """Delete a step's outputs before it runs, untimed, as Snakemake does before a job.

    Otherwise each round's step replaces the previous round's file on rename, and freeing a 3.6 GB file
    whose pages are cached took about 0.5 s of the step's own time: not work a fresh run of the chain does.
    """
    for p in paths:
        p.unlink(missing_ok=True)


def cpu_reference(n: int = 5_000_000) -> float:
    """Seconds one core takes for a fixed pure-Python loop, measured just before a step: not part of any
    figure, it shows how fast the (virtual) CPU ran then. On a shared host the same loop has varied by 1.7×
    within minutes, so a step's time is only comparable with steps whose reference is close to its own."""
    t0 = time.perf_counter()
    x = 0
    for i in range(n):
        x += i * i
    return time.perf_counter() - t0


def settle(paths: list[Path], drop_caches: bool = False) -> None:
    """Flush every dirty page to disk and read ``paths`` once into the page cache.

    A step writes gigabytes; without this the next step's timing depends on how much of the previous
    step's output the kernel is still writing back, and whether its inputs were evicted meanwhile. With
    ``drop_caches`` (root only) the page cache is emptied first, so every step also starts with the same
    amount of free memory: new page-cache pages cost more the fuller the cache is, which otherwise favours
    whichever run comes first after a quiet spell.
    """
    os.sync()
    if drop_caches:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    for p in paths:
        with open(p, "rb") as fh:
            while fh.read(16 << 20):
                pass
    os.sync()


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, required=True, help="folder of the full-size GRD (built if absent)")
    ap.add_argument("--layout", choices=("esa", "tiled"), default="esa")
    ap.add_argument("--crop", type=int, default=0, help="central N×N px of the scene grid (0 = whole scene)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--steps", default=",".join(STEPS))
    ap.add_argument("--rss-trace", action="store_true", help="write <step>.rss.tsv (RSS every 0.1 s)")
    ap.add_argument(
        "--settle",
        action="store_true",
        help="before each step: flush dirty pages (sync) and read its inputs once, so every step starts cached",
    )
    ap.add_argument(
        "--drop-caches",
        action="store_true",
        help="with --settle: empty the page cache (root) before reading the step's inputs",
    )
    ap.add_argument("--child", choices=STEPS, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--safe", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    work = a.work or a.dest / f"chain-{a.layout}{f'-crop{a.crop}' if a.crop else ''}"
    if a.child:
        print(json.dumps(run_step(a.child, a.safe, work, a.threads, a.rss_trace)))
        return []

    t0 = time.perf_counter()
    safe = build_fullscene_grd(a.dest / a.layout, layout=a.layout)
    print(f"product {safe.name} ({a.layout}) ready in {time.perf_counter() - t0:.1f} s")
    work.mkdir(parents=True, exist_ok=True)
    grid = scene_grid(safe, a.crop)
    write_grid(grid, work / "grid.json")
    print(f"grid {grid.height} × {grid.width} px ({grid.height * grid.width / 1e6:.0f} Mpix), ellipsoid")
    results = []
    for step in a.steps.split(","):
        remove_outputs(step_outputs(step, work))
        if a.settle:
            settle(_step_inputs(step, safe, work), drop_caches=a.drop_caches)
        ref = cpu_reference()
        cmd = [sys.executable, __file__, "--dest", str(a.dest), "--layout", a.layout, "--crop", str(a.crop)]
        cmd += ["--threads", str(a.threads), "--work", str(work), "--child", step, "--safe", str(safe)]
        cmd += ["--rss-trace"] if a.rss_trace else []
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            sys.exit(f"{step} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        res.update({"layout": a.layout, "grid": [grid.height, grid.width], "cpu_reference_s": round(ref, 3)})
        results.append(res)
        print(
            f"{step:16s} {res['wall_s']:8.1f} s  GRD {res['grd_window_mpix_per_s']:6.1f} Mpix/s  "
            f"out {res['output_mpix_per_s']:6.1f} Mpix/s  peak RSS {res['peak_rss_mb']:7.0f} MB  "
            f"load {res['load_1m'][0]:.1f}→{res['load_1m'][1]:.1f}  ref {ref:.2f} s"
        )
    total = sum(r["wall_s"] for r in results)
    print(
        f"chain total {total:.1f} s, {grid.height * grid.width / total / 1e6:.1f} output Mpix/s, "
        f"max peak RSS {max(r['peak_rss_mb'] for r in results):.0f} MB"
    )
    (work / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
