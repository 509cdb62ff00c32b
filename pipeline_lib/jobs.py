"""Glue between Snakemake ``script:`` shims and the library: logging and one-line failures.

A shim does ``with job(snakemake) as log: run_x(...)``. Log records go to the rule's ``log:`` file
(and stderr); a :class:`~pipeline_lib.errors.PipelineError` becomes one line on stderr and in the
log, and the job exits non-zero so Snakemake removes its outputs and names the log.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
from collections.abc import Iterator
from typing import Any

from pipeline_lib.errors import PipelineError

__all__ = ["job", "setup_logging"]


def setup_logging(log_path: str | None, name: str = "pipeline") -> logging.Logger:
    """Log to ``log_path`` (plain lines) and to stderr."""
    logger = logging.getLogger(name)
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        handlers.append(logging.FileHandler(log_path, mode="w", encoding="utf-8"))
    for h in handlers:
        h.setFormatter(fmt)
        logger.addHandler(h)
    logger.propagate = False
    for sub in ("pipeline_lib",):
        lg = logging.getLogger(sub)
        lg.setLevel(logging.INFO)
        lg.handlers = list(handlers)
        lg.propagate = False
    return logger


@contextlib.contextmanager
def job(smk: Any) -> Iterator[logging.Logger]:
    """Context for a rule's script: logging set up from ``smk.log``, clean one-line failure."""
    log_path = str(smk.log[0]) if len(smk.log) else None
    logger = setup_logging(log_path, f"rule.{smk.rule}")
    threads = int(getattr(smk, "threads", 1) or 1)
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    start = time.perf_counter()
    try:
        yield logger
    except PipelineError as exc:
        line = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        logger.error(line)
        sys.stderr.flush()
        sys.exit(1)
    logger.info("done in %.1f s", time.perf_counter() - start)
