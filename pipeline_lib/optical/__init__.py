"""Sentinel-2 L2A optical chain: reflectance from the product's own offsets, SCL mask, onto the grid."""

from pipeline_lib.optical.l2a import L2AMetadata, dn_to_reflectance, read_l2a_metadata, run_l2a, scl_valid_mask

__all__ = ["L2AMetadata", "dn_to_reflectance", "read_l2a_metadata", "run_l2a", "scl_valid_mask"]
