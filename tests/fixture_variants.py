"""Variants of the real SAFE fixtures in ``tests/data/fixtures`` for the issue-13 tests (fixes, fuzzer, matrix).

The fixture files are never edited: :func:`clone` copies every small file (XML, manifests) and hard-links
the large rasters (copying when linking fails), so a test may rewrite any XML of its clone. Tests must
not write into a cloned raster (it may share its inode with the fixture).
"""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
S1_SAFE = FIXTURES / "s1-grd-sarsen" / "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371.SAFE"
S1_ZIP = FIXTURES / "s1-grd-pyrosar" / "S1A_IW_GRDH_1SDV_20210119T031653_20210119T031718_036201_043ED0_8255.zip"
S1_ZIP_2015 = FIXTURES / "s1-grd-pyrosar" / "S1A_IW_GRDH_1SDV_20150222T170725_20150222T170750_004739_005DD8_CEAB.zip"
S2_SAFE = FIXTURES / "s2-l2a-stactools" / "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
L1C_ZIP = FIXTURES / "s2-l1c-eodatasets" / "S2A_MSIL1C_20180629T000241_N0206_R030_T56JMM_20180629T012042.zip"
CDSE_MANIFESTS = FIXTURES / "cdse-odata" / "download" / "mock"

#: AOIs inside each fixture's footprint and the fixture's acquisition date
S1_SAFE_AOI, S1_SAFE_DATE = (12.45, 41.95, 12.55, 42.05), "2021-12-23"
S1_ZIP_AOI, S1_ZIP_DATE = (33.0, -18.5, 33.5, -18.0), "2021-01-19"
S2_AOI, S2_DATE = (-8.5, 52.5, -8.4, 52.6), "2022-10-05"
L1C_AOI, L1C_DATE = (152.5, -30.5, 152.6, -30.4), "2018-06-29"

_SMALL = 256 * 1024


def clone(src: Path, dest: Path, *, name: str | None = None, skip: Callable[[str], bool] | None = None) -> Path:
    """Clone the fixture folder ``src`` to ``dest/<name or src.name>``: small files copied, large ones hard-linked."""
    out = dest / (name or src.name)
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src).as_posix()
        if skip is not None and skip(rel):
            continue
        target = out / rel
        if f.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        if f.stat().st_size > _SMALL:
            try:
                os.link(f, target)
                continue
            except OSError:
                pass
        shutil.copyfile(f, target)
    out.mkdir(parents=True, exist_ok=True)
    return out


def edit(path: Path, fn: Callable[[str], str]) -> None:
    """Rewrite a text file of a clone through ``fn`` (as a new file: never through a link to the fixture)."""
    text = path.read_text(encoding="utf-8")
    path.unlink()  # break a hard link to the fixture before writing
    path.write_text(fn(text), encoding="utf-8")


def one(product: Path, pattern: str) -> Path:
    hits = sorted(
        p for p in product.rglob("*") if p.is_file() and re.search(pattern, p.relative_to(product).as_posix())
    )
    assert hits, (product, pattern)
    return hits[0]


def rezip(
    src_zip: Path,
    dest: Path,
    *,
    name: str | None = None,
    members: Callable[[str], bool] | None = None,
    replace: dict[str, bytes] | None = None,
) -> Path:
    """Rewrite a product zip (optionally renamed, members filtered or replaced), deflated like the originals."""
    out = dest / (name or src_zip.name)
    old_root = src_zip.stem + ".SAFE/"
    new_root = out.stem + ".SAFE/"
    with zipfile.ZipFile(src_zip) as zin, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if members is not None and not members(info.filename):
                continue
            data = (replace or {}).get(info.filename)
            if data is None and not info.is_dir():
                data = zin.read(info.filename)
            new_name = info.filename.replace(old_root, new_root, 1)
            if info.is_dir():
                zout.writestr(new_name if new_name.endswith("/") else new_name + "/", b"")
            else:
                zout.writestr(new_name, data or b"")
    return out


def zero_noise(text: str) -> str:
    """Every ``noiseRangeLut`` / ``noiseLut`` value set to 0 (as in early-mission products)."""
    return re.sub(
        r"(<noise(?:Range)?Lut[^>]*>)([^<]*)(</noise(?:Range)?Lut>)",
        lambda m: m.group(1) + " ".join("0.000000e+00" for _ in m.group(2).split()) + m.group(3),
        text,
    )


def names(paths: Iterable[Path]) -> list[str]:
    return sorted(p.name for p in paths)
