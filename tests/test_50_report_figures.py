"""Report images: box thumbnails, JPEG composites, palette-PNG heat maps, data URIs, experiment figures."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pytest
from conftest import stack_generator
from PIL import Image

from pipeline_lib.model.params import TrainParams
from pipeline_lib.model.predict import run_predict
from pipeline_lib.report import figures as fig
from pipeline_lib.report.model_part import LARGE_VIEW, experiment_figures, model_sections, side_by_side


def _decode(uri: str) -> Image.Image:
    head, payload = uri.split(",", 1)
    img = Image.open(io.BytesIO(base64.b64decode(payload, validate=True)))
    assert head == f"data:image/{img.format.lower()};base64", head  # type: ignore[union-attr]
    img.load()
    return img


def test_downsample_is_a_box_average_and_keeps_nan() -> None:
    a = np.arange(16, dtype=np.float32).reshape(4, 4)
    a[0, 0] = np.nan
    got = fig.downsample(a, 2)
    assert got.shape == (2, 2)
    assert np.isnan(got[0, 0])  # a masked pixel masks its block
    np.testing.assert_allclose(got[1:, :].ravel(), [np.mean([8, 9, 12, 13]), np.mean([10, 11, 14, 15])])
    rgb = np.zeros((600, 1024, 3), np.uint8)
    rgb[:, 1::2] = 200  # alternating columns average to 100
    small = fig.downsample(rgb, 256)
    assert small.shape == (150, 256, 3) and abs(int(small[75, 100, 0]) - 100) <= 1
    assert fig.downsample(rgb[:10, :20], 256).shape == (10, 20, 3)  # never upsampled


def test_jpeg_thumbnail_size_colour_and_grey() -> None:
    b = np.full((1024, 600), 0.15, np.float32)
    valid = np.ones_like(b, bool)
    valid[:64, :64] = False
    rgb = fig.s2_true_colour(b, b * 2, b / 2, valid)
    img = _decode(fig.data_uri(fig.jpeg_bytes(rgb)))
    assert img.format == "JPEG" and img.mode == "RGB" and img.size == (150, 256)
    px = np.asarray(img, dtype=int)
    assert np.abs(px[200, 100] - [128, 255, 64]).max() <= 3  # colours survive the encoding
    assert np.abs(px[4, 4] - fig.MASK_COLOUR).max() <= 12  # the masked corner stays magenta
    grey = _decode(fig.data_uri(fig.jpeg_bytes(fig.s1_grey(np.full((300, 300), -12.5, np.float32)))))
    assert grey.mode == "L" and grey.size == (256, 256) and abs(int(np.asarray(grey).mean()) - 128) <= 1


def test_speckled_thumbnail_is_much_smaller_than_the_full_png() -> None:
    rng = np.random.default_rng(0)
    vv = (-12 + 3 * rng.standard_normal((512, 512))).astype(np.float32)
    rgb = fig.s1_false_colour(vv, vv - 7)
    jpg, png = fig.jpeg_bytes(rgb), fig.png_bytes(rgb, max_side=512)
    assert len(jpg) * 8 < len(png) and len(jpg) < 40_000


def test_heat_png_is_a_palette_image_with_the_mask_colour() -> None:
    v = np.tile(np.linspace(0.0, 0.2, 64, dtype=np.float32), (32, 1))
    v[:4, :4] = np.nan
    img = _decode(fig.data_uri(fig.heat_png_bytes(v, vmax=0.1, max_side=64)))
    assert img.format == "PNG" and img.mode == "P" and img.size == (64, 32)
    rgb = np.asarray(img.convert("RGB"), dtype=int)
    assert tuple(rgb[0, 0]) == fig.MASK_COLOUR
    from matplotlib import colormaps

    lo = np.round(np.asarray(colormaps["magma"](0.0)[:3]) * 255)
    hi = np.round(np.asarray(colormaps["magma"](1.0)[:3]) * 255)
    np.testing.assert_array_equal(rgb[10, 0], lo)  # 0 → first colour
    np.testing.assert_array_equal(rgb[10, -1], hi)  # ≥ vmax → last colour (clipped)
    idx = np.asarray(img).astype(int)
    assert np.all(np.diff(idx[10, :32]) >= 0) and idx[10, 31] == 62  # monotone ramp, 64 levels below vmax
    assert len(set(idx[10].tolist())) <= 64 and idx[0, 0] == 64  # the mask is the 65th palette entry
    with pytest.raises(ValueError, match="levels"):
        fig.heat_png_bytes(v, 0.1, levels=256)


def test_data_uri_sniffs_the_type() -> None:
    png = fig.png_bytes(np.zeros((4, 4, 3), np.uint8))
    jpg = fig.jpeg_bytes(np.zeros((4, 4, 3), np.uint8))
    assert fig.data_uri(png).startswith("data:image/png;base64,")
    assert fig.data_uri(jpg).startswith("data:image/jpeg;base64,")
    with pytest.raises(ValueError, match="neither PNG nor JPEG"):
        fig.data_uri(b"GIF89a....")


def test_quantised_plot_png_keeps_size_and_few_colours() -> None:
    rgb = np.zeros((50, 80, 3), np.uint8)
    rgb[..., 0] = np.arange(80, dtype=np.uint8)[None] * 3
    q = Image.open(io.BytesIO(fig.quantised_png_bytes(fig.png_bytes(rgb), colours=16)))
    assert q.mode == "P" and q.size == (80, 50) and len(q.getcolors() or []) <= 16


def test_side_by_side_pads_and_separates() -> None:
    a = np.zeros((10, 20, 3), np.uint8)
    b = np.full((6, 8, 3), 50, np.uint8)
    out = side_by_side([a, b], max_side=512, gap=2)
    assert out.shape == (10, 30, 3)
    assert (out[:, 20:22] == 255).all() and (out[6:, 22:] == 255).all() and (out[:6, 22:] == 50).all()


def test_experiment_figures_of_a_three_guide_stack(tmp_path: Path) -> None:
    stack, truth = stack_generator().make_stack(tmp_path, size=96, n_guides=3)
    preds, unc = {}, {}
    for v in ("neighbour_j", "blend"):
        preds[v] = tmp_path / f"{v}.tif"
        u = tmp_path / f"{v}_u.tif" if v == "blend" else None
        run_predict(stack, v, None, preds[v], u, TrainParams.for_task("sar_to_visible"), 1, "cpu")
        if u is not None:
            unc[v] = u
    figs = experiment_figures("e3", stack, truth, preds, unc, {})
    titles = [t for t, _ in figs]
    assert sum(": guide T (" in t for t in titles) == 3  # one per guide date
    for title, uri in figs:
        img = _decode(uri)
        if LARGE_VIEW in title:
            assert img.format == "JPEG" and img.size == (96 + 4 + 96, 96)
        elif "|error|" in title or "uncertainty" in title:
            assert img.format == "PNG" and img.mode == "P" and max(img.size) <= fig.THUMB_SIDE_PX
        else:
            assert img.format == "JPEG" and max(img.size) <= fig.THUMB_SIDE_PX
    large = [t for t in titles if t.endswith(LARGE_VIEW)]
    assert large == ["e3: truth T_i | blend (larger view)"]
    score = {m: {"B04": 0.1, "mean": 0.1} for m in ("rmse", "ssim", "cc")}
    metrics = {"e3": {"blend": score, "changed": {"blend": score}, "info": {"bands": ["B04"]}}}
    html = "".join(model_sections(metrics, {"e3": figs}))
    assert html.count('<figure class="large">') == 1 and html.count("<figure>") == len(figs) - 1
