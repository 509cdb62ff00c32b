"""dask against the hand-written row bands of the Sentinel-1 chain (DESIGN §8), on the full-size GRD.

Two pairs, each variant in its own process, rounds interleaved (hand, dask, hand, dask, …), the same
``--threads``:

- Lee sigma: :func:`pipeline_lib.sar.speckle.run_speckle` (row bands with halo rows in a thread pool,
  one writer) against ``dask.array.map_overlap`` (``depth`` = the same halo rows, ``boundary="none"``,
  chunks of the same band height × full width) over the calibrated NetCDF, stored with ``da.store``
  with one lock shared by reads and writes (HDF5 is not thread-safe, even across files: separate
  locks crashed), dask's threaded scheduler; the same streaming Z98 first;
- calibration: :func:`pipeline_lib.sar.calibration.run_calibrate` (thread pool, one writer) against
  ``dask.array.map_blocks`` of :func:`pipeline_lib.sar.calibration.calibrate_band` per row band (one
  measurement handle per thread) stored with ``da.store``, threaded scheduler.

Both dask variants must give the hand-written files bit for bit (checked). Usage (repository root)::

    PYTHONPATH=. python benchmarks/bench_dask_sar.py --dest /tmp/fullscene [--crop 6000] [--rounds 2] [--threads 2]

``--crop N`` takes the central N × N px grid of the scene (0 = whole scene, ≈ 3.6 GB per NetCDF).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

VARIANTS = ("speckle-hand", "speckle-dask", "calibrate-hand", "calibrate-dask")


def speckle_dask(in_nc: Path, out_nc: Path, threads: int, band_rows: int = 256) -> None:
    """Lee sigma of every polarisation with dask.array.map_overlap (same Z98, halo and band height)."""
    import threading

    import dask
    import dask.array as da
    import numpy as np

    from pipeline_lib.sar.chunks import create_sigma0, open_sigma0, row_bands
    from pipeline_lib.sar.params import SpeckleParams
    from pipeline_lib.sar.quantile import z98_streaming
    from pipeline_lib.sar.speckle import halo_rows, lee_sigma

    params = SpeckleParams(7, 3, 0.9, None)
    halo = halo_rows(params)
    # one lock for reads and writes: HDF5 (under netCDF4) is not thread-safe across files either; with
    # separate read and store locks the first run crashed (malloc: mismatching next->prev_size)
    hdf5 = threading.Lock()
    with open_sigma0(in_nc) as src:
        looks = float(src.attrs["number_of_looks"])
        n, w = src.shape
        with create_sigma0(out_nc, src.polarisations, src.lines, src.pixels, dict(src.attrs), src.var_attrs) as var:
            for k in range(len(src.polarisations)):
                bands = row_bands(n, band_rows)
                z98 = z98_streaming(lambda k=k, bands=bands: (src.read(k, slice(a, b)) for a, b in bands))
                lazy = da.from_array(src.ds["sigma0"], chunks=(1, band_rows, w), lock=hdf5)[k]

                def filt(block: np.ndarray, z98: float = z98) -> np.ndarray:
                    return lee_sigma(np.ma.filled(block, np.nan), params, looks, z98=z98)

                out = lazy.map_overlap(filt, depth={0: halo, 1: 0}, boundary="none", dtype=np.float32)
                with dask.config.set(scheduler="threads", num_workers=threads):
                    da.store(out, _VarSlice(var, k), lock=hdf5)


class _VarSlice:
    """``var[k, ...]`` as a store target for ``da.store``."""

    def __init__(self, var: Any, k: int) -> None:
        self.var, self.k = var, k
        self.shape = var.shape[1:]
        self.dtype = var.dtype

    def __setitem__(self, key: tuple[slice, slice], value: Any) -> None:
        self.var[(self.k, *key)] = value


def calibrate_dask(safe: Path, grid_json: Path, out_nc: Path, threads: int, band_lines: int = 256) -> None:
    """run_calibrate's bands via dask.array.map_blocks + da.store (threaded scheduler)."""
    import threading

    import dask
    import dask.array as da
    import numpy as np

    from pipeline_lib.grid import read_grid
    from pipeline_lib.safe import open_product
    from pipeline_lib.sar import calibration as c
    from pipeline_lib.sar.chunks import create_sigma0
    from pipeline_lib.sar.noise import parse_noise
    from pipeline_lib.sar.product import find_pol_files, open_sigma_lut, read_image_info
    from pipeline_lib.sar.window import RangeDoppler, grid_window

    grid = read_grid(grid_json)
    reader = open_product(safe)  # stays open for the LUT reads below
    f = find_pol_files(reader, "VV")
    ann = reader.parse_xml(f.annotation)
    info = read_image_info(ann)
    shape = (info.number_of_lines, info.number_of_samples)
    rows, cols = grid_window(RangeDoppler.from_annotation(ann, info), grid, shape, 64)
    lines, pixels = np.arange(rows.start, rows.stop), np.arange(cols.start, cols.stop)
    lut, noise = open_sigma_lut(f), parse_noise(reader.parse_xml(f.noise), f.noise)
    local = threading.local()

    def block(_: np.ndarray, block_info: dict[Any, Any] | None = None) -> np.ndarray:
        assert block_info is not None
        (a, b), _cols = block_info[None]["array-location"]
        if not hasattr(local, "src"):
            local.src = c._open_measurement(c.measurement_uri(f), shape, "measurement")
        return c.calibrate_band(local.src, lut, noise, lines[a:b], pixels, "measurement")

    shape2 = (lines.size, pixels.size)
    lazy = da.zeros(shape2, chunks=(band_lines, pixels.size), dtype=np.float32).map_blocks(block, dtype=np.float32)
    with (
        create_sigma0(out_nc, ["VV"], lines, pixels, {"number_of_looks": float(info.number_of_looks)}, {}) as var,
        dask.config.set(scheduler="threads", num_workers=threads),
    ):
        da.store(lazy, _VarSlice(var, 0), lock=True)


def child(variant: str, a: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    if variant == "speckle-hand":
        from pipeline_lib.sar import run_speckle
        from pipeline_lib.sar.params import SpeckleParams

        run_speckle(Path(a["cal"]), Path(a["out"]), SpeckleParams(7, 3, 0.9, None), threads=a["threads"])
    elif variant == "speckle-dask":
        speckle_dask(Path(a["cal"]), Path(a["out"]), a["threads"])
    elif variant == "calibrate-hand":
        from pipeline_lib.grid import read_grid
        from pipeline_lib.sar import run_calibrate

        run_calibrate(Path(a["safe"]), read_grid(a["grid"]), Path(a["out"]), ("VV",), threads=a["threads"])
    else:
        calibrate_dask(Path(a["safe"]), Path(a["grid"]), Path(a["out"]), a["threads"])
    return time.perf_counter() - t0


def same(a: Path, b: Path) -> bool:
    import netCDF4
    import numpy as np

    with netCDF4.Dataset(a) as x, netCDF4.Dataset(b) as y:
        return bool(np.array_equal(x["sigma0"][:], y["sigma0"][:], equal_nan=True))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", type=Path, required=True)
    ap.add_argument("--crop", type=int, default=6000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--args", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps({"span_s": child(a.child, json.loads(a.args))}))
        return
    from benchmarks.bench_sar_chain import scene_grid
    from benchmarks.fullscene_grd import build_fullscene_grd
    from pipeline_lib.grid import write_grid
    from pipeline_lib.sar import run_calibrate

    safe = build_fullscene_grd(a.dest / "esa", layout="esa")
    work = a.dest / f"dask-crop{a.crop}"
    work.mkdir(parents=True, exist_ok=True)
    grid = scene_grid(safe, a.crop)
    write_grid(grid, work / "grid.json")
    cal = work / "cal.nc"
    if not cal.exists():
        from pipeline_lib.grid import read_grid

        run_calibrate(safe, read_grid(work / "grid.json"), cal, ("VV",), threads=a.threads)
    print(f"grid {grid.height} × {grid.width}, threads {a.threads}, load {os.getloadavg()[0]:.1f}")
    spans: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(a.rounds):
        for v in VARIANTS:
            out = work / f"{v}.nc"
            args = {"safe": str(safe), "grid": str(work / "grid.json"), "cal": str(cal), "out": str(out)}
            args["threads"] = a.threads
            cmd = [sys.executable, __file__, "--dest", str(a.dest), "--child", v, "--args", json.dumps(args)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=REPO)
            if proc.returncode != 0:
                sys.exit(f"{v} failed:\n{proc.stderr[-3000:]}")
            spans[v].append(json.loads(proc.stdout.strip().splitlines()[-1])["span_s"])
            print(f"round {r} {v:15s} {spans[v][-1]:7.2f} s  load {os.getloadavg()[0]:.1f}", flush=True)
    for kind in ("speckle", "calibrate"):
        eq = same(work / f"{kind}-hand.nc", work / f"{kind}-dask.nc")
        hand, dsk = spans[f"{kind}-hand"], spans[f"{kind}-dask"]
        print(f"{kind}: hand {min(hand):.2f} s (best), dask {min(dsk):.2f} s (best), identical output: {eq}")
    (work / "dask.json").write_text(json.dumps(spans, indent=2) + "\n")


if __name__ == "__main__":
    main()
