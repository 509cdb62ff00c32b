"""Small derived S1 GRD products for the SAR tests: the real sarsen fixture XML + a synthetic measurement.

The measurement TIFF has the annotation's full size (16705 × 26102) but is tiled, ZSTD-compressed and
sparse: only the blocks of the window covering the test grid are written, so it stays tiny.
"""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from pipeline_lib.grid import Grid, make_centered_grid
from pipeline_lib.safe import open_product
from pipeline_lib.sar.calibration import find_window
from pipeline_lib.sar.product import find_pol_files, read_geolocation_grid

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
SARSEN_SAFE = FIXTURES / "s1-grd-sarsen" / "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
ROME_DEM = FIXTURES / "s1-grd-sarsen" / "Rome-30m-DEM.tif"
LEGACY_ZIP = FIXTURES / "s1-grd-pyrosar" / "S1A_IW_GRDH_1SDV_20150222T170725_20150222T170750_004739_005DD8_CEAB.zip"
SHAPE = (16705, 26102)


def tiny_grid(size: int = 64) -> Grid:
    """A small UTM 33N grid at the demo centre (lon 12.50, lat 42.00), inside the Rome DEM."""
    return make_centered_grid((12.50, 42.00), (size, size), 10.0)


def make_product(
    tmp: Path,
    grid: Grid,
    dn_level: float = 300.0,
    pols: tuple[str, ...] = ("VV", "VH"),
    margin_px: int = 96,
    seed: int = 0,
    size: tuple[int, int] = SHAPE,
) -> Path:
    """Copy the sarsen SAFE XML (VH = a renamed copy of VV) and write sparse DN = dn_level·speckle."""
    safe = tmp / SARSEN_SAFE.name
    src = find_pol_files(open_product(SARSEN_SAFE), "VV")
    gcp = read_geolocation_grid(src.reader.parse_xml(src.annotation))
    rows, cols = find_window(gcp, grid, SHAPE, margin_px)
    rng = np.random.default_rng(seed)
    for pol in pols:
        for member in (src.annotation, src.calibration, src.noise, str(src.measurement)):
            dest = safe / member.replace("-vv-", f"-{pol.lower()}-")
            dest.parent.mkdir(parents=True, exist_ok=True)
            if member.endswith(".xml"):
                shutil.copyfile(SARSEN_SAFE / member, dest)
                continue
            h, w = rows.stop - rows.start, cols.stop - cols.start
            dn = np.clip(np.round(dn_level * np.sqrt(rng.gamma(4.0, 0.25, (h, w)))), 1, 65534).astype(np.uint16)
            profile = {
                "driver": "GTiff",
                "dtype": "uint16",
                "count": 1,
                "height": size[0],
                "width": size[1],
                "tiled": True,
                "blockxsize": 512,
                "blockysize": 512,
                "compress": "ZSTD",
                "SPARSE_OK": "TRUE",
            }
            with rasterio.open(dest, "w", **profile) as dst:
                if size == SHAPE:
                    dst.write(dn, 1, window=Window(cols.start, rows.start, w, h))
    shutil.copyfile(SARSEN_SAFE / "manifest.safe", safe / "manifest.safe")
    return safe


def zip_product(safe: Path, dest: Path) -> Path:
    """The SAFE folder as a zip (members under ``<name>.SAFE/``)."""
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_STORED) as zf:
        for p in sorted(safe.rglob("*")):
            if p.is_file():
                zf.write(p, (Path(safe.name) / p.relative_to(safe)).as_posix())
    return dest


def test_synthetic_product_is_small_and_full_size(tmp_path: Path) -> None:
    safe = make_product(tmp_path, tiny_grid(), pols=("VV",))
    tif = next((safe / "measurement").glob("*.tiff"))
    assert tif.stat().st_size < 2_000_000
    with rasterio.open(tif) as ds:
        assert (ds.height, ds.width) == SHAPE
