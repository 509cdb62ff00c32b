"""Safe, uniform access to SAFE products stored as a ``.SAFE`` folder or as a ``.zip`` holding one.

The SAFE layout (ESA "Standard Archive Format for Europe", PSD S1-RS-MDA-52-7441 §2 and
S2-PDGS-TAS-DI-PSD §2) is a folder with a manifest and sub-folders; distributors ship it zipped
with the ``<name>.SAFE/`` folder as the only top-level entry. :func:`open_product` hides the
difference: members are addressed by their POSIX path relative to the ``.SAFE`` root, e.g.
``"MTD_MSIL2A.xml"`` or ``"measurement/s1a-iw-grd-vv-….tiff"``.

Rasters are handed to rasterio/GDAL by path: the folder path, or GDAL's virtual file system
``/vsizip/{zip}/{member}`` (https://gdal.org/user/virtual_file_systems.html#vsizip-zip-archives),
so only the windows a reader asks for are decompressed.

This is the one way the pipeline reads a SAFE product: the Sentinel-1 chain (:mod:`pipeline_lib.sar.product`),
the Sentinel-2 reader (:mod:`pipeline_lib.optical.l2a`), the local source and the download unpacker
(:mod:`pipeline_lib.fetch.http`, :meth:`ProductReader.extract`). A zip is opened once, when the reader is
made, and that handle serves every member read until :meth:`ProductReader.close` (or the end of a ``with``
block); GDAL opens its own ``/vsizip/`` handle for rasters.

Security (DESIGN §4, "zip-slip", "entity expansion off"): every member name is normalised and
refused if it is absolute or escapes the product (``..``); symlinks inside a zip are refused and
symlinks in a folder must resolve inside it; the total uncompressed size is capped
(``max_total_bytes``, default 16 GiB) and so is each member's compression ratio (zip bombs);
corrupt or truncated zips (``zipfile.BadZipFile``, CRC errors, broken deflate streams) raise
:class:`~pipeline_lib.errors.ProductError` naming the zip. XML goes through
:func:`pipeline_lib.xmlsafe.parse_xml` (DTDs and entities refused).
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import shutil
import stat
import threading
import zipfile
import zlib
from pathlib import Path
from types import TracebackType
from typing import BinaryIO
from xml.etree.ElementTree import Element

from pipeline_lib.errors import ProductError
from pipeline_lib.xmlsafe import parse_xml

__all__ = ["ProductReader", "open_product", "DEFAULT_MAX_TOTAL_BYTES", "DEFAULT_MAX_RATIO"]

DEFAULT_MAX_TOTAL_BYTES = 16 * 1024**3
DEFAULT_MAX_RATIO = 200.0
# Members smaller than this are exempt from the ratio check: small XML legitimately compresses 50x+.
RATIO_MIN_BYTES = 1024**2
_READ_CHUNK = 1024**2


def _normalise_member(name: str, product: str) -> str:
    """POSIX-normalised member name; ProductError if it is absolute or escapes the product root."""
    raw = name.replace("\\", "/")
    if raw.startswith("/") or (len(raw) >= 2 and raw[1] == ":") or "\x00" in raw:
        raise ProductError(
            f"{product}: member {name!r} has an absolute path; refusing the product (zip-slip), re-download it"
        )
    norm = posixpath.normpath(raw)
    if norm == ".." or norm.startswith("../"):
        raise ProductError(
            f"{product}: member {name!r} escapes the product folder (zip-slip); refusing the product, re-download it"
        )
    return "" if norm == "." else norm


def _zip_is_symlink(info: zipfile.ZipInfo) -> bool:
    return info.create_system == 3 and stat.S_ISLNK(info.external_attr >> 16)


class ProductReader:
    """Read members of one SAFE product (folder or zip). Build it with :func:`open_product`."""

    def __init__(
        self, path: Path, *, root: str, members: dict[str, int], archive: zipfile.ZipFile | None = None
    ) -> None:
        self.path = path
        self.is_zip = archive is not None
        self.root = root  # prefix inside the zip ("X.SAFE/") or "" ; "" for folders
        self._members = members  # normalised name relative to root -> uncompressed size
        self._archive = archive  # the zip, opened once by open_product
        self._lock = threading.Lock()  # one member stream at a time on the shared handle

    def __enter__(self) -> ProductReader:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the zip handle (nothing to do for a folder); later member reads fail."""
        if self._archive is not None:
            self._archive.close()

    @property
    def name(self) -> str:
        """The product name without ``.SAFE``/``.zip`` (from the zip's top folder when there is one)."""
        base = self.root.rstrip("/") if self.root else self.path.name
        for sfx in (".zip", ".SAFE", ".safe"):
            if base.endswith(sfx):
                base = base[: -len(sfx)]
        return base

    def __repr__(self) -> str:
        return f"ProductReader({str(self.path)!r}, is_zip={self.is_zip}, members={len(self._members)})"

    def members(self) -> list[str]:
        """All file members (no directories), relative to the ``.SAFE`` root, sorted."""
        return sorted(self._members)

    def total_size(self) -> int:
        """Sum of the members' uncompressed sizes in bytes."""
        return sum(self._members.values())

    def exists(self, member: str) -> bool:
        return _normalise_member(member, str(self.path)) in self._members

    def glob(self, pattern: str) -> list[str]:
        """Members matching an ``fnmatch`` pattern (``*`` also crosses ``/``), sorted."""
        return [m for m in self.members() if fnmatch.fnmatchcase(m, pattern)]

    def _check(self, member: str) -> str:
        norm = _normalise_member(member, str(self.path))
        if norm not in self._members:
            raise ProductError(
                f"{self.path}: member {member!r} not found in the product; the product is incomplete, re-download it"
            )
        return norm

    def read_bytes(self, member: str) -> bytes:
        """The member's bytes (CRC-checked for zips)."""
        norm = self._check(member)
        if self._archive is None:
            return (self.path / norm).read_bytes()
        try:
            with self._lock, self._archive.open(self.root + norm) as fh:
                return fh.read()
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise ProductError(
                f"{self.path}: member {norm} is corrupt ({type(exc).__name__}: {exc}); re-download the product"
            ) from exc

    def parse_xml(self, member: str) -> Element:
        """Parse an XML member safely (no DTD, no entities)."""
        return parse_xml(self.read_bytes(member), name=f"{self.path}:{member}")

    def gdal_path(self, member: str) -> str:
        """A path rasterio/GDAL opens: the file in the folder, or ``/vsizip/{zip}/{member}``."""
        norm = self._check(member)
        if self.is_zip:
            return f"/vsizip/{self.path.resolve()}/{self.root}{norm}"
        return str(self.path / norm)

    def verify(self) -> None:
        """Read every member once (zip: checks every CRC); ProductError on the first corrupt one."""
        for m in self.members():
            self._copy_member(m, None)

    def extract(self, folder: Path) -> None:
        """Write every member under ``folder`` (the ``.SAFE`` root's content), CRC-checked for zips.

        Names were checked when the product was opened (no absolute paths, no ``..``, no links), so nothing
        lands outside ``folder``; ``folder`` is created if needed.
        """
        for m in self.members():
            target = folder / m
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                self._copy_member(m, out)

    def _copy_member(self, member: str, out: BinaryIO | None) -> None:
        """Stream one member to ``out`` (None: read and drop, checking it)."""
        if self._archive is None:
            with open(self.path / member, "rb") as fh:
                if out is None:
                    while fh.read(_READ_CHUNK):
                        pass
                else:
                    shutil.copyfileobj(fh, out, _READ_CHUNK)
            return
        try:
            with self._lock, self._archive.open(self.root + member) as fh:
                while block := fh.read(_READ_CHUNK):
                    if out is not None:
                        out.write(block)
        except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
            raise ProductError(
                f"{self.path}: corrupt zip ({type(exc).__name__}: {exc}); re-download the product"
            ) from exc


def _zip_root(names: list[str]) -> str:
    """``"X.SAFE/"`` when every member lies under one top-level ``*.SAFE`` folder, else ``""``."""
    tops = {n.split("/", 1)[0] for n in names if n}
    if len(tops) == 1:
        top = next(iter(tops))
        if top.upper().endswith(".SAFE") and all("/" in n or n == top for n in names):
            return top + "/"
    return ""


def _open_zip(path: Path, max_total_bytes: int, max_ratio: float) -> ProductReader:
    label = str(path)
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError) as exc:
        raise ProductError(
            f"{label}: not a readable zip ({type(exc).__name__}: {exc}); the file is corrupt or truncated, re-download it"
        ) from exc
    try:
        return _check_zip(zf, path, max_total_bytes, max_ratio)
    except BaseException:
        zf.close()
        raise


def _check_zip(zf: zipfile.ZipFile, path: Path, max_total_bytes: int, max_ratio: float) -> ProductReader:
    label = str(path)
    infos = zf.infolist()
    total = 0
    files: list[tuple[str, int]] = []
    for info in infos:
        norm = _normalise_member(info.filename, label)
        if _zip_is_symlink(info):
            raise ProductError(
                f"{label}: member {info.filename!r} is a symbolic link; refusing the product, re-download it"
            )
        if info.is_dir():
            continue
        total += info.file_size
        if total > max_total_bytes:
            raise ProductError(
                f"{label}: uncompressed size exceeds {max_total_bytes} bytes (zip bomb?); refusing it, or raise max_total_bytes"
            )
        if info.file_size >= RATIO_MIN_BYTES and info.file_size > max_ratio * max(info.compress_size, 1):
            raise ProductError(
                f"{label}: member {info.filename!r} expands {info.file_size / max(info.compress_size, 1):.0f}x "
                f"(limit {max_ratio:g}x, zip bomb?); refusing it, or raise max_ratio"
            )
        files.append((norm, info.file_size))
    root = _zip_root([n for n, _ in files])
    members = {n[len(root) :]: size for n, size in files if n[len(root) :]}
    return ProductReader(path, root=root, members=members, archive=zf)


def _open_folder(path: Path, max_total_bytes: int) -> ProductReader:
    label = str(path)
    real_root = path.resolve()
    members: dict[str, int] = {}
    total = 0
    for dirpath, dirnames, filenames in os.walk(path, followlinks=False):
        here = Path(dirpath)
        for d in list(dirnames):
            p = here / d
            if p.is_symlink():
                target = p.resolve()
                if not target.is_relative_to(real_root):
                    raise ProductError(
                        f"{label}: folder link {p.relative_to(path)} points outside the product ({target}); remove it"
                    )
                dirnames.remove(d)  # its files are reachable under their real path already
        for f in filenames:
            p = here / f
            target = p.resolve()
            if not target.is_relative_to(real_root):
                raise ProductError(
                    f"{label}: link {p.relative_to(path)} points outside the product ({target}); remove it"
                )
            if not target.is_file():
                continue
            rel = p.relative_to(path).as_posix()
            size = target.stat().st_size
            total += size
            if total > max_total_bytes:
                raise ProductError(
                    f"{label}: total size exceeds {max_total_bytes} bytes; refusing it, or raise max_total_bytes"
                )
            members[rel] = size
    return ProductReader(path, root="", members=members)


def open_product(
    path: str | os.PathLike[str],
    *,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
    max_ratio: float = DEFAULT_MAX_RATIO,
) -> ProductReader:
    """Open a ``.SAFE`` folder or a ``.zip`` holding one, after the security checks of the module docstring.

    A zip stays open for the reader's member reads: use the reader in a ``with`` block or call ``close()``.
    """
    p = Path(path)
    if p.is_dir():
        return _open_folder(p, max_total_bytes)
    if p.is_file():
        return _open_zip(p, max_total_bytes, max_ratio)
    raise ProductError(f"{p}: product not found (neither a .SAFE folder nor a .zip); check the path or re-download it")
