"""Guide dates chosen from the time series: ``guides: auto`` (DESIGN §6 "more than two guides").

A model trained on one guide pair sees one change (64–100 px of it on the real chips); with N guide
dates every ordered pair (j, k) is a training example (:func:`pipeline_lib.model.data.epoch_patches`)
and the prediction blends N reconstructions. :func:`auto_guides` picks the dates: every date other
than the target with both modalities present and a clear fraction of at least ``min_clear``, within
``window_days`` of the target; at least two, else the two nearest clear dates outside the window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import date
from typing import Any

from pipeline_lib.errors import ConfigError

__all__ = ["auto_guides", "resolve_guides"]


def auto_guides(
    clear_fraction: Mapping[str, float],
    dates: Mapping[str, date],
    target: str,
    window_days: int,
    min_clear: float,
) -> list[str]:
    """Guide date keys (sorted by date) for ``target``.

    ``clear_fraction``: date key → clear fraction of the target-modality image (only keys where the
    source modality also exists); ``dates``: date key → calendar date.
    """
    if target not in dates:
        raise ConfigError(f"guides: auto: target {target!r} is not one of the region's dates")
    if window_days < 1:
        raise ConfigError(f"guides_window_days={window_days} must be at least 1")
    t0 = dates[target]
    clear = [d for d, f in clear_fraction.items() if d != target and d in dates and f >= min_clear]
    near = [d for d in clear if abs((dates[d] - t0).days) <= window_days]
    if len(near) < 2:
        near = sorted(clear, key=lambda d: (abs((dates[d] - t0).days), dates[d]))[:2]
    if len(near) < 2:
        raise ConfigError(
            f"guides: auto: fewer than 2 clear dates (clear fraction ≥ {min_clear}) besides {target}; list guides"
        )
    return sorted(near, key=lambda d: dates[d])


def resolve_guides(
    experiment: Mapping[str, Any],
    clear_fraction: Callable[[str], float],
    candidates: Iterable[str],
) -> dict[str, Any]:
    """The experiment with concrete guide dates: unchanged unless ``guides`` is ``"auto"``.

    With ``auto``: :func:`auto_guides` over ``candidates`` (the dates with both modalities) minus the target
    and the experiment's ``exclude`` dates (a validation experiment excludes the test's target, whose
    images it must never read), using the experiment's ``guides_window_days`` and ``guides_min_clear``
    (the workflow schema fills both). ``clear_fraction(date)`` is the clear share of the date's target-
    modality image. The chosen dates are returned in ``guides``, the rule in ``guides_rule``.
    """
    if experiment.get("guides") != "auto":
        return dict(experiment)
    name = experiment.get("name", "?")
    missing = [k for k in ("guides_window_days", "guides_min_clear") if experiment.get(k) is None]
    if missing:
        raise ConfigError(f"experiments[{name}].{missing[0]}: needed with guides: auto (the schema fills it)")
    target = str(experiment["target"])
    skip = {target, *map(str, experiment.get("exclude", []))}
    pool = sorted(str(d) for d in candidates if str(d) not in skip)
    try:
        when = {d: date.fromisoformat(d[:10]) for d in [*pool, target]}
    except ValueError as exc:
        raise ConfigError(f"experiments[{name}]: guides: auto needs ISO dates ({exc})") from exc
    window, min_clear = int(experiment["guides_window_days"]), float(experiment["guides_min_clear"])
    chosen = auto_guides({d: clear_fraction(d) for d in pool}, when, target, window, min_clear)
    rule = f"auto: clear fraction >= {min_clear} within {window} days of {target}"
    return {**dict(experiment), "guides": chosen, "guides_rule": rule}
