"""Locate and read the parts of a Sentinel-1 GRD SAFE product (folder or zip) the native chain needs.

Governing specs: "Sentinel-1 Product Specification" S1-RS-MDA-52-7441 (SAFE layout, annotation
``imageInformation``, ``geolocationGrid``, ``processingInformation``), and the xarray-sentinel readers
(``open_orbit_dataset``, ``open_coordinate_conversion_dataset``, ``open_calibration_dataset``) used for
the orbit state vectors, the slant-to-ground-range polynomials and the calibration LUTs.
Every file is read through the one SAFE access layer, :class:`pipeline_lib.safe.ProductReader` (path
escapes, links and zip bombs refused; a zip opened once for all members); XML is first parsed with
:func:`pipeline_lib.xmlsafe.parse_xml` (DTD/entities refused) before xarray-sentinel sees the same bytes.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from xml.etree.ElementTree import Element

import numpy as np

from pipeline_lib.errors import ProductError
from pipeline_lib.guard import corrupt_metadata
from pipeline_lib.safe import ProductReader
from pipeline_lib.xmlsafe import parse_xml

if TYPE_CHECKING:  # xarray and xarray-sentinel are imported on use: the calibrate job needs neither
    import xarray as xr

__all__ = [
    "ImageInfo",
    "PolFiles",
    "find_pol_files",
    "DEFAULT_LOOKS",
    "measurement_uri",
    "read_image_info",
    "read_geolocation_grid",
    "open_orbit",
    "open_coordinate_conversion",
    "open_calibration",
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
    """Where one polarisation's files live: members relative to the product root, and the reader to read them."""

    reader: ProductReader
    polarisation: str
    annotation: str
    calibration: str
    noise: str
    measurement: str | None

    @property
    def product(self) -> Path:
        """The product's path (for messages)."""
        return self.reader.path


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


def find_pol_files(reader: ProductReader, polarisation: str, *, need_measurement: bool = True) -> PolFiles:
    """Find the annotation, calibration, noise and measurement files of ``polarisation`` (e.g. "VV")."""
    members = reader.members()
    product = reader.path
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
        reader=reader,
        polarisation=polarisation.upper(),
        annotation=str(found["annotation"]),
        calibration=str(found["calibration"]),
        noise=str(found["noise"]),
        measurement=found["measurement"],
    )


def measurement_uri(files: PolFiles) -> str:
    """A GDAL path to the measurement TIFF (``/vsizip/`` inside a zip)."""
    if files.measurement is None:
        raise ProductError(f"{files.product}: no measurement file for {files.polarisation}; download the product again")
    return files.reader.gdal_path(files.measurement)


def _text(root: Element, path: str, label: str) -> str:
    value = root.findtext(path)
    if value is None:
        raise ProductError(f"{label}: missing element {path}; the annotation is corrupt, download the product again")
    return value


def read_image_info(annotation: Element, label: str = "annotation") -> ImageInfo:
    """Image size, timing, pixel spacing and nominal number of looks (range × azimuth, mean over swaths)."""
    with corrupt_metadata(label):
        info = _read_image_info(annotation, label)
    if info.number_of_lines <= 0 or info.number_of_samples <= 0:
        raise ProductError(
            f"{label}: image size {info.number_of_lines}×{info.number_of_samples} is not positive; the product is corrupt, re-download it"
        )
    return info


def _read_image_info(annotation: Element, label: str) -> ImageInfo:
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


def read_geolocation_grid(annotation: Element, label: str = "annotation") -> dict[str, np.ndarray]:
    """The annotation geolocation grid points as flat arrays: line, pixel, latitude, longitude, height."""
    points = annotation.findall("geolocationGrid/geolocationGridPointList/geolocationGridPoint")
    if not points:
        raise ProductError(f"{label}: no geolocationGridPoint; the annotation is corrupt, download the product again")
    keys = ("line", "pixel", "latitude", "longitude", "height")
    with corrupt_metadata(label):
        out = {k: np.array([float(p.findtext(k) or "nan") for p in points]) for k in keys}
    if not all(np.isfinite(out[k]).sum() >= 3 for k in ("line", "pixel", "latitude", "longitude")):
        raise ProductError(
            f"{label}: fewer than 3 valid geolocation grid points; the annotation is corrupt, download the product again"
        )
    return out


def _xs_input(reader: ProductReader, member: str) -> io.StringIO:
    """The member's text for xarray-sentinel, once :func:`parse_xml` has refused DTDs/entities in the same bytes."""
    data = reader.read_bytes(member)
    parse_xml(data, name=f"{reader.path}/{member}")
    return io.StringIO(data.decode("utf-8"))


def open_orbit(files: PolFiles) -> xr.Dataset:
    """Orbit state vectors (``position``, ``velocity`` over ``azimuth_time``) via xarray-sentinel."""
    import xarray_sentinel

    files.reader.parse_xml(files.annotation)
    with corrupt_metadata(f"{files.product}/{files.annotation}", catch=(Exception,)):
        return xarray_sentinel.sentinel1.open_orbit_dataset(_xs_input(files.reader, files.annotation)).load()


def open_coordinate_conversion(files: PolFiles) -> xr.Dataset:
    """Slant-range ↔ ground-range polynomials (``sr0``, ``srgrCoefficients``) via xarray-sentinel."""
    import xarray_sentinel

    files.reader.parse_xml(files.annotation)
    with corrupt_metadata(f"{files.product}/{files.annotation}", catch=(Exception,)):
        return xarray_sentinel.sentinel1.open_coordinate_conversion_dataset(
            _xs_input(files.reader, files.annotation)  # type: ignore[arg-type]
        ).load()


def open_calibration(files: PolFiles) -> xr.Dataset:
    """The calibration LUTs (``sigmaNought``, ``betaNought``, ``gamma``, ``dn``) on their (line, pixel) grid."""
    import xarray_sentinel

    files.reader.parse_xml(files.calibration)
    with corrupt_metadata(f"{files.product}/{files.calibration}", catch=(Exception,)):
        ds: Any = xarray_sentinel.sentinel1.open_calibration_dataset(
            _xs_input(files.reader, files.calibration)  # type: ignore[arg-type]
        )
        return ds.load()  # type: ignore[no-any-return]


def open_sigma_lut(files: PolFiles) -> xr.DataArray:
    """The sigma-nought calibration LUT A_σ on its (line, pixel) grid via xarray-sentinel."""
    return open_calibration(files)["sigmaNought"]
