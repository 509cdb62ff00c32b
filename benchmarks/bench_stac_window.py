"""Bytes a windowed STAC-asset read fetches over HTTP (DESIGN §4), against the file size.

Writes one 10980 x 10980 px uint16 COG (a full Sentinel-2 10 m band's shape; smooth field + noise, ZSTD,
512 px tiles, our COG options) and serves it from a loopback HTTP server that honours range requests
and counts the bytes sent; then ingests grids of several sizes from it through the stac source's reader
(/vsicurl/, pipeline_lib.ingest.ingest_bands) and prints bytes fetched, requests and wall time.

    python benchmarks/bench_stac_window.py [--out /tmp/bench_stac]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from pipeline_lib.cog import write_cog  # noqa: E402
from pipeline_lib.fetch.files import modality_spec  # noqa: E402
from pipeline_lib.fetch.stac import GDAL_HTTP_ENV, vsicurl  # noqa: E402
from pipeline_lib.grid import Grid  # noqa: E402
from pipeline_lib.ingest import ingest_bands  # noqa: E402
from tests.loopback import LoopbackServer  # noqa: E402
from tests.loopback.cog import CogHost  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_stac"))
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    n, res, left, top = 10980, 10.0, 399960.0, 4500000.0
    cog = args.out / "B04.tif"
    if not cog.is_file():
        rng = np.random.default_rng(0)
        yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
        data = (2000 + 800 * np.sin(xx / 37) * np.cos(yy / 53) + rng.normal(0, 50, (n, n))).astype(np.uint16)
        del yy, xx
        write_cog(
            data[None],
            cog,
            crs="EPSG:32613",
            transform=Affine(res, 0, left, 0, -res, top),
            descriptions=["B04"],
            nodata=0,
            stac=False,
        )
    size = cog.stat().st_size
    spec = modality_spec("s2", {"paths": {"2023-10-08": "x"}, "bands": {"B04": 1}, "scale": 1e-4})
    print(f"COG {n}x{n} px, {size / 1e6:.1f} MB; one band, grid inside one 512 px tile where it fits")
    print("grid_px  bytes_fetched  fraction  requests  seconds")
    for px in (64, 256, 1024, 2048):
        with LoopbackServer() as srv:
            host = CogHost(srv)
            url = host.add("/cogs/B04.tif", cog)
            x0 = left + 3000 * res + 100 * res
            y0 = top - 3000 * res - 100 * res
            grid = Grid("EPSG:32613", Affine(res, 0, x0, 0, -res, y0), px, px)
            t0 = time.perf_counter()
            with rasterio.Env(**GDAL_HTTP_ENV):
                ingest_bands(
                    [("B04", vsicurl(url), 1)],
                    spec,
                    grid,
                    args.out / f"out{px}.tif",
                    date="2023-10-08",
                    acquired="2023-10-08",
                    label=url,
                    source="stac",
                )
            dt = time.perf_counter() - t0
            sent = host.sent["/cogs/B04.tif"]
            print(f"{px:7d}  {sent:13d}  {sent / size:8.4f}  {len(host.ranges['/cogs/B04.tif']):8d}  {dt:7.2f}")


if __name__ == "__main__":
    main()
