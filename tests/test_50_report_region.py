"""Region report and index: valid self-contained HTML, image data URIs, scene rows, offsets, runtimes, no secrets."""

from __future__ import annotations

import base64
import io
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline_lib.cog import write_cog
from pipeline_lib.fetch.base import Scene, write_scene_table
from pipeline_lib.grid import make_centered_grid, write_grid
from pipeline_lib.grid.coreg import run_offsets
from pipeline_lib.report import run_index, run_region_report
from pipeline_lib.report.figures import MASK_COLOUR, data_uri, png_bytes, s2_true_colour
from pipeline_lib.report.html import parse_benchmark, redact_config
from pipeline_lib.report.model_part import model_sections

DATES = ["2021-12-23", "2022-01-04"]
S1_ID = "S1B_IW_GRDH_1SDV_20211223T051122_20211223T051147_030148_039993_5371"


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.stack: list[str] = []
        self.text: list[str] = []
        self.rows_in: dict[str, int] = {}
        self._table_class: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append((tag, a))
        if tag == "table":
            self._table_class.append(a.get("class") or "")
        if tag == "tr" and self._table_class and "tbody" in self.stack:
            key = self._table_class[-1]
            self.rows_in[key] = self.rows_in.get(key, 0) + 1
        if tag not in {"meta", "img", "br", "link"}:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"unbalanced </{tag}> in {self.stack[-3:]}"
        self.stack.pop()
        if tag == "table":
            self._table_class.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def _inputs(tmp: Path) -> dict[str, object]:
    grid = make_centered_grid((12.5, 42.0), (40, 40))
    write_grid(grid, tmp / "grid.json")
    rng = np.random.default_rng(0)
    s1, s2 = {}, {}
    for d in DATES:
        vv = (-14 + 3 * rng.standard_normal((40, 40))).astype(np.float32)
        vv[:2] = np.nan
        s1[d] = tmp / "s1" / f"{d}.tif"
        write_cog(np.stack([vv, vv - 6]), s1[d], crs=grid.crs, transform=grid.transform, descriptions=["VV", "VH"])
        refl = (0.05 + 0.2 * rng.random((5, 40, 40))).astype(np.float32)
        valid = np.ones((40, 40), np.float32)
        valid[10:20, 10:20] = 0
        s2[d] = tmp / "s2" / f"{d}.tif"
        write_cog(
            np.concatenate([refl, valid[None]]),
            s2[d],
            crs=grid.crs,
            transform=grid.transform,
            descriptions=["B04", "B03", "B02", "B11", "B12", "valid"],
        )
    scenes = []
    for k, d in enumerate(DATES):
        t = datetime(2021, 12, 23, 5, 11, 22, tzinfo=UTC)
        scenes.append(
            Scene(
                product_id=S1_ID if k == 0 else S1_ID.replace("20211223", "20220104"),
                mission="S1B",
                product_type="IW_GRDH_1S",
                sensing_time=t,
                footprint_wkt="",
                relative_orbit=22,
                source="demo",
                uri="https://catalogue.example/odata/<x>",
                date=d,
                reason="closest <S1>",
            )
        )
        scenes.append(
            Scene(
                product_id=f"S2A_MSIL2A_{d.replace('-', '')}T100401_N0400_R022_T33TTG_X",
                mission="S2A",
                product_type="S2MSI2A",
                sensing_time=t,
                footprint_wkt="",
                cloud_cover=12.5,
                source="demo",
                date=d,
                reason="lowest cloud",
            )
        )
    write_scene_table(scenes, tmp / "scenes.csv")
    run_offsets(s1, s2, tmp / "offsets.json", threshold_px=0.5)
    bench = tmp / "benchmarks" / "demo" / "terrain_correct" / "date=2021-12-23.tsv"
    bench.parent.mkdir(parents=True)
    bench.write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        "12.5\t0:00:12\t345.6\t500.1\t300\t310\t1.0\t2.0\t95.0\t11.9\n"
    )
    bench2 = tmp / "benchmarks" / "demo" / "stack" / "sv.tsv"
    bench2.parent.mkdir(parents=True)
    bench2.write_text(
        "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
        "1.0\t0:00:01\tNA\tNA\tNA\tNA\tNA\tNA\tNA\tNA\n3.0\t0:00:03\t20\t30\t10\t10\t0\t0\t50\t2.5\n"
    )
    config = {
        "regions": ["demo"],
        "fetch": {
            "source": "cdse",
            "cdse": {
                "password": "hunter2",
                "user": "me",
                "url": "https://me:hunter2@catalogue.example/odata",
                "access_token": "tok123",
            },
        },
        "note": "<script>alert(1)</script>",
    }
    return {
        "grid_json": tmp / "grid.json",
        "scenes_csv": tmp / "scenes.csv",
        "s1": s1,
        "s2": s2,
        "offsets_json": tmp / "offsets.json",
        "benchmark_tsvs": [bench, bench2],
        "config": config,
    }


def test_region_report_is_self_contained_valid_html(tmp_path: Path) -> None:
    args = _inputs(tmp_path)
    out = tmp_path / "results" / "demo" / "report.html"
    run_region_report("demo", out_html=out, **args)  # type: ignore[arg-type]
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    parser = _Collector()
    parser.feed(text)
    parser.close()
    assert parser.stack == [], "unclosed tags"
    imgs = [a for t, a in parser.tags if t == "img"]
    assert len(imgs) == 2 * len(DATES) * 2  # S1 grey + false colour, S2 RGB + SWIR, per date
    for a in imgs:
        src = a["src"] or ""
        assert src.startswith("data:image/jpeg;base64,")  # quicklooks are JPEG thumbnails
        img = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1], validate=True)))
        assert img.format == "JPEG" and img.size == (40, 40)  # small grids are not resampled
    for t, a in parser.tags:
        for key in ("src", "href"):
            assert not (a.get(key) or "").lower().startswith(("http:", "https:", "//")), (t, a)
    assert not any(t in {"script", "link", "iframe"} for t, _ in parser.tags)
    assert parser.rows_in["scenes"] == 2 * len(DATES)
    body = "".join(parser.text)
    assert S1_ID in body and "T33TTG" in body and "closest <S1>" in body
    # offsets: 1 S1 entry, 1 S2 entry, 2 cross-modal entries
    assert parser.rows_in["offsets"] == 4
    assert parser.rows_in["runtimes"] == 2 and "terrain_correct" in body and "date=2021-12-23" in body
    assert "EPSG:32633" in body and "40 × 40" in body
    assert "rasterio" in body and "GDAL" in body
    # no secrets, and config strings are escaped (no live script)
    assert "hunter2" not in text and "tok123" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text


def test_masked_pixels_are_magenta_and_downsampled() -> None:
    b = np.full((1024, 600), 0.15, np.float32)
    valid = np.ones_like(b, bool)
    valid[:8, :8] = False
    rgb = s2_true_colour(b, b, b, valid)
    assert tuple(rgb[0, 0]) == MASK_COLOUR and tuple(rgb[100, 100]) == (128, 128, 128)
    img = Image.open(io.BytesIO(png_bytes(rgb)))
    assert img.size == (300, 512)


def test_benchmark_parsing_and_redaction(tmp_path: Path) -> None:
    args = _inputs(tmp_path)
    recs = [parse_benchmark(p) for p in args["benchmark_tsvs"]]  # type: ignore[attr-defined]
    assert recs[0]["rule"] == "terrain_correct" and recs[0]["wildcards"] == "date=2021-12-23"
    assert recs[0]["s"] == 12.5 and recs[0]["max_rss_mb"] == 345.6
    assert recs[1]["repeats"] == 2 and recs[1]["s"] == 2.0 and recs[1]["max_rss_mb"] == 20.0
    red = redact_config(args["config"])
    assert red["fetch"]["cdse"] == {"user": "me", "url": "https://***@catalogue.example/odata"}


def test_model_section_and_index(tmp_path: Path) -> None:
    args = _inputs(tmp_path)

    def scores(rmse: float, ssim: float, cc: float) -> dict[str, dict[str, float]]:
        return {"rmse": {"B04": rmse, "mean": rmse}, "ssim": {"B04": ssim, "mean": ssim}, "cc": {"B04": cc, "mean": cc}}

    # metrics.json as pipeline_lib.model.evaluate writes it
    metrics = {
        "sv": {
            "tirsit": scores(0.01, 0.9, 0.8),
            "blend": scores(0.02, 0.8, 0.7),
            "changed": {"tirsit": scores(0.03, 0.7, 0.6), "blend": scores(0.05, 0.6, 0.5)},
            "info": {"task": "sar_to_visible", "valid_pixels": 100},
        }
    }
    curve = data_uri(png_bytes(np.zeros((8, 8, 3), np.uint8)))
    out = tmp_path / "results" / "demo" / "report.html"
    run_region_report(
        "demo", out_html=out, model_sections=model_sections(metrics, {"sv": [("loss curve", curve)]}), **args
    )
    p = _Collector()
    p.feed(out.read_text(encoding="utf-8"))
    text = " ".join(p.text)
    assert "sv: comparison (all valid pixels)" in text and "sv: comparison (changed pixels)" in text
    assert "Blend of T_j, T_k (no network)" in text and "TIRSIT" in text
    assert sum(1 for t, a in p.tags if t == "img" and (a.get("alt") == "loss curve")) == 1
    index = tmp_path / "results" / "report.html"
    other = tmp_path / "results" / "b&w" / "report.html"
    run_index(["demo", "b&w"], [out, other], index)
    q = _Collector()
    q.feed(index.read_text(encoding="utf-8"))
    hrefs = [a["href"] for t, a in q.tags if t == "a"]
    assert hrefs == ["demo/report.html", "b&w/report.html"]
    assert q.stack == []
