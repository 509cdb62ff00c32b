"""Where the terrain step's time goes: its phases on a whole scene, one run per call, for A/B rounds.

Runs :func:`pipeline_lib.sar.run_terrain` once, in this process, on the ``filtered.nc`` and ``grid.json``
that :mod:`bench_sar_chain` left in a work folder (ellipsoid, no DEM), after emptying the page cache and
reading the input once (``--drop-caches`` needs root), and times its phases by wrapping the functions that
make them: the coarse lookup, the tile loop (and, inside it, whichever tile functions the code on the path
has: ``tile_window``/``terrain_tile``, or the older ``interp_lookup``/``_grd_window``/``sample_db``), GDAL's
COG conversion, the read-back check and the STAC item (its SHA-256). A CPU reference (a fixed pure-Python
loop, :func:`bench_sar_chain.cpu_reference`) taken just before shows how fast the host ran.

The ``pipeline_lib`` timed is the one under ``--repo`` (default: this checkout), so two checkouts can be
run in alternation with the same script, pinned with ``taskset``::

    W=/tmp/scaling/t2   # a work folder of bench_sar_chain.py / bench_sar_scaling.py
    for repo in /tmp/base . . /tmp/base; do
        taskset -c 0,1 python benchmarks/bench_terrain_phases.py --work $W --threads 2 --repo $repo --drop-caches
        taskset -c 0 python benchmarks/bench_terrain_phases.py --work $W --threads 1 --repo $repo --drop-caches
    done

Prints one JSON line: repository, threads, CPU reference, wall time and seconds per phase. Deletes
``s1.tif`` (and its STAC item) in the work folder before the run, untimed, as Snakemake does, then writes it.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: functions wrapped, as (module, function, label); absent ones (other code versions) are skipped
PHASES = [
    ("pipeline_lib.sar.terrain", "compute_coarse_lookup", "coarse"),
    ("pipeline_lib.sar.terrain", "_stream_tiles", "tiles"),
    ("pipeline_lib.sar.terrain", "tile_window", "tile_window"),
    ("pipeline_lib.sar.terrain", "terrain_tile", "terrain_tile"),
    ("pipeline_lib.sar.terrain", "interp_lookup", "interp_lookup"),
    ("pipeline_lib.sar.terrain", "_grd_window", "_grd_window"),
    ("pipeline_lib.sar.terrain", "sample_db", "sample_db"),
    ("pipeline_lib.cog", "_convert_stage", "convert"),
    ("pipeline_lib.cog", "_verify_raster", "verify"),
    ("pipeline_lib.cog", "write_stac_sidecar", "stac"),
]


def timed(times: dict[str, float], label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn``, adding the seconds each call takes to ``times[label]``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            times[label] = times.get(label, 0.0) + time.perf_counter() - t0

    return wrapper


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="work folder holding filtered.nc and grid.json")
    ap.add_argument("--dest", type=Path, default=Path("/tmp/sp_fullscene"), help="folder of the full-size GRD")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repo", type=Path, default=Path(__file__).resolve().parents[1])
    ap.add_argument("--drop-caches", action="store_true", help="empty the page cache first (root)")
    a = ap.parse_args(argv)
    sys.path[:0] = [str(a.repo.resolve()), str(Path(__file__).resolve().parent)]
    import importlib

    from pipeline_lib.grid import read_grid
    from pipeline_lib.sar import run_terrain

    # after pipeline_lib (from --repo): importing bench_sar_chain puts this checkout first on the path
    bench_sar_chain = importlib.import_module("bench_sar_chain")

    times: dict[str, float] = {}
    for module, name, label in PHASES:
        mod = importlib.import_module(module)
        if hasattr(mod, name):
            setattr(mod, name, timed(times, label, getattr(mod, name)))
    safe = next((a.dest / "esa").glob("*.SAFE"))
    bench_sar_chain.remove_outputs(bench_sar_chain.step_outputs("terrain_correct", a.work))
    bench_sar_chain.settle([a.work / "filtered.nc"], drop_caches=a.drop_caches)
    ref = bench_sar_chain.cpu_reference()
    grid = read_grid(a.work / "grid.json")
    t0 = time.perf_counter()
    run_terrain(a.work / "filtered.nc", safe, grid, a.work / "s1.tif", dem=None, threads=a.threads)
    wall = time.perf_counter() - t0
    result = {"repo": str(a.repo), "threads": a.threads, "cpu_reference_s": round(ref, 3), "wall_s": round(wall, 2)}
    result.update({k: round(v, 2) for k, v in times.items()})
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
