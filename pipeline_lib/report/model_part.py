"""The model part of the region report: the paper's tables per experiment, figures and loss curves.

Table layout follows Liu et al. 2021 (TGRS), Tables I/III (rows: neighbouring images T_j and T_k,
pix2pix, TIRSIT without adversarial loss, TIRSIT; we add the no-network blend, which TIRSIT must
beat) and Tables II/IV (ablations: no_uc_sg, no_sg, no_uc against TIRSIT w/o adversarial loss).
Metrics per DESIGN §7, on all valid pixels and on changed pixels. The report is evaluation: it is the
only consumer, with :mod:`pipeline_lib.model.evaluate`, that reads the truth file.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from pipeline_lib.cog import read_named_bands
from pipeline_lib.model.variants import label as variant_label
from pipeline_lib.report import figures as fig
from pipeline_lib.report import html as h
from pipeline_lib.stacks import open_stack, read_truth

__all__ = [
    "model_sections",
    "selection_table",
    "experiment_figures",
    "side_by_side",
    "MAIN_ROWS",
    "ABLATION_ROWS",
    "LARGE_VIEW",
]

#: (variant, label) rows; the labels come from the variant registry (pipeline_lib.model.variants).
MAIN_ROWS = [
    (v, variant_label(v))
    for v in ("neighbour_j", "neighbour_k", "blend", "pix2pix", "tirsit_noadv", "tirsit", "tirsit_identity")
]
ABLATION_ROWS = [(v, variant_label(v)) for v in ("no_uc_sg", "no_sg", "no_uc", "tirsit_noadv")]
METRICS = [("rmse", "RMSE", min), ("ssim", "SSIM", max), ("cc", "CC", max)]
LARGE_VIEW = "(larger view)"
"""Figure titles ending with this are shown wide (up to :data:`figures.MAX_SIDE_PX` per panel)."""
#: Variants whose prediction gets the larger view next to the truth (first one present).
LARGE_VIEW_VARIANTS = ("tirsit", "tirsit_noadv", "no_uc", "no_sg", "no_uc_sg", "pix2pix", "blend")


def _paper_table(block: Mapping[str, Any], rows: Sequence[tuple[str, str]], scope: str, caption: str) -> str:
    variants = block.get("changed", {}) if scope == "changed" else block
    present = [(k, label) for k, label in rows if k in variants]
    if not present:
        return ""
    bands = list(block.get("info", {}).get("bands", [])) + ["mean"]
    headers = ["method"] + [f"{name} {b}" for _, name, _ in METRICS for b in bands]
    best: dict[tuple[str, str], float] = {}
    for m, _, pick in METRICS:
        for b in bands:
            vals = [variants[k][m][b] for k, _ in present if np.isfinite(variants[k][m][b])]
            if vals:
                best[(m, b)] = pick(vals)
    body = []
    for k, label in present:
        cells = [h.esc(label)]
        for m, _, _ in METRICS:
            for b in bands:
                v = variants[k][m][b]
                txt = f"{v:.4f}"
                cells.append(f"<b>{txt}</b>" if best.get((m, b)) == v else txt)
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    head = "<tr>" + "".join(f"<th>{h.esc(x)}</th>" for x in headers) + "</tr>"
    return f'<table class="metrics"><caption>{h.esc(caption)}</caption>{head}{"".join(body)}</table>'


def _read(path: Path, bands: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    data, desc, _ = read_named_bands(path, bands)
    return data, desc


def _composite(arr: np.ndarray, bands: Sequence[str], valid: np.ndarray | None = None) -> np.ndarray:
    """Quicklook of target/source bands with the report's fixed stretches."""
    names = list(bands)
    if names[:2] == ["VV", "VH"]:
        return fig.s1_false_colour(arr[0], arr[1])
    if names[:3] == ["B04", "B03", "B02"]:
        return fig.s2_true_colour(arr[0], arr[1], arr[2], valid)
    if names[:2] == ["B11", "B12"]:
        return fig.composite(
            [fig.stretch(arr[1], 0, 0.5), fig.stretch(arr[0], 0, 0.5), fig.stretch(arr[0], 0, 0.5)], valid
        )
    return fig.composite([fig.stretch(arr[0], np.nanmin(arr[0]), np.nanmax(arr[0]))], valid)


def side_by_side(images: Sequence[np.ndarray], max_side: int = fig.MAX_SIDE_PX, gap: int = 4) -> np.ndarray:
    """(y, x, 3) uint8 panels, each box-downsampled to ``max_side``, in one row with white gaps."""
    panels = [fig.downsample(im, max_side) for im in images]
    height = max(p.shape[0] for p in panels)
    row: list[np.ndarray] = []
    for i, panel in enumerate(panels):
        if i:
            row.append(np.full((height, gap, 3), 255, np.uint8))
        pad = np.full((height - panel.shape[0], panel.shape[1], 3), 255, np.uint8)
        row.append(np.concatenate([panel, pad]))
    return np.concatenate(row, axis=1)


def _loss_plot(histories: Mapping[str, list[dict[str, float]]], title: str) -> bytes:
    figure, ax = plt.subplots(figsize=(6, 3.2), dpi=90)
    for variant, hist in histories.items():
        if not hist:
            continue
        steps = [r["step"] for r in hist]
        key = (
            "l1"
            if variant == "pix2pix" and "l1" in hist[0]
            else "rec"
            if "rec" in hist[0]
            else next((k for k in hist[0] if k not in ("step", "epoch", "lr")), None)
        )
        if key is None:
            continue
        ax.plot(steps, [r[key] for r in hist], label=f"{variant} ({key})")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("generator loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=7)
    figure.tight_layout()
    buf = io.BytesIO()
    figure.savefig(buf, format="png")
    plt.close(figure)
    return fig.quantised_png_bytes(buf.getvalue())


def experiment_figures(
    experiment: str,
    stack_nc: Path,
    truth_tif: Path,
    preds: Mapping[str, Path],
    uncertainty: Mapping[str, Path],
    checkpoints: Mapping[str, Path],
) -> list[tuple[str, str]]:
    """(title, data URI) figures of one experiment: inputs, truth, predictions, error, uncertainty, losses."""
    out: list[tuple[str, str]] = []
    ds = open_stack(stack_nc)
    band_s, band_t = [str(b) for b in ds["band_s"].values], [str(b) for b in ds["band_t"].values]
    guides = [str(d) for d in ds["guide_date"].values]
    s_i = ds["S_i"].values
    t_g = ds["T_g"].values
    target_date = ds.attrs.get("target_date", "i")

    def thumb(rgb: np.ndarray) -> str:
        return fig.data_uri(fig.jpeg_bytes(rgb))

    out.append((f"{experiment}: source S_i ({target_date})", thumb(_composite(s_i, band_s))))
    for g, d in enumerate(guides):
        out.append((f"{experiment}: guide T ({d})", thumb(_composite(t_g[g], band_t))))
    t_i, t_valid = read_truth(truth_tif)
    valid = t_valid.values
    truth_bands = t_i.sel(band_t=band_t).values
    truth_rgb = _composite(truth_bands, band_t, valid)
    out.append((f"{experiment}: truth T_i ({target_date})", thumb(truth_rgb)))
    pred_rgb: dict[str, np.ndarray] = {}
    for variant, path in preds.items():
        arr, _ = _read(path, band_t)
        pred_rgb[variant] = _composite(arr, band_t)
        out.append((f"{experiment}: {variant}", thumb(pred_rgb[variant])))
    for variant in ("tirsit", "pix2pix", "blend"):
        if variant in preds:
            arr, _ = _read(preds[variant], band_t)
            err = np.mean(np.abs(arr - truth_bands), axis=0)
            if valid is not None:
                err[~valid] = np.nan
            out.append((f"{experiment}: |error| {variant} (0..0.1)", fig.data_uri(fig.heat_png_bytes(err, 0.1))))
    for variant in ("tirsit", "blend"):
        if variant in uncertainty:
            unc, _ = _read(uncertainty[variant], band_t)
            out.append(
                (
                    f"{experiment}: uncertainty {variant} (0..0.1)",
                    fig.data_uri(fig.heat_png_bytes(unc.mean(axis=0), 0.1)),
                )
            )
    large = next((v for v in LARGE_VIEW_VARIANTS if v in pred_rgb), None)
    if large is not None:
        wide = side_by_side([truth_rgb, pred_rgb[large]])
        out.append(
            (
                f"{experiment}: truth T_i | {large} {LARGE_VIEW}",
                fig.data_uri(fig.jpeg_bytes(wide, max_side=max(wide.shape[:2]))),
            )
        )
    histories = {}
    for variant, ck in checkpoints.items():
        payload = torch.load(ck, map_location="cpu", weights_only=False)
        histories[variant] = list(payload.get("history", []))
    if histories:
        out.append(
            (f"{experiment}: training loss", fig.data_uri(_loss_plot(histories, f"{experiment} training curves")))
        )
    return out


def selection_table(exp: str, sel: Mapping[str, Any]) -> str:
    """The recommended prediction: which method and why, validation and test rankings side by side."""
    val = sel.get("validation", {})
    test = sel.get("test_rmse", {})
    val_rank = {m: i + 1 for i, m in enumerate(sorted(val, key=lambda m: val[m]["rmse"]))}
    test_rank = {m: i + 1 for i, m in enumerate(sel.get("test_ranking", []))}
    rows = []
    for m in sorted(set(val) | set(test), key=lambda m: (val_rank.get(m, 99), test_rank.get(m, 99))):
        v = val.get(m)
        vtxt = f"{v['rmse']:.4f} ± {v['rmse_sd']:.4f} (n={v['n']})" if v else "–"
        name = f"<b>{h.esc(m)} (selected)</b>" if m == sel.get("method") else h.esc(m)
        t = test.get(m)
        rows.append(
            f"<tr><td>{name}</td><td>{vtxt}</td><td>{val_rank.get(m, '–')}</td>"
            f"<td>{'–' if t is None else f'{t:.4f}'}</td><td>{test_rank.get(m, '–')}</td></tr>"
        )
    rho = sel.get("spearman_validation_test")
    vs_blend = sel.get("vs_blend")
    runs = sel.get("validation_runs", [])
    plan = sorted(
        {(r.get("validation"), r.get("target_date"), ", ".join(r.get("guide_dates") or [])) for r in runs},
        key=lambda r: str(r[0]),
    )
    plan_txt = "; ".join(f"{v}: {t} from {g}" for v, t, g in plan) or "none possible (too few dates)"
    head = (
        "<tr><th>method</th><th>validation RMSE (mean ± sd over experiments × seeds)</th><th>validation rank</th>"
        "<th>test RMSE</th><th>test rank</th></tr>"
    )
    intro = (
        f"<p><b>Recommended prediction</b> (<code>pred/{h.esc(exp)}/selected.tif</code>): "
        f"<b>{h.esc(str(sel.get('method')))}</b> — {h.esc(str(sel.get('reason', '')))}. "
        f"Gap-matched validation experiments (never the target date): {h.esc(plan_txt)}. "
        f"On the test: rank {sel.get('test_rank')}, "
        f"{'' if vs_blend is None else f'{vs_blend:+.1%} RMSE against the blend, '}"
        f"winner {h.esc(str(sel.get('test_winner')))}; Spearman ρ(validation, test RMSE) = "
        f"{'n/a' if rho is None else f'{rho:+.2f}'}; ρ(uncertainty, |error|) of the selection = "
        f"{sel.get('spearman_uncertainty_abs_error', float('nan')):.2f}.</p>"
    )
    table = (
        f'<table class="metrics"><caption>{h.esc(exp)}: validation and test rankings side by side '
        f"(RMSE, mean over bands)</caption>{head}{''.join(rows)}</table>"
    )
    return intro + table


def model_sections(metrics: Mapping[str, Any], figures: Mapping[str, list[tuple[str, str]]]) -> list[str]:
    """HTML sections: per experiment the main and ablation tables (all and changed pixels) and figures."""
    sections = []
    for exp, block in metrics.items():
        info = block.get("info", {})
        parts = [
            f"<p>Task <b>{h.esc(info.get('task', ''))}</b>, target {h.esc(info.get('target_date', ''))}, "
            f"guides {h.esc(', '.join(info.get('guide_dates', [])))}. Valid pixels {info.get('valid_pixels')}, "
            f"excluded (cloud/nodata) {info.get('excluded_pixels')}, changed {info.get('changed_pixels')} "
            f"(|T_i − blend| in the top quartile, threshold {info.get('changed_threshold', float('nan')):.4f}). "
            f"SSIM data range per band: {h.esc(json.dumps(info.get('ssim_data_range', {})))}. Best value in bold.</p>"
        ]
        for scope, label in (("all", "all valid pixels"), ("changed", "changed pixels")):
            parts.append(
                _paper_table(block, MAIN_ROWS, scope, f"{exp}: comparison ({label}) — paper Table I/III layout")
            )
            parts.append(
                _paper_table(block, ABLATION_ROWS, scope, f"{exp}: ablation ({label}) — paper Table II/IV layout")
            )
        if "selected" in block:
            parts.append(selection_table(exp, block["selected"]))
        clip_in = info.get("clipped_inputs", {})
        clip_out = {k: v for k, v in info.get("clipped_predictions", {}).items() if v.get("below") or v.get("above")}
        if clip_in or clip_out:
            ins = ", ".join(f"{b} {v['below']} below / {v['above']} above of {v['of']}" for b, v in clip_in.items())
            outs = ", ".join(f"{k} {v['below']} below 0 / {v['above']} above 1" for k, v in clip_out.items())
            parts.append(
                f"<p>Values clipped by the fixed normalisation ranges (stack inputs): {h.esc(ins or 'none')}. "
                f"Predicted reflectances clipped to [0, 1]: {h.esc(outs or 'none')}.</p>"
            )
        rho = info.get("spearman_uncertainty_abs_error", {})
        if rho:
            parts.append(
                h.table(
                    ["variant", "Spearman ρ(uncertainty, |error|)"],
                    [[k, f"{v:.3f}"] for k, v in rho.items()],
                    caption=f"{exp}: does the uncertainty raster rank the errors?",
                )
            )
        exp_figs = dict(figures.get(exp, []))
        parts.append(h.render_figures(exp_figs, large=[t for t in exp_figs if t.endswith(LARGE_VIEW)]))
        sections.append(h.section(f"Experiment {exp}", "\n".join(p for p in parts if p), f"exp-{exp}"))
    return sections
