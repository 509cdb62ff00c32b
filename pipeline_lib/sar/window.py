"""The GRD window a grid needs, from a range-Doppler lookup of the grid at the heights the chain uses.

Governing spec: "Guide to Sentinel-1 Geocoding" UZH-S1-GC-AD 1.10 (backward geocoding: zero-Doppler
azimuth time and slant range of a ground point from the orbit) and S1-RS-MDA-52-7441 (annotation
``orbitList``, ``coordinateConversion`` slant→ground-range polynomials, ``imageInformation`` timing).

Why not the annotation ``geolocationGrid``: its points sit at the *terrain* heights of ESA's processor
(up to ≈ 1800 m in the Apennines), while terrain correction looks the grid up at the WGS84 ellipsoid or
at the DEM's heights. A height difference Δh moves a point by about Δh / tan θ on the ground (θ the
incidence angle), i.e. up to ≈ 300 GRD pixels at near range, so a window from the geolocation grid plus
a fixed margin can miss part of the data (:func:`pipeline_lib.sar.calibration.find_window`).

:func:`grid_window` looks up points on the grid's outline and a coarse interior lattice at the lowest
and highest height used (one height, h = 0, without a DEM). The map → (line, pixel) mapping at a fixed
height is smooth and nearly affine over a grid, and the GRD pixel moves monotonically with height, so
the extremes of these points bound the lookup of every grid pixel at every height in between; the
margin covers the resampling footprint and the lookup's lattice interpolation.

The solver is a plain Newton iteration on the zero-Doppler condition (P − S(t))·V(t) = 0 with the
orbit state vectors fitted by a polynomial in time (as sarsen's ``OrbitPolyfitInterpolator``), written
in numpy so that calibration does not import sarsen (start-up time); ``tests/test_20_sar_window.py``
checks it against :class:`pipeline_lib.sar.terrain.Geocoder` (sarsen).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from xml.etree.ElementTree import Element

import numpy as np
from numpy.polynomial import polynomial as P
from pyproj import Transformer

from pipeline_lib.errors import CoverageError, ProductError
from pipeline_lib.grid import Grid
from pipeline_lib.sar.product import ImageInfo

__all__ = ["window_around", "RangeDoppler", "lonlat_h_to_ecef", "outline_points", "height_range", "grid_window"]

#: WGS84 semi-major axis (m) and flattening
WGS84_A = 6378137.0
WGS84_F = 1.0 / 298.257223563
#: polynomial degree of the orbit fit (sarsen's default)
ORBIT_DEG = 5


def lonlat_h_to_ecef(lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> np.ndarray:
    """ECEF (EPSG:4978) coordinates, shape (..., 3), of WGS84 longitude, latitude (degrees) and ellipsoidal height (m)."""
    lam = np.radians(np.asarray(lon, dtype=np.float64))
    phi = np.radians(np.asarray(lat, dtype=np.float64))
    e2 = WGS84_F * (2.0 - WGS84_F)
    n = WGS84_A / np.sqrt(1.0 - e2 * np.sin(phi) ** 2)
    hh = np.asarray(h, dtype=np.float64)
    x = (n + hh) * np.cos(phi) * np.cos(lam)
    y = (n + hh) * np.cos(phi) * np.sin(lam)
    z = (n * (1.0 - e2) + hh) * np.sin(phi)
    return np.stack(np.broadcast_arrays(x, y, z), axis=-1)


@dataclass(frozen=True)
class RangeDoppler:
    """Zero-Doppler backward geocoding of ECEF points to GRD (line, pixel) for one product."""

    epoch: np.datetime64  # datetime64[ns], time origin of the fits
    scale_s: float  # seconds per unit of the fit's time variable
    orbit_coef: np.ndarray  # (deg + 1, 3) position polynomial in (t − epoch) / scale_s
    first_line_s: float  # first line time, s after epoch
    line_interval_s: float
    srgr_s: np.ndarray  # (n,) time of each SRGR polynomial, s after epoch
    srgr_sr0: np.ndarray  # (n,) m
    srgr_coef: np.ndarray  # (n, degree + 1)
    pixel_spacing_m: float

    @classmethod
    def from_annotation(cls, annotation: Element, info: ImageInfo, label: str = "annotation") -> RangeDoppler:
        """From the annotation's ``orbitList`` and ``coordinateConversionList`` (parsed here: no xmlschema pass)."""
        orbits = annotation.findall("generalAnnotation/orbitList/orbit")
        conversions = annotation.findall("coordinateConversion/coordinateConversionList/coordinateConversion")
        if len(orbits) < 2 or not conversions:
            raise ProductError(
                f"{label}: no orbitList or coordinateConversionList; the annotation is corrupt, download the product again"
            )
        times = np.array([np.datetime64(o.findtext("time", ""), "ns") for o in orbits])
        pos = np.array([[float(o.findtext(f"position/{k}") or "nan") for k in "xyz"] for o in orbits])
        epoch = times[0] + (times[-1] - times[0]) // 2
        t = (times - epoch).astype(np.float64) / 1e9
        scale = max(float(np.abs(t).max()), 1.0)
        cc_t = np.array(
            [(np.datetime64(c.findtext("azimuthTime", ""), "ns") - epoch).astype(np.float64) / 1e9 for c in conversions]
        )
        coef = [np.array((c.findtext("srgrCoefficients") or "").split(), dtype=np.float64) for c in conversions]
        if not np.all(np.isfinite(pos)) or len({c.size for c in coef}) != 1 or coef[0].size == 0:
            raise ProductError(f"{label}: unreadable orbit or SRGR coefficients; download the product again")
        order = np.argsort(cc_t)
        return cls(
            epoch=epoch,
            scale_s=scale,
            orbit_coef=P.polyfit(t / scale, pos, min(ORBIT_DEG, t.size - 1)),
            first_line_s=float((info.first_line_time - epoch).astype(np.float64) / 1e9),
            line_interval_s=float(info.azimuth_time_interval_s),
            srgr_s=cc_t[order],
            srgr_sr0=np.array([float(c.findtext("sr0") or "nan") for c in conversions])[order],
            srgr_coef=np.stack(coef)[order],
            pixel_spacing_m=float(info.range_pixel_spacing_m),
        )

    def _state(self, t: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = t / self.scale_s
        d1 = P.polyder(self.orbit_coef, 1) / self.scale_s
        d2 = P.polyder(self.orbit_coef, 2) / self.scale_s**2
        return P.polyval(u, self.orbit_coef).T, P.polyval(u, d1).T, P.polyval(u, d2).T

    def zero_doppler(self, ecef: np.ndarray, iterations: int = 12) -> tuple[np.ndarray, np.ndarray]:
        """(zero-Doppler time in s after ``epoch``, slant range in m) of ECEF points (n, 3)."""
        pts = np.asarray(ecef, dtype=np.float64).reshape(-1, 3)
        t = np.zeros(pts.shape[0])
        for _ in range(iterations):
            s, v, a = self._state(t)
            d = pts - s
            f = np.einsum("ij,ij->i", d, v)
            df = np.einsum("ij,ij->i", d, a) - np.einsum("ij,ij->i", v, v)
            step = f / df
            t = t - step
            if np.abs(step).max() < 1e-9:
                break
        s, _, _ = self._state(t)
        return t, np.linalg.norm(pts - s, axis=1)

    def line_pixel(self, ecef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """GRD (line, pixel) of ECEF points (n, 3); SRGR polynomials interpolated linearly in time, clamped at the ends."""
        t, sr = self.zero_doppler(ecef)
        line = (t - self.first_line_s) / self.line_interval_s
        if self.srgr_s.size == 1:
            sr0 = np.full_like(t, self.srgr_sr0[0])
            coef = np.broadcast_to(self.srgr_coef[0], (t.size, self.srgr_coef.shape[1]))
        else:
            sr0 = np.interp(t, self.srgr_s, self.srgr_sr0)
            coef = np.stack([np.interp(t, self.srgr_s, c) for c in self.srgr_coef.T], axis=1)
        x = sr - sr0
        ground = np.zeros_like(x)
        for d in range(coef.shape[1] - 1, -1, -1):  # Horner
            ground = ground * x + coef[:, d]
        return line, ground / self.pixel_spacing_m


def outline_points(grid: Grid, n_edge: int = 33, n_inner: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """(lon, lat) of ``n_edge`` pixel centres along each edge of ``grid`` and an ``n_inner``² interior lattice."""
    rows = np.linspace(0, grid.height - 1, n_edge)
    cols = np.linspace(0, grid.width - 1, n_edge)
    r = np.concatenate([np.zeros_like(cols), rows, np.full_like(cols, grid.height - 1), rows])
    c = np.concatenate([cols, np.full_like(rows, grid.width - 1), cols, np.zeros_like(rows)])
    ri, ci = np.meshgrid(np.linspace(0, grid.height - 1, n_inner), np.linspace(0, grid.width - 1, n_inner))
    r = np.concatenate([r, ri.ravel()])
    c = np.concatenate([c, ci.ravel()])
    t = grid.transform
    x = t.a * (c + 0.5) + t.b * (r + 0.5) + t.c
    y = t.d * (c + 0.5) + t.e * (r + 0.5) + t.f
    lon, lat = Transformer.from_crs(grid.crs, "EPSG:4326", always_xy=True).transform(x, y)
    return np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)


def height_range(dem: Path | None, grid: Grid) -> tuple[float, float]:
    """Lowest and highest ellipsoidal height terrain correction uses on ``grid``: (0, 0) without a DEM.

    With a DEM, the span of the height levels of :func:`pipeline_lib.sar.heights.height_levels` (the
    DEM's range over the grid, EGM96 → ellipsoid, padded by 10 % + 10 m) at the default lattice step.
    """
    if dem is None:
        return 0.0, 0.0
    from pipeline_lib.sar.heights import LEVEL_SPACING_M, LOOKUP_STEP, height_levels  # DEM jobs only

    levels, _ = height_levels(Path(dem), grid, LOOKUP_STEP, LEVEL_SPACING_M)
    return float(levels[0]), float(levels[-1])


def window_around(
    line: np.ndarray, pixel: np.ndarray, shape: tuple[int, int], margin_px: int, product: str = "product"
) -> tuple[slice, slice]:
    """(line slice, pixel slice) holding every (line, pixel) position plus ``margin_px``, clipped to ``shape``.

    CoverageError naming ``product`` if nothing of the image is left.
    """
    n_lines, n_samples = shape
    l0 = int(np.clip(np.floor(line.min()) - margin_px, 0, n_lines))
    l1 = int(np.clip(np.ceil(line.max()) + margin_px + 1, 0, n_lines))
    p0 = int(np.clip(np.floor(pixel.min()) - margin_px, 0, n_samples))
    p1 = int(np.clip(np.ceil(pixel.max()) + margin_px + 1, 0, n_samples))
    if l1 <= l0 or p1 <= p0:
        raise CoverageError(
            f"{product}: the grid falls outside the image lines/samples; choose a product over the region"
        )
    return slice(l0, l1), slice(p0, p1)


def grid_window(
    rd: RangeDoppler,
    grid: Grid,
    shape: tuple[int, int],
    margin_px: int,
    heights: tuple[float, float] = (0.0, 0.0),
    product: str = "product",
) -> tuple[slice, slice]:
    """(line slice, pixel slice) of the GRD that the lookup of ``grid`` at ``heights`` touches, plus ``margin_px``.

    Clipped to the image; CoverageError if nothing of the image is left.
    """
    lon, lat = outline_points(grid)
    hs = sorted({float(heights[0]), float(heights[1])})
    ecef = np.concatenate([lonlat_h_to_ecef(lon, lat, np.full(lon.shape, h)) for h in hs])
    line, pixel = rd.line_pixel(ecef)
    if not (np.all(np.isfinite(line)) and np.all(np.isfinite(pixel))):
        raise CoverageError(f"{product}: the range-Doppler lookup of the grid failed; choose a product over the region")
    return window_around(line, pixel, shape, margin_px, product)
