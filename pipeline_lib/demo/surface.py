"""The simulated surface of the demo world: a function of map position (UTM 33N metres) and time.

Both demo sensors render this one world, so Sentinel-1 and Sentinel-2 see the same scene
(docs/CONTRACTS.md "The demo world"). It mimics the TIRSIT paper's case (paper §V: flood water
retreating between acquisitions) in the Tiber valley north of Rome:

* a sinuous river corridor whose flood extent shrinks smoothly with time,
* parcels (a jittered-lattice Voronoi tessellation) of vegetation, bare soil and urban cover,
  some of which are harvested (vegetation -> bare soil) at parcel-specific dates,
* soil freshly exposed by the retreating water stays wet for a while (brighter in SAR, darker
  in SWIR), so SAR -> optical translation is learnable but not a per-pixel function,
* a cloud patch on 2022-01-16 (Sentinel-2 only).

Values follow typical C-band / MSI L2A figures: open water sigma0 VV ~ -21 dB, VH ~ -28 dB and very
low SWIR; vegetation VV ~ -10 dB, VH ~ -16 dB, high NIR/SWIR; bare soil VV ~ -13 dB; urban VV ~ -3 dB
(double bounce). Everything is a pure, seeded function of (x, y, t): no state, no file I/O, so any
sampling of the plane (the GRD geometry, the S2 10 m or 20 m grid) sees the same world.
"""

from __future__ import annotations

from datetime import date, datetime

import numpy as np
from pyproj import Transformer

__all__ = ["DEMO_CENTER_LONLAT", "DEMO_CRS", "DEMO_DATES", "CLOUDY_DATE", "demo_center_xy", "simulate_surface"]

DEMO_CENTER_LONLAT = (12.50, 42.00)
DEMO_CRS = "EPSG:32633"
DEMO_DATES = (date(2021, 12, 23), date(2022, 1, 4), date(2022, 1, 16), date(2022, 1, 28))
CLOUDY_DATE = date(2022, 1, 16)
EPOCH = datetime(2021, 12, 23, 0, 0, 0)

S1_BANDS = ("VV", "VH")
S2_BANDS = ("B02", "B03", "B04", "B11", "B12")

# Per class: sigma0 VV dB, VH dB, reflectance B02, B03, B04, B11, B12.
_WATER = np.array([-21.0, -28.0, 0.055, 0.060, 0.045, 0.012, 0.008])
_VEG = np.array([-10.0, -16.0, 0.030, 0.065, 0.040, 0.210, 0.105])
_SOIL = np.array([-13.0, -21.0, 0.085, 0.115, 0.145, 0.310, 0.260])
_URBAN = np.array([-4.0, -11.0, 0.105, 0.115, 0.125, 0.190, 0.170])
_CLOUD = np.array([0.0, 0.0, 0.52, 0.50, 0.50, 0.34, 0.24])


def demo_center_xy() -> tuple[float, float]:
    """The demo AOI centre in UTM 33N metres."""
    x, y = Transformer.from_crs("EPSG:4326", DEMO_CRS, always_xy=True).transform(*DEMO_CENTER_LONLAT)
    return float(x), float(y)


def _days(when: date | datetime) -> float:
    if not isinstance(when, datetime):
        when = datetime(when.year, when.month, when.day, 12)
    return (when.replace(tzinfo=None) - EPOCH).total_seconds() / 86400.0


def _hash01(i: np.ndarray, j: np.ndarray, seed: int, salt: int) -> np.ndarray:
    """Uniform [0, 1) from integer lattice indices (SplitMix64-style mixing, vectorised)."""
    with np.errstate(over="ignore"):
        h = (i.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) ^ (
            j.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
        )
        h ^= np.uint64((seed * 1_000_003 + salt * 7919) & 0xFFFFFFFFFFFFFFFF)
        h ^= h >> np.uint64(30)
        h *= np.uint64(0xBF58476D1CE4E5B9)
        h ^= h >> np.uint64(27)
        h *= np.uint64(0x94D049BB133111EB)
        h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _value_noise(x: np.ndarray, y: np.ndarray, scale_m: float, seed: int, salt: int) -> np.ndarray:
    """Smooth noise in [-1, 1] on a lattice of ``scale_m`` anchored to absolute coordinates."""
    gx, gy = x / scale_m, y / scale_m
    i0, j0 = np.floor(gx), np.floor(gy)
    fx, fy = gx - i0, gy - j0
    sx, sy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    i0i, j0i = i0.astype(np.int64), j0.astype(np.int64)
    v00 = _hash01(i0i, j0i, seed, salt)
    v10 = _hash01(i0i + 1, j0i, seed, salt)
    v01 = _hash01(i0i, j0i + 1, seed, salt)
    v11 = _hash01(i0i + 1, j0i + 1, seed, salt)
    v = (v00 * (1 - sx) + v10 * sx) * (1 - sy) + (v01 * (1 - sx) + v11 * sx) * sy
    return 2.0 * v - 1.0


def _fbm(x: np.ndarray, y: np.ndarray, scale_m: float, seed: int, salt: int, octaves: int = 3) -> np.ndarray:
    out = np.zeros_like(x)
    amp, total = 1.0, 0.0
    for k in range(octaves):
        out += amp * _value_noise(x, y, scale_m / 2**k, seed, salt + 101 * k)
        total += amp
        amp *= 0.5
    return out / total


def _parcels(x: np.ndarray, y: np.ndarray, seed: int, cell_m: float = 260.0) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi parcels from one jittered seed per lattice cell: returns (cell i, cell j) of the nearest seed."""
    ci, cj = np.floor(x / cell_m).astype(np.int64), np.floor(y / cell_m).astype(np.int64)
    best = np.full(x.shape, np.inf)
    bi, bj = ci.copy(), cj.copy()
    for di in (-1, 0, 1):
        for dj in (-1, 0, 1):
            ni, nj = ci + di, cj + dj
            sx = (ni + 0.15 + 0.7 * _hash01(ni, nj, seed, 11)) * cell_m
            sy = (nj + 0.15 + 0.7 * _hash01(ni, nj, seed, 12)) * cell_m
            d = (x - sx) ** 2 + (y - sy) ** 2
            closer = d < best
            best = np.where(closer, d, best)
            bi = np.where(closer, ni, bi)
            bj = np.where(closer, nj, bj)
    return bi, bj


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def flood_halfwidth_m(t_days: float) -> float:
    """Half-width of the flooded corridor: a smooth exponential retreat (≈ 920 m on day 0 to ≈ 180 m on day 36)."""
    return 120.0 + 800.0 * float(np.exp(-t_days / 14.0))


def simulate_surface(x_m: np.ndarray, y_m: np.ndarray, when: date | datetime, seed: int = 0) -> dict[str, np.ndarray]:
    """Render the demo world at map positions (UTM 33N metres) and a time.

    Returns float32 arrays shaped like ``x_m``: ``VV``, ``VH`` (sigma0, linear), ``B02``, ``B03``,
    ``B04``, ``B11``, ``B12`` (L2A surface reflectance, cloud included on the cloudy date), ``cloud``
    (0/1 cloud fraction, only on 2022-01-16), ``cloud_core`` (1 where the cloud is thick),
    ``water`` (water fraction) and ``landcover`` (0 water, 1 vegetation, 2 bare soil, 3 urban).
    """
    x = np.asarray(x_m, dtype=np.float64)
    y = np.asarray(y_m, dtype=np.float64)
    x, y = np.broadcast_arrays(x, y)
    t = _days(when)
    x0, y0 = demo_center_xy()
    u, v = x - x0, y - y0
    centre, water, wet = _river(x, y, u, v, t, seed)
    land = _land_cover(x, y, u, centre, t, seed)
    out = {**_sar_bands(land, water, wet), **_optical_bands(land, water, wet)}
    cloud, core = _cloud(out, x, y, u, v, t, seed)
    for name in S2_BANDS:
        out[name] = np.clip(out[name], 0.0, 1.0).astype(np.float32)
    out["cloud"] = cloud.astype(np.float32)
    out["cloud_core"] = core.astype(np.float32)
    out["water"] = water.astype(np.float32)
    out["landcover"] = np.where(
        water > 0.5, 0, np.where((land["cls"] == 1) & (land["veg_frac"] > 0.5), 1, np.where(land["cls"] == 3, 3, 2))
    ).astype(np.uint8)
    return out


def _river(
    x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray, t: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(corridor centre line u, water fraction, wet-soil fraction) of the retreating flood at day ``t``."""
    # River corridor: meandering centre line running roughly north-south through the AOI.
    centre = 520.0 * np.sin(2 * np.pi * v / 3400.0) + 0.12 * v + 180.0 * _fbm(np.zeros_like(v), v, 2500.0, seed, 1, 2)
    dist = np.abs(u - centre) + 140.0 * _fbm(x, y, 700.0, seed, 2)
    channel = _sigmoid((45.0 - dist) / 8.0)
    flood = _sigmoid((flood_halfwidth_m(t) - dist) / 25.0)
    water = np.maximum(channel, flood)
    # Freshly exposed, still wet soil: where the flood was recently (soil moisture decays in ~10 days).
    wet = np.zeros_like(x)
    for lag in (4.0, 8.0, 12.0):
        wet = np.maximum(wet, _sigmoid((flood_halfwidth_m(max(t - lag, -30.0)) - dist) / 25.0) * np.exp(-lag / 10.0))
    return centre, water, np.clip(wet - water, 0.0, 1.0)


def _land_cover(
    x: np.ndarray, y: np.ndarray, u: np.ndarray, centre: np.ndarray, t: float, seed: int
) -> dict[str, np.ndarray]:
    """Parcels and their land cover: class, vegetation fraction (harvests), vigour, texture, parcel offset (dB)."""
    pi, pj = _parcels(x, y, seed)
    r = _hash01(pi, pj, seed, 21)
    urban_bias = _sigmoid((np.abs(u - centre) - 1400.0) / 200.0) * 0.25  # towns away from the river
    cls = np.where(r < 0.52 - urban_bias, 1, np.where(r < 0.85 - urban_bias, 2, 3))
    # Harvest: some vegetation parcels become bare soil at a parcel-specific day in the period.
    harvest_day = 4.0 + 32.0 * _hash01(pi, pj, seed, 22)
    harvested = (cls == 1) & (_hash01(pi, pj, seed, 23) < 0.35)
    veg_frac = np.where(cls == 1, 1.0, 0.0) * np.where(harvested, 1.0 - _sigmoid((t - harvest_day) / 1.5), 1.0)
    # Slow green-up of the remaining vegetation and parcel-level variability.
    vigour = 0.85 + 0.3 * _hash01(pi, pj, seed, 24) + 0.004 * t
    texture = _fbm(x, y, 90.0, seed, 3, 2)
    parcel_db = 2.0 * (_hash01(pi, pj, seed, 25) - 0.5)
    return {"cls": cls, "veg_frac": veg_frac, "vigour": vigour, "texture": texture, "parcel_db": parcel_db}


def _fractions(land: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Flat (vegetation, bare soil, urban) fractions of the land part of each pixel."""
    land_is_urban = (land["cls"] == 3).ravel()
    vf = land["veg_frac"].ravel()
    return vf, (1.0 - vf) * (~land_is_urban), land_is_urban.astype(np.float64)


def _sar_bands(land: dict[str, np.ndarray], water: np.ndarray, wet: np.ndarray) -> dict[str, np.ndarray]:
    """σ0 (linear) per S1 band: blend in linear power; wet soil brighter by up to 4 dB, vegetation vigour ±1 dB."""
    vf, soil_frac, uf = _fractions(land)
    wf, wetf = water.ravel(), wet.ravel()
    vigour, parcel_db, texture = land["vigour"].ravel(), land["parcel_db"].ravel(), land["texture"].ravel()
    out: dict[str, np.ndarray] = {}
    for b, name in enumerate(S1_BANDS):
        land_db_veg = _VEG[b] + 2.5 * (vigour - 1.0) + parcel_db + 1.0 * texture
        land_db_soil = _SOIL[b] + 4.0 * wetf + parcel_db + 1.5 * texture
        land_db_urb = _URBAN[b] + 1.5 * parcel_db + 2.0 * texture
        mixed = vf * 10 ** (land_db_veg / 10) + soil_frac * 10 ** (land_db_soil / 10) + uf * 10 ** (land_db_urb / 10)
        water_lin = 10 ** ((_WATER[b] + 1.0 * texture) / 10)
        out[name] = (wf * water_lin + (1 - wf) * mixed).reshape(water.shape).astype(np.float32)
    return out


def _optical_bands(land: dict[str, np.ndarray], water: np.ndarray, wet: np.ndarray) -> dict[str, np.ndarray]:
    """Reflectance per S2 band (before cloud and clipping): linear mixing; wet soil darker (strongly in SWIR)."""
    vf, soil_frac, uf = _fractions(land)
    wf, wetf = water.ravel(), wet.ravel()
    vigour, parcel_db, texture = land["vigour"].ravel(), land["parcel_db"].ravel(), land["texture"].ravel()
    wet_dark = np.array([0.80, 0.80, 0.78, 0.55, 0.50])
    out: dict[str, np.ndarray] = {}
    for k, name in enumerate(S2_BANDS):
        b = 2 + k
        gain = 1.0 + 0.12 * parcel_db + 0.05 * texture
        veg_r = _VEG[b] * (1.0 + (0.25 if name == "B03" else 0.1) * (vigour - 1.0)) * gain
        soil_r = _SOIL[b] * (1.0 - (1.0 - wet_dark[k]) * wetf) * gain
        urb_r = _URBAN[b] * gain
        mixed = vf * veg_r + soil_frac * soil_r + uf * urb_r
        out[name] = (wf * _WATER[b] * (1.0 + 0.1 * texture) + (1 - wf) * mixed).reshape(water.shape)
    return out


def _cloud(
    out: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, u: np.ndarray, v: np.ndarray, t: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """The cloud patch of the cloudy date, mixed into ``out``'s S2 bands in place: (cloud, thick core) 0/1."""
    cloud = np.zeros(x.shape)
    core = np.zeros(x.shape)
    if abs(t - _days(CLOUDY_DATE)) < 1.0:
        cu, cv = u - 150.0, v + 120.0
        rr = np.sqrt((cu / 600.0) ** 2 + (cv / 420.0) ** 2) + 0.18 * _fbm(x, y, 200.0, seed, 4, 2)
        cloud = (rr < 1.0).astype(np.float64)
        core = (rr < 0.7).astype(np.float64)
        opacity = np.where(core > 0, 1.0, 0.6)
        for k, name in enumerate(S2_BANDS):
            out[name] = np.where(cloud > 0, (1 - opacity) * out[name] + opacity * _CLOUD[2 + k], out[name])
    return cloud, core
