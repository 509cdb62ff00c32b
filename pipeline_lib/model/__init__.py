"""TIRSIT model: networks, training, prediction, baselines and evaluation (DESIGN §6–7).

Entry points called by the Snakemake rules: :func:`run_train`, :func:`run_predict`, :func:`run_evaluate`.
The variant registry (:mod:`pipeline_lib.model.variants`) and the settings (:mod:`pipeline_lib.model.params`)
import without torch, so the workflow can read them at parse time; the torch-backed names below load on
first access (PEP 562).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "BASELINES",
    "TrainParams",
    "UNCERTAINTY_VARIANTS",
    "VARIANTS",
    "run_evaluate",
    "run_predict",
    "run_train",
]

_LAZY = {
    "BASELINES": "pipeline_lib.model.baselines",
    "TrainParams": "pipeline_lib.model.params",
    "VARIANTS": "pipeline_lib.model.data",
    "run_evaluate": "pipeline_lib.model.evaluate",
    "UNCERTAINTY_VARIANTS": "pipeline_lib.model.predict",
    "run_predict": "pipeline_lib.model.predict",
    "run_train": "pipeline_lib.model.train",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
