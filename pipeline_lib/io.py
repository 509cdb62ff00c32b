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
import functools
import json
import os
import re
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
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

#: :class:`_WritebackFollower` starts the writeback of a temporary each time it has grown by this much
WRITEBACK_STEP_BYTES = 64 << 20
#: how often the follower looks at the temporary's size
WRITEBACK_INTERVAL_S = 0.25
SYNC_FILE_RANGE_WRITE = 2  # <linux/fs.h>

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


@functools.cache
def _start_writeback() -> Callable[[int], None] | None:
    """``sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE)`` (Linux): start writing a file's dirty pages, no wait."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int

    def start(fd: int) -> None:
        if fn(fd, 0, 0, SYNC_FILE_RANGE_WRITE) != 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    return start


class _WritebackFollower:
    """Start writing a growing temporary to disk while its writer still writes, from a thread of its own.

    Without it the data of a large output go to disk only once the kernel's background writeback starts
    (10 % of memory dirty, by default) and at the end, where the job waits for them: ext4 flushes a file
    opened with ``O_TRUNC`` when it is closed (``auto_da_alloc``; the libraries reopen the temporary that
    way), and the final fsync waits for the rest. On a 3.6 GB σ0 NetCDF that was 1.2–1.9 s at the end of the
    calibrate job, after all the computing, on one thread (BENCHMARKS.md). Here, each time the temporary has
    grown by :data:`WRITEBACK_STEP_BYTES`, ``sync_file_range(SYNC_FILE_RANGE_WRITE)`` on a descriptor of
    its own starts the writeback of what is there so far and returns without waiting (no journal commit,
    unlike ``fdatasync``), so the disk works beside the computing. Durability is unchanged:
    :func:`atomic_path` still fsyncs the whole file before the rename. No-op where the call is missing.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        start = _start_writeback()
        if start is not None:
            self._thread = threading.Thread(target=self._run, args=(start,), name=f"writeback {path.name}", daemon=True)
            self._thread.start()

    def _run(self, start: Callable[[int], None]) -> None:
        started = 0
        fd, inode = -1, -1  # descriptor opened on the temporary, and its inode
        try:
            while not self._stop.wait(WRITEBACK_INTERVAL_S):
                try:
                    st = os.stat(self.path)
                    if not stat.S_ISREG(st.st_mode):
                        continue
                    if st.st_ino != inode:  # first look, or the writer replaced the file
                        if fd >= 0:
                            os.close(fd)
                            fd = -1
                        inode, started = st.st_ino, 0
                    if st.st_size - started < WRITEBACK_STEP_BYTES:
                        continue
                    if fd < 0:
                        fd = os.open(self.path, os.O_RDONLY)
                    start(fd)
                    started = st.st_size
                except OSError:  # gone or unreadable: the writer's own error, or the final fsync, decides
                    continue
        finally:
            if fd >= 0:
                os.close(fd)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


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
    follower = _WritebackFollower(tmp)
    try:
        try:
            yield tmp
        finally:
            follower.stop()
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
