"""Exception hierarchy: every user-facing failure is one line naming the file or key and the fix."""

from __future__ import annotations

from collections.abc import Mapping


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


def check_section_keys(
    section: Mapping[str, object], name: str, required: tuple[str, ...], allowed: tuple[str, ...]
) -> None:
    """ConfigError (one line, naming ``name.key``) when the mapping ``section`` has a key outside ``allowed``
    or lacks one of ``required`` (which the schema fills: a missing key means it was not validated)."""
    keys = set(section)
    unknown = sorted(keys - set(allowed))
    if unknown:
        raise ConfigError(f"{name}.{unknown[0]}: unknown key (unknown keys {unknown}); allowed: {', '.join(allowed)}")
    missing = [k for k in required if k not in keys]
    if missing:
        raise ConfigError(f"{name}.{missing[0]}: missing; validate the config against the schema, which fills it")
