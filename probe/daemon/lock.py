"""One daemon per data_dir: ``curfew.lock`` in it, held (flock) for the daemon's life.

Two daemons on one data_dir would share a spool and an SQLite file; the second is stopped
before it touches either, with one line naming the other's pid. The lock is released by the
kernel when the process ends, however it ends, so a stale file never blocks a restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_NAME = "curfew.lock"


class DataDirInUse(Exception):
    """Another process holds the data_dir's lock."""


def acquire(data_dir: Path) -> int:
    """Take the lock (creating data_dir if needed); return its descriptor, to keep open.

    Raises DataDirInUse naming the holder's pid, OSError if data_dir cannot be written.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o640)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = _read_pid(fd)
        os.close(fd)
        raise DataDirInUse(
            f"data_dir {data_dir} is in use by another curfew run (pid {pid or '?'}, "
            f"{data_dir / LOCK_NAME}): stop it first or give this one another data_dir"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def holder(data_dir: Path) -> int | None:
    """The pid of the daemon running on data_dir (0 if unknown), or None if none is."""
    try:
        fd = os.open(data_dir / LOCK_NAME, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


def _read_pid(fd: int) -> int | None:
    with contextlib.suppress(OSError, ValueError):
        return int(os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "x")
    return None
