"""The gap-fill section of the region report (DESIGN §8): time strip, per-date shares, evaluation table.

Strip: per filled date, the S2 image before (cloudy/masked pixels magenta) and after filling (pixels
with no prediction possible magenta), true colour 0..0.3 and SWIR 0..0.5 (the fixed stretches of
:mod:`pipeline_lib.report.figures`). Tables: share of predicted pixels and mean uncertainty per date
(from ``gapfill/metrics.json``), and the masked-pixel evaluation (RMSE, SSIM, CC, mean over bands)
of the fill against the blend, linear interpolation and the nearest clear date, visible and SWIR,
all and changed pixels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline_lib.report import figures as fig
from pipeline_lib.report import html as h
from pipeline_lib.stacks import read_image

__all__ = ["gapfill_section"]

_LABELS = {
    "gapfill": "gap fill (TIRSIT, per-pixel guides)",
    "blend": "blend (no network)",
    "linear": "linear interpolation in time",
    "nearest": "nearest clear date",
}


def _strip(s2: Mapping[str, str | os.PathLike[str]], filled: Mapping[str, str | os.PathLike[str]]) -> str:
    rows = []
    for date in sorted(filled):
        figs = {}
        if date in s2:
            b, valid, _ = read_image(s2[date], ["B04", "B03", "B02", "B11", "B12"])
            figs[f"{date} before (RGB)"] = fig.data_uri(fig.jpeg_bytes(fig.s2_true_colour(b[0], b[1], b[2], valid)))
        a, _, _ = read_image(filled[date], ["B04", "B03", "B02", "B11", "B12"])
        figs[f"{date} after (RGB)"] = fig.data_uri(fig.jpeg_bytes(fig.s2_true_colour(a[0], a[1], a[2])))
        figs[f"{date} after (SWIR)"] = fig.data_uri(fig.jpeg_bytes(fig.s2_swir(a[4], a[3], a[0])))
        rows.append(f"<div>{h.render_figures(figs)}</div>")
    return "\n".join(rows)


def _eval_table(block: Mapping[str, Any], group: str, scope: str) -> str:
    sub = block.get(group, {}).get(scope, {})
    methods = [m for m in ("gapfill", "blend", "linear", "nearest") if m in sub]
    if not methods:
        return ""
    rows = [[_LABELS.get(m, m), *(sub[m][metric]["mean"] for metric in ("rmse", "ssim", "cc"))] for m in methods]
    cap = f"{group}: {'changed' if scope == 'changed' else 'all'} masked pixels ({sub.get('pixels', 0)} px), mean over bands"
    return h.table(["method", "RMSE", "SSIM", "CC"], rows, caption=cap, css_class="metrics")


def gapfill_section(
    metrics: Mapping[str, Any],
    s2: Mapping[str, str | os.PathLike[str]],
    filled: Mapping[str, str | os.PathLike[str]],
) -> str:
    """The report's "Gap-filled series" section (HTML) from ``gapfill/metrics.json`` and the rasters."""
    products = metrics.get("products", {})
    per_date = h.table(
        ["date", "share predicted", "share no prediction", "mean uncertainty (reflectance)"],
        [[d, v["share_predicted"], v["share_none"], v["mean_uncertainty"]] for d, v in sorted(products.items())],
        caption="Filled pixels per date (uncertainty: weighted spread of the per-guide reconstructions)",
    )
    ev = metrics.get("evaluation", {})
    dates = metrics.get("evaluation_dates", {})
    intro = (
        f"<p>SWIR under clouds: <b>{h.esc(metrics.get('swir_route', ''))}</b>; network variant "
        f"<b>{h.esc(metrics.get('variant', ''))}</b>. Evaluation: real cloud masks of other dates laid over clear "
        "dates ("
        + h.esc(", ".join(f"{d} ← mask of {v['donor']}" for d, v in sorted(dates.items())))
        + "); only masked pixels are scored; the model never saw them. Spearman ρ(uncertainty, |error|) over "
        f"the masked pixels: {metrics.get('spearman_uncertainty_abs_error', float('nan')):.3f}.</p>"
    )
    tables = "".join(_eval_table(ev, g, s) for g in ("visible", "swir") for s in ("all", "changed"))
    if not tables:
        tables = '<p class="muted">No evaluation date (no clear date between two others and no partly cloudy date).</p>'
    strip = _strip({d: Path(p) for d, p in s2.items()}, {d: Path(p) for d, p in filled.items()})
    return h.section("Gap-filled series", intro + per_date + tables + strip, "gapfill")
