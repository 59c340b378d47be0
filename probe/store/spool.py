"""The journal: measurements on disk before they are in the database.

The spool is a directory of numbered segment files (``0000000000000042.spool``), one line per
measurement (tab-separated JSON, see `mapping.spool_line`).
`append` writes a line straight to the current segment with one unbuffered write, so it is in
the OS's hands as soon as `submit` returns and survives the process being killed; a segment is
closed after `batch_size` lines (or by the writer's timer), written to the database in one
transaction and only then deleted. Segments are fsynced when a write fails (the database is
down: they may wait there for hours) and at close; not before a write that succeeds, which
follows within milliseconds (the database's own commit is then what keeps the rows). After a
crash the remaining segments are replayed in order; replays are harmless because the database
ignores a uid it already has.

Rows of the first segments are also kept in memory (up to `memory_rows`) so the writer does
not re-read what it just wrote; past that bound, while the database is down, segments live on
disk only and are read back when their turn comes.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from probe.store.mapping import Row, line_row

log = logging.getLogger(__name__)

SUFFIX = ".spool"
LOCK_NAME = "spool.lock"


class SpoolLocked(Exception):
    """Another process has this spool directory open."""


@dataclass(eq=False)
class Segment:
    seq: int
    path: Path
    count: int = 0
    rows: list[Row] | None = field(default_factory=list)
    """The rows, or None when they are only on disk."""
    fd: int | None = None
    """Open for appending while current or not yet synced."""
    opened_at: float = 0.0


class Spool:
    """Segments in `directory`, oldest first. Not thread-safe: one event loop owns it."""

    def __init__(self, directory: Path, *, batch_size: int, memory_rows: int) -> None:
        self.directory = directory
        self.batch_size = batch_size
        self.memory_rows = memory_rows
        directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(directory / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise SpoolLocked(f"{directory}: the spool is in use by another process") from None
        self.closed: deque[Segment] = deque()
        self.current: Segment | None = None
        self.in_memory = 0
        self.pending = 0
        self.append_errors = 0
        for path in sorted(directory.glob(f"*{SUFFIX}")):
            if path.stem.isdigit():
                count = _count_lines(path)
                self.closed.append(Segment(int(path.stem), path, count, rows=None))
                self.pending += count
        self._next_seq = self.closed[-1].seq + 1 if self.closed else 1

    def append(self, row: Row, line: bytes, now: float) -> bool:
        """Journal one row. True when this closed the current segment (a batch is ready)."""
        seg = self.current
        if seg is None:
            seg = self.current = self._open_segment(now)
        if seg.fd is not None:
            try:
                _write_all(seg.fd, line)
            except OSError as exc:
                # The disk is full or gone: keep the row in memory rather than drop it.
                self.append_errors += 1
                log.error("spool write failed (%s); keeping the measurement in memory", exc)
                if seg.rows is None:
                    seg.rows = _read_rows(seg.path) if seg.count else []
                    self.in_memory += len(seg.rows)
        if seg.rows is not None:
            if self.in_memory >= self.memory_rows and seg.fd is not None:
                self.in_memory -= len(seg.rows)
                seg.rows = None  # from here on, this segment is read back from disk
            else:
                seg.rows.append(row)
                self.in_memory += 1
        seg.count += 1
        self.pending += 1
        if seg.count >= self.batch_size:
            self.rotate()
            return True
        return False

    def rotate(self) -> None:
        """Close the current segment (if it has rows) so the writer can take it."""
        if self.current is not None and self.current.count:
            self.closed.append(self.current)
            self.current = None

    def oldest_run(self, max_rows: int) -> list[Segment]:
        """The oldest closed segments, in order, as many as fit in `max_rows` (at least one):
        a backlog is written in big transactions, a steady trickle one segment at a time."""
        run: list[Segment] = []
        total = 0
        for seg in self.closed:
            if run and total + seg.count > max_rows:
                break
            run.append(seg)
            total += seg.count
        return run

    def sync(self) -> None:
        """fsync and close every closed segment still open (blocking: run it in a thread)."""
        synced = False
        for seg in list(self.closed):
            if seg.fd is not None:
                os.fsync(seg.fd)
                os.close(seg.fd)
                seg.fd = None
                synced = True
        if synced:
            _fsync_dir(self.directory)

    def unsynced(self) -> bool:
        return any(seg.fd is not None for seg in self.closed)

    def rows(self, seg: Segment) -> list[Row]:
        """The segment's rows, from memory or read back from disk (blocking if from disk)."""
        return seg.rows if seg.rows is not None else _read_rows(seg.path)

    def done(self, seg: Segment) -> None:
        """The segment is in the database: forget it."""
        self.closed.remove(seg)
        if seg.fd is not None:
            os.close(seg.fd)
        with contextlib.suppress(FileNotFoundError):
            seg.path.unlink()
        if seg.rows is not None:
            self.in_memory -= len(seg.rows)
        self.pending -= seg.count

    def quarantine(self, seg: Segment, rows: list[Row], lines: list[bytes]) -> Path:
        """Keep rows the database refuses in ``<seq>.rejected`` for a person to look at."""
        path = seg.path.with_suffix(".rejected")
        with path.open("ab") as f:
            f.writelines(lines)
            f.flush()
            os.fsync(f.fileno())
        return path

    def close(self) -> None:
        """Close files and release the lock; segments stay on disk for the next run."""
        cur = self.current
        if cur is not None and cur.count == 0 and cur.fd is not None:
            os.close(cur.fd)
            cur.fd = None
            cur.path.unlink(missing_ok=True)
        for seg in [*self.closed, *([cur] if cur is not None else [])]:
            if seg.fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(seg.fd)
                os.close(seg.fd)
                seg.fd = None
        os.close(self._lock_fd)

    def _open_segment(self, now: float) -> Segment:
        seq = self._next_seq
        self._next_seq += 1
        path = self.directory / f"{seq:016d}{SUFFIX}"
        rows: list[Row] | None = [] if self.in_memory < self.memory_rows else None
        try:
            fd: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            self.append_errors += 1
            log.error("cannot create spool segment %s (%s); keeping measurements in memory", path, exc)
            fd, rows = None, []
        return Segment(seq, path, rows=rows, fd=fd, opened_at=now)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _count_lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(1 for line in f if line.endswith(b"\n"))


def _read_rows(path: Path) -> list[Row]:
    """Rows of a segment; a line torn by a crash mid-write (the last one) is skipped."""
    rows = []
    with path.open("rb") as f:
        for number, line in enumerate(f, 1):
            try:
                rows.append(line_row(line))
            except ValueError:
                log.warning("%s:%d: skipping a torn or corrupt spool line", path, number)
    return rows
