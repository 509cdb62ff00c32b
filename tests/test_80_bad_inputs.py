"""The bad-input matrix (DESIGN §9): every case is one clean line, the right error, nothing half-written.

Each case damages a real input in ``tmp_path`` (demo-generator products in real SAFE formats, the
real Rome DEM, COGs and stacks written by the pipeline's own writers, region files) and calls the
library entry point its Snakemake rule calls — or ``snakemake -n`` for configuration cases, which
must fail before any job runs. The test then checks:

- the exception is the expected :class:`~pipeline_lib.errors.PipelineError` subclass;
- its message is ONE line, names the file or the config key, and says what to do (the part after
  the first ``;`` holds an imperative such as "re-download", "rerun", "give", "set", "choose");
- the output folder holds nothing, in particular no ``.part`` temporary file of the atomic writer.

Cases that do not meet this today are ``xfail(strict=True)`` with the reason; the fix belongs in
the production code, after which the mark is removed. ``pytest -s`` prints one ``MATRIX|`` line per
case (case, error type, message) — the source of the table in RELIABILITY.md.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import shutil
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import fixture_variants as fx
import numpy as np
import pytest
import rasterio
import xarray as xr
import yaml
from conftest import IN_CI, REPO
from rasterio.warp import Resampling, calculate_default_transform, reproject
from workflow_utils import make_workdir

from pipeline_lib import errors
from pipeline_lib.cog import write_cog
from pipeline_lib.config import load_region
from pipeline_lib.demo import CLOUDY_DATE, generate_demo_products
from pipeline_lib.errors import (
    ConfigError,
    CoverageError,
    FetchError,
    ModelError,
    PipelineError,
    ProductError,
    StorageError,
)
from pipeline_lib.fetch import run_search
from pipeline_lib.fetch.base import Scene, SearchRequest, select_scenes
from pipeline_lib.fetch.credentials import resolve_credentials
from pipeline_lib.fetch.local import LocalSource
from pipeline_lib.grid import Grid, make_centered_grid
from pipeline_lib.model import run_train
from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.train import select_device
from pipeline_lib.optical import run_l2a
from pipeline_lib.sar import run_calibrate, run_terrain
from pipeline_lib.stac import stac_sidecar_path
from pipeline_lib.stacks import run_stack

DATES = [date(2021, 12, 23), date(2022, 1, 4), date(2022, 1, 16)]
ISO = [d.isoformat() for d in DATES]
DEM = REPO / "pipeline_lib/demo/templates/s1/Rome-30m-DEM.tif"
N = 32  # grid side (px) for the library cases: 320 m around the demo centre
FIX = re.compile(
    r"\b(re-?download|download|rerun|re-?run|choose|give|set|use|remove|add|check|widen|create|lower|delete|"
    r"fix|point|restore|free|sort|export|raise|pick|rebuild|match|must)\b",
    re.IGNORECASE,
)
EXP = {"name": "sar2vis", "task": "sar_to_visible", "target": ISO[1], "guides": [ISO[0], ISO[2]]}


# --------------------------------------------------------------------------------------------- shared inputs
@dataclass
class World:
    """Inputs built once per module and copied by the cases that damage them."""

    products: Path
    grid: Grid
    calibrated: Path  # run_calibrate output of the 2022-01-04 S1 product on ``grid``
    workdir: Path  # a copy of the workflow for the snakemake -n cases
    products_by_key: dict[str, Path] = field(default_factory=dict)

    def s1(self, d: str = ISO[1]) -> Path:
        return self.products_by_key[f"s1:{d}"]

    def s2(self, d: str = ISO[1]) -> Path:
        return self.products_by_key[f"s2:{d}"]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world")
    products = root / "products"
    generate_demo_products(products, DATES, size_px=128, seed=0)
    by_key = {}
    for p in products.iterdir():
        m = re.search(r"_(\d{8})T", p.name)
        assert m, p
        d = f"{m.group(1)[:4]}-{m.group(1)[4:6]}-{m.group(1)[6:]}"
        by_key[f"{p.name[:2].lower()}:{d}"] = p
    grid = make_centered_grid((12.50, 42.00), (N, N))
    calibrated = root / "calibrated.nc"
    run_calibrate(by_key[f"s1:{ISO[1]}"], grid, calibrated, margin_px=8)
    workdir = make_workdir(root / "wf")
    return World(products, grid, calibrated, workdir, by_key)


def _copy(src: Path, dest_dir: Path) -> Path:
    dest = dest_dir / src.name
    shutil.copytree(src, dest)
    return dest


def _zip(safe: Path, extra: dict[str, bytes] | None = None, symlink: str | None = None) -> Path:
    """Zip a .SAFE folder the way distributors do (``X.SAFE/`` as the top entry), plus hostile members."""
    out = safe.with_suffix(".zip")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(p for p in safe.rglob("*") if p.is_file()):
            zf.write(f, f"{safe.name}/{f.relative_to(safe).as_posix()}")
        for name, data in (extra or {}).items():
            zf.writestr(name, data)
        if symlink:
            info = zipfile.ZipInfo(f"{safe.name}/{symlink}")
            info.create_system = 3
            info.external_attr = (0o120777 << 16) | 0
            zf.writestr(info, "/etc/passwd")
    shutil.rmtree(safe)
    return out


def _one(product: Path, pattern: str) -> Path:
    hits = sorted(p for p in product.rglob("*") if re.search(pattern, p.as_posix()))
    assert hits, (product, pattern)
    return hits[0]


def _far_grid() -> Grid:
    return make_centered_grid((2.35, 48.85), (N, N))  # Paris: outside the Rome products


def _synthetic_cogs(folder: Path, grid: Grid, s1_valid: Any = None, s2_valid: Any = None) -> tuple[dict, dict]:
    """Seeded S1 (VV, VH dB) and S2 (5 bands + valid) COGs per date, with optional validity masks (y, x)."""
    rng = np.random.default_rng(7)
    s1, s2 = {}, {}
    for k, d in enumerate(ISO):
        vv = (-15 + 3 * rng.standard_normal(grid.shape)).astype(np.float32)
        sar = np.stack([vv, vv - 7])
        refl = (0.05 + 0.02 * k + 0.1 * rng.random((5, *grid.shape))).astype(np.float32)
        valid = np.ones(grid.shape, np.float32)
        if s1_valid is not None:
            sar[:, ~s1_valid(d)] = np.nan
        if s2_valid is not None:
            ok = s2_valid(d)
            refl[:, ~ok] = np.nan
            valid[~ok] = 0.0
        s1[d], s2[d] = folder / "s1" / f"{d}.tif", folder / "s2" / f"{d}.tif"
        write_cog(sar, s1[d], crs=grid.crs, transform=grid.transform, descriptions=["VV", "VH"])
        write_cog(
            np.concatenate([refl, valid[None]]),
            s2[d],
            crs=grid.crs,
            transform=grid.transform,
            descriptions=["B04", "B03", "B02", "B11", "B12", "valid"],
        )
    return s1, s2


def _stack_call(tmp: Path, s1: dict, s2: dict) -> Callable[[], Any]:
    out = tmp / "out"
    return lambda: run_stack(dict(EXP), s1, s2, None, out / "stacks/sar2vis.nc", out / "truth/sar2vis.tif")


# --------------------------------------------------------------------------------------------- the cases
# A builder gets (tmp_path, world) and returns the call to make; outputs must go under tmp_path / "out".
Builder = Callable[[Path, World], Callable[[], Any]]


def c_corrupt_zip(tmp: Path, w: World) -> Callable[[], Any]:
    z = tmp / f"{w.s2().stem}.zip"
    z.write_bytes(b"PK\x03\x04" + np.random.default_rng(0).bytes(4096))
    return lambda: run_l2a(z, w.grid, tmp / "out/s2.tif")


def c_truncated_zip(tmp: Path, w: World) -> Callable[[], Any]:
    z = _zip(_copy(w.s2(), tmp))
    z.write_bytes(z.read_bytes()[: z.stat().st_size // 2])
    return lambda: run_l2a(z, w.grid, tmp / "out/s2.tif")


def c_corrupt_zip_member(tmp: Path, w: World) -> Callable[[], Any]:
    """One flipped byte inside MTD_MSIL2A.xml's deflate stream: the CRC must catch it."""
    z = _zip(_copy(w.s2(), tmp))
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo(f"{w.s2().name}/MTD_MSIL2A.xml")
    raw = bytearray(z.read_bytes())
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    raw[start + info.compress_size // 2] ^= 0xFF
    z.write_bytes(bytes(raw))
    return lambda: run_l2a(z, w.grid, tmp / "out/s2.tif")


def c_zip_slip(tmp: Path, w: World) -> Callable[[], Any]:
    z = _zip(_copy(w.s2(), tmp), extra={"../../evil.sh": b"rm -rf ~\n"})
    return lambda: run_l2a(z, w.grid, tmp / "out/s2.tif")


def c_zip_symlink(tmp: Path, w: World) -> Callable[[], Any]:
    z = _zip(_copy(w.s2(), tmp), symlink="GRANULE/passwd")
    return lambda: run_l2a(z, w.grid, tmp / "out/s2.tif")


def c_zip_bomb(tmp: Path, w: World) -> Callable[[], Any]:
    z = _zip(_copy(w.s2(), tmp), extra={f"{w.s2().name}/AUX_DATA/zeros.bin": bytes(8 * 1024**2)})
    return lambda: run_l2a(z, w.grid, tmp / "out/s2.tif")


def c_xxe_annotation(tmp: Path, w: World) -> Callable[[], Any]:
    s1 = _copy(w.s1(), tmp)
    ann = _one(s1, r"annotation/s1[ab]-iw-grd-vv-.*\.xml$")
    text = ann.read_text(encoding="utf-8")
    decl, rest = text.split("?>", 1)
    doctype = '<!DOCTYPE product [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
    ann.write_text(decl + "?>\n" + doctype + rest.replace("<product>", "<product>&xxe;", 1), encoding="utf-8")
    return lambda: run_calibrate(s1, w.grid, tmp / "out/cal.nc", margin_px=8)


def c_billion_laughs_mtd(tmp: Path, w: World) -> Callable[[], Any]:
    s2 = _copy(w.s2(), tmp)
    mtd = s2 / "MTD_MSIL2A.xml"
    text = mtd.read_text(encoding="utf-8")
    decl, rest = text.split("?>", 1)
    ents = '<!ENTITY a "lol">' + "".join(
        f'<!ENTITY {c} "&{p};&{p};&{p};&{p};&{p};">' for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    mtd.write_text(decl + "?>\n<!DOCTYPE r [" + ents + "]>" + rest, encoding="utf-8")
    return lambda: run_l2a(s2, w.grid, tmp / "out/s2.tif")


def c_missing_measurement(tmp: Path, w: World) -> Callable[[], Any]:
    s1 = _copy(w.s1(), tmp)
    _one(s1, r"measurement/.*-vv-.*\.tiff$").unlink()
    return lambda: run_calibrate(s1, w.grid, tmp / "out/cal.nc", margin_px=8)


def c_measurement_size_mismatch(tmp: Path, w: World) -> Callable[[], Any]:
    s1 = _copy(w.s1(), tmp)
    tif = _one(s1, r"measurement/.*-vv-.*\.tiff$")
    with rasterio.open(tif) as src:
        prof = src.profile
        data = src.read(1)
    prof.update(height=prof["height"] - 10)
    with rasterio.open(tif, "w", **prof) as dst:
        dst.write(data[:-10], 1)
    return lambda: run_calibrate(s1, w.grid, tmp / "out/cal.nc", margin_px=8)


def c_missing_calibration_xml(tmp: Path, w: World) -> Callable[[], Any]:
    s1 = _copy(w.s1(), tmp)
    _one(s1, r"annotation/calibration/calibration-.*-vv-.*\.xml$").unlink()
    return lambda: run_calibrate(s1, w.grid, tmp / "out/cal.nc", margin_px=8)


def c_missing_noise_xml(tmp: Path, w: World) -> Callable[[], Any]:
    s1 = _copy(w.s1(), tmp)
    _one(s1, r"annotation/calibration/noise-.*-vh-.*\.xml$").unlink()
    return lambda: run_calibrate(s1, w.grid, tmp / "out/cal.nc", margin_px=8)


def c_s2_missing_b11(tmp: Path, w: World) -> Callable[[], Any]:
    s2 = _copy(w.s2(), tmp)
    for band in s2.rglob("*_B11_*.jp2"):
        band.unlink()
    return lambda: run_l2a(s2, w.grid, tmp / "out/s2.tif")


def c_truncated_jp2_band(tmp: Path, w: World) -> Callable[[], Any]:
    s2 = _copy(w.s2(), tmp)
    b04 = _one(s2, r"_B04_10m\.jp2$")
    b04.write_bytes(b04.read_bytes()[: b04.stat().st_size // 3])
    return lambda: run_l2a(s2, w.grid, tmp / "out/s2.tif")


def _set_mtd(s2: Path, pattern: str, repl: str) -> None:
    mtd = s2 / "MTD_MSIL2A.xml"
    text, n = re.subn(pattern, repl, mtd.read_text(encoding="utf-8"), flags=re.S)
    assert n, pattern
    mtd.write_text(text, encoding="utf-8")


def c_unknown_processing_baseline(tmp: Path, w: World) -> Callable[[], Any]:
    s2 = _copy(w.s2(), tmp)
    _set_mtd(s2, r"<PROCESSING_BASELINE>[^<]*</PROCESSING_BASELINE>", "<PROCESSING_BASELINE>N/A</PROCESSING_BASELINE>")
    return lambda: run_l2a(s2, w.grid, tmp / "out/s2.tif")


def c_baseline4_without_offsets(tmp: Path, w: World) -> Callable[[], Any]:
    s2 = _copy(w.s2(), tmp)
    _set_mtd(s2, r"<BOA_ADD_OFFSET_VALUES_LIST>.*?</BOA_ADD_OFFSET_VALUES_LIST>", "")
    return lambda: run_l2a(s2, w.grid, tmp / "out/s2.tif")


def c_all_cloud_s2(tmp: Path, w: World) -> Callable[[], Any]:
    # The demo's S2 of CLOUDY_DATE has a thick cloud (SCL 8/9) over the centre of the AOI: the whole 32 px grid.
    return lambda: run_l2a(w.s2(CLOUDY_DATE.isoformat()), w.grid, tmp / "out/s2.tif")


def c_aoi_outside_s1_footprint(tmp: Path, w: World) -> Callable[[], Any]:
    return lambda: run_calibrate(w.s1(), _far_grid(), tmp / "out/cal.nc", margin_px=8)


def c_aoi_outside_s2_tile(tmp: Path, w: World) -> Callable[[], Any]:
    return lambda: run_l2a(w.s2(), _far_grid(), tmp / "out/s2.tif")


def c_s1_product_to_s2_reader(tmp: Path, w: World) -> Callable[[], Any]:
    return lambda: run_l2a(w.s1(), w.grid, tmp / "out/s2.tif")


def c_s2_product_to_s1_reader(tmp: Path, w: World) -> Callable[[], Any]:
    return lambda: run_calibrate(w.s2(), w.grid, tmp / "out/cal.nc", margin_px=8)


def _search(tmp: Path, w: World, folder: Path, dates: list[str]) -> Callable[[], Any]:
    fetch = {"source": "local", "local_dir": str(folder)}
    return lambda: run_search(fetch, w.grid.lonlat_bounds(), dates, 3, 100.0, tmp / "out/scenes.csv")


def c_s3_product_to_local_source(tmp: Path, w: World) -> Callable[[], Any]:
    """A Sentinel-3 SAFE (its real manifest family) is the only product in the folder."""
    folder = tmp / "local"
    s3 = folder / "S3A_SL_2_LST____20220104T093926_20220104T094226_20220105T190514_0179_080_307_2160_PS1_O_NT_004.SAFE"
    s3.mkdir(parents=True)
    manifest = (w.s1() / "manifest.safe").read_text(encoding="utf-8")
    manifest = manifest.replace("SENTINEL-1", "SENTINEL-3").replace("<safe:number>B<", "<safe:number>A<")
    (s3 / "manifest.safe").write_text(manifest, encoding="utf-8")
    return _search(tmp, w, folder, ISO)


def c_no_scene_within_tolerance(tmp: Path, w: World) -> Callable[[], Any]:
    # 2022-01-10 is 6 days from both neighbouring acquisitions; pair_tolerance_days is 3.
    return _search(tmp, w, w.products, [ISO[0], "2022-01-10", ISO[2]])


def c_local_dir_missing(tmp: Path, w: World) -> Callable[[], Any]:
    return _search(tmp, w, tmp / "no-such-folder", ISO)


def c_stack_non_overlapping_s1_s2(tmp: Path, w: World) -> Callable[[], Any]:
    left = np.zeros(w.grid.shape, bool)
    left[:, : N // 2] = True
    s1, s2 = _synthetic_cogs(tmp / "in", w.grid, s1_valid=lambda d: left, s2_valid=lambda d: ~left)
    return _stack_call(tmp, s1, s2)


def c_stack_nan_only_raster(tmp: Path, w: World) -> Callable[[], Any]:
    none = np.zeros(w.grid.shape, bool)
    s1, s2 = _synthetic_cogs(tmp / "in", w.grid, s1_valid=lambda d: none if d == ISO[1] else ~none)
    return _stack_call(tmp, s1, s2)


def c_stack_rasters_on_other_grids(tmp: Path, w: World) -> Callable[[], Any]:
    s1, s2 = _synthetic_cogs(tmp / "in", w.grid)
    other = make_centered_grid((12.51, 42.00), (N, N))
    _synthetic_cogs(tmp / "other", other)
    s1[ISO[0]] = tmp / "other/s1" / f"{ISO[0]}.tif"
    return _stack_call(tmp, s1, s2)


def c_terrain_nan_only_window(tmp: Path, w: World) -> Callable[[], Any]:
    import xarray as xr

    nc = tmp / "filtered.nc"
    with xr.open_dataset(w.calibrated) as ds:
        ds = ds.load()
    ds["sigma0"][:] = np.nan
    ds.to_netcdf(nc)
    return lambda: run_terrain(nc, w.s1(), w.grid, tmp / "out/s1.tif", dem=DEM)


def c_dem_not_covering_aoi(tmp: Path, w: World) -> Callable[[], Any]:
    dem = tmp / "dem-north.tif"
    with rasterio.open(DEM) as src:
        prof = src.profile
        data = src.read(1)
    prof.update(transform=prof["transform"] * rasterio.Affine.translation(0, -200))  # moved ~0.17° north
    with rasterio.open(dem, "w", **prof) as dst:
        dst.write(data, 1)
    return lambda: run_terrain(w.calibrated, w.s1(), w.grid, tmp / "out/s1.tif", dem=dem)


def _dem_utm(tmp: Path) -> Path:
    """The Rome DEM warped to UTM 33N (EPSG:32633) at 30 m, float32 with NaN nodata."""
    out = tmp / "dem-utm33.tif"
    with rasterio.open(DEM) as src:
        tr, width, height = calculate_default_transform(
            src.crs, "EPSG:32633", src.width, src.height, *src.bounds, resolution=30
        )
        dst = np.full((height, width), np.nan, np.float32)
        reproject(
            rasterio.band(src, 1),
            dst,
            src_nodata=src.nodata,
            dst_transform=tr,
            dst_crs="EPSG:32633",
            dst_nodata=np.nan,
            resampling=Resampling.bilinear,
        )
    prof = {
        "driver": "GTiff",
        "dtype": "float32",
        "count": 1,
        "height": height,
        "width": width,
        "crs": "EPSG:32633",
        "transform": tr,
        "nodata": np.nan,
    }
    with rasterio.open(out, "w", **prof) as f:
        f.write(dst, 1)
    return out


def c_dem_in_another_crs(tmp: Path, w: World) -> Callable[[], Any]:
    """Must WORK: the DEM is reprojected onto the grid; the result matches the one from the geographic DEM."""
    dem = _dem_utm(tmp)
    ref = tmp / "ref.tif"
    run_terrain(w.calibrated, w.s1(), w.grid, ref, dem=DEM)

    def call() -> None:
        out = tmp / "out/s1.tif"
        run_terrain(w.calibrated, w.s1(), w.grid, out, dem=dem)
        with rasterio.open(out) as a, rasterio.open(ref) as b:
            got, want = a.read(), b.read()
            assert a.crs == b.crs and a.transform == b.transform
        assert np.isfinite(got).all()
        # 30 m DEM resampled twice: heights differ by a few metres, the σ0 lookup by a fraction of a pixel
        assert float(np.median(np.abs(got - want))) < 0.5, float(np.median(np.abs(got - want)))
        out.unlink()  # the output folder must be empty afterwards like every other case
        stac_sidecar_path(out).unlink()

    return call


def c_gpu_requested_absent(tmp: Path, w: World) -> Callable[[], Any]:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: train.device=cuda is satisfiable here")
    s1, s2 = _synthetic_cogs(tmp / "in", w.grid)
    stack = tmp / "stack.nc"
    run_stack(dict(EXP), s1, s2, None, stack, tmp / "truth.tif")
    params = TrainParams.for_task("sar_to_visible", max_steps=1, batch_size=1, patch_px=32)
    return lambda: run_train(stack, "tirsit", tmp / "out/models/sar2vis/tirsit.pt", params, threads=1, device="cuda")


@contextlib.contextmanager
def _tiny_tmpfs(folder: Path, size: str = "16k") -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True, text=True
    )
    if r.returncode != 0:
        if IN_CI:
            pytest.fail(f"cannot mount a tmpfs under CI=true ({r.stderr.strip()}); run the tests as root")
        pytest.skip(f"mounting a tmpfs is not permitted here ({r.stderr.strip()}); run as root to test disk full")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _disk_full(tmp: Path, write: Callable[[Path], Any]) -> Callable[[], Any]:
    """Run ``write(out)`` with a 16 KiB tmpfs mounted at the output folder; record what it left there."""
    out = tmp / "out"
    mounted = contextlib.ExitStack()
    mounted.enter_context(_tiny_tmpfs(out))

    def call() -> None:
        with mounted:
            try:
                write(out)
            finally:
                _LEFT_ON_TMPFS[:] = sorted(p.name for p in out.iterdir())

    return call


def c_disk_full_cog(tmp: Path, w: World) -> Callable[[], Any]:
    """run_l2a's COG (~300 KiB for 128 px) onto a 16 KiB tmpfs."""
    grid = make_centered_grid((12.50, 42.00), (128, 128))
    return _disk_full(tmp, lambda out: run_l2a(w.s2(ISO[0]), grid, out / "s2.tif"))


def c_disk_full_netcdf(tmp: Path, w: World) -> Callable[[], Any]:
    """run_calibrate's NetCDF (~100 KiB for 128 px) onto a 16 KiB tmpfs."""
    grid = make_centered_grid((12.50, 42.00), (128, 128))
    return _disk_full(tmp, lambda out: run_calibrate(w.s1(), grid, out / "cal.nc", margin_px=8))


_LEFT_ON_TMPFS: list[str] = []


# --------------------------------------------------------------------------------------------- config cases
def _tiny_region() -> dict[str, Any]:
    return yaml.safe_load((REPO / "config/regions/ci-tiny.yaml").read_text())


def _snakemake_n(w: World, slug: str, region: dict[str, Any] | None) -> Callable[[], Any]:
    """Write config/regions/<slug>.yaml (unless None) and dry-run that region; re-raise its one error line."""
    path = w.workdir / "config/regions" / f"{slug}.yaml"
    if region is not None:
        region["region"] = slug
        path.write_text(yaml.safe_dump(region))

    def call() -> None:
        try:
            r = subprocess.run(
                [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--config", f"regions=[{slug}]"],
                cwd=w.workdir,
                capture_output=True,
                text=True,
                timeout=300,
            )
        finally:
            path.unlink(missing_ok=True)
        assert r.returncode != 0, r.stdout[-2000:]
        lines = [ln for ln in r.stderr.splitlines() if re.match(r"^[A-Za-z]+Error: ", ln)]
        assert len(lines) == 1, r.stderr[-4000:]
        name, msg = lines[0].split(": ", 1)
        cls = getattr(errors, name, None)
        assert isinstance(cls, type) and issubclass(cls, PipelineError), lines[0]
        raise cls(msg)

    return call


def c_cfg_only_two_dates(tmp: Path, w: World) -> Callable[[], Any]:
    r = _tiny_region()
    r["dates"] = ISO[:2]
    return _snakemake_n(w, "bad-two-dates", r)


def c_cfg_target_is_guide(tmp: Path, w: World) -> Callable[[], Any]:
    r = _tiny_region()
    r["experiments"][0]["target"] = r["experiments"][0]["guides"][-1]
    return _snakemake_n(w, "bad-target-guide", r)


def c_cfg_unknown_key(tmp: Path, w: World) -> Callable[[], Any]:
    r = _tiny_region()
    r["sar"]["speckle_filter"] = "lee"
    return _snakemake_n(w, "bad-unknown-key", r)


def c_cfg_wrong_type(tmp: Path, w: World) -> Callable[[], Any]:
    r = _tiny_region()
    r["pair_tolerance_days"] = "three"
    return _snakemake_n(w, "bad-wrong-type", r)


def c_cfg_region_file_not_found(tmp: Path, w: World) -> Callable[[], Any]:
    return _snakemake_n(w, "no-such-region", None)


def c_cfg_password_in_config(tmp: Path, w: World) -> Callable[[], Any]:
    r = _tiny_region()
    r["fetch"]["password"] = "hunter2-secret"
    return _snakemake_n(w, "bad-secret", r)


def c_cfg_bad_device(tmp: Path, w: World) -> Callable[[], Any]:
    r = _tiny_region()
    r["train"]["device"] = "tpu"
    return _snakemake_n(w, "bad-device", r)


# --------------------------------------------------------------------------------- bad-input cases, round one
# Real fixtures from tests/data/fixtures, cloned by fixture_variants (never edited in place).
def _region_text(slug: str, old: str = "", new: str = "", extra: str = "") -> str:
    text = (REPO / "config/regions/ci-tiny.yaml").read_text().replace("region: ci-tiny", f"region: {slug}")
    if old:
        assert old in text, old
        text = text.replace(old, new)
    return text + extra


def _load(tmp: Path, slug: str, text: str | bytes) -> Callable[[], Any]:
    """Write ``<tmp>/regions/<slug>.yaml`` and load it the way the Snakefile does (load_region)."""
    regions = tmp / "regions"
    regions.mkdir(exist_ok=True)
    path = regions / f"{slug}.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    defaults = yaml.safe_load((REPO / "config/config.yaml").read_text())["defaults"]
    return lambda: load_region(slug, regions, defaults)


def _snakemake_n_text(w: World, slug: str, text: str) -> Callable[[], Any]:
    """Like _snakemake_n, with the region file written as text (unquoted dates stay unquoted)."""
    path = w.workdir / "config/regions" / f"{slug}.yaml"
    path.write_text(text, encoding="utf-8")
    return _snakemake_n(w, slug, None)


AOI_CI_TINY = "aoi: {center: [12.50, 42.00], size_px: [128, 128]}"


def _snakemake_target(w: World, target: str) -> Callable[[], Any]:
    """``snakemake -n <target>``: a target the configuration does not define must be one error line."""

    def call() -> None:
        r = subprocess.run(
            [sys.executable, "-m", "snakemake", "-n", "--cores", "1", target],
            cwd=w.workdir,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert r.returncode != 0, r.stdout[-2000:]
        assert "Traceback" not in r.stderr + r.stdout, r.stderr[-4000:]
        lines = [ln for ln in r.stderr.splitlines() if re.match(r"^[A-Za-z]+Error: ", ln)]
        assert len(lines) == 1, r.stderr[-4000:]
        name, msg = lines[0].split(": ", 1)
        cls = getattr(errors, name, None)
        assert isinstance(cls, type) and issubclass(cls, PipelineError), lines[0]
        raise cls(msg)

    return call


def c_target_unknown_experiment(tmp: Path, w: World) -> Callable[[], Any]:
    return _snakemake_target(w, "results/ci-tiny/pred/nope/tirsit.tif")


def c_target_unconfigured_date(tmp: Path, w: World) -> Callable[[], Any]:
    return _snakemake_target(w, "results/ci-tiny/s1/2030-01-01.tif")


def c_cfg_impossible_date_unquoted(tmp: Path, w: World) -> Callable[[], Any]:
    return _snakemake_n_text(w, "bad-feb30", _region_text("bad-feb30", "dates: [2021-12-23,", "dates: [2022-02-30,"))


def c_cfg_antimeridian_center(tmp: Path, w: World) -> Callable[[], Any]:
    text = _region_text("bad-am-centre", AOI_CI_TINY, "aoi: {center: [180.0, -16.9], size_px: [128, 128]}")
    return _snakemake_n_text(w, "bad-am-centre", text)


def c_cfg_antimeridian_bbox(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "am-bbox", _region_text("am-bbox", AOI_CI_TINY, "aoi: [179.9, -17.0, -179.9, -16.8]"))


def c_cfg_dates_unsorted(tmp: Path, w: World) -> Callable[[], Any]:
    dates = "dates: [2021-12-23, 2022-01-04, 2022-01-28]"
    return _load(tmp, "unsorted", _region_text("unsorted", dates, "dates: [2022-01-04, 2021-12-23, 2022-01-28]"))


def c_cfg_dates_duplicate(tmp: Path, w: World) -> Callable[[], Any]:
    dates = "dates: [2021-12-23, 2022-01-04, 2022-01-28]"
    new = "dates: [2021-12-23, 2022-01-04, 2022-01-04, 2022-01-28]"
    return _load(tmp, "dup-dates", _region_text("dup-dates", dates, new))


def c_cfg_date_not_a_date(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "yesterday", _region_text("yesterday", "dates: [2021-12-23,", "dates: [yesterday,"))


def c_cfg_target_not_in_dates(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "target-out", _region_text("target-out", "target: 2022-01-04", "target: 2022-01-05"))


def c_cfg_guide_not_in_dates(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "guide-out", _region_text("guide-out", "guides: [2021-12-23,", "guides: [2021-12-24,"))


def c_cfg_duplicate_experiment(tmp: Path, w: World) -> Callable[[], Any]:
    exp = "  - {name: sar2vis, task: sar_to_visible, target: 2022-01-04, guides: [2021-12-23, 2022-01-28], variants: [tirsit]}"
    text = _region_text("dup-exp", exp, exp + "\n" + exp)
    return _load(tmp, "dup-exp", text)


def c_cfg_region_name_mismatch(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "named-wrong", _region_text("other-name"))


def c_cfg_bbox_lat_lon_swapped(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "swapped", _region_text("swapped", AOI_CI_TINY, "aoi: [41.99, 12.49, 42.01, 120.51]"))


def c_cfg_center_lat_lon_swapped(tmp: Path, w: World) -> Callable[[], Any]:
    new = "aoi: {center: [42.00, 112.50], size_px: [128, 128]}"
    return _load(tmp, "swapped-centre", _region_text("swapped-centre", AOI_CI_TINY, new))


def c_cfg_bbox_min_above_max(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "minmax", _region_text("minmax", AOI_CI_TINY, "aoi: [12.49, 42.01, 12.51, 41.99]"))


def c_cfg_size_px_too_small(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "tiny-px", _region_text("tiny-px", "size_px: [128, 128]", "size_px: [8, 8]"))


def c_cfg_unknown_crs(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "bad-crs", _region_text("bad-crs", extra="crs: EPSG:99999\n"))


def c_cfg_negative_tolerance(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "neg-tol", _region_text("neg-tol", "pair_tolerance_days: 3", "pair_tolerance_days: -1"))


def c_cfg_cloud_cover_over_100(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "cc", _region_text("cc", extra="max_cloud_cover: 150\n"))


def c_cfg_unknown_source(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "s3-src", _region_text("s3-src", "fetch: {source: demo, seed: 0}", "fetch: {source: s3}"))


def c_cfg_bad_polarisation(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "hh", _region_text("hh", "sar: {backend: native,", "sar: {polarisations: [HH], backend: native,"))


def c_cfg_empty_file(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "empty", "")


def c_cfg_yaml_list(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "a-list", "- region: a-list\n- dates: []\n")


def c_cfg_yaml_syntax(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "syntax", _region_text("syntax", "dates: [", "dates: [[["))


def c_cfg_not_utf8(tmp: Path, w: World) -> Callable[[], Any]:
    return _load(tmp, "latin1", _region_text("latin1").replace("Demo world", "D\u00e9mo world").encode("latin-1"))


# local folders of real products (fixture clones)
def _local_search(tmp: Path, folder: Path, aoi: tuple[float, float, float, float], day: str) -> Callable[[], Any]:
    d = date.fromisoformat(day)
    dates = [day, (d + timedelta(days=12)).isoformat(), (d + timedelta(days=24)).isoformat()]
    fetch = {"source": "local", "local_dir": str(folder)}
    return lambda: run_search(fetch, aoi, dates, 3, 100.0, tmp / "out/scenes.csv")


def c_local_s2_l1c_only(tmp: Path, w: World) -> Callable[[], Any]:
    (tmp / "mine").mkdir()
    shutil.copyfile(fx.L1C_ZIP, tmp / "mine" / fx.L1C_ZIP.name)
    return _local_search(tmp, tmp / "mine", fx.L1C_AOI, fx.L1C_DATE)


def c_local_aws_pds_tile(tmp: Path, w: World) -> Callable[[], Any]:
    tile = fx.clone(fx.S2_SAFE, tmp / "mine", name="0", skip=lambda rel: not rel.endswith("B04_60m.jp2"))
    (tile / "tileInfo.json").write_text('{"path": "tiles/29/U/NU/2022/10/5/0"}')
    return _local_search(tmp, tmp / "mine", fx.S2_AOI, fx.S2_DATE)


def c_local_unnamed_folder_without_safe(tmp: Path, w: World) -> Callable[[], Any]:
    fx.clone(fx.S1_SAFE, tmp / "mine", name="my-download")
    return _local_search(tmp, tmp / "mine", fx.S1_SAFE_AOI, fx.S1_SAFE_DATE)


def c_local_single_pol_1ssv(tmp: Path, w: World) -> Callable[[], Any]:
    fx.clone(fx.S1_SAFE, tmp / "mine", name=fx.S1_SAFE.name.replace("_1SDV_", "_1SSV_"))
    return _local_search(tmp, tmp / "mine", fx.S1_SAFE_AOI, fx.S1_SAFE_DATE)


def c_local_grd_empty_measurement(tmp: Path, w: World) -> Callable[[], Any]:
    (tmp / "mine").mkdir()
    shutil.copyfile(fx.S1_ZIP, tmp / "mine" / fx.S1_ZIP.name)
    return _local_search(tmp, tmp / "mine", fx.S1_ZIP_AOI, fx.S1_ZIP_DATE)


def c_local_grd_missing_vh(tmp: Path, w: World) -> Callable[[], Any]:
    fx.clone(fx.S1_SAFE, tmp / "mine")  # the sarsen product ships VV only
    return _local_search(tmp, tmp / "mine", fx.S1_SAFE_AOI, fx.S1_SAFE_DATE)


def c_local_grd_garbage_measurement(tmp: Path, w: World) -> Callable[[], Any]:
    p = fx.clone(fx.S1_SAFE, tmp / "mine")
    tiff = fx.one(p, r"^measurement/.*\.tiff$")
    head = tiff.read_bytes()[:4096]
    tiff.unlink()  # never write through the hard link to the fixture
    tiff.write_bytes(head)  # a TIFF cut after its first 4 KiB

    def call() -> None:
        fetch = {"source": "local", "local_dir": str(tmp / "mine")}
        d = fx.S1_SAFE_DATE
        run_search(fetch, fx.S1_SAFE_AOI, [d, "2022-01-04", "2022-01-16"], 3, 100.0, tmp / "out/scenes.csv", ["VV"])

    return call


def c_local_s2_without_bands(tmp: Path, w: World) -> Callable[[], Any]:
    fx.clone(fx.S2_SAFE, tmp / "mine", skip=lambda rel: "IMG_DATA" in rel)
    return _local_search(tmp, tmp / "mine", fx.S2_AOI, fx.S2_DATE)


def c_local_s1_slc(tmp: Path, w: World) -> Callable[[], Any]:
    fx.clone(fx.S1_SAFE, tmp / "mine", name=fx.S1_SAFE.name.replace("_GRDH_1SDV_", "_SLC__1SDV_"))
    return _local_search(tmp, tmp / "mine", fx.S1_SAFE_AOI, fx.S1_SAFE_DATE)


def c_local_only_other_files(tmp: Path, w: World) -> Callable[[], Any]:
    (tmp / "mine").mkdir()
    (tmp / "mine" / "notes.txt").write_text("my products")
    shutil.copyfile(fx.S1_SAFE.parent / "Rome-30m-DEM.tif", tmp / "mine" / "Rome-30m-DEM.tif")
    return _local_search(tmp, tmp / "mine", fx.S1_SAFE_AOI, fx.S1_SAFE_DATE)


def c_local_truncated_zip(tmp: Path, w: World) -> Callable[[], Any]:
    (tmp / "mine").mkdir()
    (tmp / "mine" / fx.S1_ZIP.name).write_bytes(fx.S1_ZIP.read_bytes()[:100_000])
    return _local_search(tmp, tmp / "mine", fx.S1_ZIP_AOI, fx.S1_ZIP_DATE)


def c_local_manifest_unparseable(tmp: Path, w: World) -> Callable[[], Any]:
    p = fx.clone(fx.S1_SAFE, tmp / "mine")
    fx.edit(p / "manifest.safe", lambda t: t[: len(t) // 2])
    return _local_search(tmp, tmp / "mine", fx.S1_SAFE_AOI, fx.S1_SAFE_DATE)


def c_local_manifest_bad_start_time(tmp: Path, w: World) -> Callable[[], Any]:
    p = fx.clone(fx.S1_SAFE, tmp / "mine")
    fx.edit(p / "manifest.safe", lambda t: re.sub(r"<safe:startTime>[^<]*<", "<safe:startTime>2021-13-45T99:00:00<", t))
    return _local_search(tmp, tmp / "mine", fx.S1_SAFE_AOI, fx.S1_SAFE_DATE)


def c_local_product_outside_dates(tmp: Path, w: World) -> Callable[[], Any]:
    fx.clone(fx.S1_SAFE, tmp / "mine")
    return _local_search(tmp, tmp / "mine", fx.S1_SAFE_AOI, "2022-06-01")


def c_local_dir_is_a_file(tmp: Path, w: World) -> Callable[[], Any]:
    shutil.copyfile(fx.S1_ZIP, tmp / fx.S1_ZIP.name)
    return _local_search(tmp, tmp / fx.S1_ZIP.name, fx.S1_ZIP_AOI, fx.S1_ZIP_DATE)


def _searched_zip(tmp: Path) -> tuple[LocalSource, Scene, Path]:
    (tmp / "mine").mkdir()
    user = tmp / "mine" / fx.S1_ZIP.name
    shutil.copyfile(fx.S1_ZIP, user)
    src = LocalSource(tmp / "mine")
    (scene,) = src.search(SearchRequest(fx.S1_ZIP_AOI, [date.fromisoformat(fx.S1_ZIP_DATE)], 3.0))
    return src, scene, user


def c_local_replaced_by_another_product(tmp: Path, w: World) -> Callable[[], Any]:
    src, scene, user = _searched_zip(tmp)
    user.unlink()
    shutil.copyfile(fx.S1_ZIP_2015, user)
    return lambda: src.download(scene, tmp / "out" / user.name)


def c_local_product_gone(tmp: Path, w: World) -> Callable[[], Any]:
    src, scene, user = _searched_zip(tmp)
    user.unlink()
    return lambda: src.download(scene, tmp / "out" / user.name)


def c_local_replaced_same_product(tmp: Path, w: World) -> Callable[[], Any]:
    src, scene, user = _searched_zip(tmp)
    user.unlink()
    fx.rezip(fx.S1_ZIP, user.parent)  # same product, other bytes

    def call() -> None:
        out = src.download(scene, tmp / "dl" / user.name)
        assert out.read_bytes() == user.read_bytes()

    return call


def c_local_unzipped_named_product(tmp: Path, w: World) -> Callable[[], Any]:
    fx.clone(fx.S1_SAFE, tmp / "mine", name=fx.S1_SAFE.stem)

    def call() -> None:
        (scene,) = LocalSource(tmp / "mine").search(
            SearchRequest(
                fx.S1_SAFE_AOI, [date.fromisoformat(fx.S1_SAFE_DATE)], 3.0, polarisations=("VV",), check_complete=True
            )
        )
        assert scene.product_id == fx.S1_SAFE.stem

    return call


# scene choice
def c_scene_footprint_other_side_of_globe(tmp: Path, w: World) -> Callable[[], Any]:
    """The only candidates lie across the antimeridian and over Angola: none may be chosen for Rome."""
    s1 = next(
        iter(
            LocalSource(fx.clone(fx.S1_SAFE, tmp / "s1").parent).search(
                SearchRequest(fx.S1_SAFE_AOI, [date(2021, 12, 23)], 3.0)
            )
        )
    )
    across = "POLYGON ((179.2 -17.5, -179.4 -17.3, -179.1 -15.9, 179.5 -16.1, 179.2 -17.5))"
    angola = "POLYGON ((13.0 -12.0, 14.0 -12.0, 14.0 -11.0, 13.0 -11.0, 13.0 -12.0))"
    cands = [
        dataclasses.replace(s1, footprint_wkt=across),
        dataclasses.replace(s1, product_id=s1.product_id + "X", footprint_wkt=angola),
    ]
    return lambda: select_scenes(cands, SearchRequest(fx.S1_SAFE_AOI, [date(2021, 12, 23)], 3.0))


def c_scene_unknown_cloud_cover(tmp: Path, w: World) -> Callable[[], Any]:
    folder = tmp / "s2"
    old = "<Cloud_Coverage_Assessment>59.769726</Cloud_Coverage_Assessment>"
    for suffix, cover in (("164455", None), ("164456", "2.0")):
        p = fx.clone(
            fx.S2_SAFE,
            folder,
            name=fx.S2_SAFE.name.replace("164454", suffix),
            skip=lambda rel: rel.startswith("GRANULE"),
        )
        fx.edit(
            p / "MTD_MSIL2A.xml",
            lambda t, c=cover: t.replace(
                old, "" if c is None else f"<Cloud_Coverage_Assessment>{c}</Cloud_Coverage_Assessment>"
            ),
        )
    req = SearchRequest(fx.S2_AOI, [date.fromisoformat(fx.S2_DATE)], 3.0)
    s2 = LocalSource(folder).search(req)

    def call() -> None:
        s1 = dataclasses.replace(s2[0], product_id="S1A_X", mission="S1A", product_type="IW_GRDH_1S", cloud_cover=None)
        assert select_scenes([s1, *s2], req)[1].cloud_cover == 2.0

    return call


def c_scene_one_product_three_dates(tmp: Path, w: World) -> Callable[[], Any]:
    (s1,) = LocalSource(fx.clone(fx.S1_SAFE, tmp / "s1").parent).search(
        SearchRequest(fx.S1_SAFE_AOI, [date(2021, 12, 23)], 3.0)
    )
    s2 = dataclasses.replace(s1, product_id="S2A_X", mission="S2A", product_type="S2MSI2A", cloud_cover=1.0)
    days = [date(2021, 12, 22), date(2021, 12, 23), date(2021, 12, 24)]

    def call() -> None:
        chosen = select_scenes([s1, s2], SearchRequest(fx.S1_SAFE_AOI, days, 3.0))
        assert all("shared with" in c.reason for c in chosen)

    return call


# credentials
def c_cdse_no_credentials(tmp: Path, w: World) -> Callable[[], Any]:
    return lambda: resolve_credentials({}, tmp / ".netrc", "identity.dataspace.copernicus.eu")


def c_netrc_unparseable(tmp: Path, w: World) -> Callable[[], Any]:
    netrc = tmp / ".netrc"
    netrc.write_text('machine identity.dataspace.copernicus.eu login me password hunter2-secret extra-junk "\n')
    return lambda: resolve_credentials({}, netrc, "identity.dataspace.copernicus.eu")


# S1/S2 metadata damaged as the fuzzer did (tests/test_84_fuzz_safe.py), deterministic
def _s1_meta(tmp: Path, pattern: str, fn: Callable[[str], str]) -> Callable[[], Any]:
    p = fx.clone(fx.S1_SAFE, tmp / "p")
    fx.edit(fx.one(p, pattern), fn)
    return lambda: run_calibrate(
        p, make_centered_grid((12.50, 42.00), (N, N)), tmp / "out/cal.nc", polarisations=("VV",), margin_px=8
    )


def c_noise_value_not_a_number(tmp: Path, w: World) -> Callable[[], Any]:
    return _s1_meta(tmp, r"calibration/noise-", lambda t: re.sub(r"<line>\d+</line>", "<line>1 2 3</line>", t, count=1))


def c_noise_value_nan(tmp: Path, w: World) -> Callable[[], Any]:
    return _s1_meta(tmp, r"calibration/noise-", lambda t: re.sub(r"(<noiseRangeLut[^>]*>)(\S+)", r"\1nan", t, count=1))


def c_annotation_lines_nan(tmp: Path, w: World) -> Callable[[], Any]:
    return _s1_meta(
        tmp, r"^annotation/s1b-", lambda t: re.sub(r"<numberOfLines>\d+<", "<numberOfLines>nan<", t, count=1)
    )


def c_annotation_without_geolocation(tmp: Path, w: World) -> Callable[[], Any]:
    return _s1_meta(
        tmp,
        r"^annotation/s1b-",
        lambda t: re.sub(r"<geolocationGridPoint>.*?</geolocationGridPoint>", "", t, flags=re.S),
    )


def c_calibration_vector_truncated(tmp: Path, w: World) -> Callable[[], Any]:
    return _s1_meta(
        tmp, r"calibration/calibration-", lambda t: re.sub(r"(<sigmaNought[^>]*>)(\S+ \S+ )", r"\1", t, count=1)
    )


def c_calibration_lut_infinite(tmp: Path, w: World) -> Callable[[], Any]:
    return _s1_meta(
        tmp, r"calibration/calibration-", lambda t: re.sub(r"(<sigmaNought[^>]*>)(\S+)", r"\g<1>1e309", t, count=1)
    )


def c_s2_offset_not_a_number(tmp: Path, w: World) -> Callable[[], Any]:
    p = fx.clone(fx.S2_SAFE, tmp / "p")
    fx.edit(p / "MTD_MSIL2A.xml", lambda t: re.sub(r'(<BOA_ADD_OFFSET band_id="2">)[^<]*', r"\1abc", t))
    return lambda: run_l2a(p, make_centered_grid((-8.3123, 52.9726), (N, N)), tmp / "out/s2.tif")


def c_s2_offset_infinite(tmp: Path, w: World) -> Callable[[], Any]:
    """Found by the fuzzer (case 138 of 150): 1e309 parses as inf and every pixel looked 'cloudy'."""
    p = fx.clone(fx.S2_SAFE, tmp / "p")
    fx.edit(p / "MTD_MSIL2A.xml", lambda t: re.sub(r'(<BOA_ADD_OFFSET band_id="3">)[^<]*', r"\g<1>1e309", t))
    return lambda: run_l2a(p, make_centered_grid((-8.3123, 52.9726), (N, N)), tmp / "out/s2.tif")


def c_zero_noise_tables(tmp: Path, w: World) -> Callable[[], Any]:
    p = fx.clone(fx.S1_SAFE, tmp / "p")
    fx.edit(fx.one(p, r"calibration/noise-"), fx.zero_noise)

    def call() -> None:
        run_calibrate(
            p, make_centered_grid((12.50, 42.00), (N, N)), tmp / "cal/cal.nc", polarisations=("VV",), margin_px=8
        )
        with xr.open_dataset(tmp / "cal/cal.nc") as ds:
            assert int(ds.attrs["thermal_noise_removed"]) == 0

    return call


# --------------------------------------------------------------------------------------------- the matrix
@dataclass(frozen=True)
class Case:
    build: Builder
    error: type[PipelineError] | tuple[type[PipelineError], ...] | None  # None: the input must WORK
    names: tuple[str, ...]  # each must appear in the message (file, product or key)
    output: str = "out"  # folder (under tmp_path, or the workdir for config cases) that must stay empty
    forbidden: tuple[str, ...] = ()  # must NOT appear in the message (secrets)


def _xf(case: Case, reason: str) -> Any:
    return pytest.param(case, marks=pytest.mark.xfail(strict=True, reason=reason), id=case.build.__name__[2:])


def _ok(case: Case) -> Any:
    return pytest.param(case, id=case.build.__name__[2:])


S1_NAME = "S1B_IW_GRDH_1SDV_20220104T051122"
S2_NAME = "S2B_MSIL2A_20220104T100309"
CASES = [
    _ok(Case(c_corrupt_zip, ProductError, (S2_NAME, ".zip"))),
    _ok(Case(c_truncated_zip, ProductError, (S2_NAME, ".zip"))),
    _ok(Case(c_corrupt_zip_member, ProductError, (S2_NAME, "MTD_MSIL2A.xml"))),
    _ok(Case(c_zip_slip, ProductError, (S2_NAME, "evil.sh", "zip-slip"))),
    _ok(Case(c_zip_symlink, ProductError, (S2_NAME, "passwd"))),
    _ok(Case(c_zip_bomb, ProductError, (S2_NAME, "zeros.bin"))),
    _ok(Case(c_xxe_annotation, ProductError, (S1_NAME, "s1b-iw-grd-vv-"))),
    _ok(Case(c_billion_laughs_mtd, ProductError, (S2_NAME, "MTD_MSIL2A.xml"))),
    _ok(Case(c_missing_measurement, ProductError, (S1_NAME, "measurement"))),
    _ok(Case(c_measurement_size_mismatch, ProductError, (S1_NAME, "measurement/s1b-iw-grd-vv-", "annotation"))),
    _ok(Case(c_missing_calibration_xml, ProductError, (S1_NAME, "calibration"))),
    _ok(Case(c_missing_noise_xml, ProductError, (S1_NAME, "noise", "VH"))),
    _ok(Case(c_s2_missing_b11, ProductError, (S2_NAME, "B11"))),
    _ok(Case(c_truncated_jp2_band, ProductError, (S2_NAME, "B04"))),
    _ok(Case(c_unknown_processing_baseline, ProductError, (S2_NAME, "PROCESSING_BASELINE"))),
    _ok(Case(c_baseline4_without_offsets, ProductError, (S2_NAME, "BOA_ADD_OFFSET"))),
    _ok(Case(c_all_cloud_s2, ProductError, ("S2A_MSIL2A_20220116T100309", "AOI"))),
    _ok(Case(c_aoi_outside_s1_footprint, CoverageError, (S1_NAME, "grid"))),
    _ok(Case(c_aoi_outside_s2_tile, CoverageError, (S2_NAME, "grid"))),
    _ok(Case(c_s1_product_to_s2_reader, ProductError, (S1_NAME, "MTD_MSIL2A.xml"))),
    _ok(Case(c_s2_product_to_s1_reader, ProductError, (S2_NAME, "annotation"))),
    _ok(Case(c_s3_product_to_local_source, FetchError, ("fetch.source", "local"))),
    _ok(Case(c_no_scene_within_tolerance, FetchError, ("2022-01-10", "pair_tolerance_days"))),
    _ok(Case(c_local_dir_missing, FetchError, ("fetch.local_dir", "no-such-folder"))),
    _ok(Case(c_stack_non_overlapping_s1_s2, (CoverageError, ProductError), (f"{ISO[0]}.tif",))),
    _ok(Case(c_stack_nan_only_raster, (CoverageError, ProductError), ("s1/2022-01-04.tif",))),
    _ok(Case(c_stack_rasters_on_other_grids, ProductError, (f"s1/{ISO[0]}.tif",))),
    _ok(Case(c_terrain_nan_only_window, CoverageError, ("filtered.nc",))),
    _ok(Case(c_dem_not_covering_aoi, CoverageError, ("dem-north.tif", "sar.dem"))),
    _ok(Case(c_dem_in_another_crs, None, ())),
    _ok(Case(c_gpu_requested_absent, ModelError, ("train.device",))),
    _ok(Case(c_disk_full_cog, StorageError, ("s2.tif", "no space left"))),
    _ok(Case(c_disk_full_netcdf, StorageError, ("cal.nc", "no space left"))),
    _ok(Case(c_cfg_only_two_dates, ConfigError, ("bad-two-dates.yaml", "dates"), output="results")),
    _ok(Case(c_cfg_target_is_guide, ConfigError, ("bad-target-guide.yaml", "guides"), output="results")),
    _ok(Case(c_cfg_unknown_key, ConfigError, ("bad-unknown-key.yaml", "sar.speckle_filter"), output="results")),
    _ok(Case(c_cfg_wrong_type, ConfigError, ("bad-wrong-type.yaml", "pair_tolerance_days"), output="results")),
    _ok(Case(c_cfg_region_file_not_found, ConfigError, ("no-such-region.yaml",), output="results")),
    _ok(
        Case(
            c_cfg_password_in_config,
            ConfigError,
            ("bad-secret.yaml", "fetch.password"),
            output="results",
            forbidden=("hunter2-secret",),
        )
    ),
    _ok(Case(c_cfg_bad_device, ConfigError, ("bad-device.yaml", "train.device"), output="results")),
]


# bad inputs, round two: config loading, local folders, scene choice, credentials, damaged metadata
S1F, S1Z, S2F = fx.S1_SAFE.name, fx.S1_ZIP.name, fx.S2_SAFE.name
CASES += [
    _ok(Case(c_cfg_impossible_date_unquoted, ConfigError, ("bad-feb30.yaml", "2022-02-30"), output="results")),
    _ok(Case(c_cfg_antimeridian_center, ConfigError, ("bad-am-centre.yaml", "antimeridian"), output="results")),
    _ok(Case(c_target_unknown_experiment, ConfigError, ("ci-tiny.yaml", "'nope'"), output="results")),
    _ok(Case(c_target_unconfigured_date, ConfigError, ("ci-tiny.yaml", "2030-01-01"), output="results")),
    _ok(Case(c_cfg_antimeridian_bbox, ConfigError, ("am-bbox.yaml", "antimeridian"))),
    _ok(Case(c_cfg_dates_unsorted, ConfigError, ("unsorted.yaml", "dates"))),
    _ok(Case(c_cfg_dates_duplicate, ConfigError, ("dup-dates.yaml", "dates"))),
    _ok(Case(c_cfg_date_not_a_date, ConfigError, ("yesterday.yaml", "dates.0"))),
    _ok(Case(c_cfg_target_not_in_dates, ConfigError, ("target-out.yaml", "target"))),
    _ok(Case(c_cfg_guide_not_in_dates, ConfigError, ("guide-out.yaml", "guides"))),
    _ok(Case(c_cfg_duplicate_experiment, ConfigError, ("dup-exp.yaml", "experiments"))),
    _ok(Case(c_cfg_region_name_mismatch, ConfigError, ("named-wrong.yaml", "region"))),
    _ok(Case(c_cfg_bbox_lat_lon_swapped, ConfigError, ("swapped.yaml", "aoi"))),
    _ok(Case(c_cfg_center_lat_lon_swapped, ConfigError, ("swapped-centre.yaml", "aoi.center"))),
    _ok(Case(c_cfg_bbox_min_above_max, ConfigError, ("minmax.yaml", "aoi"))),
    _ok(Case(c_cfg_size_px_too_small, ConfigError, ("tiny-px.yaml", "aoi"))),
    _ok(Case(c_cfg_unknown_crs, ConfigError, ("bad-crs.yaml", "crs"))),
    _ok(Case(c_cfg_negative_tolerance, ConfigError, ("neg-tol.yaml", "pair_tolerance_days"))),
    _ok(Case(c_cfg_cloud_cover_over_100, ConfigError, ("cc.yaml", "max_cloud_cover"))),
    _ok(Case(c_cfg_unknown_source, ConfigError, ("s3-src.yaml", "fetch.source"))),
    _ok(Case(c_cfg_bad_polarisation, ConfigError, ("hh.yaml", "sar.polarisations"))),
    _ok(Case(c_cfg_empty_file, ConfigError, ("empty.yaml",))),
    _ok(Case(c_cfg_yaml_list, ConfigError, ("a-list.yaml",))),
    _ok(Case(c_cfg_yaml_syntax, ConfigError, ("syntax.yaml",))),
    _ok(Case(c_cfg_not_utf8, ConfigError, ("latin1.yaml", "UTF-8"))),
    _ok(Case(c_local_s2_l1c_only, FetchError, (fx.L1C_ZIP.name, "Level-1C"))),
    _ok(Case(c_local_aws_pds_tile, FetchError, ("tileInfo.json", "AWS"))),
    _ok(Case(c_local_unnamed_folder_without_safe, FetchError, ("my-download", ".SAFE"))),
    _ok(Case(c_local_single_pol_1ssv, FetchError, ("_1SSV_", "sar.polarisations"))),
    _ok(Case(c_local_grd_empty_measurement, FetchError, (S1Z, "measurement"))),
    _ok(Case(c_local_grd_missing_vh, FetchError, (S1F, "VH"))),
    _ok(Case(c_local_grd_garbage_measurement, FetchError, (S1F, "measurement/s1b-iw-grd-vv"))),
    _ok(Case(c_local_s2_without_bands, FetchError, (S2F, "incomplete"))),
    _ok(Case(c_local_s1_slc, FetchError, ("_SLC__", "IW GRDH"))),
    _ok(Case(c_local_only_other_files, FetchError, ("notes.txt", "Rome-30m-DEM.tif"))),
    _ok(Case(c_local_truncated_zip, FetchError, (S1Z, "not a readable zip"))),
    _ok(Case(c_local_manifest_unparseable, FetchError, (S1F, "manifest.safe"))),
    _ok(Case(c_local_manifest_bad_start_time, FetchError, (S1F, "manifest.safe"))),
    _ok(Case(c_local_product_outside_dates, FetchError, (S1F, "pair_tolerance_days"))),
    _ok(Case(c_local_dir_is_a_file, FetchError, ("fetch.local_dir", S1Z))),
    _ok(Case(c_local_replaced_by_another_product, FetchError, (S1Z, "--forcerun search"))),
    _ok(Case(c_local_product_gone, FetchError, (S1Z, "gone"))),
    _ok(Case(c_local_replaced_same_product, None, ())),
    _ok(Case(c_local_unzipped_named_product, None, ())),
    _ok(Case(c_scene_footprint_other_side_of_globe, FetchError, ("2021-12-23", "outside the AOI"))),
    _ok(Case(c_scene_unknown_cloud_cover, None, ())),
    _ok(Case(c_scene_one_product_three_dates, None, ())),
    _ok(Case(c_cdse_no_credentials, ConfigError, ("CDSE_USERNAME", ".netrc"))),
    _ok(Case(c_netrc_unparseable, ConfigError, (".netrc",), forbidden=("hunter2-secret",))),
    _ok(Case(c_noise_value_not_a_number, ProductError, (S1F, "noise-s1b-iw-grd-vv"))),
    _ok(Case(c_noise_value_nan, ProductError, (S1F, "noise-s1b-iw-grd-vv", "non-finite"))),
    _ok(Case(c_annotation_lines_nan, ProductError, (S1F, "annotation/s1b-iw-grd-vv"))),
    _ok(Case(c_annotation_without_geolocation, ProductError, (S1F, "annotation/s1b-iw-grd-vv", "geolocation"))),
    _ok(Case(c_calibration_vector_truncated, ProductError, (S1F, "calibration-s1b-iw-grd-vv"))),
    _ok(Case(c_calibration_lut_infinite, ProductError, (S1F, "calibration-s1b-iw-grd-vv", "sigmaNought"))),
    _ok(Case(c_s2_offset_not_a_number, ProductError, (S2F, "MTD_MSIL2A.xml"))),
    _ok(Case(c_s2_offset_infinite, ProductError, (S2F, "MTD_MSIL2A.xml", "BOA_ADD_OFFSET"))),
    _ok(Case(c_zero_noise_tables, None, ())),
]


def _files_in(folder: Path) -> list[str]:
    if not folder.exists():
        return []
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: Case, tmp_path: Path, world: World) -> None:
    call = case.build(tmp_path, world)
    out = (world.workdir / case.output) if case.output == "results" else (tmp_path / case.output)
    name = case.build.__name__[2:]
    if case.error is None:
        call()
        print(f"\nMATRIX|{name}|works|-")
    else:
        with pytest.raises(PipelineError) as info:
            call()
        msg = str(info.value)
        print(f"\nMATRIX|{name}|{type(info.value).__name__}|{msg}")
        assert isinstance(info.value, case.error), f"{type(info.value).__name__}: {msg}"
        assert "\n" not in msg and "\r" not in msg, msg
        for needle in case.names:
            assert needle in msg, (needle, msg)
        for secret in case.forbidden:
            assert secret not in msg, msg
        assert ";" in msg and FIX.search(msg.split(";", 1)[1]), f"no fix after ';': {msg}"
    if name.startswith("disk_full"):
        assert not _LEFT_ON_TMPFS, _LEFT_ON_TMPFS  # the atomic writer removed its temporary file
    assert _files_in(out) == [], _files_in(out)


def test_device_auto_without_gpu_falls_back_to_cpu_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present: auto picks it")
    log = logging.getLogger("test_80")
    with caplog.at_level(logging.WARNING, logger="test_80"):
        dev = select_device("auto", log)
    assert dev.type == "cpu"
    assert any("CPU" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records), caplog.records
