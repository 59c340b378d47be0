"""The journal on its own: recycled segment files never give back an earlier use's rows."""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path

from probe.store.mapping import encode
from probe.store.spool import FREE_FILES, FREE_SUFFIX, SUFFIX, Spool
from tests.store.builders import T0, results


def journal(spool: Spool, n: int, start_minute: int) -> list[str]:
    uids = []
    for r in results(n, start=T0 + timedelta(minutes=start_minute)):
        row, line = encode(r)
        spool.append(row, line, 0.0)
        uids.append(row["uid"])
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
