"""Difference stacks per experiment (DESIGN §6, paper §III: X_ab = X_a − X_b) and the separate truth file.

An experiment is (task, target date i, guide dates g). The stack holds what is known at
prediction time — S_i, S_g, T_g and the differences dS_ig = S_i − S_g, with validity masks — in
one NetCDF (layout in docs/CONTRACTS.md "Stack NetCDF"); T_i is written only to
``truth/{experiment}.tif`` (a COG), which only evaluation reads, so training and prediction
cannot leak it.

Values stay in physical units (σ0 dB for S1, surface reflectance for S2, NaN where invalid); the
fixed physical normalisation ranges every consumer uses are :data:`PHYSICAL_RANGES` and are
written into the stack's attrs, with the count of valid pixel values each range clips (attr
``clipped``: ``{band: {"below": n, "above": n, "of": n}}`` over S_i, S_g and T_g; evaluation copies it
to ``info.clipped_inputs``). Residual offsets marked ``corrected`` in ``offsets.json``
(:mod:`pipeline_lib.grid.coreg`) are removed with :func:`~pipeline_lib.grid.coreg.correct_offset`
(bilinear, no overshoot) before stacking. NetCDF4/HDF5 with zlib compression (xarray ``to_netcdf`` encoding, netCDF4
engine), written to a temporary file and renamed into place.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import xarray as xr
from affine import Affine

from pipeline_lib.cog import read_named_bands, write_cog
from pipeline_lib.errors import ConfigError, CoverageError, ProductError
from pipeline_lib.grid.coreg import correct_offset, read_corrections
from pipeline_lib.guides import resolve_guides
from pipeline_lib.io import atomic_path

log = logging.getLogger(__name__)

__all__ = [
    "resolve_experiment_guides",
    "PHYSICAL_RANGES",
    "TASK_BANDS",
    "band_ranges",
    "clip_counts",
    "read_image",
    "build_stack",
    "run_stack",
    "open_stack",
    "read_truth",
]

PHYSICAL_RANGES: dict[str, tuple[float, float]] = {
    # Sentinel-1 σ0 in dB. DESIGN §6 (the paper) clips to [−25, 0]; real chips (data/real-ts)
    # have VH down to −33 dB (smooth fields, water; IW's noise-equivalent σ0 is about −22 to −30 dB)
    # and VV up to +8.6 dB (buildings, 2.9 % of a chip's pixels above 0 dB). The ranges below keep all of
    # those but 0.1 %: VH [−35, 0], VV [−30, +5]. What they still clip is counted (stack attr
    # ``clipped``, metrics ``info.clipped_inputs``).
    "VV": (-30.0, 5.0),
    "VH": (-35.0, 0.0),
    # Sentinel-2 L2A surface reflectance. Visible: land surfaces stay below 0.5 except snow and
    # clouds (masked by SCL), so [0, 0.5] uses the normalised range twice as well as [0, 1].
    "B04": (0.0, 0.5),
    "B03": (0.0, 0.5),
    "B02": (0.0, 0.5),
    # SWIR: bare soil and urban surfaces reach 0.5-0.6, so the full [0, 1].
    "B11": (0.0, 1.0),
    "B12": (0.0, 1.0),
}
"""Fixed physical normalisation range ``(lo, hi)`` per band; model and metrics read them from here."""

TASK_BANDS: dict[str, tuple[tuple[str, str], tuple[str, ...], tuple[str, str], tuple[str, ...]]] = {
    # task: ((source modality, …), source bands, (target modality, …), target bands)
    "sar_to_visible": (("s1", "dB"), ("VV", "VH"), ("s2", "1"), ("B04", "B03", "B02")),
    "visible_to_swir": (("s2", "1"), ("B04", "B03", "B02"), ("s2", "1"), ("B11", "B12")),
}


def band_ranges(bands: Sequence[str]) -> dict[str, list[float]]:
    """``{band: [lo, hi]}`` from :data:`PHYSICAL_RANGES` for the given bands."""
    return {b: [float(PHYSICAL_RANGES[b][0]), float(PHYSICAL_RANGES[b][1])] for b in bands}


def clip_counts(images: Sequence[np.ndarray], bands: Sequence[str]) -> dict[str, dict[str, int]]:
    """Per band: how many finite values of the (band, y, x) ``images`` fall below / above its physical range."""
    out: dict[str, dict[str, int]] = {}
    for b, name in enumerate(bands):
        lo, hi = PHYSICAL_RANGES[name]
        vals = [np.asarray(img[b]) for img in images]
        below = sum(int(np.sum(v < lo)) for v in vals)
        above = sum(int(np.sum(v > hi)) for v in vals)
        total = sum(int(np.isfinite(v).sum()) for v in vals)
        out[name] = {"below": below, "above": above, "of": total}
    return out


def read_image(path: str | os.PathLike[str], bands: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Read ``bands`` (by description) of an S1/S2 COG: (band, y, x) float32, validity (y, x) bool, profile.

    Valid = every requested band finite and, where the file has a ``valid`` band, valid > 0.5.
    The profile holds ``crs`` (string), ``transform`` (Affine), ``height``, ``width``.
    """
    data, desc, prof = read_named_bands(path, bands)
    valid = np.all(np.isfinite(data), axis=0)
    if "valid" in desc:
        valid &= read_named_bands(path, ["valid"])[0][0] > 0.5
    data[:, ~valid] = np.nan
    return data, valid, prof


def _corrected(
    data: np.ndarray, valid: np.ndarray, offset: tuple[float, float] | None
) -> tuple[np.ndarray, np.ndarray]:
    """Remove a residual offset (dy, dx) of the image: shift its content by (−dy, −dx)."""
    if offset is None or offset == (0.0, 0.0):
        return data, valid
    dy, dx = offset
    shifted = correct_offset(np.where(valid, data, np.nan), -dy, -dx).astype(np.float32)
    ok = np.all(np.isfinite(shifted), axis=0)
    shifted[:, ~ok] = np.nan
    return shifted, ok


_FLAGS: dict[str, Any] = {"flag_values": np.array([0, 1], np.uint8), "flag_meanings": "invalid valid"}


def _grid_key(prof: Mapping[str, Any]) -> tuple[Any, ...]:
    return (prof["height"], prof["width"], prof["crs"], tuple(prof["transform"])[:6])


def _check_experiment(experiment: Mapping[str, Any], s1: Mapping[str, Path], s2: Mapping[str, Path]) -> None:
    name = experiment.get("name", "?")
    task = experiment.get("task")
    if task not in TASK_BANDS:
        raise ConfigError(f"experiments[{name}].task: {task!r} is not one of {sorted(TASK_BANDS)}")
    guides = list(experiment.get("guides", []))
    if len(guides) < 2 or experiment.get("target") in guides or len(set(guides)) != len(guides):
        raise ConfigError(f"experiments[{name}].guides: {guides} needs ≥ 2 distinct dates other than the target")
    need = {"s1": s1, "s2": s2}
    (src_mod, _), _, (tgt_mod, _), _ = TASK_BANDS[task]
    for mod, dates in ((src_mod, [experiment["target"], *guides]), (tgt_mod, [experiment["target"], *guides])):
        missing = [d for d in dates if d not in need[mod]]
        if missing:
            raise ConfigError(
                f"experiments[{name}]: no {mod.upper()} image for dates {missing}; add them to the region's dates"
            )


def _one_kind(paths: Mapping[str, Path], dates: Sequence[str], tag: str, what: str) -> str:
    """The one value of ``tag`` (S1 quantity, S2 product level) over the dates' COGs; ProductError if mixed.

    COGs of the SAFE chains carry no such tag: they are sigma0 and L2A by construction.
    """
    default = {"s1_quantity": "sigma0", "processing_level": "L2A"}[tag]
    seen: dict[str, str] = {}
    for d in dates:
        if d in paths:
            with rasterio.open(paths[d]) as ds:
                seen[d] = ds.tags().get(tag, default)
    if len(set(seen.values())) > 1:
        listing = ", ".join(f"{d}: {v}" for d, v in sorted(seen.items()))
        raise ProductError(
            f"{what} differs between the dates of one experiment ({listing}); use one kind for every date "
            "(e.g. never L1C with L2A)"
        )
    return next(iter(seen.values()), default)


def build_stack(
    experiment: Mapping[str, Any],
    s1: Mapping[str, Path],
    s2: Mapping[str, Path],
    offsets: Mapping[str, Any] | None = None,
) -> tuple[xr.Dataset, xr.Dataset]:
    """The stack Dataset (CONTRACTS layout, no T_i) and the truth Dataset (T_i, valid) of an experiment."""
    _check_experiment(experiment, s1, s2)
    name, task, target = str(experiment["name"]), str(experiment["task"]), str(experiment["target"])
    guides = [str(g) for g in experiment["guides"]]
    kinds = {
        "s1": _one_kind(s1, [target, *guides], "s1_quantity", "Sentinel-1 quantity"),
        "s2": _one_kind(s2, [target, *guides], "processing_level", "Sentinel-2 product level"),
    }
    (src_mod, src_units), src_bands, (tgt_mod, tgt_units), tgt_bands = TASK_BANDS[task]
    paths = {"s1": s1, "s2": s2}
    corr = read_corrections(offsets)
    applied: dict[str, list[float]] = {}

    def load(mod: str, date: str, bands: Sequence[str]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        data, valid, prof = read_image(paths[mod][date], bands)
        off = corr[mod].get(date)
        if off is not None and off != (0.0, 0.0):
            applied[f"{mod}:{date}"] = [off[0], off[1]]
        data, valid = _corrected(data, valid, off)
        return data, valid, prof

    s_i, v_si, prof = load(src_mod, target, src_bands)
    t_i, v_ti, prof_t = load(tgt_mod, target, tgt_bands)
    s_g, t_g, v_g = [], [], []
    for g in guides:
        sg, vs, p = load(src_mod, g, src_bands)
        tg, vt, _ = load(tgt_mod, g, tgt_bands)
        _check_guide(paths[src_mod][g], paths[tgt_mod][g], g, p, prof, paths[src_mod][target], vs & vt)
        s_g.append(sg)
        t_g.append(tg)
        v_g.append(vs & vt)
    _check_target(paths[src_mod][target], paths[tgt_mod][target], target, v_si, prof, prof_t)
    tr = prof["transform"]
    y = tr.f + (np.arange(prof["height"]) + 0.5) * tr.e
    x = tr.c + (np.arange(prof["width"]) + 0.5) * tr.a
    src_attrs = {"units": src_units, "long_name": "sigma nought" if src_mod == "s1" else "surface reflectance"}
    tgt_attrs = {"units": tgt_units, "long_name": "surface reflectance"}
    attrs = {
        "experiment": name,
        "task": task,
        "target_date": target,
        **({"guides_rule": str(experiment["guides_rule"])} if "guides_rule" in experiment else {}),
        "crs": prof["crs"],
        "transform": [float(v) for v in (tr.a, tr.b, tr.c, tr.d, tr.e, tr.f)],
    }
    ds = _stack_dataset(
        s_i,
        np.stack(s_g),
        np.stack(t_g),
        v_si,
        np.stack(v_g),
        src_attrs,
        tgt_attrs,
        coords={"guide_date": ("guide", guides), "band_s": list(src_bands), "band_t": list(tgt_bands), "y": y, "x": x},
        attrs={
            **attrs,
            "source_range": json.dumps(band_ranges(src_bands)),
            "target_range": json.dumps(band_ranges(tgt_bands)),
            "offsets_applied": json.dumps(applied, sort_keys=True),
            "clipped": json.dumps({**clip_counts([s_i, *s_g], src_bands), **clip_counts(t_g, tgt_bands)}),
            "Conventions": "CF-1.8",
            "source_modality": src_mod,
            "target_modality": tgt_mod,
            "source_kind": kinds[src_mod],
            "target_kind": kinds[tgt_mod],
        },
    )
    truth = xr.Dataset(
        {"T_i": (("band_t", "y", "x"), t_i), "valid": (("y", "x"), v_ti.astype(np.uint8))},
        coords={"band_t": list(tgt_bands), "y": y, "x": x},
        attrs=attrs,
    )
    return ds, truth


def _check_guide(
    src: Path, tgt: Path, date: str, prof: Mapping[str, Any], ref_prof: Mapping[str, Any], ref: Path, both: np.ndarray
) -> None:
    """A guide date's source is on the target date's grid and has pixels valid in source and target."""
    if _grid_key(prof) != _grid_key(ref_prof):
        raise ProductError(f"{src}: not on the same grid as {ref}; rerun the reprojection")
    if not both.any():
        raise CoverageError(
            f"{src} and {tgt}: no pixel is valid in both on guide date {date}; "
            "check the two products overlap the AOI or choose another guide date"
        )


def _check_target(
    src: Path, tgt: Path, date: str, valid: np.ndarray, prof: Mapping[str, Any], prof_t: Mapping[str, Any]
) -> None:
    """The target date's source has valid pixels and its target image is on the same grid."""
    if not valid.any():
        raise CoverageError(
            f"{src}: no valid pixel on the target date {date}; "
            "check the product covers the AOI or choose another target date"
        )
    if _grid_key(prof_t) != _grid_key(prof):
        raise ProductError(f"{tgt}: not on the same grid as {src}; rerun the reprojection")


def _stack_dataset(
    s_i: np.ndarray,
    s_g: np.ndarray,
    t_g: np.ndarray,
    valid_i: np.ndarray,
    valid_g: np.ndarray,
    src_attrs: Mapping[str, str],
    tgt_attrs: Mapping[str, str],
    coords: Mapping[str, Any],
    attrs: Mapping[str, Any],
) -> xr.Dataset:
    """The stack's variables (CONTRACTS.md "Stack NetCDF") with CF attributes; never T_i."""
    ds = xr.Dataset(
        {
            "S_i": (
                ("band_s", "y", "x"),
                s_i,
                {**src_attrs, "description": f"source on the target date {attrs['target_date']}"},
            ),
            "S_g": (("guide", "band_s", "y", "x"), s_g, {**src_attrs, "description": "source on the guide dates"}),
            "T_g": (("guide", "band_t", "y", "x"), t_g, {**tgt_attrs, "description": "target on the guide dates"}),
            "dS_ig": (
                ("guide", "band_s", "y", "x"),
                (s_i[np.newaxis] - s_g).astype(np.float32),
                {**src_attrs, "description": "S_i - S_g"},
            ),
            "valid_i": (
                ("y", "x"),
                valid_i.astype(np.uint8),
                {"description": "source valid on the target date", **_FLAGS},
            ),
            "valid_g": (
                ("guide", "y", "x"),
                valid_g.astype(np.uint8),
                {"description": "source and target valid on the guide date", **_FLAGS},
            ),
        },
        coords=dict(coords),
        attrs=dict(attrs),
    )
    ds["y"].attrs.update(units="m", standard_name="projection_y_coordinate")
    ds["x"].attrs.update(units="m", standard_name="projection_x_coordinate")
    return ds


def resolve_experiment_guides(
    experiment: Mapping[str, Any], s1: Mapping[str, Path], s2: Mapping[str, Path]
) -> dict[str, Any]:
    """The experiment with concrete guides: ``guides: auto`` picks them from the images given (DESIGN §6).

    Candidates are the dates with both modalities of the task; a date's clear fraction is the valid share
    of its target-modality image (:func:`read_image`: finite bands and the ``valid`` band). The target's
    images are not read.
    """
    if experiment.get("guides") != "auto":
        return dict(experiment)
    task = experiment.get("task")
    if task not in TASK_BANDS:
        raise ConfigError(
            f"experiments[{experiment.get('name', '?')}].task: {task!r} is not one of {sorted(TASK_BANDS)}"
        )
    (src_mod, _), _, (tgt_mod, _), tgt_bands = TASK_BANDS[task]
    paths = {"s1": s1, "s2": s2}

    def clear(date: str) -> float:
        return float(read_image(paths[tgt_mod][date], tgt_bands)[1].mean())

    return resolve_guides(experiment, clear, set(paths[src_mod]) & set(paths[tgt_mod]))


def run_stack(
    experiment: dict[str, Any],
    s1: dict[str, Path],
    s2: dict[str, Path],
    offsets_json: Path | None,
    out_nc: Path,
    out_truth_tif: Path,
) -> None:
    """Write ``stacks/{experiment}.nc`` (no T_i) and ``truth/{experiment}.tif`` (T_i bands + ``valid``)."""
    offsets = None
    if offsets_json is not None:
        try:
            offsets = json.loads(Path(offsets_json).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise ProductError(f"{offsets_json}: unreadable offsets ({exc}); rerun the offsets rule") from exc
    experiment = resolve_experiment_guides(experiment, s1, s2)
    if "guides_rule" in experiment:
        log.info(
            "%s: guides %s (%s)", experiment.get("name"), ", ".join(experiment["guides"]), experiment["guides_rule"]
        )
    ds, truth = build_stack(experiment, s1, s2, offsets)
    encoding: dict[str, dict[str, Any]] = {}
    for v in ds.data_vars:
        enc: dict[str, Any] = {"zlib": True, "complevel": 4, "shuffle": True}
        if ds[v].dtype.kind == "f":
            enc.update(dtype="float32", _FillValue=np.float32(np.nan))
        else:
            enc.update(_FillValue=None)
        encoding[str(v)] = enc
    with atomic_path(out_nc, suffix=".nc") as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format="NETCDF4", encoding=encoding)
    tr = ds.attrs["transform"]
    data = np.concatenate([truth["T_i"].values, truth["valid"].values[np.newaxis].astype(np.float32)])
    write_cog(
        data.astype(np.float32),
        out_truth_tif,
        crs=ds.attrs["crs"],
        transform=Affine(*tr),
        descriptions=[*truth["band_t"].values.tolist(), "valid"],
        tags={
            "experiment": ds.attrs["experiment"],
            "task": ds.attrs["task"],
            "target_date": ds.attrs["target_date"],
            "content": "T_i, the held-out target image; read only by evaluation",
        },
    )


def open_stack(path: str | os.PathLike[str]) -> xr.Dataset:
    """Load a stack NetCDF fully into memory (the file is closed on return); decodes the JSON attrs' ranges."""
    try:
        with xr.open_dataset(path, engine="netcdf4") as ds:
            out = ds.load()
    except (OSError, ValueError) as exc:
        raise ProductError(f"{path}: unreadable stack NetCDF ({exc}); delete it and rerun the stack rule") from exc
    if "T_i" in out:
        raise ProductError(f"{path}: contains T_i; stacks must not hold the target image — rebuild it")
    return out


def read_truth(path: str | os.PathLike[str]) -> tuple[xr.DataArray, xr.DataArray]:
    """T_i (band_t, y, x) float32 and its validity (y, x) bool from ``truth/{experiment}.tif``."""
    try:
        with rasterio.open(path) as src:
            desc = list(src.descriptions)
            if "valid" not in desc:
                raise ProductError(f"{path}: no 'valid' band; rebuild it with stacks.run_stack")
            arr = src.read().astype(np.float32)
            tr = src.transform
            attrs = {"crs": src.crs.to_string(), "transform": [tr.a, tr.b, tr.c, tr.d, tr.e, tr.f], **src.tags()}
    except rasterio.errors.RasterioIOError as exc:
        raise ProductError(f"{path}: unreadable truth GeoTIFF ({exc}); rerun the stack rule") from exc
    vi = desc.index("valid")
    bands = [d for i, d in enumerate(desc) if i != vi]
    x = tr.c + (np.arange(arr.shape[2]) + 0.5) * tr.a
    y = tr.f + (np.arange(arr.shape[1]) + 0.5) * tr.e
    t_i = xr.DataArray(
        np.delete(arr, vi, axis=0),
        dims=("band_t", "y", "x"),
        coords={"band_t": bands, "y": y, "x": x},
        attrs=attrs,
        name="T_i",
    )
    valid = xr.DataArray(arr[vi] > 0.5, dims=("y", "x"), coords={"y": y, "x": x}, name="valid")
    return t_i, valid
