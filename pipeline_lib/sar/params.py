"""Speckle-filter settings as one frozen, typed parameter object (docs/DESIGN.md §3 and §5).

The defaults live in the schema only (``workflow/schemas/config.schema.yaml``, ``sar.speckle``: window 7,
target window 3, sigma 0.9, looks from the product); :meth:`SpeckleParams.from_config` turns the validated
config mapping into a :class:`SpeckleParams`, and every check of the values sits in its ``__post_init__``.
The native Lee sigma filter (:mod:`pipeline_lib.sar.speckle`) and the SNAP graph
(:mod:`pipeline_lib.sar.snap`) take the same object, so both backends filter with the same settings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from pipeline_lib.errors import ConfigError, check_section_keys

__all__ = ["SpeckleParams", "CONFIG_KEYS"]

#: ``sar.speckle`` config key -> SpeckleParams field
CONFIG_KEYS = {"window": "window_px", "target_window": "target_px", "sigma": "sigma", "looks": "looks"}


@dataclass(frozen=True)
class SpeckleParams:
    """Lee sigma settings (Lee et al. 2009; SNAP windowSize, targetWindowSizeStr, sigmaStr, numLooksStr).

    ``window_px``: the filter window (odd); ``target_px``: the point-target and MMSE-prior window (odd,
    3 <= target < window); ``sigma``: probability mass of the sigma range, in (0, 1); ``looks``: equivalent
    number of looks, or None to take the product's (annotation ``numberOfLooks``, range × azimuth).
    """

    window_px: int
    target_px: int
    sigma: float
    looks: float | None

    def __post_init__(self) -> None:
        for key, value in (("window", self.window_px), ("target_window", self.target_px)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"sar.speckle.{key}: {value!r} must be an odd integer, e.g. 7")
        if self.window_px % 2 == 0 or self.target_px % 2 == 0 or not (3 <= self.target_px < self.window_px):
            raise ConfigError(
                f"sar.speckle: window {self.window_px} and target_window {self.target_px} must be odd "
                "with 3 <= target_window < window; e.g. 7 and 3"
            )
        if not (0.0 < self.sigma < 1.0):
            raise ConfigError(f"sar.speckle.sigma: {self.sigma} must be in (0, 1), e.g. 0.9")
        if self.looks is not None and not (math.isfinite(self.looks) and self.looks > 0):
            raise ConfigError(f"sar.speckle.looks: {self.looks} must be positive, e.g. 4.4 for IW GRDH, or null")

    @classmethod
    def from_config(cls, speckle: Mapping[str, object]) -> SpeckleParams:
        """The parameters from the validated ``sar.speckle`` mapping (every key present: the schema fills them)."""
        check_section_keys(dict(speckle), "sar.speckle", tuple(CONFIG_KEYS), tuple(CONFIG_KEYS))
        looks = speckle["looks"]
        sigma = speckle["sigma"]
        if not isinstance(sigma, int | float) or (looks is not None and not isinstance(looks, int | float)):
            raise ConfigError(f"sar.speckle: sigma {sigma!r} and looks {looks!r} must be numbers (looks may be null)")
        return cls(
            window_px=speckle["window"],  # type: ignore[arg-type]  # checked in __post_init__
            target_px=speckle["target_window"],  # type: ignore[arg-type]
            sigma=float(sigma),
            looks=None if looks is None else float(looks),
        )

    def looks_for(self, product_looks: float | None, label: str) -> float:
        """The configured looks, else the product's; ConfigError naming ``label`` when neither is usable."""
        looks = self.looks if self.looks is not None else product_looks
        if looks is None or not math.isfinite(looks) or looks <= 0:
            raise ConfigError(f"{label}: number of looks not found in the product; set sar.speckle.looks (e.g. 4.4)")
        return float(looks)
