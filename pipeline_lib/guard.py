"""One guard for metadata readers: a malformed value in a product's XML becomes one ProductError line.

Readers of SAFE metadata (manifest, annotation, calibration, noise, ``MTD_MSIL2A.xml``) convert text
with ``int``/``float``/``datetime.fromisoformat`` and index into parsed lists; a damaged or truncated file
makes those raise ``ValueError``, ``IndexError`` … deep inside. The mutation fuzzer (DESIGN §9)
(``tests/test_84_fuzz_safe.py``) found such tracebacks; :func:`corrupt_metadata` turns them into a
:class:`~pipeline_lib.errors.ProductError` that names the file, as the house rules require.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from pipeline_lib.errors import PipelineError, ProductError

__all__ = ["corrupt_metadata", "one_line"]

#: what a malformed value raises in the readers (ProductError itself passes through untouched)
MALFORMED = (ValueError, TypeError, KeyError, IndexError, OverflowError, AttributeError, ZeroDivisionError)


def one_line(exc: BaseException, limit: int = 160) -> str:
    """``Type: message`` on one line, at most ``limit`` characters of the message."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:limit]}{'…' if len(text) > limit else ''}"


@contextlib.contextmanager
def corrupt_metadata(
    label: str, fix: str = "the product is corrupt, re-download it", catch: tuple[type[BaseException], ...] = MALFORMED
) -> Iterator[None]:
    """Re-raise a malformed-value error inside the block as ``ProductError("{label}: malformed value (…); {fix}")``."""
    try:
        yield
    except PipelineError:
        raise
    except catch as exc:
        raise ProductError(f"{label}: malformed value ({one_line(exc)}); {fix}") from exc
