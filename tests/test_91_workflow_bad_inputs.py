"""Bad inputs stop their job with one clear line naming the file, and leave no half-written output.

Products are the demo generator's (real formats) placed in a local folder, then damaged the way
users' disks and networks damage them.
"""

from __future__ import annotations

import shutil
import zipfile
from datetime import date
from pathlib import Path

import pytest
import yaml
from conftest import REPO
from workflow_utils import make_workdir, snakemake

from pipeline_lib.demo import generate_demo_products

pytestmark = pytest.mark.workflow

DATES = [date(2021, 12, 23), date(2022, 1, 4), date(2022, 1, 28)]  # the ci-tiny dates


def _zip_safe(safe: Path) -> Path:
    out = safe.with_suffix(".zip")
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(safe.rglob("*")):
            zf.write(f, f.relative_to(safe.parent).as_posix())
    shutil.rmtree(safe)
    return out


@pytest.fixture(scope="module")
def local_products(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("products")
    generate_demo_products(folder, DATES, size_px=128, seed=0)
    return folder


def _workdir(tmp_path: Path, products: Path) -> Path:
    work = make_workdir(tmp_path / "wf")
    local = tmp_path / "local"
    shutil.copytree(products, local)
    region = yaml.safe_load((REPO / "config/regions/ci-tiny.yaml").read_text())
    region.update(region="local-tiny", fetch={"source": "local", "local_dir": str(local)})
    (work / "config/regions/local-tiny.yaml").write_text(yaml.safe_dump(region))
    return work


def _one_error_line(stderr: str, *needles: str) -> str:
    lines = [ln for ln in stderr.splitlines() if "Error:" in ln and all(n in ln for n in needles)]
    assert lines, stderr[-4000:]
    return lines[0]


def _no_partial_files(results: Path) -> None:
    leftovers = [p for p in results.rglob("*") if ".part" in p.name]
    assert not leftovers, leftovers


def test_truncated_zip_fails_download_naming_it(tmp_path: Path, local_products: Path) -> None:
    work = _workdir(tmp_path, local_products)
    s1 = next((work.parent / "local").glob("S1B_*20220104T*.SAFE"))
    zpath = _zip_safe(s1)
    snakemake(work, "--cores", "1", "results/local-tiny/scenes.csv")
    zpath.write_bytes(zpath.read_bytes()[: zpath.stat().st_size // 2])  # damaged after the search
    r = snakemake(work, "--cores", "1", "results/local-tiny/s1/2022-01-04.tif", check=False)
    assert r.returncode != 0
    _one_error_line(r.stderr, zpath.stem)
    results = work / "results" / "local-tiny"
    assert not (results / "raw" / f"{zpath.stem}.zip").exists()
    assert not (results / "s1" / "2022-01-04.tif").exists()
    _no_partial_files(results)


def test_s2_product_missing_b11_fails_naming_product(tmp_path: Path, local_products: Path) -> None:
    work = _workdir(tmp_path, local_products)
    s2 = next((work.parent / "local").glob("S2*_MSIL2A_20220104T*.SAFE"))
    for band in s2.rglob("*_B11_*.jp2"):
        band.unlink()
    r = snakemake(work, "--cores", "1", "results/local-tiny/s2/2022-01-04.tif", check=False)
    assert r.returncode != 0
    line = _one_error_line(r.stderr, "B11")
    assert s2.stem in line
    assert not (work / "results/local-tiny/s2/2022-01-04.tif").exists()
    _no_partial_files(work / "results" / "local-tiny")


def test_aoi_outside_every_product_fails_the_search(tmp_path: Path) -> None:
    work = make_workdir(tmp_path / "wf")
    region = yaml.safe_load((REPO / "config/regions/ci-tiny.yaml").read_text())
    region.update(region="nowhere", aoi={"center": [2.35, 48.85], "size_px": [128, 128]})
    (work / "config/regions/nowhere.yaml").write_text(yaml.safe_dump(region))
    r = snakemake(work, "--cores", "1", "results/nowhere/scenes.csv", check=False)
    assert r.returncode != 0
    _one_error_line(r.stderr, "AOI")
    assert not (work / "results/nowhere/scenes.csv").exists()


def test_replaced_local_product_reruns_its_download(tmp_path: Path, local_products: Path) -> None:
    """Bad input (DESIGN §9): the user replaces a product in their folder; a plain rerun uses the new copy."""
    work = _workdir(tmp_path, local_products)
    snakemake(work, "--cores", "1", "results/local-tiny/scenes.csv")
    user = next((work.parent / "local").glob("S1B_*20220104T*.SAFE"))
    target = f"results/local-tiny/raw/{user.name}"
    snakemake(work, "--cores", "1", target)
    raw = work / target
    assert (raw / "manifest.safe").samefile(user / "manifest.safe")  # hard-linked
    assert "Nothing to be done" in snakemake(work, "-n", "--cores", "1", target).stdout
    shutil.rmtree(user)  # replaced by a fresh copy of the same product (new files, new times)
    shutil.copytree(local_products / user.name, user)
    dry = snakemake(work, "-n", "--cores", "1", target)
    assert "download_safe" in dry.stdout, dry.stdout[-3000:]
    snakemake(work, "--cores", "1", target)
    assert (raw / "manifest.safe").samefile(user / "manifest.safe")  # the new copy, not the stale one
    _no_partial_files(work / "results" / "local-tiny")
