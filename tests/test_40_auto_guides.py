"""guides: auto — clear dates within a window around the target (DESIGN §6)."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from pipeline_lib.errors import ConfigError
from pipeline_lib.guides import auto_guides

D0 = date(2021, 6, 15)


def _series(offsets: list[int], clear: list[float]) -> tuple[dict[str, float], dict[str, date]]:
    dates = {f"d{o:+d}": D0 + timedelta(days=o) for o in offsets}
    return dict(zip(dates, clear, strict=True)), dates


def test_clear_dates_inside_the_window_sorted_by_date() -> None:
    clear, dates = _series([-61, -30, 0, 10, 31, 90], [1.0, 0.95, 1.0, 0.2, 1.0, 1.0])
    assert auto_guides(clear, dates, "d+0", 62, 0.9) == ["d-61", "d-30", "d+31"]


def test_too_few_inside_falls_back_to_the_two_nearest_clear() -> None:
    clear, dates = _series([-100, 0, 5, 70, 200], [1.0, 1.0, 0.1, 1.0, 1.0])
    assert auto_guides(clear, dates, "d+0", 20, 0.9) == ["d-100", "d+70"]


def test_errors_name_what_to_change() -> None:
    clear, dates = _series([-10, 0, 10], [1.0, 1.0, 0.0])
    with pytest.raises(ConfigError, match="fewer than 2 clear dates"):
        auto_guides(clear, dates, "d+0", 30, 0.9)
    with pytest.raises(ConfigError, match="not one of the region's dates"):
        auto_guides(clear, dates, "nope", 30, 0.9)
    with pytest.raises(ConfigError, match="window"):
        auto_guides(clear, dates, "d+0", 0, 0.9)
