"""The stac source in the workflow (docs/DESIGN.md §4): a region whose search goes to a STAC API (the
recorded Earth Search response, replayed on loopback, with two more dates derived from its S2 item)
and whose S2 COG is read by window from loopback HTTP: grid -> search -> ingest_s2, no SAFE rules."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import rasterio
from test_27_stac_source import COG_HOST, DATA, ES, ITEM_DIR, _cogs
from workflow_utils import make_workdir, planned_jobs, snakemake

from pipeline_lib.fetch.base import read_scene_table
from tests.loopback import LoopbackServer, Reply
from tests.loopback.cog import CogHost

pytestmark = pytest.mark.workflow
DATES = ["2023-09-18", "2023-10-08", "2023-10-28"]


def _page(base: str) -> bytes:
    """The recorded page's S2 item, plus copies dated on the other two dates (the same assets), no next page."""
    page = json.loads((DATA / "earth-search-v1-search-page1.json").read_text())
    item = next(f for f in page["features"] if f["collection"] == "sentinel-2-l2a")
    feats = [item]
    for d in (DATES[0], DATES[2]):
        twin = copy.deepcopy(item)
        twin["id"] = item["id"].replace("20231008", d.replace("-", ""))
        for key in ("datetime", "created", "updated"):
            if key in twin["properties"]:
                twin["properties"][key] = twin["properties"][key].replace("2023-10-08", d)
        twin["properties"]["eo:cloud_cover"] = 5.0
        feats.append(twin)
    page["features"] = feats
    page["links"] = [ln for ln in page["links"] if ln["rel"] != "next"]
    page["context"] = {"returned": len(feats), "limit": 100}
    return json.dumps(page).replace(ES, f"{base}/v1").replace(COG_HOST, f"{base}/cogs").encode()


def test_stac_region_reads_its_assets_by_window(tmp_path: Path) -> None:
    (tmp_path / "cogs").mkdir()
    files = _cogs(tmp_path / "cogs")
    with LoopbackServer() as srv:
        landing = (DATA / "earth-search-v1-landing.json").read_text().replace(ES, f"{srv.url}/v1").encode()
        srv.route("GET", "/v1", lambda req: Reply(200, {"Content-Type": "application/json"}, landing))
        srv.route("GET", "/v1/", lambda req: Reply(200, {"Content-Type": "application/json"}, landing))
        page = _page(srv.url)
        srv.route("POST", "/v1/search", lambda req: Reply(200, {"Content-Type": "application/geo+json"}, page))
        host = CogHost(srv)
        for path in files.values():
            host.add(f"{ITEM_DIR}/{path.name}", path)
        work = make_workdir(tmp_path / "work")
        (work / "config" / "regions" / "stac-boulder.yaml").write_text(
            "region: stac-boulder\n"
            "aoi: {center: [-105.1019, 40.1672], size_px: [64, 64]}\n"
            f"dates: [{', '.join(DATES)}]\n"
            "pair_tolerance_days: 1\n"
            f"fetch: {{source: stac, stac: {{preset: earth-search, url: '{srv.url}/v1'}}}}\n"
            "experiments:\n"
            f"  - {{name: vis2swir, task: visible_to_swir, target: {DATES[1]}, guides: [{DATES[0]}, {DATES[2]}]}}\n",
            encoding="utf-8",
        )
        target = f"results/stac-boulder/s2/{DATES[1]}.tif"
        snakemake(work, "--cores", "1", "results/stac-boulder/scenes.csv")
        jobs = planned_jobs(snakemake(work, "-n", "--cores", "1", "results/stac-boulder/stacks/vis2swir.nc").stdout)
        assert jobs.get("ingest_s2") == 3 and not {"download_safe", "download_zip", "optical"} & set(jobs), jobs
        assert "ingest_s1" not in jobs  # Earth Search has no S1 preset collection: an S2-only region
        snakemake(work, "--cores", "1", target)
        sent = dict(host.sent)
        # a rerun (a new job, a new process: no GDAL cache) reads the cached windows, not the server
        cache = work / "results" / "stac-boulder" / "raw" / "stac" / "S2A_13TDE_20231008_0_L2A"
        assert sorted(p.name.split("-")[0] for p in cache.glob("*.tif")) == ["B02", "B03", "B04", "B11", "B12", "mask"]
        for out in (work / "results" / "stac-boulder" / "s2").glob(f"{DATES[1]}*"):
            out.unlink()
        snakemake(work, "--cores", "1", target)
        assert (work / target).is_file() and dict(host.sent) == sent
    scenes = read_scene_table(work / "results" / "stac-boulder" / "scenes.csv")
    assert [s.product_id for s in scenes] == [
        "S2A_13TDE_20230918_0_L2A",
        "S2A_13TDE_20231008_0_L2A",
        "S2A_13TDE_20231028_0_L2A",
    ]
    assert all(s.source == "stac" and s.mission == "S2" for s in scenes)
    assert scenes[1].reason.startswith("lowest cloud cover (0.000299 %), 0.25 d from 2023-10-08")
    with rasterio.open(work / target) as ds:
        assert ds.tags()["source"] == "stac" and ds.tags()["offset"] == "-0.1" and ds.shape == (64, 64)
        assert ds.descriptions[-1] == "valid"
    for path in files.values():
        assert host.sent[f"{ITEM_DIR}/{path.name}"] < 0.15 * path.stat().st_size
