"""``fetch.source: demo``: the built-in demo world as a :class:`~pipeline_lib.fetch.base.Source`.

Search answers from the fixed demo acquisition plan (docs/CONTRACTS.md "The demo world"): a
Sentinel-1B IW GRDH on relative orbit 22 and a Sentinel-2 L2A on tile 33TTG for each demo date.
Download runs the generator (:mod:`pipeline_lib.demo`) into a temporary sibling folder and
renames it into place, so an interrupted job never leaves a half-written product.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
from pyproj import Transformer
from shapely import wkt
from shapely.geometry import box

from pipeline_lib.demo import DEMO_DATES, demo_bounds
from pipeline_lib.demo.s1 import RELATIVE_ORBIT as S1_RELATIVE_ORBIT
from pipeline_lib.demo.s1 import s1_cycle_index, s1_footprint_wkt, s1_product_id, write_s1_product
from pipeline_lib.demo.s2 import (
    render_s2,
    s2_mission,
    s2_product_id,
    s2_tile_footprint_wkt,
    s2_window_for,
    write_s2_product,
)
from pipeline_lib.errors import FetchError
from pipeline_lib.fetch.base import S1_PRODUCT_TYPE, S2_PRODUCT_TYPE, Scene, SearchRequest
from pipeline_lib.io import fault_point, remove_stale_temps

__all__ = ["DemoSource", "DEMO_WORLD_LONLAT"]

# The demo world: where the real Rome DEM (and the S1 template swath) gives valid geometry.
DEMO_WORLD_LONLAT = (12.4499, 41.9501, 12.5499, 42.0501)
S1_START = datetime(2021, 12, 23, 5, 11, 22, 594441)


class DemoSource:
    """Deterministic demo products. ``size_px`` is the side of the centred AOI rendered (default 512, the demo region)."""

    name = "demo"

    def __init__(self, seed: int = 0, size_px: int | None = None) -> None:
        self.seed = int(seed)
        self.size_px = int(size_px) if size_px else 512
        self.bounds = demo_bounds(self.size_px)

    @staticmethod
    def bounds_for_aoi(
        aoi_lonlat: tuple[float, float, float, float], margin_m: float = 500.0
    ) -> tuple[float, float, float, float]:
        """Rendered area (UTM 33N, snapped to 60 m) covering the AOI plus a margin."""
        tr = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True)
        w, s, e, n = aoi_lonlat
        xs, ys = tr.transform([w, e, e, w], [s, s, n, n])
        left = math.floor((min(xs) - margin_m) / 60.0) * 60.0
        bottom = math.floor((min(ys) - margin_m) / 60.0) * 60.0
        right = math.ceil((max(xs) + margin_m) / 60.0) * 60.0
        top = math.ceil((max(ys) + margin_m) / 60.0) * 60.0
        return (left, bottom, right, top)

    def _scenes_for(self, d: date) -> list[Scene]:
        k = s1_cycle_index(d)
        tag = ",".join(f"{v:.0f}" for v in self.bounds)
        scl = render_s2(s2_window_for(self.bounds), d, self.seed)["SCL"]
        cloud = float(np.isin(scl, (8, 9)).mean() * 100.0)
        s2_time = datetime(d.year, d.month, d.day, 10, 3, 9)
        return [
            Scene(
                product_id=s1_product_id(k),
                mission="S1B",
                product_type=S1_PRODUCT_TYPE,
                sensing_time=S1_START + timedelta(days=12 * k),
                footprint_wkt=s1_footprint_wkt(),
                relative_orbit=S1_RELATIVE_ORBIT,
                source=self.name,
                uri=f"demo:s1:{d.isoformat()}:{tag}",
            ),
            Scene(
                product_id=s2_product_id(d),
                mission=s2_mission(d),
                product_type=S2_PRODUCT_TYPE,
                sensing_time=s2_time,
                footprint_wkt=s2_tile_footprint_wkt(),
                cloud_cover=round(cloud, 4),
                source=self.name,
                uri=f"demo:s2:{d.isoformat()}:{tag}",
            ),
        ]

    def search(self, request: SearchRequest) -> list[Scene]:
        """Every demo acquisition within the pairing tolerance (+1 day) of a requested date over the AOI."""
        aoi = box(*request.aoi_lonlat)
        world = box(*DEMO_WORLD_LONLAT).intersection(wkt.loads(s1_footprint_wkt()))
        if not aoi.intersects(world):
            return []
        self.bounds = self.bounds_for_aoi(request.aoi_lonlat)
        tol = float(request.pair_tolerance_days) + 1.0
        wanted = [d for d in DEMO_DATES if any(abs((d - r).days) <= tol for r in request.dates)]
        return [s for d in wanted for s in self._scenes_for(d)]

    def download(self, scene: Scene, dest: Path) -> Path:
        """Generate ``scene`` at ``dest`` (``<product_id>.SAFE``) atomically and return ``dest``."""
        try:
            _, kind, day, *tag = scene.uri.split(":")
            when = date.fromisoformat(day)
            if tag:
                left, bottom, right, top = (float(v) for v in tag[0].split(","))
                self.bounds = (left, bottom, right, top)
        except ValueError as exc:
            raise FetchError(
                f"scene {scene.product_id}: uri {scene.uri!r} is not a demo uri (demo:s1|s2:YYYY-MM-DD); re-run the search"
            ) from exc
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temps(dest)  # a killed earlier download's folder
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent))
        try:
            if kind == "s1":
                built = write_s1_product(tmp, when, self.bounds, self.seed)
            elif kind == "s2":
                built = write_s2_product(tmp, when, self.bounds, self.seed)[0]
            else:
                raise FetchError(f"scene {scene.product_id}: unknown demo kind {kind!r} in uri; expected s1 or s2")
            if built.name != f"{scene.product_id}.SAFE":
                raise FetchError(
                    f"scene {scene.product_id}: generator produced {built.name}; re-run the search with the same seed"
                )
            fault_point(dest)  # test hook (pipeline_lib.io): crash with the product built, not yet renamed
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(built, dest)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return dest
