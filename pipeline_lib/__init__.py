"""TIRSIT Earth-observation pipeline: Sentinel-1/2 time series to modality translation.

All logic lives here; the Snakemake rules in ``workflow/rules`` are thin wrappers.
Library functions take explicit arguments and never read the Snakemake config or the
environment themselves.
"""

__version__ = "0.1.0"
