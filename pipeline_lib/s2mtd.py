"""Sentinel-2 L2A product metadata (``MTD_MSIL2A.xml``) fields read by both the catalogue and the optical chain.

Governing spec: Sentinel-2 Products Specification Document (S2-PDGS-TAS-DI-PSD), Level-2A product
metadata: ``PRODUCT_START_TIME`` (UTC, ``Z``), ``DATATAKE_SENSING_START`` and the footprint
``Global_Footprint/EXT_POS_LIST`` (lat lon pairs). :mod:`pipeline_lib.fetch.local` (product identity for a
local folder) and :mod:`pipeline_lib.optical.l2a` (the chain) read these through one implementation. Light
on purpose (no raster libraries): the catalogue jobs import it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from xml.etree.ElementTree import Element

from pipeline_lib.errors import ProductError
from pipeline_lib.xmlsafe import first_text

__all__ = ["utc", "sensing_start", "footprint_lonlat"]


def utc(text: str) -> datetime:
    """An ISO time (``Z`` or an offset) as an aware UTC datetime; no zone means UTC."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t.replace(tzinfo=UTC) if t.tzinfo is None else t.astimezone(UTC)


def sensing_start(root: Element, product: str) -> datetime:
    """PRODUCT_START_TIME (else DATATAKE_SENSING_START) in UTC; one-line ProductError when both are missing."""
    start = first_text(root, "PRODUCT_START_TIME") or first_text(root, "DATATAKE_SENSING_START")
    if start is None:
        raise ProductError(f"{product}: MTD_MSIL2A.xml has no PRODUCT_START_TIME; re-download the product")
    return utc(start)


def footprint_lonlat(root: Element) -> list[tuple[float, float]]:
    """The footprint (EXT_POS_LIST, lat lon pairs) as (lon, lat) vertices; empty when absent."""
    vals = [float(v) for v in (first_text(root, "EXT_POS_LIST") or "").split()]
    return [(vals[i + 1], vals[i]) for i in range(0, len(vals) - 1, 2)]
