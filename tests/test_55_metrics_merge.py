"""The metrics rule's merge of per-experiment metrics into the region's metrics.json / .csv (DESIGN §7)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from pipeline_lib.metrics import merge_metrics


def _experiment(folder: Path, name: str, rmse: float) -> Path:
    path = folder / f"{name}.json"
    path.write_text(json.dumps({name: {"tirsit": {"rmse": {"B04": rmse, "mean": rmse}}}}), encoding="utf-8")
    with open(path.with_suffix(".csv"), "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["experiment", "variant", "metric", "band", "value"])
        w.writerow([name, "tirsit", "rmse", "B04", rmse])
    return path


def test_merge_keeps_every_experiment_and_one_csv_header(tmp_path: Path) -> None:
    parts = [_experiment(tmp_path, "a", 0.1), _experiment(tmp_path, "b", 0.2)]
    merged = merge_metrics(parts, tmp_path / "metrics.json", tmp_path / "metrics.csv")
    assert sorted(merged) == ["a", "b"]
    assert json.loads((tmp_path / "metrics.json").read_text(encoding="utf-8")) == merged
    lines = (tmp_path / "metrics.csv").read_text(encoding="utf-8").splitlines()
    assert lines == ["experiment,variant,metric,band,value", "a,tirsit,rmse,B04,0.1", "b,tirsit,rmse,B04,0.2"]
