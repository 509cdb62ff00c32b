"""The workflow against a loopback Copernicus Data Space: search checkpoint, download jobs, re-run, secrets, a fault.

The loopback server (tests/loopback) plays CDSE: a Keycloak token endpoint, the OData ``/Products``
pages and ``/Products(<Id>)/$value``. The catalogue pages are the GRD/L2A records derived from real
CDSE pages by ``tests/data/cdse/derive.py``, transformed once more here, visibly: each record's
``ContentLength`` and MD5 ``Checksum`` become those of the small SAFE zip we serve for it (a real zip
of a ``<name>.SAFE/manifest.safe`` folder; we cannot serve the real multi-GB products), and the
BLAKE3 entry is dropped (we cannot compute it without another package; the client does not use it).

Snakemake runs in a subprocess with ``CDSE_USERNAME``/``CDSE_PASSWORD`` in its environment; every
file it leaves under the work folder and everything it prints are grepped for the password and for
every token the fake Keycloak issued.
"""

from __future__ import annotations

import base64
import copy
import csv
import hashlib
import io
import os
import sys
import zipfile
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import FIXTURES, REPO
from workflow_utils import make_workdir, snakemake

from tests.loopback import LoopbackServer, corrupt_fault
from tests.loopback.cdse import ODATA, PASSWORD, USER, FakeCdse

sys.path.insert(0, str(Path(__file__).resolve().parent / "data" / "cdse"))
import derive

pytestmark = pytest.mark.workflow

REGION = "cdse-loop"
DATES = ["2021-12-23", "2022-01-04", "2022-01-28"]  # three of the four derived dates (2022-01-16 left out)
PAGE_SIZE = 3  # 9 derived records -> 3 pages joined by @odata.nextLink


def safe_zip(name: str) -> bytes:
    """A small, valid, deterministic zip of ``<name>`` (a .SAFE folder holding a manifest.safe)."""
    manifest = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<xfdu:XFDU xmlns:xfdu="urn:ccsds:schema:xfdu:1" version="esa/safe/sentinel/1.1">\n'
        f"  <!-- loopback stand-in for {name} -->\n"
        "</xfdu:XFDU>\n"
    )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        info = zipfile.ZipInfo(f"{name}/manifest.safe", date_time=(2022, 1, 1, 0, 0, 0))
        zf.writestr(info, manifest)
    return buf.getvalue()


def served_records() -> tuple[list[dict[str, Any]], dict[str, bytes]]:
    """Derived records with size and MD5 set from the zip served for each (the transformation in the docstring)."""
    records, bodies = [], {}
    for rec in derive.derive_records(FIXTURES):
        body = safe_zip(rec["Name"])
        out = copy.deepcopy(rec)
        out["ContentLength"] = len(body)
        md5 = [dict(c, Value=hashlib.md5(body).hexdigest()) for c in rec["Checksum"] if c["Algorithm"] == "MD5"]
        assert md5, f"derived record {rec['Name']} has no MD5 entry to transform"
        out["Checksum"] = md5
        records.append(out)
        bodies[rec["Id"]] = body
    return records, bodies


def expected_selection(records: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(date, S1|S2) -> the record the selection must pick: orbit 22 GRD and the L2A of the same day."""
    out = {}
    for rec in records:
        attrs = {a["Name"]: a["Value"] for a in rec["Attributes"]}
        day = rec["ContentDate"]["Start"][:10]
        if day not in DATES:
            continue  # the 2022-01-16 records and the orbit-117 distractor (2021-12-24)
        out[(day, rec["Name"][:2])] = {**rec, "attrs": attrs}
    return out


def region_file(work: Path, srv: LoopbackServer) -> None:
    region = yaml.safe_load((REPO / "config/regions/ci-tiny.yaml").read_text())
    region.update(
        region=REGION,
        description="ci-tiny AOI and dates against a loopback CDSE",
        dates=DATES,
        fetch={
            "source": "cdse",
            "cdse": {
                "catalogue_url": srv.url + ODATA,
                "token_url": srv.url + "/auth/realms/CDSE/protocol/openid-connect/token",
                "download_url": srv.url + ODATA,
                "allowed_hosts": [f"127.0.0.1:{srv.port}"],
            },
        },
        experiments=[
            {
                "name": "sar2vis",
                "task": "sar_to_visible",
                "target": DATES[1],
                "guides": [DATES[0], DATES[2]],
                "variants": ["tirsit"],
            }
        ],
    )
    (work / "config" / "regions" / f"{REGION}.yaml").write_text(yaml.safe_dump(region))


def value_path(record_id: str) -> str:
    return f"{ODATA}/Products({record_id})/$value"


def files_under(root: Path) -> list[Path]:
    """Every regular file under ``root``, not following links (the workdir links the package in)."""
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not (Path(folder) / d).is_symlink()]
        out += [Path(folder) / n for n in names if (Path(folder) / n).is_file()]
    return out


def test_cdse_search_download_rerun_secrets_and_checksum_fault(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records, bodies = served_records()
    chosen = expected_selection(records)
    assert len(chosen) == 2 * len(DATES)
    monkeypatch.setenv("CDSE_USERNAME", USER)
    monkeypatch.setenv("CDSE_PASSWORD", PASSWORD)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.netrc of the machine can be used instead
    outputs: list[str] = []

    with LoopbackServer() as srv:
        fake = FakeCdse(srv, pages=derive.paginate(records, page_size=PAGE_SIZE), products=bodies).install()
        work = make_workdir(tmp_path / "wf")
        region_file(work, srv)

        # 1. The search checkpoint: scene table with the selected products and their reasons.
        r = snakemake(work, "--cores", "2", f"results/{REGION}/scenes.csv", timeout=180)
        outputs += [r.stdout, r.stderr]
        with open(work / "results" / REGION / "scenes.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        assert [(row["date"], row["mission"][:2]) for row in rows] == [(d, m) for d in DATES for m in ("S1", "S2")]
        for row in rows:
            rec = chosen[(row["date"], row["mission"][:2])]
            assert row["product_id"] == rec["Name"].removesuffix(".SAFE")
            assert row["source"] == "cdse"
            assert row["uri"] == f"{srv.url}{value_path(rec['Id'])}"
            assert int(row["size_bytes"]) == len(bodies[rec["Id"]])
            assert row["checksum"] == f"md5:{hashlib.md5(bodies[rec['Id']]).hexdigest()}"
            assert datetime.fromisoformat(row["sensing_time"]).date() == date.fromisoformat(row["date"])
            if row["mission"].startswith("S1"):
                assert row["product_type"] == "IW_GRDH_1S" and row["relative_orbit"] == "22"
                assert row["reason"].startswith(f"closest S1 to {row['date']} on relative orbit 22 (")
            else:
                assert row["product_type"] == "S2MSI2A"
                assert float(row["cloud_cover"]) == rec["attrs"]["cloudCover"]
                assert (
                    row["reason"] == f"lowest cloud cover ({rec['attrs']['cloudCover']} %) within 3 d of {row['date']}"
                )
        # The orbit-117 distractor (served, a day after 2021-12-23, within tolerance) is passed over.
        assert not any(row["relative_orbit"] == "117" for row in rows)
        searches = srv.seen(f"{ODATA}/Products", "GET")
        skips = [s.query.get("$skip", ["0"])[0] for s in searches]
        assert skips == ["0", "3", "6"] * (2 * len(DATES))  # 3 windows x 2 product types, all pages each
        assert all("authorization" not in s.headers for s in searches)  # searching is public
        assert not fake.issued and not srv.seen(fake.token_url.removeprefix(srv.url))  # no token needed yet
        raw = work / "results" / REGION / "raw"
        targets = [f"results/{REGION}/raw/{row['product_id']}.zip" for row in rows]

        # 2. A product whose body fails the checksum twice: the job fails with one line, leaves nothing.
        bad = chosen[(DATES[1], "S2")]
        bad_target = f"results/{REGION}/raw/{bad['Name'].removesuffix('.SAFE')}.zip"
        srv.fault("GET", value_path(bad["Id"]), corrupt_fault(40), corrupt_fault(41))
        r = snakemake(work, "--cores", "2", bad_target, timeout=180, check=False)
        outputs += [r.stdout, r.stderr]
        assert r.returncode != 0
        err_lines = [ln for ln in r.stderr.splitlines() if "FetchError:" in ln]
        assert err_lines, r.stderr[-4000:]
        assert "downloaded twice and still wrong" in err_lines[0] and "MD5" in err_lines[0]
        assert bad["Name"].removesuffix(".SAFE") in err_lines[0] and bad["Id"] in err_lines[0]
        assert len(srv.seen(value_path(bad["Id"]), "GET")) == 2
        assert not raw.exists() or not list(raw.rglob("*"))  # no product, no .part
        assert not [p for p in (work / "results").rglob("*") if ".part" in p.name]

        # 3. All selected products: downloaded once, verified, byte-identical to what the server holds.
        r = snakemake(work, "--cores", "2", *targets, timeout=180)
        outputs += [r.stdout, r.stderr]
        for row in rows:
            rec = chosen[(row["date"], row["mission"][:2])]
            path = raw / f"{row['product_id']}.zip"
            assert path.read_bytes() == bodies[rec["Id"]]
            with zipfile.ZipFile(path) as zf:
                assert zf.testzip() is None and zf.namelist() == [f"{rec['Name']}/manifest.safe"]
            gets = srv.seen(value_path(rec["Id"]), "GET")
            assert len(gets) == (3 if rec is bad else 1), (row["product_id"], len(gets))
            assert gets[-1].headers["authorization"].removeprefix("Bearer ") in fake.issued
        assert sorted(p.name for p in raw.iterdir()) == sorted(Path(t).name for t in targets)  # no .part left
        not_selected = {rec["Id"] for rec in records} - {rec["Id"] for rec in chosen.values()}
        assert not any(srv.seen(value_path(i)) for i in not_selected)
        assert fake.issued and set(fake.grants) == {"password"}

        # 4. A re-run downloads nothing and asks nothing of the server.
        n_requests = len(srv.requests)
        r = snakemake(work, "--cores", "2", *targets, timeout=180)
        outputs += [r.stdout, r.stderr]
        assert "Nothing to be done" in r.stdout + r.stderr
        assert len(srv.requests) == n_requests

    # 5. No secret anywhere: every file the runs left (results, logs, .snakemake, benchmarks) and all output.
    refresh = [f"ref-{t.split('-')[0].removeprefix('tok')}-SECRET-REFRESH" for t in fake.issued]
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()  # as HTTP Basic auth would carry it
    secrets = [PASSWORD, basic, *fake.issued, *refresh]
    files = files_under(work)
    written = {p.relative_to(work).parts[0] for p in files}
    assert {"results", "logs", ".snakemake", "benchmarks"} <= written, written
    assert any("metadata" in p.parts for p in files) and any(
        p.suffix == ".log" and "download" in p.parts for p in files
    )
    leaks = [(str(p.relative_to(work)), s) for p in files for s in secrets if s.encode() in p.read_bytes()]
    leaks += [("snakemake output", s) for out in outputs for s in secrets if s in out]
    assert not leaks, leaks
