"""Stack NetCDF layout (docs/CONTRACTS.md), no T_i inside, differences, masks, offsets applied, truth file."""

from __future__ import annotations

import json
from pathlib import Path

import netCDF4
import numpy as np
import pytest
import rasterio

from pipeline_lib.cog import write_cog
from pipeline_lib.errors import ConfigError
from pipeline_lib.grid import Grid, make_centered_grid
from pipeline_lib.io import write_json_atomic
from pipeline_lib.stacks import PHYSICAL_RANGES, open_stack, read_truth, run_stack

DATES = ["2021-12-23", "2022-01-04", "2022-01-16", "2022-01-28"]
N = 32


def _grid() -> Grid:
    return make_centered_grid((12.5, 42.0), (N, N))


def _world(tmp: Path) -> tuple[dict[str, Path], dict[str, Path], dict[str, dict[str, np.ndarray]]]:
    """Seeded S1 (VV, VH dB) and S2 (5 bands + valid) COGs per date; a cloud on 2022-01-16's S2."""
    grid = _grid()
    rng = np.random.default_rng(42)
    s1, s2, arrays = {}, {}, {}
    for k, d in enumerate(DATES):
        vv = (-15 + 3 * rng.standard_normal((N, N))).astype(np.float32)
        vh = (vv - 7).astype(np.float32)
        vv[0, :3] = np.nan  # outside the swath
        refl = (0.05 + 0.02 * k + 0.1 * rng.random((5, N, N))).astype(np.float32)
        valid = np.ones((N, N), np.float32)
        if d == "2022-01-16":
            valid[5:15, 5:15] = 0.0
            refl[:, 5:15, 5:15] = np.nan
        s1[d], s2[d] = tmp / "s1" / f"{d}.tif", tmp / "s2" / f"{d}.tif"
        write_cog(np.stack([vv, vh]), s1[d], crs=grid.crs, transform=grid.transform, descriptions=["VV", "VH"])
        write_cog(
            np.concatenate([refl, valid[None]]),
            s2[d],
            crs=grid.crs,
            transform=grid.transform,
            descriptions=["B04", "B03", "B02", "B11", "B12", "valid"],
        )
        arrays[d] = {
            "VV": vv,
            "VH": vh,
            **{b: refl[i] for i, b in enumerate(["B04", "B03", "B02", "B11", "B12"])},
            "valid": valid,
        }
    return s1, s2, arrays


EXP = {"name": "sv_0116", "task": "sar_to_visible", "target": "2022-01-16", "guides": ["2021-12-23", "2022-01-28"]}


def test_sar_to_visible_stack_layout(tmp_path: Path) -> None:
    s1, s2, arr = _world(tmp_path)
    out_nc, out_truth = tmp_path / "stacks" / "sv_0116.nc", tmp_path / "truth" / "sv_0116.tif"
    run_stack(EXP, s1, s2, None, out_nc, out_truth)
    ds = open_stack(out_nc)
    assert dict(ds.sizes) == {"guide": 2, "band_s": 2, "band_t": 3, "y": N, "x": N}
    assert set(ds.data_vars) == {"S_i", "S_g", "T_g", "dS_ig", "valid_i", "valid_g"}
    assert "T_i" not in ds.variables
    assert ds["S_g"].dims == ("guide", "band_s", "y", "x") and ds["T_g"].dims == ("guide", "band_t", "y", "x")
    assert ds["S_i"].dtype == np.float32 and ds["valid_i"].dtype == np.uint8
    assert ds["guide_date"].values.tolist() == EXP["guides"]
    assert ds["band_s"].values.tolist() == ["VV", "VH"] and ds["band_t"].values.tolist() == ["B04", "B03", "B02"]
    grid = _grid()
    np.testing.assert_allclose(ds["x"].values, grid.x_coords())
    np.testing.assert_allclose(ds["y"].values, grid.y_coords())
    assert ds.attrs["experiment"] == "sv_0116" and ds.attrs["task"] == "sar_to_visible"
    assert ds.attrs["target_date"] == "2022-01-16" and ds.attrs["crs"] == grid.crs
    np.testing.assert_allclose(ds.attrs["transform"], list(grid.transform)[:6])
    assert json.loads(ds.attrs["source_range"]) == {"VV": [-30.0, 5.0], "VH": [-35.0, 0.0]}
    assert json.loads(ds.attrs["target_range"]) == {b: list(PHYSICAL_RANGES[b]) for b in ("B04", "B03", "B02")}
    assert json.loads(ds.attrs["offsets_applied"]) == {}
    # values: S_i is S1 on the target date, T_g is S2 on the guides; dS_ig = S_i - S_g exactly
    np.testing.assert_array_equal(ds["S_i"].sel(band_s="VV").values, arr["2022-01-16"]["VV"])
    np.testing.assert_array_equal(ds["T_g"].isel(guide=1).sel(band_t="B02").values, arr["2022-01-28"]["B02"])
    np.testing.assert_array_equal(
        ds["dS_ig"].values, (ds["S_i"] - ds["S_g"]).transpose("guide", "band_s", "y", "x").values
    )
    # masks: source NaN on the target date; on a guide date source and target both valid
    assert ds["valid_i"].values[0, 0] == 0 and ds["valid_i"].values[5, 5] == 1
    assert ds["valid_g"].isel(guide=0).values[0, 1] == 0 and ds["valid_g"].isel(guide=0).values[10, 10] == 1
    # compressed float32 on disk, T_i nowhere in the file
    with netCDF4.Dataset(out_nc) as nc:
        assert nc["S_g"].filters()["zlib"] and nc["S_g"].dtype == np.float32
        assert "T_i" not in nc.variables
    # the truth file: T_i = S2 on the target date, with the cloud masked
    t_i, valid = read_truth(out_truth)
    assert t_i["band_t"].values.tolist() == ["B04", "B03", "B02"]
    np.testing.assert_array_equal(t_i.sel(band_t="B04").values, arr["2022-01-16"]["B04"])
    assert not valid.values[10, 10] and valid.values[20, 20]
    with rasterio.open(out_truth) as src:
        assert src.descriptions == ("B04", "B03", "B02", "valid") and src.crs.to_string() == grid.crs


def test_visible_to_swir_and_three_guides(tmp_path: Path) -> None:
    s1, s2, arr = _world(tmp_path)
    exp = {
        "name": "vs_0104",
        "task": "visible_to_swir",
        "target": "2022-01-04",
        "guides": ["2021-12-23", "2022-01-16", "2022-01-28"],
    }
    run_stack(exp, s1, s2, None, tmp_path / "a.nc", tmp_path / "a.tif")
    ds = open_stack(tmp_path / "a.nc")
    assert dict(ds.sizes)["guide"] == 3 and ds["band_t"].values.tolist() == ["B11", "B12"]
    # the cloudy guide is invalid under the cloud, others valid there
    assert ds["valid_g"].sel(guide=1).values[10, 10] == 0 and ds["valid_g"].sel(guide=0).values[10, 10] == 1
    np.testing.assert_allclose(
        ds["dS_ig"].isel(guide=2, band_s=0).values, arr["2022-01-04"]["B04"] - arr["2022-01-28"]["B04"], rtol=1e-6
    )
    t_i, _ = read_truth(tmp_path / "a.tif")
    np.testing.assert_array_equal(t_i.sel(band_t="B12").values, arr["2022-01-04"]["B12"])


def test_corrected_offsets_are_applied(tmp_path: Path) -> None:
    s1, s2, arr = _world(tmp_path)
    offsets = {
        "corrections": {
            "s1": {d: [0.0, 0.0] for d in DATES} | {"2022-01-28": [0.0, 2.0]},
            "s2": {d: [0.0, 0.0] for d in DATES},
        }
    }
    write_json_atomic(tmp_path / "offsets.json", offsets)
    run_stack(EXP, s1, s2, tmp_path / "offsets.json", tmp_path / "b.nc", tmp_path / "b.tif")
    ds = open_stack(tmp_path / "b.nc")
    assert json.loads(ds.attrs["offsets_applied"]) == {"s1:2022-01-28": [0.0, 2.0]}
    # an image offset by +2 columns is moved back by 2 columns (integer shift: exact)
    got = ds["S_g"].isel(guide=1).sel(band_s="VH").values
    np.testing.assert_allclose(got[:, 4:-4], arr["2022-01-28"]["VH"][:, 6:-2], atol=1e-4)
    assert ds["valid_g"].isel(guide=1).values[:, -1].sum() == 0  # came from outside the image


@pytest.mark.parametrize(
    "bad",
    [
        {"task": "sar_to_swir"},
        {"guides": ["2021-12-23"]},
        {"guides": ["2021-12-23", "2022-01-16"]},
        {"guides": ["2021-12-23", "2023-01-01"]},
    ],
)
def test_bad_experiment_is_a_config_error(tmp_path: Path, bad: dict[str, object]) -> None:
    s1, s2, _ = _world(tmp_path)
    with pytest.raises(ConfigError, match="experiments"):
        run_stack(EXP | bad, s1, s2, None, tmp_path / "c.nc", tmp_path / "c.tif")
    assert not (tmp_path / "c.nc").exists()
