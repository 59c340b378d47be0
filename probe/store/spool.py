"""The journal: measurements (and episode states) on disk before they are in the database.

The spool is a directory of numbered segment files (``0000000000000042.spool``), one line per
measurement or episode state: the segment's number, a tab, then the row (tab-separated JSON,
see `mapping.spool_line`).

`append` queues a line and `write` puts the queued lines into the current segment with one
unbuffered `writev`; the store calls `write` once per turn of its event loop (group commit), so
a measurement is in the OS's hands before the loop runs anything else after its `submit`, and
survives the process being killed from then on. One write per row instead cost ~20 us a row
(16,200 vs 18,600 rows/s, docs/benchmarks.md): a syscall, and the GIL to win back from the
database thread after it. A kill between a `submit` and the end of that turn loses what was
submitted in the turn, as it loses a probe that has not finished yet.

A segment is closed after `batch_size` lines (or by the writer's timer), written to the database
in one transaction and only then deleted. Segments are fsynced when a write fails (the database is
down: they may wait there for hours) and at close; not before a write that succeeds, which
follows within milliseconds (the database's own commit is then what keeps the rows). After a
crash the remaining segments are replayed in order; replays are harmless because the database
ignores a uid it already has.

Segment files are recycled, as PostgreSQL recycles its WAL files: a written segment becomes one
of up to `FREE_FILES` ``.free`` files, and the next segment is one of them renamed and written
over from its start. Its pages are then already in the OS's cache, so a journal write is a copy
into them (2 us a row here) instead of a page allocation on a new file (6 us, and 17-21 us while
SQLite writes beside it). What is left of the old content after the new lines carries older
segment numbers, and a reader takes only the lines that carry the file's own number.
Lines without a number (spools written before recycling) are read as before; such segments are
deleted, not recycled.

Rows of the first segments are also kept in memory (up to `memory_rows`) so the writer does
not re-read what it just wrote; past that bound, while the database is down, segments live on
disk only and are read back when their turn comes. Reading back (spool_read.py) keeps every
row it can and says what it skipped; poison lines go to ``<seq>.rejected``.

A write that fails (a full disk) leaves that segment's rows in memory only, counted in
`unjournaled` (never in what is on disk) until the database takes them or `write_out` puts
the whole segment on disk again (a new file renamed over the old); the store retries that
while the database is down, and names at close whatever neither took (`not_on_disk`).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import stat
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from probe.store.events import event
from probe.store.mapping import Row, line_row, spool_line
from probe.store.spool_read import Contents, Skipped, read_segment

log = logging.getLogger(__name__)

SUFFIX = ".spool"
FREE_SUFFIX = ".free"
LOCK_NAME = "spool.lock"
FREE_FILES = 4
"""Written segment files kept for reuse (each about one batch: ~2.5 MB at 500 rows)."""
REJECTED_SUFFIX: Final = ".rejected"
TMP_SUFFIX: Final = ".tmp"
UNREADABLE_SUFFIX: Final = ".unreadable"
REPORT_LINES: Final = 10
"""Skipped lines of one segment logged one by one; past that, one line says how many more."""
IOV_MAX = os.sysconf("SC_IOV_MAX") if "SC_IOV_MAX" in os.sysconf_names else 1024
"""Buffers one `writev` takes (1024 on Linux): a turn's lines beyond it take more calls."""


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
    tagged: bool = True
    """Its lines carry `seq` (written by this version): the file can be recycled."""
    tag: bytes = b""
    """What each of its lines starts with: ``b"<seq>\t"``."""
    on_disk: int = 0
    """Of its `count` lines, how many the file holds (all, unless a write to it failed)."""
    checked: bool = False
    """Read back from disk once already: what it skipped has been said (and set aside)."""


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
        """Failed journal writes (a full or failing disk); each is retried (`rejournal`)."""
        self.unjournaled = 0
        """Rows not on disk: appended and not yet written (for a moment), or whose write failed
        and has not succeeded since; only in memory until the disk or the database takes them."""
        self._failing: OSError | None = None  # the disk's last error, until a write succeeds
        self.skipped_lines = 0
        """Journal lines read back that were not replayed (torn, damaged, poison)."""
        self.rejected_lines = 0
        """Of those, complete lines that are not measurements: set aside in ``.rejected``."""
        self._iov: list[bytes] = []  # tag, line, tag, line...: appended, not yet written
        for path in sorted(directory.glob(f"*{SUFFIX}")):
            seg = self._found(path)
            if seg is not None:
                self.closed.append(seg)
                self.pending += seg.count
        for path in directory.glob(f"*{SUFFIX}{TMP_SUFFIX}"):  # a rewrite cut short: the
            path.unlink(missing_ok=True)  # segment it was for is still there as it was
        # Only plain files are reused (a directory or a link named *.free is left alone).
        free = directory.glob(f"*{FREE_SUFFIX}")
        self._free = sorted(p for p in free if p.is_file() and not p.is_symlink())
        for path in self._free[FREE_FILES:]:
            path.unlink(missing_ok=True)
        del self._free[FREE_FILES:]
        # Past every numbered name here, segments or not (a directory called 2.spool, a
        # 3.rejected): a new segment never takes the name of something a person must look at.
        numbers = [int(p.name.split(".")[0]) for p in directory.iterdir() if p.name.split(".")[0].isdigit()]
        self._next_seq = max(numbers, default=0) + 1

    def append(self, row: Row, line: bytes, now: float) -> bool:
        """Journal one row: on disk at the next `write()`, or now if it closes the segment
        (a batch is ready: True)."""
        seg = self.current
        if seg is None:
            seg = self.current = self._open_segment(now)
        if seg.fd is not None:
            self._iov += (seg.tag, line)
        if seg.rows is not None:
            if self.in_memory >= self.memory_rows and seg.fd is not None:
                self.in_memory -= len(seg.rows)
                seg.rows = None  # from here on, this segment is read back from disk
            else:
                seg.rows.append(row)
                self.in_memory += 1
        seg.count += 1
        self.pending += 1
        self.unjournaled += 1
        if seg.count >= self.batch_size:
            self.rotate()
            return True
        return False

    def write(self) -> None:
        """Put the lines appended since the last call into the current segment's file: one
        `writev` for all of them (the store calls this once per turn of the event loop)."""
        seg = self.current
        if not self._iov or seg is None or seg.fd is None:
            return
        try:
            _write_all(seg.fd, self._iov)
        except ShortWrite as exc:
            # The disk is full or gone: this segment's rows (those on disk read back) stay
            # in memory from here on, whatever `memory_rows` says, since what is not on
            # disk would be lost if they were dropped; the next segment tries the disk again,
            # and `write_out` writes this one out whole once the disk takes it.
            unwritten = self._iov[1::2]
            whole = _whole_lines(self._iov, exc.written)  # the lines that did reach the file
            seg.on_disk += whole
            self.unjournaled -= whole
            self._failed(exc, seg.path, len(unwritten) - whole)
            with contextlib.suppress(OSError):
                os.close(seg.fd)
            seg.fd = None
            if seg.rows is None:  # past memory_rows: the rows come back from their lines
                before = seg.on_disk - whole  # written by earlier turns
                on_disk = _read_rows(seg.path, seg.seq)[:before] if before else []
                seg.rows = on_disk + [line_row(line) for line in unwritten]
                self.in_memory += len(seg.rows)
        else:
            written = len(self._iov) // 2
            seg.on_disk += written
            self.unjournaled -= written
            self._recovered()
        self._iov = []

    def unjournaled_segments(self) -> list[Segment]:
        """Segments whose rows a failed write left only in memory, for `write_out`; the
        current segment, if it is one, is closed first (the next one tries the disk anew)."""
        cur = self.current
        if cur is not None and cur.fd is None and cur.count > cur.on_disk:
            self.rotate()
        return [seg for seg in self.closed if seg.on_disk < seg.count and seg.rows is not None]

    def write_out(self, seg: Segment) -> OSError | None:
        """Write `seg` out whole (a new file, fsynced, renamed over the old one); the error if
        the disk refuses. Only files: safe in a thread while the loop appends (a closed
        segment's rows no longer change). Account for it with `written_out` on the loop."""
        assert seg.rows is not None
        tmp = seg.path.with_name(seg.path.name + TMP_SUFFIX)
        tag = b"%d\t" % seg.seq
        lines = [part for row in seg.rows for part in (tag, spool_line(row))]
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                _write_all(fd, lines)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, seg.path)
            _fsync_dir(self.directory)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            return exc
        return None

    def written_out(self, seg: Segment, error: OSError | None) -> None:
        """Account for a `write_out` of `seg` that ended with `error` (None: it is on disk)."""
        if error is not None:
            self._failed(error, seg.path, seg.count - seg.on_disk)
            return
        self.unjournaled -= seg.count - seg.on_disk
        seg.on_disk = seg.count
        seg.tagged = True
        if seg in self.closed and seg.rows is not None and self.in_memory > self.memory_rows:
            self.in_memory -= len(seg.rows)
            seg.rows = None  # on disk now: read back when its turn comes
        self._recovered()

    def not_on_disk(self) -> list[Row]:
        """The rows that only memory holds (after `write`: those whose journal write failed)."""
        out: list[Row] = []
        for seg in [*self.closed, *([self.current] if self.current is not None else [])]:
            if seg.on_disk < seg.count and seg.rows is not None:
                out += seg.rows[seg.on_disk :]
        return out

    @property
    def last_error(self) -> str | None:
        """The disk's error while journal writes fail, else None."""
        return str(self._failing) if self._failing is not None else None

    def _failed(self, exc: OSError, path: Path, rows: int) -> None:
        self.append_errors += 1
        if self._failing is None:  # said once, until the disk takes a write again
            log.error(event("journal-write-failed", file=path, rows=rows, reason=exc, held="in memory"))
        self._failing = exc

    def _recovered(self) -> None:
        if self._failing is not None:
            self._failing = None
            log.warning(
                event("journal-write-resumed", directory=self.directory, not_on_disk=self.unjournaled)
            )

    def rotate(self) -> None:
        """Close the current segment (if it has rows) so the writer can take it."""
        if self.current is not None and self.current.count:
            self.write()
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
                try:
                    os.fsync(seg.fd)
                except OSError as exc:
                    # The kernel could not write the pages out (ENOSPC, EIO): the rows are not
                    # safe on disk. Those held in memory are written out again (`rejournal`).
                    self._failed(exc, seg.path, seg.count)
                    if seg.rows is not None:
                        self.unjournaled += seg.on_disk
                        seg.on_disk = 0
                os.close(seg.fd)
                seg.fd = None
                synced = True
        if synced:
            with contextlib.suppress(OSError):
                _fsync_dir(self.directory)

    def unsynced(self) -> bool:
        return any(seg.fd is not None for seg in self.closed)

    def rows(self, seg: Segment) -> list[Row]:
        """The segment's rows, from memory or read back from disk (blocking if from disk).
        The first time a segment is read back, what it skipped is logged and its poison
        lines are set aside in ``<seq>.rejected``; a file that cannot be read is renamed
        ``<seq>.unreadable`` and gives no rows."""
        if seg.rows is not None:
            return seg.rows
        return self._read_back(seg).rows

    def _read_back(self, seg: Segment) -> Contents:
        try:
            contents = read_segment(seg.path, seg.seq)
        except OSError as exc:
            kept = seg.path.with_suffix(UNREADABLE_SUFFIX)
            try:
                os.rename(seg.path, kept)
            except OSError:
                kept = seg.path
            log.error(
                event("journal-segment-unreadable", file=seg.path, kept=kept, rows=seg.count, reason=exc)
            )
            seg.tagged = False  # never recycled
            seg.checked = True
            self.skipped_lines += seg.count
            return Contents(tagged=False)
        if not seg.checked:
            seg.checked = True
            self._report(seg, contents)
        return contents

    def _report(self, seg: Segment, contents: Contents) -> None:
        """Say what reading `seg` back skipped or mended, and set its poison lines aside."""
        if contents.kept_damaged:
            log.warning(
                event(
                    "journal-lines-mended",
                    file=seg.path,
                    lines=",".join(map(str, contents.kept_damaged[:REPORT_LINES])),
                    count=len(contents.kept_damaged),
                    reason="damaged sequence tag; the row after it is whole and kept",
                )
            )
        if not contents.skipped:
            return
        self.skipped_lines += len(contents.skipped)
        for s in contents.skipped[:REPORT_LINES]:
            level = logging.WARNING if s.poison else logging.INFO
            log.log(
                level, event("journal-line-skipped", file=seg.path, line=s.line, uid=s.uid, reason=s.reason)
            )
        if len(contents.skipped) > REPORT_LINES:
            log.warning(
                event("journal-lines-skipped", file=seg.path, more=len(contents.skipped) - REPORT_LINES)
            )
        poison = [s for s in contents.skipped if s.poison]
        if poison:
            self.rejected_lines += len(poison)
            path = self.set_aside(seg, [_rejected_line(s) for s in poison])
            log.error(
                event(
                    "journal-lines-rejected",
                    file=seg.path,
                    count=len(poison),
                    kept=path,
                    uids=",".join(s.uid or "-" for s in poison[:REPORT_LINES]),
                )
            )

    def done(self, seg: Segment) -> None:
        """The segment is in the database: forget it."""
        self.closed.remove(seg)
        self.unjournaled -= seg.count - seg.on_disk
        if seg.fd is not None:
            os.close(seg.fd)
        self._recycle(seg)
        if seg.rows is not None:
            self.in_memory -= len(seg.rows)
        self.pending -= seg.count

    def quarantine(self, seg: Segment, rows: list[Row], lines: list[bytes]) -> Path | None:
        """Keep rows the database refuses in ``<seq>.rejected`` for a person to look at."""
        return self.set_aside(seg, lines)

    def set_aside(self, seg: Segment, lines: list[bytes]) -> Path | None:
        """Append `lines` to ``<seq>.rejected``; None (and a log line) if the disk will not."""
        path = seg.path.with_suffix(REJECTED_SUFFIX)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                _write_all(fd, lines)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.error(event("rejected-lines-not-kept", file=path, count=len(lines), reason=exc))
            return None
        return path

    def close(self) -> None:
        """Close files and release the lock; segments stay on disk for the next run."""
        self.write()
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

    def _found(self, path: Path) -> Segment | None:
        """A segment a previous run left, counted; None (and a log line) for what is not one."""
        if not path.stem.isdigit():
            return None
        try:
            mode = path.lstat().st_mode
            if not stat.S_ISREG(mode):
                raise IsADirectoryError(f"not a regular file (mode {stat.filemode(mode)})")
            contents = read_segment(path, int(path.stem), parse=False)
        except OSError as exc:
            log.error(event("journal-segment-ignored", file=path, reason=exc))
            return None
        count = contents.candidates
        return Segment(int(path.stem), path, count, rows=None, tagged=contents.tagged, on_disk=count)

    def _recycle(self, seg: Segment) -> None:
        """A written segment's file becomes a free one, or goes."""
        try:
            if seg.tagged and len(self._free) < FREE_FILES:
                free = seg.path.with_suffix(FREE_SUFFIX)
                os.rename(seg.path, free)
                self._free.append(free)
            else:
                seg.path.unlink()
        except FileNotFoundError:
            pass

    def _open_segment(self, now: float) -> Segment:
        seq = self._next_seq
        self._next_seq += 1
        path = self.directory / f"{seq:016d}{SUFFIX}"
        rows: list[Row] | None = [] if self.in_memory < self.memory_rows else None
        try:
            if self._free:
                # Written over from the start: the old lines left after the new ones carry
                # an older number and are not read (see the module's docstring).
                os.rename(self._free.pop(), path)
                fd: int | None = os.open(path, os.O_WRONLY, 0o600)
            else:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            self._failed(exc, path, 0)
            fd, rows = None, []
        return Segment(seq, path, rows=rows, fd=fd, opened_at=now, tag=b"%d\t" % seq)


class ShortWrite(OSError):
    """A write that failed after `written` bytes had gone to the file."""

    def __init__(self, error: OSError, written: int) -> None:
        super().__init__(error.errno, error.strerror)
        self.written = written


def _write_all(fd: int, iov: list[bytes]) -> None:
    """Write all of `iov`, in as few `writev` calls as the system allows. Raises `ShortWrite`
    (an OSError) saying how many bytes went to the file before the failure."""
    done = 0
    try:
        for start in range(0, len(iov), IOV_MAX):
            chunk = iov[start : start + IOV_MAX]
            written = os.writev(fd, chunk)
            done += written
            if written < sum(map(len, chunk)):  # a short write (rare): the rest one write at a time
                view = memoryview(b"".join(chunk))[written:]
                while view:
                    n = os.write(fd, view)
                    done += n
                    view = view[n:]
    except OSError as exc:
        raise ShortWrite(exc, done) from exc


def _whole_lines(iov: list[bytes], written: int) -> int:
    """How many (tag, line) pairs of `iov` the first `written` bytes hold whole."""
    lines = 0
    for i in range(0, len(iov) - 1, 2):
        written -= len(iov[i]) + len(iov[i + 1])
        if written < 0:
            break
        lines += 1
    return lines


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rejected_line(skipped: Skipped) -> bytes:
    return skipped.data if skipped.data.endswith(b"\n") else skipped.data + b"\n"


def _read_rows(path: Path, seq: int) -> list[Row]:
    """Rows of a segment (what it skips is not said: see `Spool.rows`)."""
    return read_segment(path, seq).rows
