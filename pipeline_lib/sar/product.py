"""Locate and read the parts of a Sentinel-1 GRD SAFE product (folder or zip) the native chain needs.

Governing specs: "Sentinel-1 Product Specification" S1-RS-MDA-52-7441 (SAFE layout, annotation
``imageInformation``, ``geolocationGrid``, ``processingInformation``), and the xarray-sentinel readers
(``open_orbit_dataset``, ``open_coordinate_conversion_dataset``, ``open_calibration_dataset``) used for
the orbit state vectors, the slant-to-ground-range polynomials and the calibration LUTs.
XML is first parsed with :func:`pipeline_lib.io.parse_xml` (DTD/entities refused) before any other
parser sees it.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element

import numpy as np

from pipeline_lib.errors import ProductError
from pipeline_lib.io import parse_xml

if TYPE_CHECKING:  # xarray and xarray-sentinel are imported on use: the calibrate job needs neither
    import xarray as xr

__all__ = [
    "ImageInfo",
    "PolFiles",
    "find_pol_files",
    "read_member",
    "parse_member",
    "product_name",
    "DEFAULT_LOOKS",
    "measurement_uri",
    "read_image_info",
    "read_geolocation_grid",
    "open_orbit",
    "open_coordinate_conversion",
    "open_sigma_lut",
]

_KIND_PATTERNS = {
    "annotation": r"(^|/)annotation/s1[abcd]-[^/]*-{pol}-[^/]*\.xml$",
    "calibration": r"(^|/)annotation/calibration/calibration-s1[abcd]-[^/]*-{pol}-[^/]*\.xml$",
    "noise": r"(^|/)annotation/calibration/noise-s1[abcd]-[^/]*-{pol}-[^/]*\.xml$",
    "measurement": r"(^|/)measurement/s1[abcd]-[^/]*-{pol}-[^/]*\.tiff?$",
}


@dataclass(frozen=True)
class PolFiles:
    """Where one polarisation's files live: members relative to the product root (folder or zip)."""

    product: Path
    polarisation: str
    annotation: str
    calibration: str
    noise: str
    measurement: str | None

    @property
    def is_zip(self) -> bool:
        return self.product.suffix.lower() == ".zip"


@dataclass(frozen=True)
class ImageInfo:
    """The annotation's ``imageInformation`` and the looks of ``processingInformation``."""

    number_of_lines: int
    number_of_samples: int
    first_line_time: np.datetime64  # datetime64[ns]
    azimuth_time_interval_s: float
    range_pixel_spacing_m: float
    number_of_looks: float
    projection: str


def product_name(product: Path) -> str:
    """The product identifier (``S1B_IW_GRDH_…``) from a ``.SAFE`` folder or ``.zip`` path."""
    name = product.name
    for suffix in (".zip", ".SAFE"):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    return name


def _list_members(product: Path) -> list[str]:
    if not product.exists():
        raise ProductError(f"{product}: product not found; download it again")
    if product.is_dir():
        return [p.relative_to(product).as_posix() for p in product.rglob("*") if p.is_file()]
    try:
        with zipfile.ZipFile(product) as zf:
            return [n for n in zf.namelist() if not n.endswith("/")]
    except (zipfile.BadZipFile, OSError) as exc:
        raise ProductError(f"{product}: not a readable SAFE folder or zip ({exc}); download it again") from exc


def find_pol_files(product: Path, polarisation: str, *, need_measurement: bool = True) -> PolFiles:
    """Find the annotation, calibration, noise and measurement files of ``polarisation`` (e.g. "VV")."""
    members = _list_members(product)
    pol = polarisation.lower()
    found: dict[str, str | None] = {}
    for kind, pattern in _KIND_PATTERNS.items():
        rx = re.compile(pattern.format(pol=pol))
        hits = sorted(m for m in members if rx.search(m))
        if not hits and (kind != "measurement" or need_measurement):
            raise ProductError(
                f"{product}: no {kind} file for polarisation {polarisation}; the product is incomplete, download it again"
            )
        found[kind] = hits[0] if hits else None
    return PolFiles(
        product=product,
        polarisation=polarisation.upper(),
        annotation=str(found["annotation"]),
        calibration=str(found["calibration"]),
        noise=str(found["noise"]),
        measurement=found["measurement"],
    )


def read_member(product: Path, member: str) -> bytes:
    """The bytes of one file of the product."""
    try:
        if product.is_dir():
            return (product / member).read_bytes()
        with zipfile.ZipFile(product) as zf:
            return zf.read(member)
    except (OSError, KeyError, zipfile.BadZipFile) as exc:
        raise ProductError(f"{product}/{member}: unreadable ({exc}); download the product again") from exc


def measurement_uri(files: PolFiles) -> str:
    """A GDAL path to the measurement TIFF (``/vsizip/`` inside a zip)."""
    if files.measurement is None:
        raise ProductError(f"{files.product}: no measurement file for {files.polarisation}; download the product again")
    if files.is_zip:
        return f"/vsizip/{files.product.resolve()}/{files.measurement}"
    return str(files.product / files.measurement)


def parse_member(product: Path, member: str) -> Element:
    """Parse one XML file of the product safely."""
    return parse_xml(read_member(product, member), name=f"{product}/{member}")


def _text(root: Element, path: str, label: str) -> str:
    value = root.findtext(path)
    if value is None:
        raise ProductError(f"{label}: missing element {path}; the annotation is corrupt, download the product again")
    return value


def read_image_info(annotation: Element, label: str = "annotation") -> ImageInfo:
    """Image size, timing, pixel spacing and nominal number of looks (range × azimuth, mean over swaths)."""
    ii = "imageAnnotation/imageInformation/"
    looks_r = [
        float(v.text or "nan")
        for v in annotation.findall(
            "imageAnnotation/processingInformation/swathProcParamsList/swathProcParams/rangeProcessing/numberOfLooks"
        )
    ]
    looks_a = [
        float(v.text or "nan")
        for v in annotation.findall(
            "imageAnnotation/processingInformation/swathProcParamsList/swathProcParams/azimuthProcessing/numberOfLooks"
        )
    ]
    looks = float(np.mean(looks_r) * np.mean(looks_a)) if looks_r and looks_a else DEFAULT_LOOKS
    return ImageInfo(
        number_of_lines=int(_text(annotation, ii + "numberOfLines", label)),
        number_of_samples=int(_text(annotation, ii + "numberOfSamples", label)),
        first_line_time=np.datetime64(_text(annotation, ii + "productFirstLineUtcTime", label), "ns"),
        azimuth_time_interval_s=float(_text(annotation, ii + "azimuthTimeInterval", label)),
        range_pixel_spacing_m=float(_text(annotation, ii + "rangePixelSpacing", label)),
        number_of_looks=looks,
        projection=_text(annotation, "generalAnnotation/productInformation/projection", label),
    )


#: Nominal looks of IW GRDH (5 range × 1 azimuth, S1 Product Definition) when the annotation lacks them.
DEFAULT_LOOKS = 5.0


def read_geolocation_grid(annotation: Element) -> dict[str, np.ndarray]:
    """The annotation geolocation grid points as flat arrays: line, pixel, latitude, longitude, height."""
    points = annotation.findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
    if not points:
        raise ProductError("annotation: no geolocationGridPoint; the annotation is corrupt, download the product again")
    keys = ("line", "pixel", "latitude", "longitude", "height")
    out = {k: np.array([float(p.findtext(k) or "nan") for p in points]) for k in keys}
    return out


def _xs_input(product: Path, member: str) -> io.StringIO:
    # parse_member has already refused DTDs/entities for these bytes; xarray-sentinel re-parses them.
    return io.StringIO(read_member(product, member).decode("utf-8"))


def open_orbit(files: PolFiles) -> xr.Dataset:
    """Orbit state vectors (``position``, ``velocity`` over ``azimuth_time``) via xarray-sentinel."""
    import xarray_sentinel

    parse_member(files.product, files.annotation)
    return xarray_sentinel.sentinel1.open_orbit_dataset(_xs_input(files.product, files.annotation))


def open_coordinate_conversion(files: PolFiles) -> xr.Dataset:
    """Slant-range ↔ ground-range polynomials (``sr0``, ``srgrCoefficients``) via xarray-sentinel."""
    import xarray_sentinel

    parse_member(files.product, files.annotation)
    return xarray_sentinel.sentinel1.open_coordinate_conversion_dataset(
        _xs_input(files.product, files.annotation)  # type: ignore[arg-type]
    )


def open_sigma_lut(files: PolFiles) -> xr.DataArray:
    """The sigma-nought calibration LUT A_σ on its (line, pixel) grid via xarray-sentinel."""
    import xarray_sentinel

    parse_member(files.product, files.calibration)
    ds: Any = xarray_sentinel.sentinel1.open_calibration_dataset(
        _xs_input(files.product, files.calibration)  # type: ignore[arg-type]
    )
    return ds["sigmaNought"]
