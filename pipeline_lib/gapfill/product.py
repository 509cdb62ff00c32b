"""The gap-filled product of a date: observed where clear, predicted under clouds, with source and uncertainty.

Governing text: DESIGN §8 ("predicted pixels carry a source flag and an uncertainty; observed clear
pixels are never changed"); STAC 1.1 (Item, Collection).

Bands of ``gapfill/{date}.tif`` (float32, NaN nodata): B04, B03, B02, B11, B12 surface reflectance
— the observed value, copied bit for bit, where the date is clear; the prediction where it is cloudy,
shadowed or missing — then ``source`` (:data:`SOURCE_OBSERVED` 1, :data:`SOURCE_PREDICTED` 2,
:data:`SOURCE_NONE` 0: no S1 on the date or no clear guide at the pixel; bands NaN there) and
``uncertainty`` (mean over the five bands of the weighted spread of the per-guide reconstructions,
reflectance; 0 where observed; NaN where only one guide was usable, since one guide has no spread).

SWIR under a cloud (``swir_route``): ``direct`` = the ``sar_to_swir`` model; ``chained`` = the
``visible_to_swir`` model fed with the date's visible bands, observed where clear and predicted
where not.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pystac
from affine import Affine

from pipeline_lib.cog import write_cog
from pipeline_lib.errors import ModelError
from pipeline_lib.gapfill.model import FillParams, predict_date
from pipeline_lib.gapfill.plan import swir_task
from pipeline_lib.gapfill.series import S2_BANDS, Series
from pipeline_lib.io import write_json_atomic

__all__ = [
    "SOURCE_NONE",
    "SOURCE_OBSERVED",
    "SOURCE_PREDICTED",
    "PRODUCT_BANDS",
    "fill_date",
    "write_product",
    "stac_collection",
]

SOURCE_NONE = 0
SOURCE_OBSERVED = 1
SOURCE_PREDICTED = 2
PRODUCT_BANDS: tuple[str, ...] = (*S2_BANDS, "source", "uncertainty")


def fill_date(
    series: Series,
    target: int,
    models: Mapping[str, dict[str, Any] | None],
    fill: FillParams,
    swir_route: str,
    *,
    tile_px: int,
    overlap_px: int,
    device: str = "cpu",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bands (5, y, x), source (y, x) uint8, uncertainty (y, x)) for date index ``target``.

    ``models`` maps ``sar_to_visible`` and the SWIR task of ``swir_route`` to checkpoints (None: the
    blend baseline, G ≡ 0).
    """
    clear = series.s2_valid[target] & np.isfinite(series.s2[target]).all(axis=0)
    need = ~clear
    kw: dict[str, Any] = {"tile_px": tile_px, "overlap_px": overlap_px, "device": device}
    vis, vis_unc, _ = predict_date(series, "sar_to_visible", target, need, models["sar_to_visible"], fill, **kw)
    task = swir_task(swir_route)
    override = None
    if task == "visible_to_swir":
        override = np.where(clear[None], series.s2[target, :3], vis)
    swir, swir_unc, _ = predict_date(series, task, target, need, models[task], fill, source_override=override, **kw)
    pred = np.concatenate([vis, swir])
    predicted = need & np.isfinite(pred).all(axis=0)
    bands = np.full(series.s2[target].shape, np.nan, dtype=np.float32)
    bands[:, clear] = series.s2[target][:, clear]
    bands[:, predicted] = pred[:, predicted]
    source = np.full(clear.shape, SOURCE_NONE, dtype=np.uint8)
    source[clear] = SOURCE_OBSERVED
    source[predicted] = SOURCE_PREDICTED
    unc = np.full(clear.shape, np.nan, dtype=np.float32)
    unc[clear] = 0.0
    both = np.concatenate([vis_unc, swir_unc]).mean(axis=0)
    unc[predicted] = both[predicted]
    return bands, source, unc


def write_product(
    path: str | os.PathLike[str],
    date: str,
    bands: np.ndarray,
    source: np.ndarray,
    uncertainty: np.ndarray,
    crs: str,
    transform: Sequence[float],
    tags: Mapping[str, str] | None = None,
) -> None:
    """Write the date's product COG (PRODUCT_BANDS) and its STAC item beside it."""
    data = np.concatenate([bands, source[None].astype(np.float32), uncertainty[None]]).astype(np.float32)
    band_tags = [{"long_name": f"surface reflectance {b}", "units": "1"} for b in S2_BANDS] + [
        {"long_name": "source: 0 no prediction possible, 1 observed (clear), 2 predicted", "units": "1"},
        {"long_name": "uncertainty: weighted spread of the per-guide reconstructions, mean of bands", "units": "1"},
    ]
    all_tags = {
        "datetime": f"{date}T00:00:00Z",
        "share_predicted": f"{float((source == SOURCE_PREDICTED).mean()):.6f}",
        "share_none": f"{float((source == SOURCE_NONE).mean()):.6f}",
        **dict(tags or {}),
    }
    write_cog(
        data,
        path,
        crs=crs,
        transform=Affine(*list(transform)[:6]),
        descriptions=list(PRODUCT_BANDS),
        tags=all_tags,
        band_tags=band_tags,
    )


def stac_collection(item_jsons: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], region: str) -> None:
    """Write a STAC 1.1 Collection linking the per-date items (hrefs relative to ``out``'s folder)."""
    if not item_jsons:
        raise ModelError(f"{out}: no gap-filled date to put in the collection; configure gapfill.dates")
    items = [json.loads(Path(p).read_text(encoding="utf-8")) for p in item_jsons]
    bboxes = np.array([it["bbox"] for it in items], dtype=np.float64)
    bbox = [*bboxes[:, :2].min(axis=0).tolist(), *bboxes[:, 2:].max(axis=0).tolist()]
    times = sorted(dt.datetime.fromisoformat(it["properties"]["datetime"].replace("Z", "+00:00")) for it in items)
    coll = pystac.Collection(
        id=f"{region}-gapfill",
        description=(
            f"Gap-filled Sentinel-2 series of region {region}: observed reflectance where clear, "
            "TIRSIT predictions from Sentinel-1 and the nearest clear dates elsewhere (bands source, uncertainty)."
        ),
        extent=pystac.Extent(pystac.SpatialExtent([bbox]), pystac.TemporalExtent([[times[0], times[-1]]])),
        license="other",
        title=f"{region} gap-filled S2 series",
    )
    out_dir = Path(out).parent
    d = coll.to_dict(include_self_link=False, transform_hrefs=False)
    d["links"] = [
        *d.get("links", []),
        *(
            {"rel": "item", "href": "./" + os.path.relpath(Path(p), out_dir), "type": "application/geo+json"}
            for p in item_jsons
        ),
    ]
    d["summaries"] = {"eo:bands": [{"name": b} for b in PRODUCT_BANDS]}
    write_json_atomic(out, d)
