"""Exception hierarchy: every user-facing failure is one line naming the file or key and the fix."""

from __future__ import annotations


class PipelineError(Exception):
    """Root of all errors the pipeline raises on bad input or bad configuration."""


class ConfigError(PipelineError):
    """The configuration (config.yaml or a region file) is invalid."""


class ProductError(PipelineError):
    """A satellite product is corrupt, incomplete or does not match what was expected."""


class CoverageError(PipelineError):
    """A product, DEM or scene does not cover the area of interest."""


class FetchError(PipelineError):
    """Searching or downloading products failed."""


class SceneNotFoundError(FetchError):
    """No suitable scene exists for a configured date."""


class ModelError(PipelineError):
    """Training or prediction cannot proceed (bad stack, missing checkpoint, device)."""


class StorageError(PipelineError):
    """An output could not be written (disk full, quota)."""
