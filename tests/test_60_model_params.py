"""TrainParams: one home for each training default (the schema), checks in one place (DESIGN §3, §6)."""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest
import yaml

from pipeline_lib.config import load_region, schema_defaults
from pipeline_lib.errors import ConfigError, ModelError
from pipeline_lib.model.params import PREDICT_KEYS, TASK_KEYS, TASKS, TRAIN_KEYS, TrainParams

REPO = Path(__file__).resolve().parents[1]
FIELDS = {f.name for f in dataclasses.fields(TrainParams)}

#: The paper's per-task values (§IV-C.1 SAR→visible, §IV-D.1 visible→SWIR), written here as the expectation.
PAPER = {
    "sar_to_visible": {"lr": 5e-4, "lr2": 2.5e-4, "lambda_con": 2.0, "mean_filter": 51},
    "visible_to_swir": {"lr": 2e-3, "lr2": 1e-3, "lambda_con": 5.0, "mean_filter": 11},
}
BOTH = {"epochs1": 60, "epochs2": 20, "disc_epochs": 60, "lambda_adv": 1e-3, "lambda_l1": 100.0, "k": 10.0}


@pytest.mark.parametrize("task", TASKS)
def test_schema_defaults_are_the_paper_values(task: str) -> None:
    block = schema_defaults("train")[task]
    assert block == {**PAPER[task], **BOTH}
    p = TrainParams.for_task(task)
    assert {k: getattr(p, k) for k in TASK_KEYS} == {**PAPER[task], **BOTH}
    assert (p.batch_size, p.patch_px, p.filters, p.levels, p.eta) == (16, 64, 32, 5, 0.5)  # paper §IV-C.1, 64 px
    assert (p.tile_px, p.overlap_px, p.max_steps, p.task) == (256, 64, None, task)


def test_every_field_is_a_config_key_and_the_schema_fills_each() -> None:
    assert FIELDS == {"task", *TRAIN_KEYS, *TASK_KEYS, *PREDICT_KEYS}
    train, predict = schema_defaults("train"), schema_defaults("predict")
    assert set(TRAIN_KEYS) <= set(train) and set(PREDICT_KEYS) == set(predict)
    for task in TASKS:
        assert set(train[task]) == set(TASK_KEYS)


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"patch_px": 50}, "train.patch_px"),
        ({"levels": 6, "patch_px": 32}, "train.patch_px"),
        ({"tile_px": 100}, "predict.tile_px"),
        ({"overlap_px": 129}, "predict.overlap_px"),
        ({"overlap_px": -1}, "predict.overlap_px"),
        ({"lr": 0}, "train.sar_to_visible.lr"),
        ({"k": -1.0}, "train.sar_to_visible.k"),
        ({"lambda_con": float("nan")}, "train.sar_to_visible.lambda_con"),
        ({"mean_filter": 0}, "train.sar_to_visible.mean_filter"),
        ({"batch_size": True}, "train.batch_size"),
        ({"batch_size": 0}, "train.batch_size"),
        ({"filters": 8.5}, "train.filters"),
        ({"eta": 1.5}, "train.eta"),
        ({"levels": 0}, "train.levels"),
        ({"max_steps": 0}, "train.max_steps"),
        ({"augment": "yes"}, "train.augment"),
        ({"task": "sar_to_swir"}, "task"),
        ({"nonsense": 1}, "nonsense"),
    ],
)
def test_checks_raise_one_line_config_errors(changes: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        TrainParams.for_task("sar_to_visible").replace(**changes)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"{key}: "), msg
    assert ";" in msg or "e.g." in msg, msg  # says what to do


def test_from_config_reads_the_task_block_and_ignores_the_rest() -> None:
    train, predict = schema_defaults("train"), schema_defaults("predict")
    train["sar_to_visible"] = {**train["sar_to_visible"], "lr": 9.0}
    train["max_steps"], predict["tile_px"] = 5, 128
    p = TrainParams.from_config("visible_to_swir", train, predict)
    assert p.lr == 2e-3 and p.lambda_con == 5.0 and p.mean_filter == 11 and p.max_steps == 5 and p.tile_px == 128
    assert TrainParams.from_config("sar_to_visible", train, predict).lr == 9.0
    assert TrainParams.from_config("sar_to_visible", train).tile_px == 256  # training jobs: the schema's predict
    with pytest.raises(ConfigError, match=r"^train\.lr: unknown key"):
        TrainParams.from_config("sar_to_visible", {**train, "lr": 1.0}, predict)
    with pytest.raises(ConfigError, match=r"^train\.visible_to_swir: missing"):
        TrainParams.from_config("visible_to_swir", {k: v for k, v in train.items() if k != "visible_to_swir"})
    block = {k: v for k, v in train["sar_to_visible"].items() if k != "k"}
    with pytest.raises(ConfigError, match=r"^train\.sar_to_visible\.k: missing; validate"):
        TrainParams.from_config("sar_to_visible", {**train, "sar_to_visible": block})


def test_a_region_file_overrides_one_paper_value(tmp_path: Path) -> None:
    region = yaml.safe_load((REPO / "config/regions/ci-tiny.yaml").read_text(encoding="utf-8"))
    region["region"] = "tiny"
    region["train"] = {"visible_to_swir": {"lr": 1.0e-3}, "log_every": 3}
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(region), encoding="utf-8")
    cfg = load_region("tiny", tmp_path)
    swir = TrainParams.from_config("visible_to_swir", cfg["train"], cfg["predict"])
    vis = TrainParams.from_config("sar_to_visible", cfg["train"], cfg["predict"])
    assert (swir.lr, swir.lr2, swir.log_every) == (1e-3, 1e-3, 3)
    assert vis == TrainParams.for_task("sar_to_visible", log_every=3, **cfg["predict"])


def test_checkpoint_round_trip_and_refusal() -> None:
    p = TrainParams.for_task("visible_to_swir", max_steps=7, filters=8)
    assert TrainParams.from_checkpoint(p.as_dict(), "m.pt") == p
    old = {k: v for k, v in p.as_dict().items() if k != "task"}  # before TrainParams: no task key
    with pytest.raises(ModelError, match=r"^m\.pt: stored parameters .* delete it and retrain$"):
        TrainParams.from_checkpoint(old, "m.pt")
    with pytest.raises(ModelError, match=r"^m\.pt: stored parameters refused"):
        TrainParams.from_checkpoint({**p.as_dict(), "overlap_px": 999}, "m.pt")
    with pytest.raises(ModelError, match="parameters are for 'visible_to_swir'"):
        p.check_task("sar_to_visible", "s.nc")
    q = TrainParams.for_task("visible_to_swir", tile_px=128).with_network_of(p)
    assert (q.filters, q.tile_px, q.max_steps) == (8, 128, None)


def test_params_are_frozen_and_floats_are_floats() -> None:
    p = TrainParams.for_task("sar_to_visible", lr=1, k=3)
    assert isinstance(p.lr, float) and isinstance(p.k, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.lr = 2.0  # type: ignore[misc]


def test_no_library_module_writes_a_training_default_a_second_time() -> None:
    """The schema is the only home: no defaults dict, no resolver, no default argument for a training setting."""
    names = FIELDS - {"task"}
    found = []
    for path in sorted((REPO / "pipeline_lib").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        rel = path.relative_to(REPO)
        for word in ("COMMON_DEFAULTS", "resolve_params", "DEFAULTS:"):
            if word in text:
                found.append(f"{rel}: {word}")
        if re.search(r"[\"'](lambda_con|lambda_adv|mean_filter|epochs1|disc_epochs)[\"']\s*:\s*[0-9]", text):
            found.append(f"{rel}: a literal training setting")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                a = node.args
                pos = [*a.posonlyargs, *a.args]
                with_default = [x.arg for x in pos[len(pos) - len(a.defaults) :]]
                with_default += [x.arg for x, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
                scope = names if rel.parts[1] in ("model", "gapfill") else set(PREDICT_KEYS)
                found += [f"{rel}: {node.name}({n}=...)" for n in with_default if n in scope]
    assert not found, found
