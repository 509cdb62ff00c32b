"""HTML building blocks of the report: one function per section, all text escaped, CSS inline (DESIGN §7).

The page is HTML5 (WHATWG "HTML Living Standard"), self-contained: images are ``data:`` URIs,
styles are in a ``<style>`` element, there are no scripts and no external references, so it is
readable offline. Every string that comes from data or configuration goes through
:func:`html.escape`; the configuration is rendered only after :func:`redact_config` drops keys
named like secrets and user:password parts of URLs.
"""

from __future__ import annotations

import csv
import html
import json
import math
import re
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "esc",
    "table",
    "section",
    "page",
    "redact_config",
    "parse_benchmark",
    "render_scenes",
    "render_grid",
    "render_offsets",
    "render_runtimes",
    "render_quicklooks",
    "render_versions",
    "render_config",
    "render_figures",
]

SECRET_KEY = re.compile(
    r"pass(word|wd)?|token|secret|api[_-]?key|credential|auth|private[_-]?key|cookie", re.IGNORECASE
)
URL_USERINFO = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)[^/@\s]+@", re.IGNORECASE)

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2em auto;max-width:1200px;padding:0 1em;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.num{text-align:right;font-variant-numeric:tabular-nums}
.low{color:#a40}.ok{color:#070}.muted{color:#777}
figure{display:inline-block;margin:.3em;text-align:center;font-size:.8em}
figure img{display:block;max-width:256px;height:auto;image-rendering:pixelated;border:1px solid #ccc}
figure.large{display:block}figure.large img{max-width:100%}
pre{background:#f7f7f7;padding:.8em;overflow:auto;font-size:.8em}
""".strip()


def esc(value: Any) -> str:
    """HTML-escape ``str(value)`` (quotes included); ``None`` becomes an empty string."""
    return "" if value is None else html.escape(str(value), quote=True)


def _cell(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return f"<td>{esc(value)}</td>"
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            return '<td class="num">–</td>'
        text = f"{value:.4g}" if isinstance(value, float) else str(value)
        return f'<td class="num">{esc(text)}</td>'
    return f"<td>{esc(value)}</td>"


def table(
    headers: Sequence[str], rows: Iterable[Sequence[Any]], caption: str | None = None, css_class: str = ""
) -> str:
    """A ``<table>`` with escaped header and cells; numbers right-aligned."""
    cls = f' class="{esc(css_class)}"' if css_class else ""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows)
    cap = f"<caption>{esc(caption)}</caption>" if caption else ""
    return f"<table{cls}>{cap}<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody></table>"


def section(title: str, body: str, anchor: str) -> str:
    """A ``<section>`` with an ``<h2>``; ``body`` is already HTML."""
    return f'<section id="{esc(anchor)}">\n<h2>{esc(title)}</h2>\n{body}\n</section>'


def page(title: str, sections: Sequence[str], subtitle: str = "") -> str:
    """A complete HTML5 document with inline CSS and no external references."""
    sub = f'<p class="muted">{esc(subtitle)}</p>' if subtitle else ""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>\n{CSS}\n</style>\n</head>\n<body>\n"
        f"<h1>{esc(title)}</h1>\n{sub}\n" + "\n".join(sections) + "\n</body>\n</html>\n"
    )


def redact_config(obj: Any) -> Any:
    """Copy of ``obj`` without keys named like secrets (password, token, secret, api key, credential,
    auth, cookie) and with ``user:password@`` removed from URLs."""
    if isinstance(obj, Mapping):
        return {str(k): redact_config(v) for k, v in obj.items() if not SECRET_KEY.search(str(k))}
    if isinstance(obj, (list, tuple)):
        return [redact_config(v) for v in obj]
    if isinstance(obj, str):
        return URL_USERINFO.sub(lambda m: m.group("scheme") + "***@", obj)
    return obj


def _num(text: str | None) -> float | None:
    try:
        v = float(text) if text not in (None, "", "NA", "-") else None
    except ValueError:
        return None
    return v


def parse_benchmark(path: str | Path) -> dict[str, Any]:
    """One Snakemake ``benchmark:`` TSV (columns ``s``, ``h:m:s``, ``max_rss`` MB, …; one row per repeat).

    Rule and wildcards come from the file's own ``rule_name``/``wildcards`` columns when present,
    else from the path ``benchmarks/{region}/{rule}/{wildcards}.tsv``. Repeats are averaged.
    """
    p = Path(path)
    with open(p, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, delimiter="\t"))
    secs = [v for v in (_num(r.get("s")) for r in rows) if v is not None]
    rss = [v for v in (_num(r.get("max_rss")) for r in rows) if v is not None]
    cpu = [v for v in (_num(r.get("cpu_time")) for r in rows) if v is not None]
    first = rows[0] if rows else {}
    rule = first.get("rule_name") or (p.parent.name if p.parent.name else "?")
    wildcards = first.get("wildcards") or p.stem
    return {
        "path": str(p),
        "rule": rule,
        "wildcards": wildcards,
        "repeats": len(rows),
        "s": sum(secs) / len(secs) if secs else float("nan"),
        "max_rss_mb": max(rss) if rss else float("nan"),
        "cpu_time_s": sum(cpu) / len(cpu) if cpu else float("nan"),
    }


def render_scenes(scenes: Sequence[Any]) -> str:
    """Scene table: configured date, mission, product id, sensing time, orbit, cloud cover, source, reason."""
    rows = [
        (
            s.date,
            s.mission,
            s.product_id,
            s.sensing_time.isoformat(),
            s.relative_orbit,
            s.cloud_cover,
            s.size_bytes / 1e6 if s.size_bytes else None,
            s.source,
            s.reason,
        )
        for s in scenes
    ]
    return table(
        [
            "date",
            "mission",
            "product id",
            "sensing time (UTC)",
            "rel. orbit",
            "cloud %",
            "size MB",
            "source",
            "why selected",
        ],
        rows,
        css_class="scenes",
    )


def render_grid(grid: Mapping[str, Any], lonlat_bounds: Sequence[float] | None = None) -> str:
    """Grid facts: CRS, shape, resolution, transform, bounds (and lon/lat bounds)."""
    rows: list[tuple[str, Any]] = [
        ("CRS", grid.get("crs")),
        ("shape (rows × cols)", " × ".join(str(v) for v in grid.get("shape", []))),
        ("resolution (m)", grid.get("resolution_m")),
        ("transform (a, b, c, d, e, f)", ", ".join(f"{float(v):.6g}" for v in grid.get("transform", []))),
        ("bounds (left, bottom, right, top)", ", ".join(f"{float(v):.2f}" for v in grid.get("bounds", []))),
    ]
    if lonlat_bounds is not None:
        rows.append(("lon/lat bounds (W, S, E, N)", ", ".join(f"{float(v):.5f}" for v in lonlat_bounds)))
    return table(["property", "value"], rows, css_class="grid")


def render_offsets(doc: Mapping[str, Any]) -> str:
    """Residual-offset table (every entry) and the corrections applied per image."""
    intro = (
        f"<p>Phase correlation against <b>{esc(doc.get('reference', ''))}</b>; offsets above "
        f"{esc(doc.get('threshold_px'))} px with quality ≥ {esc(doc.get('min_quality'))} are corrected. "
        f'<span class="muted">{esc(doc.get("convention", ""))}</span></p>'
    )
    rows = []
    for e in doc.get("entries", []):
        rows.append(
            (
                e.get("kind"),
                e.get("date"),
                e.get("reference"),
                e.get("moving"),
                e.get("band"),
                e.get("dy"),
                e.get("dx"),
                e.get("quality"),
                "low" if e.get("low_confidence") else "ok",
                "yes" if e.get("corrected") else "no",
            )
        )
    body = table(
        [
            "kind",
            "date",
            "reference",
            "moving",
            "measured on",
            "dy (px)",
            "dx (px)",
            "quality",
            "confidence",
            "corrected",
        ],
        rows,
        css_class="offsets",
    )
    corr = doc.get("corrections", {})
    crow = [(kind, d, v[0], v[1]) for kind in ("s1", "s2") for d, v in sorted(corr.get(kind, {}).items())]
    if crow:
        body += table(
            ["image", "date", "dy applied (px)", "dx applied (px)"],
            crow,
            caption="Total offset removed from each image in the stacks",
            css_class="corrections",
        )
    return intro + body


def render_runtimes(records: Sequence[Mapping[str, Any]]) -> str:
    """Per-rule runtime table from parsed benchmark files, with per-rule totals."""
    if not records:
        return '<p class="muted">No benchmark files.</p>'
    rows = [
        (r["rule"], r["wildcards"], r["s"], r["max_rss_mb"], r["cpu_time_s"], r["repeats"], r["path"])
        for r in sorted(records, key=lambda r: (str(r["rule"]), str(r["wildcards"])))
    ]
    totals: dict[str, list[float]] = {}
    for r in records:
        t = totals.setdefault(str(r["rule"]), [0.0, 0.0])
        t[0] += 1
        t[1] += r["s"] if math.isfinite(r["s"]) else 0.0
    summary = table(
        ["rule", "jobs", "total s"],
        [(k, int(v[0]), v[1]) for k, v in sorted(totals.items())],
        caption="Per rule",
        css_class="runtime-totals",
    )
    detail = table(
        ["rule", "wildcards", "wall s", "max RSS MB", "CPU s", "repeats", "benchmark file"],
        rows,
        caption="Per job",
        css_class="runtimes",
    )
    return summary + detail


def render_quicklooks(items: Sequence[tuple[str, str, str, str]]) -> str:
    """Figures grouped by date: items are (date, modality, title, data URI)."""
    out = [
        '<p class="muted">Fixed stretches: S1 −25..0 dB; S2 true colour 0..0.3, SWIR 0..0.5 reflectance; '
        "masked pixels magenta.</p>"
    ]
    for date in sorted({i[0] for i in items}):
        figs = "".join(
            f'<figure><img src="{esc(uri)}" alt="{esc(f"{mod} {title} {date}")}"><figcaption>{esc(mod)} {esc(title)}'
            "</figcaption></figure>"
            for d, mod, title, uri in items
            if d == date
        )
        out.append(f"<h3>{esc(date)}</h3>\n<div>{figs}</div>")
    return "\n".join(out)


def render_versions(versions: Mapping[str, str]) -> str:
    return table(["software", "version"], sorted(versions.items()), css_class="versions")


def render_config(config: Mapping[str, Any]) -> str:
    """The configuration as indented JSON, secrets removed, escaped."""
    text = json.dumps(redact_config(config), indent=2, sort_keys=True, default=str)
    return f"<pre>{esc(text)}</pre>"


def render_figures(figures: Mapping[str, str], large: Collection[str] = ()) -> str:
    """Figures given as {title: data URI}; titles in ``large`` are shown wide (class ``large``)."""
    wide = ' class="large"'
    return "".join(
        f'<figure{wide if title in large else ""}><img src="{esc(uri)}" alt="{esc(title)}">'
        f"<figcaption>{esc(title)}</figcaption></figure>"
        for title, uri in figures.items()
    )
