"""Chunked I/O for the (polarisation, line, pixel) σ0 NetCDF files of the native Sentinel-1 chain.

The files are NetCDF-4 (HDF5) written with netCDF4-python variable by variable, row band by row band
(https://unidata.github.io/netcdf4-python/, "Efficient compression of netCDF variables" and chunking),
so no step holds a whole scene: peak memory is set by the band height, not by the scene. The layout is
the one xarray writes (``polarisation`` vlen-string coordinate, int64 ``line``/``pixel`` coordinates with
full-product indices, float32 ``sigma0`` with NaN fill), so ``xarray.open_dataset`` reads them unchanged.
Calibrated files also hold ``sigma0_key_histogram`` (polarisation, key_bin): pass 1 of Lee sigma's exact
Z98, made while the bands were written (:mod:`pipeline_lib.sar.quantile`).

Chunking: ``(1, CHUNK_LINES, CHUNK_PIXELS)`` = (1, 256, 1024): row bands write whole chunks and a
terrain-correction tile reads only the chunks of its GRD window. Compression is off by default: on
speckled σ0 zlib writes an order of magnitude slower than uncompressed output for about 20 % of disk
(BENCHMARKS.md, "σ0 NetCDF compression"). ``complevel`` > 0 turns zlib + shuffle on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import netCDF4
import numpy as np

from pipeline_lib.errors import ProductError
from pipeline_lib.io import atomic_path

__all__ = [
    "CHUNK_LINES",
    "CHUNK_PIXELS",
    "KEY_HISTOGRAM",
    "Sigma0File",
    "row_bands",
    "open_sigma0",
    "create_sigma0",
    "write_key_histograms",
]

CHUNK_LINES = 256
CHUNK_PIXELS = 1024

#: variable of the calibrated file holding each polarisation's Z98 key histogram
KEY_HISTOGRAM = "sigma0_key_histogram"


def row_bands(n: int, size: int) -> list[tuple[int, int]]:
    """[start, stop) row bands of at most ``size`` rows covering ``range(n)``."""
    if size <= 0:
        raise ValueError(f"row_bands: band size {size} must be positive")
    return [(a, min(a + size, n)) for a in range(0, n, size)]


@dataclass(frozen=True)
class Sigma0File:
    """An open σ0 NetCDF: the netCDF4 dataset plus its coordinates and attributes (read lazily by band)."""

    ds: netCDF4.Dataset
    path: Path
    polarisations: tuple[str, ...]
    lines: np.ndarray  # full-product line index of every stored row
    pixels: np.ndarray  # full-product pixel index of every stored column
    attrs: dict[str, Any]
    var_attrs: dict[str, Any]

    @property
    def line0(self) -> int:
        return int(self.lines[0])

    @property
    def pixel0(self) -> int:
        return int(self.pixels[0])

    @property
    def shape(self) -> tuple[int, int]:
        """(lines, pixels) of the stored window."""
        return (int(self.lines.size), int(self.pixels.size))

    def key_histogram(self, pol_index: int) -> np.ndarray | None:
        """Pass 1 of the exact Z98 of one polarisation, as calibration stored it (:mod:`pipeline_lib.sar.quantile`);
        None if the file has none (written by another tool, or filtered)."""
        if KEY_HISTOGRAM not in self.ds.variables:
            return None
        return np.asarray(self.ds[KEY_HISTOGRAM][pol_index, :], dtype=np.int64)

    def read(self, pol_index: int, rows: slice, cols: slice | None = None) -> np.ndarray:
        """float32 σ0 of one polarisation on window-relative ``rows`` × ``cols`` (NaN = no data)."""
        var = self.ds["sigma0"]
        data = var[pol_index, rows, cols if cols is not None else slice(None)]
        return np.ma.filled(np.ma.asarray(data, dtype=np.float32), np.nan)

    def read_all(self, rows: slice, cols: slice) -> np.ndarray:
        """float32 σ0 of every polarisation on window-relative ``rows`` × ``cols``, (polarisation, rows, cols) in
        one C-contiguous array read in one call (NaN = no data)."""
        data = self.ds["sigma0"][:, rows, cols]
        return np.ascontiguousarray(np.ma.filled(np.ma.asarray(data, dtype=np.float32), np.nan))


@contextlib.contextmanager
def open_sigma0(path: Path) -> Iterator[Sigma0File]:
    """Open a calibrated/filtered σ0 NetCDF for band-wise reading; ProductError if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise ProductError(f"{path}: σ0 NetCDF not found; run the rule that writes it")
    try:
        ds = netCDF4.Dataset(path, "r")
    except OSError as exc:
        raise ProductError(f"{path}: unreadable NetCDF ({exc}); delete it and rerun its rule") from exc
    try:
        ds.set_auto_mask(False)
        if "sigma0" not in ds.variables or ds["sigma0"].dimensions != ("polarisation", "line", "pixel"):
            raise ProductError(f"{path}: no sigma0(polarisation, line, pixel) variable; delete it and rerun its rule")
        lines = np.asarray(ds["line"][:], dtype=np.int64)
        pixels = np.asarray(ds["pixel"][:], dtype=np.int64)
        if lines.size == 0 or pixels.size == 0:
            raise ProductError(f"{path}: empty σ0 window; delete it and rerun its rule")
        yield Sigma0File(
            ds=ds,
            path=path,
            polarisations=tuple(str(p) for p in ds["polarisation"][:]),
            lines=lines,
            pixels=pixels,
            attrs={k: ds.getncattr(k) for k in ds.ncattrs()},
            var_attrs={k: ds["sigma0"].getncattr(k) for k in ds["sigma0"].ncattrs() if k != "_FillValue"},
        )
    finally:
        ds.close()


@contextlib.contextmanager
def create_sigma0(
    out_nc: Path,
    polarisations: Sequence[str],
    lines: np.ndarray,
    pixels: np.ndarray,
    attrs: Mapping[str, Any],
    var_attrs: Mapping[str, Any],
    complevel: int = 0,
) -> Iterator[netCDF4.Variable[Any]]:
    """Create the σ0 NetCDF atomically and yield its ``sigma0`` variable to be filled band by band."""
    with atomic_path(out_nc, suffix=".nc") as tmp:
        ds = netCDF4.Dataset(tmp, "w", format="NETCDF4")
        try:
            ds.createDimension("polarisation", len(polarisations))
            ds.createDimension("line", len(lines))
            ds.createDimension("pixel", len(pixels))
            pol = ds.createVariable("polarisation", str, ("polarisation",))
            for k, p in enumerate(polarisations):
                pol[k] = str(p)
            for name, values in (("line", lines), ("pixel", pixels)):
                v = ds.createVariable(name, "i8", (name,))
                v[:] = np.asarray(values, dtype=np.int64)
                v.long_name = f"GRD {name} index in the full product"
            chunks = (1, max(1, min(CHUNK_LINES, len(lines))), max(1, min(CHUNK_PIXELS, len(pixels))))
            comp: dict[str, Any] = {"zlib": True, "complevel": complevel, "shuffle": True} if complevel > 0 else {}
            var = ds.createVariable(
                "sigma0",
                "f4",
                ("polarisation", "line", "pixel"),
                chunksizes=chunks,
                fill_value=np.float32(np.nan),
                **comp,
            )
            var.set_auto_mask(False)
            for name, value in var_attrs.items():
                var.setncattr(name, value)
            for name, value in attrs.items():
                ds.setncattr(name, value)
            yield var
        finally:
            ds.close()


def write_key_histograms(var: netCDF4.Variable[Any], histograms: np.ndarray) -> None:
    """Store each polarisation's Z98 key histogram (polarisation, key bin) beside ``sigma0`` in its open file."""
    ds = var.group()
    ds.createDimension("key_bin", histograms.shape[1])
    hist = ds.createVariable(KEY_HISTOGRAM, "i8", ("polarisation", "key_bin"), zlib=True, complevel=1)
    hist.long_name = "counts of finite sigma0 by the top 16 bits of their order-preserving float32 key"
    hist.comment = "pass 1 of the exact Z98 radix select (pipeline_lib.sar.quantile)"
    hist[:] = histograms
