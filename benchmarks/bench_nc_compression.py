"""Write speed and size of the σ0 NetCDF (``pipeline_lib.sar.chunks.create_sigma0``) with and without zlib.

Why compression is off by default (DESIGN §8). Writes one polarisation of a speckled float32 σ0 field
(``--lines`` × ``--pixels``, default 1024 × 26102, the width of a full IW GRD) in row bands of 256 lines
with ``complevel`` 0, 1 and 4, and prints MB/s of uncompressed data and the file size ratio.

Usage (repository root): ``PYTHONPATH=. python benchmarks/bench_nc_compression.py [--lines N] [--pixels N]``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline_lib.sar.chunks import create_sigma0, row_bands


def speckled_sigma0(lines: int, pixels: int, seed: int = 0) -> np.ndarray:
    """σ0 between −12 and −6 dB with 4.4-look Gamma speckle, float32 (as benchmarks/fullscene_grd.py)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(-12.0, -6.0, pixels, dtype=np.float32)[None, :]
    return (10 ** (ramp / 10) * rng.gamma(4.4, 1 / 4.4, (lines, pixels))).astype(np.float32)


def write_once(data: np.ndarray, out: Path, complevel: int) -> float:
    """Seconds to write ``data`` as one polarisation through create_sigma0 (row bands of 256 lines)."""
    lines, pixels = data.shape
    t0 = time.perf_counter()
    with create_sigma0(out, ["VV"], np.arange(lines), np.arange(pixels), {}, {}, complevel=complevel) as var:
        for a, b in row_bands(lines, 256):
            var[0, a:b, :] = data[a:b]
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1024)
    parser.add_argument("--pixels", type=int, default=26102)
    args = parser.parse_args()
    data = speckled_sigma0(args.lines, args.pixels)
    mb = data.nbytes / 1e6
    with tempfile.TemporaryDirectory() as tmp:
        for level in (0, 1, 4):
            out = Path(tmp) / f"s{level}.nc"
            seconds = write_once(data, out, level)
            ratio = out.stat().st_size / data.nbytes
            print(
                f"complevel {level}: {mb / seconds:.0f} MB/s ({seconds:.2f} s for {mb:.0f} MB), size ratio {ratio:.2f}"
            )
            out.unlink()


if __name__ == "__main__":
    main()
