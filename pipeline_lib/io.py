"""Atomic file output shared by every stage, with the kill test hook.

Every writer in the package goes through :func:`atomic_path`: the data are written to a
temporary file in the destination folder, fsynced and moved into place with ``os.replace``,
so a killed job never leaves a half-written file under its final name; the next write of the same
file removes the temporaries a killed writer left (:func:`remove_stale_temps`). COG writing lives in
:mod:`pipeline_lib.cog`, safe XML parsing in :mod:`pipeline_lib.xmlsafe` (docs/DESIGN.md §9).

Test hook, never set in normal use: when ``PIPELINE_FAULT_KILL`` holds an fnmatch glob matching the
absolute destination path, :func:`fault_point` (called once the temporary is complete and fsynced,
just before the rename) SIGKILLs the whole process group, i.e. Snakemake and its jobs: a node that
crashed mid-write. ``PIPELINE_FAULT_SKIP=N`` lets the first N matching writes of a process pass.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import json
import os
import re
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pipeline_lib.errors import PipelineError, StorageError

__all__ = [
    "atomic_path",
    "write_text_atomic",
    "write_json_atomic",
    "fault_point",
    "remove_stale_temps",
]

FAULT_ENV = "PIPELINE_FAULT_KILL"
FAULT_SKIP_ENV = "PIPELINE_FAULT_SKIP"
_fault_hits = [0]  # matching fault_point calls so far in this process


def fault_point(path: str | os.PathLike[str]) -> None:
    """Test hook: SIGKILL this process group if ``$PIPELINE_FAULT_KILL`` matches ``path`` (see the module doc)."""
    pattern = os.environ.get(FAULT_ENV)
    if not pattern or not fnmatch.fnmatchcase(os.path.abspath(path), pattern):
        return
    _fault_hits[0] += 1
    if _fault_hits[0] > int(os.environ.get(FAULT_SKIP_ENV) or 0):
        os.killpg(os.getpgrp(), signal.SIGKILL)


def remove_stale_temps(path: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporaries (``.<name>.XXXXXXXX.part*`` files or folders) a killed writer of ``path`` left.

    Names follow ``tempfile.mkstemp``/``mkdtemp`` with prefix ``.<name>.`` and a ``.part`` suffix; one
    output has one writer at a time, so any such sibling is from a dead one. Returns what was removed.
    """
    dest = Path(path)
    stale = re.compile(rf"\.{re.escape(dest.name)}\.[a-z0-9_]{{8}}\.part")
    removed = []
    with contextlib.suppress(FileNotFoundError):
        for old in dest.parent.iterdir():
            if stale.match(old.name):
                if old.is_dir() and not old.is_symlink():
                    shutil.rmtree(old, ignore_errors=True)
                else:
                    old.unlink(missing_ok=True)
                removed.append(old)
    return removed


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it into place.

    On any exception the temporary file is removed and the destination is left untouched.
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest)
    sfx = suffix if suffix is not None else "".join(dest.suffixes) or ".tmp"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=f".part{sfx}", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; outputs get the usual permissions
    try:
        yield tmp
        if tmp.is_file():
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        fault_point(dest)
        os.replace(tmp, dest)
        _fsync_dir(dest.parent)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if not isinstance(exc, PipelineError) and _out_of_space(exc, dest.parent):
            raise StorageError(
                f"{dest}: no space left on device while writing; free space in {dest.parent} and rerun"
            ) from exc
        raise


def _out_of_space(exc: BaseException, folder: Path) -> bool:
    """True if ``exc`` is (or, for libraries that hide errno, coincides with) a full file system."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    try:
        return shutil.disk_usage(folder).free < 1 << 20
    except OSError:
        return False


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` atomically (UTF-8)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
