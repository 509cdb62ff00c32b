"""Demo Sentinel-1 GRDH products: determinism, ESA XSD validity, GCPs and a radiometric round trip.

The round trip uses only xarray-sentinel (calibration LUT) and sarsen (geometry), never our readers.
"""

from __future__ import annotations

import hashlib
import zipfile
from datetime import date
from pathlib import Path
from xml.etree import ElementTree as ET

import numpy as np
import pytest
import rasterio
import xarray as xr
import xmlschema

from pipeline_lib.demo import demo_bounds
from pipeline_lib.demo.s1 import s1_product_id, write_s1_product
from pipeline_lib.demo.surface import DEMO_CRS, demo_center_xy, simulate_surface

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
PYROSAR_ZIP = FIXTURES / "s1-grd-pyrosar" / "S1A_IW_GRDH_1SDV_20210119T031653_20210119T031718_036201_043ED0_8255.zip"
DEM = Path(__file__).resolve().parents[1] / "pipeline_lib" / "demo" / "templates" / "s1" / "Rome-30m-DEM.tif"
WHEN = date(2022, 1, 4)
BOUNDS = demo_bounds(128)


@pytest.fixture(scope="module")
def products(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("s1")
    out = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        (root / name).mkdir()
        out[name] = write_s1_product(root / name, WHEN, BOUNDS, seed)
    return out


def _one(safe: Path, pattern: str) -> Path:
    hits = sorted(safe.glob(pattern))
    assert len(hits) == 1, (pattern, hits)
    return hits[0]


def test_product_name_and_layout(products: dict[str, Path]) -> None:
    safe = products["a"]
    assert safe.name == f"{s1_product_id(1)}.SAFE"
    assert "_20220104T051122_20220104T051147_030323_" in safe.name
    for pol, n in (("vv", "001"), ("vh", "002")):
        for pattern in (
            f"annotation/s1b-iw-grd-{pol}-*-{n}.xml",
            f"annotation/calibration/calibration-s1b-iw-grd-{pol}-*-{n}.xml",
            f"annotation/calibration/noise-s1b-iw-grd-{pol}-*-{n}.xml",
            f"measurement/s1b-iw-grd-{pol}-*-{n}.tiff",
        ):
            _one(safe, pattern)
    manifest = (safe / "manifest.safe").read_text()
    assert '<safe:orbitNumber type="start">30323<' in manifest and "2022-01-04T05:11:22.594441" in manifest
    assert "20211223" not in manifest.split("<dataObjectSection>")[1]
    # manifest checksums refreshed for the files we wrote
    ann = _one(safe, "annotation/s1b-iw-grd-vh-*.xml")
    assert hashlib.md5(ann.read_bytes()).hexdigest() in manifest
    vh = ET.parse(ann).getroot()
    assert vh.findtext(".//adsHeader/polarisation") == "VH"
    assert vh.findtext(".//adsHeader/startTime") == "2022-01-04T05:11:22.594441"


def test_deterministic_bytes(products: dict[str, Path]) -> None:
    for pol in ("vv", "vh"):
        a, b, c = (_one(products[k], f"measurement/*-{pol}-*.tiff").read_bytes() for k in "abc")
        assert a == b
        assert a != c


@pytest.fixture(scope="module")
def xsd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("xsd")
    with zipfile.ZipFile(PYROSAR_ZIP) as zf:
        for name in zf.namelist():
            if "/support/" in name and name.endswith(".xsd"):
                (out / Path(name).name).write_bytes(zf.read(name))
    return out


@pytest.mark.parametrize(
    ("xsd", "pattern"),
    [
        ("s1-level-1-product.xsd", "annotation/s1b-*.xml"),
        ("s1-level-1-calibration.xsd", "annotation/calibration/calibration-*.xml"),
        ("s1-level-1-noise.xsd", "annotation/calibration/noise-*.xml"),
    ],
)
def test_xml_validates_against_esa_xsd(products: dict[str, Path], xsd_dir: Path, xsd: str, pattern: str) -> None:
    schema = xmlschema.XMLSchema(xsd_dir / xsd)
    files = sorted(products["a"].glob(pattern))
    assert len(files) == 2
    for f in files:
        errors = [str(e).splitlines()[0] for e in schema.iter_errors(f)]
        assert errors == [], (f.name, errors[:3])


def test_tiff_gcps_match_geolocation_grid(products: dict[str, Path]) -> None:
    safe = products["a"]
    ann = ET.parse(_one(safe, "annotation/s1b-iw-grd-vv-*.xml")).getroot()
    grid = [
        (
            float(g.findtext("line")),
            float(g.findtext("pixel")),
            float(g.findtext("latitude")),
            float(g.findtext("longitude")),
        )
        for g in ann.findall(".//geolocationGridPoint")
    ]
    with rasterio.open(_one(safe, "measurement/*-vv-*.tiff")) as src:
        gcps, crs = src.gcps
        assert (src.height, src.width) == (
            int(ann.findtext(".//numberOfLines")),
            int(ann.findtext(".//numberOfSamples")),
        )
        assert src.dtypes == ("uint16",) and src.block_shapes[0] == (512, 512)
        tags = src.tags()  # as ESA writes them (OTB identifies the product by them)
        assert tags["TIFFTAG_IMAGEDESCRIPTION"] == "Sentinel-1B IW GRD HR L1"
        assert tags["TIFFTAG_SOFTWARE"] == "Sentinel-1 IPF 003.40"
    assert crs.to_epsg() == 4326
    assert len(gcps) == len(grid) == 210
    got = np.array([(g.row, g.col, g.y, g.x) for g in gcps])
    np.testing.assert_allclose(got, np.array(grid), rtol=0, atol=1e-9)


def _sarsen_line_pixel(safe: Path, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(line, pixel) of map points (UTM 33N) from sarsen's range-Doppler geometry over the Rome DEM."""
    import sarsen
    import xarray_sentinel
    from pyproj import Transformer

    ann_path = _one(safe, "annotation/s1b-iw-grd-vv-*.xml")
    lon, lat = Transformer.from_crs(DEMO_CRS, "EPSG:4326", always_xy=True).transform(x, y)
    with rasterio.open(DEM) as src:
        h = np.array([v[0] for v in src.sample(zip(lon.ravel(), lat.ravel(), strict=True))], dtype=float).reshape(
            x.shape
        )
    # one row of points: x varies along "x", a dummy "y" of length 1 (sarsen wants a raster)
    dem = xr.DataArray(h[None, :], dims=("y", "x"), coords={"y": [0.0], "x": np.arange(x.size, dtype=float)})
    ecef = Transformer.from_crs("EPSG:4979", "EPSG:4978", always_xy=True).transform(lon, lat, h)
    dem_ecef = xr.concat([dem.copy(data=np.asarray(c)[None, :]) for c in ecef], dim="axis").assign_coords(
        axis=[0, 1, 2]
    )
    orbit = xarray_sentinel.sentinel1.open_orbit_dataset(ann_path)
    acq = sarsen.apps.simulate_acquisition(
        dem_ecef, sarsen.orbit.OrbitPolyfitInterpolator.from_position(orbit.position)
    )
    cc = xarray_sentinel.sentinel1.open_coordinate_conversion_dataset(ann_path)
    gr = xarray_sentinel.sentinel1.slant_range_time_to_ground_range(acq.azimuth_time, acq.slant_range_time, cc)
    ann = ET.parse(ann_path).getroot()
    t0 = np.datetime64(ann.findtext(".//imageInformation/productFirstLineUtcTime"), "ns")
    dt = float(ann.findtext(".//imageInformation/azimuthTimeInterval"))
    line = (acq.azimuth_time.values[0] - t0).astype("timedelta64[ns]").astype(float) / 1e9 / dt
    pixel = gr.values[0] / float(ann.findtext(".//imageInformation/rangePixelSpacing"))
    return line, pixel


def _noise_eta(noise_path: Path, line: float, pixels: np.ndarray) -> np.ndarray:
    root = ET.parse(noise_path).getroot()
    vecs = root.findall(".//noiseRangeVector")
    lines = np.array([float(v.findtext("line")) for v in vecs])
    i = int(np.argmin(np.abs(lines - line)))
    px = np.array(vecs[i].findtext("pixel").split(), dtype=float)
    rng = np.interp(pixels, px, np.array(vecs[i].findtext("noiseRangeLut").split(), dtype=float))
    az = np.ones_like(rng)
    for blk in root.findall(".//noiseAzimuthVector"):
        sel = (pixels >= float(blk.findtext("firstRangeSample"))) & (pixels <= float(blk.findtext("lastRangeSample")))
        az[sel] = np.interp(
            line,
            np.array(blk.findtext("line").split(), dtype=float),
            np.array(blk.findtext("noiseAzimuthLut").split(), dtype=float),
        )
    return rng * az


def test_round_trip_sigma0_through_sarsen_geometry(products: dict[str, Path]) -> None:
    import xarray_sentinel

    safe = products["a"]
    x0, y0 = demo_center_xy()
    # candidate points on a lattice over the AOI; keep radiometrically homogeneous ones
    gx, gy = np.meshgrid(x0 + np.arange(-560, 561, 80.0), y0 + np.arange(-560, 561, 80.0))
    gx, gy = gx.ravel(), gy.ravel()
    off = np.arange(-50, 51, 10.0)
    ox, oy = np.meshgrid(off, off)
    patch = simulate_surface(gx[:, None] + ox.ravel()[None], gy[:, None] + oy.ravel()[None], WHEN)
    line, pixel = _sarsen_line_pixel(safe, gx, gy)
    checked = 0
    for pol in ("VV", "VH"):
        p = pol.lower()
        cal = xarray_sentinel.sentinel1.open_calibration_dataset(
            _one(safe, f"annotation/calibration/calibration-*-{p}-*.xml")
        )
        noise_path = _one(safe, f"annotation/calibration/noise-*-{p}-*.xml")
        with rasterio.open(_one(safe, f"measurement/*-{p}-*.tiff")) as src:
            for i in range(gx.size):
                s0 = patch[pol][i].astype(float)
                if s0.std() / s0.mean() > 0.08:
                    continue
                l0, p0 = int(round(line[i])), int(round(pixel[i]))
                dn = src.read(1, window=((l0 - 4, l0 + 5), (p0 - 4, p0 + 5))).astype(float)
                assert (dn > 0).all()
                da = xr.DataArray(
                    dn,
                    dims=("line", "pixel"),
                    coords={"line": np.arange(l0 - 4, l0 + 5), "pixel": np.arange(p0 - 4, p0 + 5)},
                )
                beta = xarray_sentinel.calibrate_intensity(da, cal.sigmaNought).values
                eta = _noise_eta(noise_path, l0, np.arange(p0 - 4, p0 + 5, dtype=float))
                lut = xarray_sentinel.calibrate_amplitude(xr.ones_like(da), cal.sigmaNought).values
                est = float(np.mean(beta - eta[None, :] * lut**2))
                assert abs(10 * np.log10(est / s0.mean())) < 1.2, (pol, i, est, s0.mean())
                checked += 1
    assert checked >= 20


def test_generator_geometry_inverts_sarsen(products: dict[str, Path]) -> None:
    from scipy import ndimage

    from pipeline_lib.demo.s1 import grd_window_for

    x0, y0 = demo_center_xy()
    gx, gy = np.meshgrid(x0 + np.arange(-600, 601, 200.0), y0 + np.arange(-600, 601, 200.0))
    line, pixel = _sarsen_line_pixel(products["a"], gx.ravel(), gy.ravel())
    win = grd_window_for(tuple(float(b) for b in BOUNDS))
    rc = np.stack([line - win.line0, pixel - win.pixel0])
    x = ndimage.map_coordinates(win.x_m, rc, order=1)
    y = ndimage.map_coordinates(win.y_m, rc, order=1)
    err = np.hypot(x - gx.ravel(), y - gy.ravel())
    # the test samples the DEM at its nearest posting, the generator bilinearly on a 20 m lattice
    assert np.nanmax(err) < 10.0 and np.nanmedian(err) < 2.0, err
