"""TIRSIT model: networks, training, prediction, baselines and evaluation (DESIGN §6–7).

Entry points called by the Snakemake rules: :func:`run_train`, :func:`run_predict`, :func:`run_evaluate`.
"""

from __future__ import annotations

from pipeline_lib.model.baselines import BASELINES
from pipeline_lib.model.data import DEFAULTS, VARIANTS
from pipeline_lib.model.evaluate import run_evaluate
from pipeline_lib.model.predict import UNCERTAINTY_VARIANTS, run_predict
from pipeline_lib.model.train import run_train

__all__ = ["BASELINES", "DEFAULTS", "UNCERTAINTY_VARIANTS", "VARIANTS", "run_evaluate", "run_predict", "run_train"]
