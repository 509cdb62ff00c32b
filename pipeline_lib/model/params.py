"""Training and prediction settings as one frozen, typed parameter object (docs/DESIGN.md §3 and §6).

The defaults live in the schema only (``workflow/schemas/config.schema.yaml``): ``$defs/train`` (batch 16,
64 px patches, 32 filters, 5 levels, ...), ``$defs/sar_to_visible_train`` and ``$defs/visible_to_swir_train``
(the paper's per-task values, §IV-C.1 and §IV-D.1) and ``$defs/predict`` (256 px tiles overlapping by 64).
:meth:`TrainParams.from_config` turns the validated ``train`` and ``predict`` sections into a
:class:`TrainParams` for one task; :meth:`TrainParams.for_task` gives the schema's defaults with a few
overrides (tests, benchmarks); every check of the values sits in ``__post_init__``. Checkpoints store the
parameters as a plain dict (:meth:`TrainParams.as_dict`) and :meth:`TrainParams.from_checkpoint` rebuilds them.
This module imports no torch, so the workflow checks the settings at DAG time.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pipeline_lib.config import schema_defaults
from pipeline_lib.errors import ConfigError, ModelError, check_section_keys

__all__ = ["TASKS", "TRAIN_KEYS", "TASK_KEYS", "PREDICT_KEYS", "NETWORK_KEYS", "TrainParams"]

TASKS = ("sar_to_visible", "visible_to_swir")
#: keys of the ``train`` section shared by both tasks
TRAIN_KEYS = (
    "batch_size",
    "patch_px",
    "max_steps",
    "seed",
    "checkpoint_every",
    "eta",
    "filters",
    "levels",
    "augment",
    "log_every",
)
#: keys of ``train.<task>`` (the paper's per-task values)
TASK_KEYS = (
    "lr",
    "lr2",
    "epochs1",
    "epochs2",
    "disc_epochs",
    "lambda_con",
    "lambda_adv",
    "lambda_l1",
    "mean_filter",
    "k",
)
#: keys of the ``predict`` section
PREDICT_KEYS = ("tile_px", "overlap_px")
#: settings that shape the network: a prediction takes them from the checkpoint it loads
NETWORK_KEYS = ("filters", "levels", "eta")
#: keys of the ``train`` section that are no training parameter (the rule's device and threads, the number of
#: seed-ensemble members the workflow trains, :mod:`pipeline_lib.model.ensemble`; the task blocks)
_OTHER_TRAIN_KEYS = ("device", "threads", "ensemble", *TASKS)

_INTS: tuple[str, ...] = (
    "batch_size",
    "patch_px",
    "seed",
    "checkpoint_every",
    "filters",
    "levels",
    "log_every",
    "epochs1",
    "epochs2",
    "disc_epochs",
    "mean_filter",
    "tile_px",
    "overlap_px",
)
_FLOATS = ("eta", "lr", "lr2", "lambda_con", "lambda_adv", "lambda_l1", "k")


@dataclass(frozen=True)
class TrainParams:
    """Every setting of training and prediction for one task (schema ``train``, ``train.<task>``, ``predict``).

    ``max_steps`` None = the paper's full schedule (``epochs1`` + ``epochs2`` epochs); ``patch_px`` and
    ``tile_px`` are multiples of 2^``levels``; ``overlap_px`` is at most half of ``tile_px``.
    """

    task: str
    batch_size: int
    patch_px: int
    max_steps: int | None
    seed: int
    checkpoint_every: int
    eta: float
    filters: int
    levels: int
    augment: bool
    log_every: int
    lr: float
    lr2: float
    epochs1: int
    epochs2: int
    disc_epochs: int
    lambda_con: float
    lambda_adv: float
    lambda_l1: float
    mean_filter: int
    k: float
    tile_px: int
    overlap_px: int

    def key(self, name: str) -> str:
        """The config key of field ``name`` (``train.patch_px``, ``train.sar_to_visible.lr``, ``predict.tile_px``)."""
        if name in TASK_KEYS:
            return f"train.{self.task}.{name}"
        return f"predict.{name}" if name in PREDICT_KEYS else f"train.{name}"

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task: {self.task!r} is unknown; use one of {', '.join(TASKS)}")
        for name in _INTS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{self.key(name)}: {value!r} must be an integer; give a whole number")
        for name in _FLOATS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise ConfigError(f"{self.key(name)}: {value!r} must be a finite number; give a number")
            object.__setattr__(self, name, float(value))
        if not isinstance(self.augment, bool):
            raise ConfigError(f"{self.key('augment')}: {self.augment!r} must be true or false; give a boolean")
        if self.max_steps is not None and (
            isinstance(self.max_steps, bool) or not isinstance(self.max_steps, int) or self.max_steps < 1
        ):
            raise ConfigError(
                f"{self.key('max_steps')}: {self.max_steps!r} must be an integer >= 1 or null; give a step count or null"
            )
        self._check_ranges()

    def _check_ranges(self) -> None:
        for name in ("batch_size", "checkpoint_every", "filters", "log_every", "mean_filter"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{self.key(name)}: {getattr(self, name)} must be >= 1; give a positive integer")
        for name in ("epochs1", "epochs2", "disc_epochs", "lambda_con", "lambda_adv", "lambda_l1", "overlap_px"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{self.key(name)}: {getattr(self, name)} must be >= 0; give zero or more")
        for name in ("lr", "lr2", "k"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{self.key(name)}: {getattr(self, name)} must be > 0; give a positive number")
        if not 0.0 <= self.eta <= 1.0:
            raise ConfigError(f"{self.key('eta')}: {self.eta} must be in [0, 1], e.g. 0.5")
        if not 1 <= self.levels <= 7:
            raise ConfigError(f"{self.key('levels')}: {self.levels} must be in 1..7, e.g. 5")
        mult = 2**self.levels
        for name in ("patch_px", "tile_px"):
            value = getattr(self, name)
            if value < mult or value % mult:
                raise ConfigError(
                    f"{self.key(name)}: {value} must be a multiple of 2^levels = {mult} (train.levels {self.levels});"
                    f" e.g. {max(mult, value // mult * mult)}"
                )
        if self.overlap_px > self.tile_px // 2:
            raise ConfigError(
                f"{self.key('overlap_px')}: {self.overlap_px} must be at most half of predict.tile_px {self.tile_px};"
                f" e.g. {self.tile_px // 4}"
            )

    @classmethod
    def from_config(cls, task: str, train: Mapping[str, Any], predict: Mapping[str, Any] | None = None) -> TrainParams:
        """The parameters of ``task`` from the validated ``train`` and ``predict`` sections (the schema fills them).

        ``train`` may hold ``device``, ``threads`` and both task blocks (the other task's is not read).
        ``predict`` None = the schema's ``predict`` defaults: a training job does not read the region's
        ``predict`` section, so changing how prediction tiles never retrains a model.
        """
        if task not in TASKS:
            raise ConfigError(f"task: {task!r} is unknown; use one of {', '.join(TASKS)}")
        predict = schema_defaults("predict") if predict is None else predict
        block = train.get(task)
        if not isinstance(block, Mapping):
            raise ConfigError(f"train.{task}: missing; validate the config against the schema, which fills it")
        values: dict[str, Any] = {}
        for section, name, keys, allowed in (
            (train, "train", TRAIN_KEYS, (*TRAIN_KEYS, *_OTHER_TRAIN_KEYS)),
            (block, f"train.{task}", TASK_KEYS, TASK_KEYS),
            (predict, "predict", PREDICT_KEYS, PREDICT_KEYS),
        ):
            check_section_keys(dict(section), name, tuple(keys), tuple(allowed))
            values.update({k: section[k] for k in keys})
        return cls(task=task, **values)

    @classmethod
    def for_task(cls, task: str, **overrides: Any) -> TrainParams:
        """The schema's defaults for ``task`` with ``overrides`` (field names), e.g. ``for_task(t, max_steps=6)``.

        For tests, benchmarks and tools that call the library without a region file. The overrides pass
        the checks of ``__post_init__`` (not the schema's bounds, so tests can train 8 px patches).
        """
        base = cls.from_config(task, schema_defaults("train"), schema_defaults("predict"))
        return base.replace(**overrides)

    def replace(self, **changes: Any) -> TrainParams:
        """A copy with ``changes`` (field names), checked again; ConfigError naming an unknown field."""
        fields = [f.name for f in dataclasses.fields(self)]
        unknown = sorted(set(changes) - set(fields))
        if unknown:
            raise ConfigError(f"{unknown[0]}: not a training parameter; use one of {', '.join(fields)}")
        return dataclasses.replace(self, **changes)

    def with_network_of(self, trained: TrainParams) -> TrainParams:
        """These parameters with the network shape (:data:`NETWORK_KEYS`) of a trained model's."""
        return self.replace(**{k: getattr(trained, k) for k in NETWORK_KEYS})

    def check_task(self, task: str, origin: str) -> None:
        """ModelError naming ``origin`` (a stack) when its ``task`` is not the one these parameters are for."""
        if task != self.task:
            raise ModelError(
                f"{origin}: a {task!r} stack, but the parameters are for {self.task!r}; build them for the stack's task"
            )

    def as_dict(self) -> dict[str, Any]:
        """A plain dict of every field (what checkpoints store)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_checkpoint(cls, params: Mapping[str, Any], origin: str) -> TrainParams:
        """Rebuild the parameters a checkpoint stored with :meth:`as_dict`; ModelError naming ``origin``."""
        fields = {f.name for f in dataclasses.fields(cls)}
        if not isinstance(params, Mapping) or set(params) != fields:
            got = sorted(params) if isinstance(params, Mapping) else type(params).__name__
            raise ModelError(f"{origin}: stored parameters {got} are not this version's; delete it and retrain")
        try:
            return cls(**params)
        except ConfigError as exc:
            raise ModelError(f"{origin}: stored parameters refused ({exc}); delete it and retrain") from None
