"""A journal that holds poison or damage: every good row still reaches the database, what was
skipped is said (file, line, reason) and set aside, and nothing tracebacks or stalls."""

from __future__ import annotations

import os
import random
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from probe.store import Store
from probe.store.mapping import result_row, spool_line
from tests.store.builders import T0, result, results


def segment_lines(seq: int, rows: list[dict[str, Any]]) -> list[bytes]:
    """The lines a segment numbered `seq` holds for `rows`, as the journal writes them."""
    return [b"%d\t" % seq + spool_line(row) for row in rows]


def write_segment(spool_dir: Path, seq: int, lines: list[bytes]) -> Path:
    spool_dir.mkdir(parents=True, exist_ok=True)
    path = spool_dir / f"{seq:016d}.spool"
    path.write_bytes(b"".join(lines))
    return path


def poison(line: bytes, **changes: object) -> bytes:
    """`line` (tagged) with scalar columns replaced: valid JSON, wrong types."""
    tag, scalars, rest = line.split(b"\t", 2)
    return b"\t".join([tag, orjson.dumps({**orjson.loads(scalars), **changes}), rest])


def uids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["uid"] for row in rows]


async def replay(database_url: str, spool_dir: Path) -> Store:
    store = await Store.open(database_url, spool_dir, batch_size=100, flush_interval=0.05)
    await store.flush()
    return store


@pytest.mark.parametrize(
    "changes",
    [{"started_at": 12345}, {"uid": {"a": 1}}, {"vantage": ["kz-beeline"]}],
    ids=["int-started_at", "dict-uid", "list-vantage"],
)
async def test_a_wrongly_typed_journal_line_is_set_aside_and_the_rest_flow(
    database_url: str,
    spool_dir: Path,
    rows: Any,
    caplog: pytest.LogCaptureFixture,
    changes: dict[str, object],
) -> None:
    good = [result_row(r) for r in results(20)]
    lines = segment_lines(1, good)
    bad_uid = good[7]["uid"]
    lines[7] = poison(lines[7], **changes)
    write_segment(spool_dir, 1, lines)

    store = await replay(database_url, spool_dir)
    later = results(5, start=T0 + timedelta(hours=1))  # new measurements are written too
    for r in later:
        store.submit(r)
    await store.flush()
    assert store.spooled == 0 and store.write_errors == 0
    await store.close()

    expected = [u for u in uids(good) if u != bad_uid] + [r.measurement.uid for r in later]
    assert uids(await rows()) == expected
    (rejected,) = spool_dir.glob("*.rejected")
    assert rejected.read_bytes() == lines[7].split(b"\t", 1)[1]  # as a spool line, untagged
    assert rejected.stat().st_mode & 0o777 == 0o600  # measurements are for the operator only
    logged = [r.getMessage() for r in caplog.records if "journal-line" in r.getMessage()]
    assert any(f"line=8 uid={bad_uid}" in m and "not a spooled measurement" in m for m in logged), logged

    # The next run has nothing left to retry: the poison line was not left in the journal.
    caplog.clear()
    again = await replay(database_url, spool_dir)
    assert again.spooled == 0 and again.write_errors == 0
    await again.close()
    assert len(await rows()) == len(expected)
    assert "journal-line" not in caplog.text


async def test_a_row_the_driver_cannot_bind_is_set_aside_not_retried_forever(
    database_url: str, spool_dir: Path, rows: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug that hands the store a wrongly-typed value (here a dict for the URL) makes the
    driver raise TypeError/ProgrammingError/DataError: that row is refused, not the database."""
    good = results(6)
    bad = result(started_at=T0 + timedelta(minutes=30))
    bad = replace(bad, measurement=replace(bad.measurement, url={"a": 1}))  # type: ignore[arg-type]
    store = await Store.open(database_url, spool_dir, batch_size=100, flush_interval=0.05)
    for r in [*good[:3], bad, *good[3:]]:
        store.submit(r)
    await store.flush()
    assert store.spooled == 0
    await store.close()
    assert uids(await rows()) == [r.measurement.uid for r in good]
    (rejected,) = spool_dir.glob("*.rejected")
    assert bad.measurement.uid in rejected.read_text()
    assert f"uid={bad.measurement.uid}" in caplog.text


def good_segment(spool_dir: Path, seq: int, n: int, minute: int = 0) -> tuple[Path, list[bytes], list[str]]:
    rows_ = [result_row(r) for r in results(n, start=T0 + timedelta(minutes=minute))]
    lines = segment_lines(seq, rows_)
    return write_segment(spool_dir, seq, lines), lines, uids(rows_)


def journal_messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "event=journal" in r.getMessage()]


async def test_a_segment_of_random_bytes_is_reported_and_the_others_replayed(
    database_url: str, spool_dir: Path, rows: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, before = good_segment(spool_dir, 1, 10)
    noise = write_segment(spool_dir, 2, [random.Random(7).randbytes(60_000)])
    _, _, after = good_segment(spool_dir, 3, 10, minute=100)
    store = await replay(database_url, spool_dir)
    await store.close()
    assert uids(await rows()) == before + after
    said = journal_messages(caplog)
    assert any(f"file={noise}" in m and 'reason="not a journal line"' in m for m in said), said
    assert store.journal_skipped > 0


async def test_a_first_byte_turned_into_a_brace_loses_no_row(
    database_url: str, spool_dir: Path, rows: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path, _, written = good_segment(spool_dir, 1, 54)
    data = bytearray(path.read_bytes())
    data[0:1] = b"{"
    path.write_bytes(bytes(data))
    store = await replay(database_url, spool_dir)
    await store.close()
    assert uids(await rows()) == written
    assert any(f"file={path} lines=1 " in m and "damaged sequence tag" in m for m in journal_messages(caplog))


@pytest.mark.parametrize("damage", [b"2\t", b"x\t", b""], ids=["other-number", "not-a-number", "gone"])
async def test_a_damaged_sequence_tag_loses_no_row(
    database_url: str, spool_dir: Path, rows: Any, caplog: pytest.LogCaptureFixture, damage: bytes
) -> None:
    path, lines, written = good_segment(spool_dir, 1, 54)
    lines[20] = damage + lines[20].split(b"\t", 1)[1]
    path.write_bytes(b"".join(lines))
    store = await replay(database_url, spool_dir)
    await store.close()
    assert uids(await rows()) == written
    assert any(f"file={path} lines=21 " in m for m in journal_messages(caplog)), journal_messages(caplog)


async def test_a_damaged_tag_with_no_row_after_it_is_named(
    database_url: str, spool_dir: Path, rows: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path, lines, written = good_segment(spool_dir, 1, 30)
    lines[4] = b"\x00\x17garbage\n"
    path.write_bytes(b"".join(lines))
    store = await replay(database_url, spool_dir)
    await store.close()
    assert uids(await rows()) == written[:4] + written[5:]
    assert any(f"file={path} line=5 " in m for m in journal_messages(caplog))
    assert store.journal_skipped == 1


async def test_corrupt_observation_json_is_set_aside_not_stored(
    database_url: str, spool_dir: Path, rows: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path, lines, written = good_segment(spool_dir, 1, 10)
    tag, scalars, observations, analysis = lines[3].split(b"\t")
    lines[3] = b"\t".join([tag, scalars, observations[: len(observations) // 2], analysis])
    path.write_bytes(b"".join(lines))
    store = await replay(database_url, spool_dir)
    await store.close()
    assert uids(await rows()) == written[:3] + written[4:]
    (rejected,) = spool_dir.glob("*.rejected")
    assert written[3] in rejected.read_text()
    assert any(
        f"uid={written[3]}" in m and "observations are not JSON" in m for m in journal_messages(caplog)
    )


async def test_a_directory_named_like_a_segment_is_skipped_with_a_word(
    database_url: str, spool_dir: Path, rows: Any, caplog: pytest.LogCaptureFixture
) -> None:
    _, _, written = good_segment(spool_dir, 1, 5)
    odd = spool_dir / f"{2:016d}.spool"
    odd.mkdir()
    (spool_dir / f"{3:016d}.free").mkdir()  # not a file to reuse either
    (spool_dir / "notes.spool").write_text("a person's file\n")
    store = await replay(database_url, spool_dir)
    for r in results(3, start=T0 + timedelta(hours=2)):
        store.submit(r)
    await store.flush()
    await store.close()
    assert len(await rows()) == 8
    assert uids(await rows())[:5] == written
    assert any(f"file={odd}" in m and "segment-ignored" in m for m in journal_messages(caplog))
    assert odd.is_dir()  # left for a person, not removed


async def test_an_unreadable_segment_is_kept_aside_and_the_rest_flow(
    database_url: str, spool_dir: Path, rows: Any, caplog: pytest.LogCaptureFixture
) -> None:
    if os.geteuid() == 0:
        pytest.skip("root reads a file whatever its mode")
    path, _, _ = good_segment(spool_dir, 1, 5)
    path.chmod(0)
    _, _, after = good_segment(spool_dir, 2, 5, minute=50)
    store = await replay(database_url, spool_dir)
    await store.close()
    assert uids(await rows()) == after
    assert any(f"file={path}" in m for m in journal_messages(caplog))


def test_the_recycled_tail_of_a_file_is_read_without_a_word(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Old lines after this use's lines (a recycled file) are expected: no report, not replayed."""
    from probe.store.spool_read import read_segment

    old = segment_lines(3, [result_row(r) for r in results(40)])
    new = segment_lines(9, [result_row(r) for r in results(10, start=T0 + timedelta(hours=1))])
    data = b"".join(old)
    head = b"".join(new)
    path = tmp_path / f"{9:016d}.spool"
    path.write_bytes(head + data[len(head) :])  # written over from the start
    contents = read_segment(path, 9)
    assert len(contents.rows) == 10 and not contents.skipped and not contents.kept_damaged
