"""The store against real databases (SQLite always, PostgreSQL with CURFEW_TEST_POSTGRES)."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from probe.config import parse_config
from probe.store import SchemaDrift, Store, StoreError, check, tables, upgrade
from probe.store.mapping import result_row
from tests.store.builders import T0, result, results
from tests.store.conftest import execute

URL_ONLY = dict(batch_size=100, flush_interval=0.05)


async def open_store(url: str, spool_dir: Path, **kwargs: Any) -> Store:
    return await Store.open(url, spool_dir, **{**URL_ONLY, **kwargs})


def unreachable(database_url: str, tmp_path: Path) -> str:
    """A URL of the same kind that cannot be connected to."""
    if database_url.startswith("sqlite"):
        (tmp_path / "a-directory").mkdir()
        return f"sqlite:///{tmp_path / 'a-directory'}"  # sqlite cannot open a directory
    return database_url.replace("@127.0.0.1:5432/", "@127.0.0.1:1/").replace(
        "@localhost:5432/", "@localhost:1/"
    )


async def test_every_column_round_trips(database_url: str, spool_dir: Path, rows: Any) -> None:
    submitted = [result(started_at=T0), result("tls_blocked", started_at=T0 + timedelta(minutes=1))]
    store = await open_store(database_url, spool_dir)
    for r in submitted:
        store.submit(r)
    await store.close()

    stored = await rows()
    assert len(stored) == 2
    for got, r in zip(stored, submitted, strict=True):
        expected = result_row(r)
        assert got["started_at"] == r.measurement.started_at  # aware, UTC
        assert got["observations"] == json.loads(expected.pop("observations"))
        whole = json.loads(json.dumps(r.measurement.to_dict()))
        if r.analysis.verdict == "ok":  # the page's first bytes are kept only as evidence
            whole["http"]["body_sample"] = None
        assert got["observations"] == whole
        assert got["analysis"] == json.loads(expected.pop("analysis"))
        assert {k: got[k] for k in expected} == expected
        assert isinstance(got["id"], int)


async def test_migrations_from_empty_match_the_tables(database_url: str) -> None:
    # upgrade() and check() run their own event loop: from async code, in a thread.
    await asyncio.to_thread(upgrade, database_url)
    await asyncio.to_thread(check, database_url)  # no drift
    await asyncio.to_thread(upgrade, database_url)  # idempotent
    await execute(database_url, "DROP INDEX ix_measurements_verdict")
    with pytest.raises(SchemaDrift, match="ix_measurements_verdict"):
        await asyncio.to_thread(check, database_url)


async def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new' / 'dir' / 'curfew.db'}"  # the directory is created
    store = await open_store(url, tmp_path / "spool")
    store.submit(result())
    await store.close()
    from probe.store.engine import create_engine

    engine = create_engine(url)
    async with engine.connect() as conn:
        mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
        sync = (await conn.exec_driver_sql("PRAGMA synchronous")).scalar()
    await engine.dispose()
    assert (mode, sync) == ("wal", 1)  # 1 = NORMAL


async def test_a_new_sqlite_database_has_16k_pages_and_an_older_one_keeps_its_own(tmp_path: Path) -> None:
    import sqlite3

    from probe.store.engine import SQLITE_PAGE_SIZE

    old = tmp_path / "old.db"  # made by a version before the page size was set: 4 KiB, WAL
    with contextlib.closing(sqlite3.connect(old)) as db:
        db.execute("PRAGMA page_size=4096")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("CREATE TABLE earlier (x)")
    for path in (tmp_path / "new.db", old):
        store = await open_store(f"sqlite:///{path}", tmp_path / f"spool-{path.stem}")
        store.submit(result())
        await store.close()
    sizes = {}
    for path in (tmp_path / "new.db", old):
        with contextlib.closing(sqlite3.connect(path)) as db:
            sizes[path.stem] = db.execute("PRAGMA page_size").fetchone()[0]
            assert db.execute("SELECT count(*) FROM measurements").fetchone()[0] == 1
    assert sizes == {"new": SQLITE_PAGE_SIZE, "old": 4096}


async def test_sqlite_checkpoints_keep_the_wal_small_while_writing(tmp_path: Path) -> None:
    """The writer's connection leaves checkpoints to a thread of their own (its own
    auto-checkpoint is a 64 MiB backstop): that thread must keep up, or the WAL would hold
    everything written and a reader would wade through it."""
    db = tmp_path / "curfew.db"
    store = await open_store(f"sqlite:///{db}", tmp_path / "spool", batch_size=500)
    wal_sizes = []
    for batch in range(16):  # ~40 MB of rows
        for r in results(500, start=T0 + timedelta(hours=batch)):
            store.submit(r)
        await store.flush()
        wal_sizes.append(Path(f"{db}-wal").stat().st_size)
    await store.close()
    written = db.stat().st_size
    assert written > 30_000_000  # the rows are in the database file, not only in the WAL
    assert max(wal_sizes) < 16_000_000, wal_sizes  # a few batches at most, never everything
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        assert conn.execute("SELECT count(*) FROM measurements").fetchone() == (8000,)


async def test_sqlite_stores_the_json_columns_as_text_that_json_functions_read(tmp_path: Path) -> None:
    """They are bound as UTF-8 bytes and cast in the INSERT: a BLOB would break json_extract."""
    import sqlite3

    db = tmp_path / "curfew.db"
    store = await open_store(f"sqlite:///{db}", tmp_path / "spool")
    store.submit(result("tls_blocked"))
    await store.close()
    with contextlib.closing(sqlite3.connect(db)) as conn:
        row = conn.execute(
            "SELECT typeof(observations), typeof(analysis), json_extract(observations, '$.vantage'),"
            " json_extract(analysis, '$.verdict') FROM measurements"
        ).fetchone()
    assert row == ("text", "text", "kz-kazakhtelecom", "tls_blocked")


async def test_same_uid_twice_is_one_row(database_url: str, spool_dir: Path, rows: Any) -> None:
    r = result()
    store = await open_store(database_url, spool_dir)
    store.submit(r)
    await store.flush()
    store.submit(r)
    store.submit(r)
    await store.close()
    assert [row["uid"] for row in await rows()] == [r.measurement.uid]


async def test_database_refusing_writes_then_back_loses_nothing(
    database_url: str, spool_dir: Path, rows: Any
) -> None:
    """A table gone (a DBA's mistake, a failover) for a while: every row arrives, in order."""
    store = await open_store(database_url, spool_dir, memory_rows=100)
    first = results(50)
    for r in first:
        store.submit(r)
    await store.flush()
    await execute(database_url, "ALTER TABLE measurements RENAME TO measurements_away")

    later = results(1000, start=T0 + timedelta(hours=1))
    for r in later:
        store.submit(r)
    await store.flush()  # returns after a failed attempt, with everything fsynced
    assert store.write_errors >= 1
    assert store.spooled == 1000
    assert store._spool.in_memory <= 200  # the rest waits on disk, not in memory

    await execute(database_url, "ALTER TABLE measurements_away RENAME TO measurements")
    await store.flush()
    assert store.spooled == 0
    await store.close()

    stored = await rows()
    assert [row["uid"] for row in stored] == [r.measurement.uid for r in first + later]
    assert [row["started_at"] for row in stored] == sorted(row["started_at"] for row in stored)


async def test_unreachable_at_start_then_replayed_by_the_next_run(
    database_url: str, spool_dir: Path, tmp_path: Path, rows: Any
) -> None:
    down = await open_store(unreachable(database_url, tmp_path), spool_dir)
    submitted = results(250)
    for r in submitted:
        down.submit(r)
    await down.close()  # does not hang: the rows stay in the spool
    assert down.write_errors >= 1
    assert down.spooled == 250

    up = await open_store(database_url, spool_dir)
    await up.flush()
    assert up.spooled == 0
    await up.close()
    assert [row["uid"] for row in await rows()] == [r.measurement.uid for r in submitted]
    assert not list(spool_dir.glob("*.spool"))


async def make_unreachable(database_url: str) -> None:
    """The database cannot be opened: the SQLite path is a directory, the PostgreSQL database
    does not exist (yet)."""
    from tests.conftest import POSTGRES_ENV, drop_database

    if database_url.startswith("sqlite"):
        Path(make_url(database_url).database or "").mkdir(parents=True)
    else:
        await drop_database(os.environ[POSTGRES_ENV], make_url(database_url).database or "")


async def make_reachable(database_url: str) -> None:
    """Undo `make_unreachable`: an empty database, no schema."""
    from tests.conftest import POSTGRES_ENV, _admin

    if database_url.startswith("sqlite"):
        Path(make_url(database_url).database or "").rmdir()
    else:
        name = make_url(database_url).database
        await _admin(os.environ[POSTGRES_ENV], f'CREATE DATABASE "{name}"')


async def test_unreachable_at_start_then_migrated_and_written_when_back(
    database_url: str, spool_dir: Path, rows: Any
) -> None:
    """No restart needed: the writer runs the migrations once the database answers."""
    await make_unreachable(database_url)
    store = await open_store(database_url, spool_dir)
    submitted = results(250)
    for r in submitted:
        store.submit(r)
    await store.flush()  # returns after a failed attempt
    assert store.write_errors >= 1 and store.spooled == 250

    await make_reachable(database_url)
    more = results(50, start=T0 + timedelta(hours=1))
    for r in more:
        store.submit(r)
    await store.flush()
    assert store.spooled == 0
    await store.close()
    assert [row["uid"] for row in await rows()] == [r.measurement.uid for r in submitted + more]
    await asyncio.to_thread(check, database_url)  # the schema is the migrated one


async def test_retention_deletes_only_older_rows(database_url: str, spool_dir: Path, rows: Any) -> None:
    store = await open_store(database_url, spool_dir)
    for r in results(10, step=timedelta(days=1)):
        store.submit(r)
    await store.flush()
    deleted = await store.apply_retention(T0 + timedelta(days=6))
    await store.close()
    assert deleted == 6
    assert [row["started_at"] for row in await rows()] == [T0 + timedelta(days=d) for d in range(6, 10)]


def inventory_config(targets: list[str]) -> Any:
    return parse_config(
        {
            "vantages": [
                {
                    "name": "kz-beeline",
                    "timezone": "Asia/Almaty",
                    "proxy": "socks5://alice:hunter2@203.0.113.7:1080",
                    "labels": {"asn": "AS21299"},
                },
                {"name": "control-de", "control": True, "resolver": "9.9.9.9", "source_address": "192.0.2.1"},
            ],
            "targets": [
                {"name": name, "url": f"https://{name}.example/", "interval": 60} for name in targets
            ],
        }
    )


async def test_inventory_marks_removed_targets_inactive_and_keeps_no_credentials(
    database_url: str, spool_dir: Path, rows: Any
) -> None:
    store = await open_store(database_url, spool_dir)
    await store.sync_inventory(inventory_config(["facebook", "youtube", "wikipedia"]))
    first = {row["name"]: row for row in await rows(tables.targets)}
    await store.sync_inventory(inventory_config(["facebook", "wikipedia"]))
    await store.close()

    targets = {row["name"]: row for row in await rows(tables.targets)}
    assert {name: row["active"] for name, row in targets.items()} == {
        "facebook": True,
        "wikipedia": True,
        "youtube": False,
    }
    assert targets["youtube"]["last_seen"] == first["youtube"]["last_seen"]
    assert targets["facebook"]["first_seen"] == first["facebook"]["first_seen"]
    assert targets["facebook"]["last_seen"] > first["facebook"]["last_seen"]
    assert targets["facebook"]["interval_s"] == 60

    vantages = {row["name"]: row for row in await rows(tables.vantages)}
    assert vantages["kz-beeline"]["proxy"] == "socks5://203.0.113.7:1080"
    assert vantages["kz-beeline"]["timezone"] == "Asia/Almaty"
    assert vantages["kz-beeline"]["labels"] == {"asn": "AS21299"}
    assert vantages["control-de"]["control"] is True and vantages["control-de"]["resolver"] == "9.9.9.9"
    assert "hunter2" not in repr(vantages) and "alice" not in repr(vantages)


async def test_inventory_raises_store_error_when_unreachable(
    database_url: str, spool_dir: Path, tmp_path: Path
) -> None:
    store = await open_store(unreachable(database_url, tmp_path), spool_dir, migrate=False)
    with pytest.raises(StoreError):
        await store.sync_inventory(inventory_config(["facebook"]))
    await store.close()


async def test_close_twice_and_submit_after_close(database_url: str, spool_dir: Path) -> None:
    store = await open_store(database_url, spool_dir)
    await store.close()
    await store.close()
    with pytest.raises(RuntimeError):
        store.submit(result())


async def test_a_partial_batch_is_written_after_flush_interval(
    database_url: str, spool_dir: Path, rows: Any
) -> None:
    store = await open_store(database_url, spool_dir, batch_size=1000, flush_interval=0.05)
    store.submit(result())
    for _ in range(200):  # no flush(): the writer's timer does it
        if store.spooled == 0:
            break
        await asyncio.sleep(0.05)
    assert store.spooled == 0
    await store.close()
    assert len(await rows()) == 1


async def test_second_store_on_the_same_spool_is_refused(tmp_path: Path) -> None:
    from probe.store.spool import SpoolLocked

    url = f"sqlite:///{tmp_path / 'curfew.db'}"
    store = await open_store(url, tmp_path / "spool")
    with pytest.raises(SpoolLocked):
        await open_store(url, tmp_path / "spool")
    await store.close()


def test_bad_url_is_a_store_error() -> None:
    from probe.store.engine import async_url

    with pytest.raises(StoreError):
        async_url("mysql://db/curfew")


async def test_a_row_the_database_refuses_is_set_aside_not_lost(
    database_url: str, spool_dir: Path, rows: Any
) -> None:
    good = results(4)
    bad = result(started_at=T0 + timedelta(minutes=9))
    bad = replace(bad, analysis=replace(bad.analysis, reason=None))  # NOT NULL violated
    store = await open_store(database_url, spool_dir)
    for r in [*good[:2], bad, *good[2:]]:
        store.submit(r)
    await store.close()

    assert [row["uid"] for row in await rows()] == [r.measurement.uid for r in good]
    (rejected,) = spool_dir.glob("*.rejected")
    assert bad.measurement.uid in rejected.read_text()
    assert store.spooled == 0


async def test_a_journal_that_cannot_be_written_keeps_rows_in_memory_and_loses_none(
    database_url: str, spool_dir: Path, rows: Any, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """The disk under the spool is full: measurements stay in memory until the database has them."""
    from probe.store import spool as spool_module

    def full(fd: int, buffers: Any) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    # memory_rows=100: past the first segment, rows would live on disk only, so the failed
    # write is what keeps them in memory.
    store = await open_store(database_url, spool_dir, memory_rows=100)
    monkeypatch.setattr(spool_module.os, "writev", full)
    submitted = results(250)
    for r in submitted:
        store.submit(r)
    await store.flush()
    monkeypatch.undo()
    assert store.spooled == 0
    await store.close()
    assert "event=journal-write-failed" in caplog.text
    assert [row["uid"] for row in await rows()] == [r.measurement.uid for r in submitted]
