"""A full-size Sentinel-1 IW GRDH 1SDV SAFE (26102 × 16705 px per polarisation) for the full-scene benchmarks.

Metadata: the real sarsen fixture scene ``S1B_IW_GRDH_1SDV_20211223T051122_..._5371`` as the demo
templates carry it (pipeline_lib/demo/templates/s1: annotation, calibration, noise, rfi XML, manifest;
VH derived from VV exactly as :func:`pipeline_lib.demo.s1.write_s1_product` does). Its upstream
measurement is an all-zero placeholder, so the measurement here is synthetic with the statistics of a
real IW GRDH: a spatially varying σ0 field (VV about −12 … −6 dB with land-cover-like patches, VH
about 7 dB lower), unit-mean Gamma speckle with the GRDH equivalent number of looks (4.4), and
``DN = round(sqrt((σ0·A_σ² + η)·speckle))`` with the product's own calibration LUT A_σ and thermal
noise η (range × azimuth blocks), so that (DN² − η)/A_σ² is unbiased (S1-RS-MDA-52-7441, MPC-0392).

Layouts of the measurement GeoTIFF (uint16, GCPs from the annotation geolocation grid, ESA's
ImageDescription and Software TIFF tags, which OTB needs to recognise the product):

- ``esa``: as ESA delivers it, uncompressed, stripped, one strip per line (``blockysize=1``).
- ``tiled``: 512 × 512 tiles, ZSTD (the layout sarsen reads 3.4× faster).

Usage: ``PYTHONPATH=. python benchmarks/fullscene_grd.py DEST [--layout esa|tiled] [--seed 0]``.
Writing is row band by row band (peak memory ≈ 0.5 GB); about 1 GB of disk per polarisation for ``esa``.
A product already built with the same layout, seed and polarisations in ``dest_dir`` is reused.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.windows import Window

from pipeline_lib.demo.s1 import (
    GRDH_ENL,
    POLS,
    TEMPLATE_DIR,
    TEMPLATE_PRODUCT_ID,
    TEMPLATE_STEM,
    _drop_newer_elements,
    _gcps,
    _vh_text,
    esa_tiff_tags,
    noise_power,
    sigma_lut,
    update_manifest,
    write_pol_xml,
)
from pipeline_lib.xmlsafe import parse_xml

__all__ = ["LAYOUTS", "build_fullscene_grd", "synthetic_sigma0"]

LAYOUTS = ("esa", "tiled")
BAND_LINES = 256  # rows written per step
POL_OFFSET_DB = {"VV": 0.0, "VH": -7.0}


def synthetic_sigma0(lines: np.ndarray, pixels: np.ndarray, pol: str, seed: int = 0) -> np.ndarray:
    """Noise-free σ0 (linear) on the (lines × pixels) window: smooth regional trend + land-cover-like patches.

    A deterministic function of the full-product (line, pixel), so any row band is reproducible alone.
    """
    ll = np.asarray(lines, dtype=np.float64)[:, None]
    pp = np.asarray(pixels, dtype=np.float64)[None, :]
    rs = np.random.default_rng([seed, 7])
    ph = rs.uniform(0, 2 * np.pi, 6)
    # incidence-angle trend across range (near range brighter) and a slow regional texture
    trend = -7.0 - 4.0 * pp / 26102.0 + 1.5 * np.sin(ll / 900.0 + ph[0]) * np.cos(pp / 1300.0 + ph[1])
    # patches: quantised sum of incommensurate waves gives fields of a few hundred metres
    wave = np.sin(ll / 37.0 + ph[2]) + np.sin(pp / 53.0 + ph[3]) + np.sin((ll + pp) / 71.0 + ph[4])
    classes = np.floor(wave * 1.4).clip(-3, 3)
    db = trend + 1.3 * classes + POL_OFFSET_DB.get(pol.upper(), -7.0)
    return np.asarray(10.0 ** (db / 10.0))


def _profile(layout: str, n_lines: int, n_pix: int, gcps: list[Any]) -> dict[str, Any]:
    base: dict[str, Any] = {
        "driver": "GTiff",
        "width": n_pix,
        "height": n_lines,
        "count": 1,
        "dtype": "uint16",
        "gcps": gcps,
        "crs": CRS.from_epsg(4326),
    }
    if layout == "esa":
        return {**base, "tiled": False, "blockysize": 1, "compress": None, "interleave": "band"}
    return {**base, "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": "ZSTD", "BIGTIFF": "IF_SAFER"}


def _write_measurement(
    path: Path, layout: str, pol: str, pol_index: int, seed: int, texts: dict[str, str], band_lines: int
) -> None:
    ann = parse_xml(texts["annotation"].encode(), name=path.name)
    cal = parse_xml(texts["calibration"].encode(), name="calibration")
    noise = parse_xml(texts["noise"].encode(), name="noise")
    n_lines = int(ann.findtext(".//imageInformation/numberOfLines", "0"))
    n_pix = int(ann.findtext(".//imageInformation/numberOfSamples", "0"))
    pp = np.arange(n_pix, dtype=np.float64)
    # tiled output is written in 512-line bands so every tile is written once
    step = 512 if layout == "tiled" else band_lines
    manifest = (TEMPLATE_DIR / "manifest.safe").read_text(encoding="utf-8")
    with rasterio.open(path, "w", **_profile(layout, n_lines, n_pix, _gcps(ann))) as dst:
        dst.update_tags(**esa_tiff_tags(TEMPLATE_PRODUCT_ID, ann, manifest))
        for b, l0 in enumerate(range(0, n_lines, step)):
            ll = np.arange(l0, min(l0 + step, n_lines), dtype=np.float64)
            rng = np.random.default_rng([seed, pol_index, b])
            a_sigma = sigma_lut(cal, ll, pp)
            eta = noise_power(noise, ll, pp)
            speckle = rng.gamma(GRDH_ENL, 1.0 / GRDH_ENL, size=(ll.size, n_pix))
            dn = np.sqrt((synthetic_sigma0(ll, pp, pol, seed) * a_sigma**2 + eta) * speckle)
            dn = np.clip(np.rint(dn), 1, 65534).astype(np.uint16)
            dst.write(dn, 1, window=Window(0, l0, n_pix, ll.size))  # type: ignore[arg-type]


def build_fullscene_grd(dest_dir: Path, layout: str = "esa", seed: int = 0, pols: Sequence[str] = ("VV", "VH")) -> Path:
    """Write (or reuse) the full-size GRD ``dest_dir/<product_id>.SAFE``; returns the .SAFE path."""
    if layout not in LAYOUTS:
        raise ValueError(f"layout {layout!r}: use one of {LAYOUTS}")
    pol_codes = dict((p.upper(), n) for p, n in POLS)
    wanted = [p.upper() for p in pols]
    if not wanted or any(p not in pol_codes for p in wanted):
        raise ValueError(f"pols {tuple(pols)}: use a subset of {tuple(pol_codes)}")
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    safe = dest_dir / f"{TEMPLATE_PRODUCT_ID}.SAFE"
    stamp_path = dest_dir / f"{TEMPLATE_PRODUCT_ID}.SAFE.build.json"
    stamp = {"layout": layout, "seed": seed, "pols": wanted, "generator": "benchmarks/fullscene_grd.py v2"}
    if safe.is_dir() and stamp_path.is_file() and json.loads(stamp_path.read_text()) == stamp:
        return safe
    shutil.rmtree(safe, ignore_errors=True)
    stamp_path.unlink(missing_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=".fullscene-", dir=dest_dir)) / safe.name
    try:
        for sub in ("annotation/calibration", "annotation/rfi", "measurement"):
            (tmp / sub).mkdir(parents=True, exist_ok=True)
        templates = {
            kind: (TEMPLATE_DIR / f"{kind}-vv.xml").read_text(encoding="utf-8")
            for kind in ("annotation", "calibration", "noise", "rfi")
        }
        for k, pol in enumerate(wanted):
            stem = TEMPLATE_STEM.format(pol=pol.lower(), n=pol_codes[pol])
            texts = {kind: (t if pol == "VV" else _vh_text(t)) for kind, t in templates.items()}
            texts["annotation"] = _drop_newer_elements(texts["annotation"])
            write_pol_xml(tmp, stem, texts)
            _write_measurement(tmp / "measurement" / f"{stem}.tiff", layout, pol, k, seed, texts, BAND_LINES)
        manifest = (TEMPLATE_DIR / "manifest.safe").read_text(encoding="utf-8")
        (tmp / "manifest.safe").write_text(update_manifest(manifest, tmp), encoding="utf-8")
        os.replace(tmp, safe)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)
    stamp_path.write_text(json.dumps(stamp) + "\n")
    return safe


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--layout", choices=LAYOUTS, default="esa")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pols", default="VV,VH")
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    safe = build_fullscene_grd(a.dest, a.layout, a.seed, tuple(a.pols.split(",")))
    print(f"{safe} ({a.layout}) in {time.perf_counter() - t0:.1f} s")


if __name__ == "__main__":
    main()
