"""SNAP backend, structure: the gpt graph against SNAP's operator/parameter table, gpt lookup, error mapping."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

from pipeline_lib.config import schema_defaults
from pipeline_lib.errors import ConfigError, FetchError, PipelineError, ProductError
from pipeline_lib.grid import make_centered_grid
from pipeline_lib.sar.params import SpeckleParams
from pipeline_lib.sar.snap import (
    OPERATORS_CSV,
    DemSpec,
    build_graph,
    classify_gpt_failure,
    find_gpt,
    gpt_command,
    graph_nodes,
    graph_xml,
    load_operator_table,
    speckle_parameters,
    validate_graph,
)
from pipeline_lib.xmlsafe import parse_xml

FIXTURES = Path(__file__).resolve().parent / "data" / "fixtures"
CHAIN = ["Read", "ThermalNoiseRemoval", "Calibration", "Speckle-Filter", "Terrain-Correction", "Write"]


def _spk(settings: dict | None = None) -> SpeckleParams:
    """``sar.speckle`` as the schema fills it, with ``settings`` on top."""
    return SpeckleParams.from_config({**schema_defaults("sar", "speckle"), **(settings or {})})


def _graph(tmp_path: Path, *, apply_orbit: bool = False, speckle: dict | None = None):
    grid = make_centered_grid((12.5, 42.0), (128, 128))
    spk = speckle_parameters(_spk(speckle), product_looks=4.4)
    dem = DemSpec(name="External DEM", file=tmp_path / "dem.tif", apply_egm=True, nodata=-32768.0)
    root = build_graph(
        tmp_path / "S1.SAFE" / "manifest.safe",
        tmp_path / "tc.tif",
        grid,
        polarisations=("VV", "VH"),
        speckle=spk,
        dem=dem,
        apply_orbit=apply_orbit,
    )
    # Round trip through the XML text, as gpt reads it.
    return parse_xml(graph_xml(root).encode()), grid


def test_table_rows_are_complete_and_cite_sources() -> None:
    with open(OPERATORS_CSV, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["operator"] for r in rows} >= set(CHAIN) | {"Apply-Orbit-File"}
    for r in rows:
        assert r["type"] in {
            "String",
            "String[]",
            "int",
            "double",
            "boolean",
            "Boolean",
            "File",
            "Geometry",
            "Rectangle",
        }, r
        assert r["source"].endswith(")") and ".java" in r["source"], r
        if r["allowed"] and r["default"] and r["type"] == "String":
            assert r["default"] in r["allowed"].split("|"), r
    keys = [(r["operator"], r["parameter"]) for r in rows]
    assert len(keys) == len(set(keys))


@pytest.mark.parametrize("apply_orbit", [False, True])
def test_graph_chain_and_parameters(tmp_path: Path, apply_orbit: bool) -> None:
    root, grid = _graph(tmp_path, apply_orbit=apply_orbit)
    nodes = graph_nodes(root)
    expected = CHAIN[:1] + (["Apply-Orbit-File"] if apply_orbit else []) + CHAIN[1:]
    assert [op for _, op, _, _ in nodes] == expected
    # Each node reads the one before it.
    assert nodes[0][2] == []
    assert all(src == [nodes[i][0]] for i, (_, _, src, _) in enumerate(nodes[1:]))
    assert validate_graph(root) == []
    p = {op: params for _, op, _, params in nodes}
    assert p["Calibration"]["outputSigmaBand"] == "true" and p["Calibration"]["outputImageScaleInDb"] == "false"
    assert p["ThermalNoiseRemoval"]["selectedPolarisations"] == "VV,VH"
    assert p["Speckle-Filter"] == {
        "sourceBands": "Sigma0_VV,Sigma0_VH",
        "filter": "Lee Sigma",
        "windowSize": "7x7",
        "targetWindowSizeStr": "3x3",
        "sigmaStr": "0.9",
        "numLooksStr": "4",
    }
    tc = p["Terrain-Correction"]
    assert tc["mapProjection"] == "EPSG:32633"
    assert float(tc["pixelSpacingInMeter"]) == grid.resolution_m == 10.0
    assert (float(tc["standardGridOriginX"]), float(tc["standardGridOriginY"])) == (grid.transform.c, grid.transform.f)
    assert tc["demName"] == "External DEM" and tc["externalDEMFile"].endswith("dem.tif")
    assert tc["externalDEMApplyEGM"] == "true" and float(tc["externalDEMNoDataValue"]) == -32768.0
    assert tc["nodataValueAtSea"] == "false"
    assert p["Write"]["formatName"] == "GeoTIFF" and p["Write"]["file"].endswith("tc.tif")
    # Every value has the type the table gives it.
    table = load_operator_table()
    for _, op, _, params in nodes:
        for name, value in params.items():
            typ = table[op][name].type
            if typ in ("boolean", "Boolean"):
                assert value in ("true", "false")
            elif typ == "double":
                float(value)
            elif typ == "int":
                int(value)


@pytest.mark.parametrize(
    ("speckle", "expected"),
    [
        ({"window": 9, "target_window": 5, "sigma": 0.7, "looks": 1}, ("9x9", "5x5", "0.7", "1")),
        ({"window": 17, "looks": 2.6}, ("17x17", "3x3", "0.9", "3")),
        ({"looks": 12}, ("7x7", "3x3", "0.9", "4")),
    ],
)
def test_speckle_keys_map_to_snap(speckle: dict, expected: tuple) -> None:
    p = speckle_parameters(_spk(speckle), product_looks=None)
    assert (p["windowSize"], p["targetWindowSizeStr"], p["sigmaStr"], p["numLooksStr"]) == expected


def test_speckle_without_looks_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="sar.speckle.looks"):
        speckle_parameters(_spk(), product_looks=None)
    with pytest.raises(ConfigError, match="unknown keys"):
        _spk({"size": 7})


def test_validator_catches_wrong_names_values_and_types(tmp_path: Path) -> None:
    root, _ = _graph(tmp_path)
    node = {n.get("id"): n for n in root.findall("node")}
    node["Speckle-Filter"].find("parameters/windowSize").text = "8x8"
    node["Calibration"].find("parameters/outputSigmaBand").text = "yes"
    node["Terrain-Correction"].find("parameters/pixelSpacingInMeter").text = "ten"
    node["Write"].find("operator").text = "Writer"
    param = node["ThermalNoiseRemoval"].find("parameters")
    param.append(param.makeelement("removeNoise", {}))
    problems = "\n".join(validate_graph(root))
    assert "Speckle-Filter.windowSize: '8x8' not in" in problems
    assert "Calibration.outputSigmaBand: 'yes' is not a boolean" in problems
    assert "Terrain-Correction.pixelSpacingInMeter: 'ten' is not of type double" in problems
    assert "Operator 'Writer' not found" in problems
    assert "Unknown parameter 'removeNoise'" in problems


def test_gpt_command_and_lookup(tmp_path: Path) -> None:
    assert gpt_command("gpt", Path("g.xml"), 2, 1024) == ["gpt", "g.xml", "-q", "2", "-c", "1024M", "-e"]
    with pytest.raises(ConfigError):
        gpt_command("gpt", Path("g.xml"), 0, 1024)
    fake = tmp_path / "bin" / "gpt"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\nexit 0\n")
    fake.chmod(0o755)
    assert find_gpt(None, search_path=str(fake.parent)) == str(fake)
    assert find_gpt(None, search_path=str(tmp_path)) is None
    assert find_gpt(str(fake)) == str(fake)
    with pytest.raises(ConfigError, match="sar.gpt"):
        find_gpt(str(tmp_path / "nope" / "gpt"))
    assert os.access(Path(__file__).parent / "gpt_standin" / "gpt", os.X_OK)


@pytest.mark.parametrize(
    ("code", "log", "cls", "needle"),
    [
        (
            1,
            "Error: [NodeId: Apply-Orbit-File] No valid orbit file found for 23-DEC-2021 05:11:22",
            FetchError,
            "apply_orbit",
        ),
        (1, "Error: [NodeId: Terrain-Correction] Cannot find DEM /x/dem.tif", ConfigError, "sar.dem"),
        (1, "SEVERE: DEM not found", ConfigError, "sar.dem"),
        (1, "java.lang.OutOfMemoryError: Java heap space", ConfigError, "heap"),
        (1, "Error: [NodeId: Speckle-Filter] Unknown element 'fooBar' (Unknown parameter)", ConfigError, "parameter"),
        (1, "Error: [NodeId: Terrain-Correction] Operator 'Terrain-Correction' not found", ConfigError, "toolbox"),
        (1, "Error: [NodeId: Read] Specified 'file' [/x/manifest.safe] does not exist.", ProductError, "download"),
        (137, "INFO: Executing processing graph", ConfigError, "killed"),
        (3, "Error: something odd happened", PipelineError, "something odd"),
    ],
)
def test_gpt_failures_map_to_one_line_errors(code: int, log: str, cls: type, needle: str) -> None:
    err = classify_gpt_failure(code, "INFO: start\n" + log + "\n", "logs/x.log")
    assert type(err) is cls
    msg = str(err)
    assert "\n" not in msg and needle in msg and "logs/x.log" in msg and f"exit {code}" in msg
