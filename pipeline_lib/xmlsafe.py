"""XML parsing with DTDs, entity expansion and external references refused (defusedxml).

Every XML the pipeline reads (SAFE annotations, calibration and noise files, MTD_MSIL2A.xml, SNAP graphs,
DHuS/OData responses) goes through :func:`parse_xml` first (docs/DESIGN.md §4: "XML is parsed with
entity expansion off"), so XXE and billion-laughs documents fail with one ProductError line.
"""

from __future__ import annotations

import os
from xml.etree.ElementTree import Element

from defusedxml import ElementTree as SafeET

from pipeline_lib.errors import ProductError

__all__ = ["parse_xml", "local_name", "first_text"]


def parse_xml(source: str | os.PathLike[str] | bytes, *, name: str | None = None) -> Element:
    """Parse XML with entity expansion, DTDs and external references refused (XXE, billion laughs).

    ``source`` is a path or the document bytes; ``name`` names it in error messages.
    """
    label = name or (str(source) if not isinstance(source, bytes) else "<bytes>")
    try:
        root: Element
        if isinstance(source, bytes):
            root = SafeET.fromstring(source, forbid_dtd=True, forbid_entities=True, forbid_external=True)
        else:
            root = SafeET.parse(
                os.fspath(source), forbid_dtd=True, forbid_entities=True, forbid_external=True
            ).getroot()
        return root
    except FileNotFoundError as exc:
        raise ProductError(f"{label}: file not found; check the product is complete") from exc
    except Exception as exc:  # defusedxml raises several unrelated types
        raise ProductError(
            f"{label}: unreadable or unsafe XML ({type(exc).__name__}: {exc}); re-download the product"
        ) from exc


def local_name(tag: str) -> str:
    """The tag without its ``{namespace}``."""
    return tag.rsplit("}", 1)[-1]


def first_text(root: Element, name: str, **attrs: str) -> str | None:
    """Stripped text of the first element with this local name (any namespace) and these attribute values."""
    for el in root.iter():
        if local_name(el.tag) == name and all(el.get(k) == v for k, v in attrs.items()):
            if el.text and el.text.strip():
                return el.text.strip()
    return None
