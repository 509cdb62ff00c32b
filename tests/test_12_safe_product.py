"""pipeline_lib.safe: SAFE folders and zips, and the zip-slip / zip-bomb / corrupt-zip refusals."""

from __future__ import annotations

import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest
import rasterio

from pipeline_lib.errors import ProductError
from pipeline_lib.safe import open_product

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
S2_SAFE = FIXTURES / "s2-l2a-stactools" / "S2A_MSIL2A_20221005T115411_N0400_R023_T29UNU_20221005T164454.SAFE"
S1_ZIP = FIXTURES / "s1-grd-pyrosar" / "S1A_IW_GRDH_1SDV_20210119T031653_20210119T031718_036201_043ED0_8255.zip"
SCL = "GRANULE/L2A_T29UNU_A038058_20221005T115407/IMG_DATA/R20m/T29UNU_20221005T115411_SCL_20m.jp2"


def _zip_safe(src: Path, dest: Path, members: list[str]) -> Path:
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for m in members:
            zf.write(src / m, f"{src.name}/{m}")
    return dest


def test_folder_members_xml_and_gdal_path() -> None:
    r = open_product(S2_SAFE)
    assert not r.is_zip and r.name == S2_SAFE.name[:-5]
    assert "MTD_MSIL2A.xml" in r.members() and SCL in r.members()
    assert r.glob("GRANULE/*/IMG_DATA/R60m/*_B04_60m.jp2") == [m for m in r.members() if m.endswith("_B04_60m.jp2")]
    assert r.parse_xml("MTD_MSIL2A.xml").find(".//PROCESSING_BASELINE").text == "04.00"  # type: ignore[union-attr]
    with rasterio.open(r.gdal_path(SCL)) as ds:
        assert ds.shape == (5490, 5490)
    with pytest.raises(ProductError, match="not found"):
        r.read_bytes("GRANULE/nothing.xml")


def test_real_s1_zip_root_and_vsizip() -> None:
    r = open_product(S1_ZIP)
    assert r.is_zip and r.root == S1_ZIP.stem + ".SAFE/" and r.name == S1_ZIP.stem
    assert "manifest.safe" in r.members()
    assert not any(m.endswith("/") for m in r.members())  # directories are not members
    assert r.read_bytes("manifest.safe") == zipfile.ZipFile(S1_ZIP).read(r.root + "manifest.safe")
    assert r.gdal_path("manifest.safe") == f"/vsizip/{S1_ZIP.resolve()}/{r.root}manifest.safe"
    r.verify()


def test_zip_jp2_reads_like_folder(tmp_path: Path) -> None:
    z = _zip_safe(S2_SAFE, tmp_path / "p.zip", ["MTD_MSIL2A.xml", SCL])
    r = open_product(z)
    assert r.members() == sorted(["MTD_MSIL2A.xml", SCL])
    win = rasterio.windows.Window(1000, 0, 64, 64)
    with rasterio.open(r.gdal_path(SCL)) as a, rasterio.open(S2_SAFE / SCL) as b:
        assert (a.read(1, window=win) == b.read(1, window=win)).all()


@pytest.mark.parametrize("name", ["X.SAFE/../../evil.txt", "/etc/passwd", "..\\evil.txt", "C:/evil.txt"])
def test_zip_slip_refused(tmp_path: Path, name: str) -> None:
    z = tmp_path / "slip.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("X.SAFE/manifest.safe", "<a/>")
        zf.writestr(zipfile.ZipInfo(name), "x")
    with pytest.raises(ProductError, match=r"slip\.zip.*(zip-slip|absolute)"):
        open_product(z)


def test_zip_symlink_member_refused(tmp_path: Path) -> None:
    z = tmp_path / "link.zip"
    info = zipfile.ZipInfo("X.SAFE/manifest.safe")
    info.create_system = 3
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr(info, "/etc/passwd")
    with pytest.raises(ProductError, match="symbolic link"):
        open_product(z)


def test_zip_bomb_ratio_and_total_size(tmp_path: Path) -> None:
    z = tmp_path / "bomb.zip"
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("X.SAFE/measurement/zeros.tiff", bytes(8 * 1024**2))  # deflates ~1000x
    with pytest.raises(ProductError, match=r"bomb\.zip.*expands \d+x"):
        open_product(z)
    assert open_product(z, max_ratio=10_000).total_size() == 8 * 1024**2
    with pytest.raises(ProductError, match="uncompressed size exceeds 1000000 bytes"):
        open_product(z, max_ratio=10_000, max_total_bytes=1_000_000)


def test_truncated_and_not_a_zip(tmp_path: Path) -> None:
    data = S1_ZIP.read_bytes()
    cut = tmp_path / "cut.zip"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ProductError, match=r"cut\.zip: not a readable zip"):
        open_product(cut)
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ProductError, match=r"junk\.zip"):
        open_product(junk)


def test_corrupt_member_crc(tmp_path: Path) -> None:
    z = tmp_path / "crc.zip"
    payload = bytes(range(256)) * 64
    with zipfile.ZipFile(z, "w", compression=zipfile.ZIP_STORED) as zf:
        zf.writestr("X.SAFE/manifest.safe", payload)
    raw = bytearray(z.read_bytes())
    at = raw.find(payload[:64])
    raw[at + 100] ^= 0xFF  # flip one stored byte: the directory is intact, the CRC is not
    z.write_bytes(bytes(raw))
    r = open_product(z)  # the central directory still parses
    with pytest.raises(ProductError, match=r"crc\.zip.*corrupt"):
        r.read_bytes("manifest.safe")
    with pytest.raises(ProductError, match=r"crc\.zip: corrupt zip"):
        r.verify()


def test_folder_symlink_outside_refused(tmp_path: Path) -> None:
    outside = tmp_path / "secret.txt"
    outside.write_text("s")
    safe = tmp_path / "P.SAFE"
    (safe / "annotation").mkdir(parents=True)
    (safe / "manifest.safe").write_text("<a/>")
    os.symlink(outside, safe / "annotation" / "x.xml")
    with pytest.raises(ProductError, match="points outside the product"):
        open_product(safe)
    (safe / "annotation" / "x.xml").unlink()
    os.symlink(safe / "manifest.safe", safe / "annotation" / "x.xml")  # inside: fine
    r = open_product(safe)
    assert r.read_bytes("annotation/x.xml") == b"<a/>"
    with pytest.raises(ProductError, match="zip-slip"):
        r.read_bytes("../secret.txt")
    shutil.rmtree(safe / "annotation")
    os.symlink(tmp_path, safe / "annotation")
    with pytest.raises(ProductError, match="folder link annotation points outside"):
        open_product(safe)


def test_missing_product(tmp_path: Path) -> None:
    with pytest.raises(ProductError, match="product not found"):
        open_product(tmp_path / "nope.zip")


def test_s1_reader_opens_a_zip_once_and_extract_stays_inside(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every S1 member read goes through one open zip; extract writes the .SAFE content and nothing else."""
    from pipeline_lib.sar.product import find_pol_files, open_orbit, open_sigma_lut, read_image_info

    opened: list[str] = []
    real = zipfile.ZipFile

    class Counting(real):  # type: ignore[misc, valid-type]
        def __init__(self, file: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
            opened.append(str(file))
            super().__init__(file, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile, "ZipFile", Counting)
    with open_product(S1_ZIP) as reader:
        files = find_pol_files(reader, "VV", need_measurement=False)
        read_image_info(reader.parse_xml(files.annotation))
        open_orbit(files)
        open_sigma_lut(files)
        reader.extract(tmp_path / "out")
    assert [f for f in opened if f.endswith(".zip") and Path(f).name == S1_ZIP.name] == [
        str(S1_ZIP)
    ]  # lazy imports open others
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*") if p.is_file()) == (
        reader.members()
    )
    with pytest.raises(ProductError, match="corrupt"):  # closed with the block
        reader.read_bytes("manifest.safe")


def test_s1_reader_refuses_an_escaping_member(tmp_path: Path) -> None:
    from pipeline_lib.sar.product import find_pol_files

    z = tmp_path / "S1A_x.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.writestr("S1A_x.SAFE/manifest.safe", b"<a/>")
        zf.writestr("S1A_x.SAFE/../../annotation/s1a-iw-grd-vv-x.xml", b"<a/>")
    with pytest.raises(ProductError, match="zip-slip"):
        find_pol_files(open_product(z), "VV")
