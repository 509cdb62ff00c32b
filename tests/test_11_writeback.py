"""The writeback follower of atomic outputs: started while the temporary grows, stopped before the fsync."""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import pipeline_lib.io as io_mod
from pipeline_lib.io import atomic_path

MIB = 1 << 20


def _followers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("writeback ")]


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Replace sync_file_range by a recorder of (inode, size) per call; 1 MiB steps looked at every 5 ms."""
    calls: list[tuple[int, int]] = []

    def start(fd: int) -> None:
        st = os.fstat(fd)
        calls.append((st.st_ino, st.st_size))

    monkeypatch.setattr(io_mod, "_start_writeback", lambda: start)
    monkeypatch.setattr(io_mod, "WRITEBACK_STEP_BYTES", MIB)
    monkeypatch.setattr(io_mod, "WRITEBACK_INTERVAL_S", 0.005)
    return calls


def _write_slowly(path: Path, mib: int, then: Callable[[int], None] = lambda k: None) -> bytes:
    data = b""
    with open(path, "wb") as fh:
        for k in range(mib):
            piece = bytes([k % 251]) * MIB
            fh.write(piece)
            fh.flush()
            data += piece
            time.sleep(0.03)
            then(k)
    return data


def _wait_for(cond: Callable[[], bool], timeout_s: float = 5.0) -> None:
    t0 = time.monotonic()
    while not cond() and time.monotonic() - t0 < timeout_s:
        time.sleep(0.005)


def test_follower_starts_writeback_each_step_the_temporary_grows(
    tmp_path: Path, recorded: list[tuple[int, int]]
) -> None:
    dest = tmp_path / "big.bin"

    def followed(k: int) -> None:  # the writer goes on once the follower has seen this MiB
        _wait_for(lambda: len(recorded) > 0 and recorded[-1][1] >= (k + 1) * MIB)

    with atomic_path(dest) as tmp:
        data = _write_slowly(tmp, 8, then=followed)
        inode = os.stat(tmp).st_ino
        assert len(_followers()) == 1
    assert dest.read_bytes() == data
    assert not _followers()  # stopped before the fsync and the rename
    assert recorded == [(inode, (k + 1) * MIB) for k in range(8)]  # once per step grown, not once per look


def test_follower_follows_a_temporary_the_writer_replaced(tmp_path: Path, recorded: list[tuple[int, int]]) -> None:
    dest = tmp_path / "big.bin"
    with atomic_path(dest) as tmp:
        _write_slowly(tmp, 3)
        _wait_for(lambda: len(recorded) > 0 and recorded[-1][1] >= 2 * MIB)
        first = os.stat(tmp).st_ino
        os.unlink(tmp)  # some writers remove the path and create it anew
        data = _write_slowly(tmp, 3)
        _wait_for(lambda: recorded[-1][0] != first)
        second = os.stat(tmp).st_ino
    assert dest.read_bytes() == data
    assert {i for i, _ in recorded} == {first, second}


def test_follower_is_stopped_and_the_temporary_removed_when_the_writer_fails(
    tmp_path: Path, recorded: list[tuple[int, int]]
) -> None:
    dest = tmp_path / "big.bin"
    with pytest.raises(RuntimeError), atomic_path(dest) as tmp:
        _write_slowly(tmp, 3)
        raise RuntimeError("writer failed")
    assert not _followers()
    assert list(tmp_path.iterdir()) == []


def test_no_follower_thread_where_the_call_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(io_mod, "_start_writeback", lambda: None)
    with atomic_path(tmp_path / "a.txt") as tmp:
        tmp.write_text("x")
        assert not _followers()
    assert (tmp_path / "a.txt").read_text() == "x"


def test_the_real_call_starts_writeback_on_linux(tmp_path: Path) -> None:
    start = io_mod._start_writeback()
    if not sys.platform.startswith("linux"):
        assert start is None
        return
    assert start is not None
    path = tmp_path / "f.bin"
    path.write_bytes(b"\1" * (4 * MIB))
    fd = os.open(path, os.O_RDONLY)  # a read-only descriptor is enough
    try:
        start(fd)
    finally:
        os.close(fd)
    with pytest.raises(OSError):
        start(fd)  # closed: EBADF, raised rather than ignored
