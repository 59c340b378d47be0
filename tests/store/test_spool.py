"""The journal on its own: recycled segment files never give back an earlier use's rows."""

from __future__ import annotations

import errno
import os
from datetime import timedelta
from pathlib import Path

import pytest

from probe.store import spool as spool_module
from probe.store.mapping import encode
from probe.store.spool import FREE_FILES, FREE_SUFFIX, SUFFIX, Spool
from tests.store.builders import T0, results


def journal(spool: Spool, n: int, start_minute: int) -> list[str]:
    uids = []
    for r in results(n, start=T0 + timedelta(minutes=start_minute)):
        row, line = encode(r)
        spool.append(row, line, 0.0)
        uids.append(row["uid"])
    spool.write()  # what the store does at the end of each turn of its event loop
    return uids


def crash(spool: Spool) -> None:
    """What kill -9 leaves: files as they are, the lock released by the kernel."""
    os.close(spool._lock_fd)


def test_written_segments_are_kept_for_reuse_not_left_as_segments(tmp_path: Path) -> None:
    spool = Spool(tmp_path, batch_size=10, memory_rows=1000)
    journal(spool, 100, 0)
    for seg in list(spool.closed):
        spool.done(seg)
    assert spool.pending == 0
    assert not list(tmp_path.glob(f"*{SUFFIX}"))  # nothing left to replay
    assert len(list(tmp_path.glob(f"*{FREE_SUFFIX}"))) == FREE_FILES
    journal(spool, 25, 200)  # three new segments, written over free files
    assert len(list(tmp_path.glob(f"*{FREE_SUFFIX}"))) == FREE_FILES - 3
    spool.close()


def test_after_a_crash_a_reused_file_gives_back_only_its_new_rows(tmp_path: Path) -> None:
    first = Spool(tmp_path, batch_size=50, memory_rows=1000)
    journal(first, 200, 0)  # four full files
    for seg in list(first.closed):
        first.done(seg)
    new = journal(first, 57, 500)  # one full reused file and 7 rows over another: old rows after
    sizes = sorted(p.stat().st_size for p in tmp_path.glob(f"*{SUFFIX}"))
    assert sizes[0] > 7 * 4000  # the partly written file still holds its old lines
    crash(first)

    second = Spool(tmp_path, batch_size=50, memory_rows=1000)
    assert second.pending == 57
    replayed = [row["uid"] for seg in second.closed for row in second.rows(seg)]
    assert replayed == new
    second.close()


def test_a_spool_written_before_tags_is_replayed_and_then_deleted(tmp_path: Path) -> None:
    from probe.store.mapping import spool_line

    rows = [encode(r)[0] for r in results(3)]
    (tmp_path / f"{7:016d}{SUFFIX}").write_bytes(b"".join(spool_line(r) for r in rows))
    spool = Spool(tmp_path, batch_size=50, memory_rows=1000)
    assert spool.pending == 3
    (seg,) = spool.closed
    assert [r["uid"] for r in spool.rows(seg)] == [r["uid"] for r in rows]
    spool.done(seg)
    assert not list(tmp_path.glob("*.spool")) and not list(tmp_path.glob(f"*{FREE_SUFFIX}"))
    spool.close()


def test_appended_rows_reach_the_file_at_write_and_survive_a_crash(tmp_path: Path) -> None:
    spool = Spool(tmp_path, batch_size=100, memory_rows=1000)
    for r in results(3):
        spool.append(*encode(r), 0.0)
    (path,) = tmp_path.glob(f"*{SUFFIX}")
    assert path.stat().st_size == 0  # queued, not written: the store writes once per loop turn
    uids = journal(spool, 5, 10)
    crash(spool)
    again = Spool(tmp_path, batch_size=100, memory_rows=1000)
    (seg,) = again.closed
    replayed = [row["uid"] for row in again.rows(seg)]
    assert len(replayed) == 8 and replayed[3:] == uids
    again.close()


def test_a_failed_write_keeps_the_rows_already_on_disk_and_the_queued_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past `memory_rows` a segment lives on disk only; when a later write fails, the rows
    written before are read back and, with the ones that could not be written, kept in memory."""
    spool = Spool(tmp_path, batch_size=100, memory_rows=10)
    on_disk = journal(spool, 30, 0)
    assert spool.current is not None and spool.current.rows is None  # past the memory bound

    def full(fd: int, buffers: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(spool_module.os, "writev", full)
    queued = journal(spool, 5, 100)
    monkeypatch.undo()
    assert spool.append_errors == 1
    seg = spool.current
    assert seg is not None and seg.fd is None and seg.rows is not None
    assert [row["uid"] for row in seg.rows] == on_disk + queued
    assert spool.in_memory == 35
    later = journal(spool, 65, 200)  # the rest of the segment: in memory, no new disk attempt
    (closed,) = spool.closed
    assert [row["uid"] for row in spool.rows(closed)] == on_disk + queued + later
    journal(spool, 1, 300)  # the next segment tries the disk again
    assert spool.current is not None and spool.current.fd is not None
    spool.close()
