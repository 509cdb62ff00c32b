"""Mutation fuzzer over the real SAFE fixtures (DESIGN §9): only the project's own errors escape, naming the file.

Each case clones one real product from ``tests/data/fixtures`` (``fixture_variants.clone``: the fixture
is never touched), applies one seeded mutation to one of its metadata files and runs the readers the
pipeline runs on it:

- S1 GRD (sarsen ``.SAFE`` folder, pyroSAR 2021 zip): ``manifest.safe``, the annotation, calibration
  and noise XML → local-source identity and completeness (``describe_product``, ``s1_problem``) and
  every metadata stage of calibration and terrain correction (``find_pol_files``, ``read_image_info``,
  ``read_geolocation_grid``, ``find_window``, ``parse_noise``, ``parse_sigma_lut``, ``open_sigma_lut``, ``open_orbit``,
  ``open_coordinate_conversion``);
- S2 L2A (stactools ``.SAFE``): ``MTD_MSIL2A.xml`` → identity, completeness and ``run_l2a`` on a
  32 × 32 px grid over clear pixels;
- the CDSE S1 ``manifest.safe`` (CDSETool's download mock) → identity (``parse_s1_manifest``).

Mutations: delete, duplicate or alter (empty, words, huge/negative/NaN numbers, broken dates) an element,
truncate the file, replace it with garbage, or delete it. A case passes when the readers succeed or raise a
:class:`~pipeline_lib.errors.PipelineError` whose message is one line and names the mutated file
(its name; for a deleted file the product and the kind of file). Any other exception is a finding.

CI runs ``PIPELINE_FUZZ_CASES`` cases (default 32, seeded by the case number; 40 cases took 61 s on the 2-core dev machine at load average ~20); by hand:
``PIPELINE_FUZZ_CASES=2000 pytest -q tests/test_84_fuzz_safe.py -p no:randomly``. Findings and their
fixes are listed in RELIABILITY.md.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from fixture_variants import CDSE_MANIFESTS, S1_SAFE, S1_ZIP, S2_SAFE, clone

from pipeline_lib.errors import PipelineError
from pipeline_lib.fetch.local import describe_product, s1_problem, s2_problem
from pipeline_lib.grid import make_centered_grid
from pipeline_lib.optical import run_l2a
from pipeline_lib.safe import open_product
from pipeline_lib.sar.calibration import find_window
from pipeline_lib.sar.lut import parse_sigma_lut
from pipeline_lib.sar.noise import is_void, parse_noise
from pipeline_lib.sar.product import (
    find_pol_files,
    open_coordinate_conversion,
    open_orbit,
    open_sigma_lut,
    read_geolocation_grid,
    read_image_info,
)

CASES = int(os.environ.get("PIPELINE_FUZZ_CASES", "32"))
CDSE_S1_NAME = "S1A_IW_GRDH_1SDV_20241217T061735_20241217T061800_057028_07020F_0000"
S1_GRID = make_centered_grid((12.50, 42.00), (32, 32))
S1_ZIP_GRID = make_centered_grid((33.25, -18.25), (32, 32))
S2_GRID = make_centered_grid((-8.3123, 52.9726), (32, 32))  # clear (SCL 4-6) in the real product

ALTERED = ["", " ", "abc", "-1", "0", "nan", "inf", "1e309", "9" * 40, "2022-13-45T99:99:99", "1 2 3", "\u00e9\u00e8"]


# ------------------------------------------------------------------------------------ readers (what the pipeline runs)
def read_s1(product: Path, grid: object, pols: tuple[str, ...], has_measurement: bool = True) -> None:
    with open_product(product) as reader:
        info = describe_product(reader)
        if info is None:
            return
        problem = s1_problem(reader, info, pols)
        assert problem is None or "\n" not in problem
        if problem and has_measurement:
            return  # the local source rejects it with this reason
        for pol in pols:
            f = find_pol_files(reader, pol, need_measurement=has_measurement)
            ann = reader.parse_xml(f.annotation)
            label = f"{product}/{f.annotation}"
            image = read_image_info(ann, label=label)
            find_window(
                read_geolocation_grid(ann, label),
                grid,
                (image.number_of_lines, image.number_of_samples),
                8,
                product=product.name,
            )  # type: ignore[arg-type]
            is_void(parse_noise(reader.parse_xml(f.noise), f"{product}/{f.noise}"))
            parse_sigma_lut(reader.parse_xml(f.calibration), f"{product}/{f.calibration}")  # as calibration does
            open_sigma_lut(f).load()  # the xarray-sentinel reader the comparisons with sarsen use
            open_orbit(f).load()
            open_coordinate_conversion(f).load()


def read_s2(product: Path, out: Path) -> None:
    with open_product(product) as reader:
        info = describe_product(reader)
        if info is None or s2_problem(reader):
            return
    run_l2a(product, S2_GRID, out)


def read_identity(product: Path) -> None:
    with open_product(product) as reader:
        describe_product(reader)


# ------------------------------------------------------------------------------------ targets
@dataclass(frozen=True)
class Target:
    name: str
    source: Path
    members: tuple[str, ...]  # regexes of the files to mutate (relative to the .SAFE root)
    read: Callable[[Path, Path], None]
    clone_name: str | None = None  # the product name the clone gets (the CDSE manifest folder has none)


TARGETS = [
    Target(
        "s1-safe",
        S1_SAFE,
        (r"^manifest\.safe$", r"^annotation/s1b-[^/]*\.xml$", r"calibration/calibration-", r"calibration/noise-"),
        lambda p, tmp: read_s1(p, S1_GRID, ("VV",)),
    ),
    Target(
        "s1-zip",
        S1_ZIP,
        (
            r"manifest\.safe$",
            r"annotation/s1a-[^/]*-vv-[^/]*\.xml$",
            r"calibration/calibration-.*-vh-",
            r"calibration/noise-.*-vv-",
        ),
        lambda p, tmp: read_s1(p, S1_ZIP_GRID, ("VV", "VH"), has_measurement=False),
    ),
    Target("s2-l2a", S2_SAFE, (r"^MTD_MSIL2A\.xml$",), lambda p, tmp: read_s2(p, tmp / "out.tif")),
    Target(
        "cdse-s1-manifest",
        CDSE_MANIFESTS / "sentinel_1",
        (r"^manifest\.safe$",),
        lambda p, tmp: read_identity(p),
        clone_name=f"{CDSE_S1_NAME}.SAFE",
    ),
]
# The L1C zip (eo-datasets) is rejected by name before its MTD_MSIL1C.xml is parsed, so mutating it
# tests nothing; the CDSE S1 manifest (real, from the catalogue's download mock) is parsed instead.


# ------------------------------------------------------------------------------------ mutations
def mutate_xml(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    """One structural or textual change to an XML document; returns the new bytes and a description."""
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        return data[: len(data) // 2], "truncate (unparseable original)"
    elements = list(root.iter())
    parents = {c: p for p in elements for c in p}
    op = rng.choice(["delete", "duplicate", "alter", "alter", "alter", "truncate", "garbage", "clear-children"])
    if op in ("truncate", "garbage"):
        if op == "truncate":
            cut = rng.randrange(1, max(2, len(data)))
            return data[:cut], f"truncate at byte {cut}"
        return bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))), "garbage bytes"
    victim = rng.choice(elements[1:] or elements)
    tag = victim.tag.rsplit("}", 1)[-1]
    if op == "delete" and victim in parents:
        parents[victim].remove(victim)
    elif op == "duplicate" and victim in parents:
        parent = parents[victim]
        parent.insert(list(parent).index(victim), _copy(victim))
    elif op == "clear-children":
        for child in list(victim):
            victim.remove(child)
    else:
        leaves = [e for e in elements if len(e) == 0 and (e.text or "").strip()]
        victim = rng.choice(leaves) if leaves else victim
        tag = victim.tag.rsplit("}", 1)[-1]
        value = rng.choice(ALTERED)
        victim.text = value
        op = f"alter to {value[:12]!r}"
    return ET.tostring(root, encoding="utf-8", xml_declaration=True), f"{op} <{tag}>"


def _copy(el: ET.Element) -> ET.Element:
    return ET.fromstring(ET.tostring(el))


@dataclass(frozen=True)
class Applied:
    product: Path
    member: str
    what: str


def apply_case(target: Target, seed: int, tmp: Path) -> Applied:
    rng = random.Random(seed)
    pattern = rng.choice(target.members)
    if target.source.is_dir():
        product = clone(target.source, tmp, name=target.clone_name)
        member = next(
            m.relative_to(product).as_posix()
            for m in sorted(product.rglob("*"))
            if m.is_file() and re.search(pattern, m.relative_to(product).as_posix())
        )
        path = product / member
        if rng.random() < 0.08:
            path.unlink()
            return Applied(product, member, "delete file")
        new, what = mutate_xml(path.read_bytes(), rng)
        path.unlink()  # never write through a link to the fixture
        path.write_bytes(new)
        return Applied(product, member, what)
    product = tmp / target.source.name
    with zipfile.ZipFile(target.source) as zin:
        names = [n for n in zin.namelist() if re.search(pattern, n)]
        member = names[0]
        delete = rng.random() < 0.08
        new, what = (b"", "delete file") if delete else mutate_xml(zin.read(member), rng)
        with zipfile.ZipFile(product, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in zin.infolist():
                if info.filename == member:
                    if not delete:
                        zout.writestr(info.filename, new)
                    continue
                zout.writestr(info, zin.read(info.filename))
    return Applied(product, member.split(".SAFE/", 1)[-1], what)


def names_the_file(msg: str, applied: Applied) -> bool:
    base = Path(applied.member).name
    if base in msg:
        return True
    if applied.what == "delete file":
        kind = next((k for k in ("manifest", "annotation", "calibration", "noise", "MTD") if k in applied.member), "")
        return applied.product.name in msg or (applied.product.stem in msg and kind in msg)
    return False


# ------------------------------------------------------------------------------------ the test
@pytest.mark.parametrize("case", range(CASES))
def test_mutated_metadata_gives_a_pipeline_error_naming_the_file(case: int, tmp_path: Path) -> None:
    target = TARGETS[case % len(TARGETS)]
    applied = apply_case(target, 1000 + case, tmp_path)
    try:
        target.read(applied.product, tmp_path)
    except PipelineError as exc:
        msg = str(exc)
        print(f"\nFUZZ|{case}|{target.name}|{applied.member}|{applied.what}|{type(exc).__name__}|{msg[:300]}")
        assert "\n" not in msg, msg
        assert names_the_file(msg, applied), f"{applied}: {msg}"
    else:
        print(f"\nFUZZ|{case}|{target.name}|{applied.member}|{applied.what}|ok|-")
    leftovers = [p for p in tmp_path.rglob("*.part*")]
    assert not leftovers, leftovers


def test_rejection_reasons_are_one_line(tmp_path: Path) -> None:
    """The local-source reasons the fuzzer's readers stop at are single lines too (spot check on a clone)."""
    product = clone(S1_SAFE, tmp_path)
    info = describe_product(open_product(product))
    assert info is not None
    why = s1_problem(open_product(product), info, ("VV", "VH"))
    assert why is not None and "\n" not in why and "VH" in why
    shutil.rmtree(product)
